"""Why README's test command runs two workers of one thread each (``pytest -n auto``): train
steps of the lessons' default ViT (batch 128, AdamW) done by one process with all the cores'
threads, against the same work split between ``--workers`` processes of cores // workers
threads each, started together. Prints steps per second of each layout and their ratio.

    flock /tmp/vitlearn-cpu.lock .venv/bin/python benchmarks/ci_parallel.py
    flock /tmp/vitlearn-cpu.lock .venv/bin/python benchmarks/ci_parallel.py --steps 80 --workers 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from harness import header  # benchmarks/ is on sys.path when run as a script

WORKER = """
import sys, time, torch, vitlearn
torch.set_num_threads(int(sys.argv[1])); steps = int(sys.argv[2])
torch.manual_seed(0)
model = vitlearn.ViT()
opt = torch.optim.AdamW(model.parameters(), 1e-3)
x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
def step():
    opt.zero_grad(); torch.nn.functional.cross_entropy(model(x), y).backward(); opt.step()
for _ in range(5):
    step()
print("ready", flush=True); sys.stdin.readline()           # start together
t = time.perf_counter()
for _ in range(steps):
    step()
print(time.perf_counter() - t, flush=True)
"""


def run(workers: int, threads: int, steps: int) -> float:
    """Wall seconds for ``workers`` processes doing ``steps`` steps each, started at once."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(threads), str(steps)], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(workers)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    t = time.perf_counter()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        p.communicate()
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=60, help="train steps per process")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    cores = os.cpu_count() or 1
    threads = max(1, cores // args.workers)
    print(header())
    for r in range(args.repeats):
        one = run(1, cores, args.steps * args.workers)            # all the work, one process
        many = run(args.workers, threads, args.steps)             # the same work, split
        total = args.steps * args.workers
        print(f"repeat {r}: 1 process x {cores} threads {total / one:6.1f} steps/s | "
              f"{args.workers} processes x {threads} thread{'s' if threads > 1 else ''} "
              f"{total / many:6.1f} steps/s | ratio {one / many:.2f}x", flush=True)


if __name__ == "__main__":
    main()
