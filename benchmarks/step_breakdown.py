"""Where the time of one training step goes: vitlearn.ViT() vs vit-pytorch, phase by phase.

    flock /tmp/vitlearn-cpu.lock .venv/bin/python benchmarks/step_breakdown.py

The same step as ``benchmarks/throughput.py`` (forward + cross-entropy, ``zero_grad``, backward,
AdamW step; fp32, the default ViT and vit-pytorch at the same size), timed per phase, at two
batch sizes in the same run:

* **batch 1**: the step's fixed cost (Python, module calls, the autograd engine, the dispatcher,
  the optimizer's bookkeeping), which does not grow with the batch;
* **batch 128** (the throughput benchmark's): fixed cost plus the kernels' work.

Two more rows separate the kinds of cost:

* ``vitlearn/aot_eager``: ``torch.compile(model, backend="aot_eager")`` runs the very same ATen
  kernels as eager vitlearn, but from one traced graph with one autograd node for the whole
  forward (no per-module Python, no per-op autograd bookkeeping). If per-op overhead were what
  separates vitlearn from 1.3x vit-pytorch, this row would show it.
* ``matmuls alone``: every matrix multiplication of vitlearn's step (``mm``, ``addmm``, ``bmm``,
  ``baddbmm`` of the forward and backward, with their shapes and strides, recorded by a
  ``TorchDispatchMode``) replayed back to back on fresh tensors: the time the step's FLOPs take
  when nothing else runs. The rest of the step is everything that is not a matmul (LayerNorm,
  GELU, softmax, copies, adds, the optimizer) plus what the matmuls lose to cold caches.

Models take short turns (5 steps) in a shuffled order; each figure is a median over the repeats.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from harness import header, matmul_peak, train_step_flops  # benchmarks/ is on sys.path when run as a script
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import vitlearn
from vitlearn.training import make_optimizer

PHASES = ("forward", "zero_grad", "backward", "optimizer")
MATMULS = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default,
           torch.ops.aten.baddbmm.default}


def build_models(aot_eager: bool) -> dict[str, tuple[nn.Module, bool]]:
    """name -> (model, uses fit's optimizer). vitlearn rows share one set of initial weights."""
    torch.manual_seed(0)
    base = vitlearn.ViT()
    models = {"vitlearn": (base, True)}
    try:
        from vit_pytorch import ViT as LucidViT
    except ImportError as err:
        raise SystemExit("vit-pytorch is not installed: .venv/bin/pip install -e '.[bench]'") from err
    models["vit-pytorch"] = (LucidViT(image_size=28, patch_size=7, num_classes=10, dim=64, depth=4,
                                      heads=4, mlp_dim=128, channels=1, dim_head=16), False)
    if aot_eager:
        twin = vitlearn.ViT()
        twin.load_state_dict(base.state_dict())
        models["vitlearn/aot_eager"] = (torch.compile(twin, backend="aot_eager"), True)
    return models


def phased_step(model: nn.Module, fits_optimizer: bool, batch: int) -> tuple[Callable[[], None], dict]:
    """A train step that records how long each phase took (seconds) in the returned dict."""
    opt = (make_optimizer(model, lr=1e-3, weight_decay=0.05) if fits_optimizer
           else torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)
    times: dict[str, list[float]] = {phase: [] for phase in PHASES}
    model.train()

    def step() -> None:
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        opt.step()
        t4 = time.perf_counter()
        for phase, dt in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            times[phase].append(dt)

    return step, times


class RecordMatmuls(TorchDispatchMode):
    """Keeps (op, tensor layouts, other arguments) of every matmul that runs under it."""

    def __init__(self):
        super().__init__()
        self.calls: list = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in MATMULS:
            layout = [(a.shape, a.stride()) if isinstance(a, torch.Tensor) else a for a in args]
            self.calls.append((func, layout, kwargs))
        return func(*args, **kwargs)


def matmul_replay(model: nn.Module, batch: int) -> tuple[Callable[[], None], list]:
    """The matmuls of one forward + backward of ``model``, replayable on fresh tensors of the
    same shapes and strides; and the calls [(op, arguments, keyword arguments)]."""
    x = torch.randn(batch, 1, 28, 28)
    y = torch.zeros(batch, dtype=torch.long)
    with RecordMatmuls() as rec:
        F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)

    def fresh(a):
        if not isinstance(a, tuple):
            return a
        shape, stride = a
        span = 1 + sum((n - 1) * s for n, s in zip(shape, stride)) if all(shape) else 0
        return torch.randn(span).as_strided(shape, stride)

    calls = [(func, [fresh(a) for a in layout], kwargs) for func, layout, kwargs in rec.calls]

    def run() -> None:
        for func, args, kwargs in calls:
            func(*args, **kwargs)

    return run, calls


def matmul_flops(func, args) -> int:
    """2 * M * K * N (times the batch for bmm / baddbmm) of one recorded call."""
    a, b = (args[1], args[2]) if func in (torch.ops.aten.addmm.default, torch.ops.aten.baddbmm.default) \
        else (args[0], args[1])
    return 2 * a.shape[:-1].numel() * a.shape[-1] * b.shape[-1]


def per_matmul_table(calls: list, repeats: int) -> None:
    """Each recorded matmul timed on its own (median of ``repeats`` runs of 20), grouped by op
    and operand shapes: where the matmul time goes, and how fast each kind runs."""
    groups: dict[str, list[float]] = {}
    flops: dict[str, int] = {}
    for func, args, kwargs in calls:
        func(*args, **kwargs)
        runs = []
        for _ in range(repeats):
            t = time.perf_counter()
            for _ in range(20):
                func(*args, **kwargs)
            runs.append((time.perf_counter() - t) / 20)
        shapes = " x ".join(str(list(a.shape)) for a in args if isinstance(a, torch.Tensor) and a.dim() > 1)
        key = f"{func.__name__.split('.')[0]:8s} {shapes}"
        groups.setdefault(key, []).append(statistics.median(runs))
        flops[key] = matmul_flops(func, args)
    print(f"\n{'op and operand shapes':52s} {'calls':>5s} {'us each':>8s} {'GFLOP/s':>8s}")
    for key, ts in sorted(groups.items(), key=lambda kv: -sum(kv[1])):
        each = statistics.median(ts)
        print(f"{key:52s} {len(ts):5d} {each * 1e6:8.0f} {flops[key] / each / 1e9:8.1f}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 128])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--steps", type=int, default=5, help="train steps per model per repeat")
    ap.add_argument("--no-aot-eager", action="store_true", help="leave out the vitlearn/aot_eager row")
    ap.add_argument("--per-matmul", action="store_true",
                    help="also time each matmul of the last batch size on its own, grouped by shape")
    args = ap.parse_args(argv)
    print(header())
    models = build_models(not args.no_aot_eager)
    peak = matmul_peak()
    print(f"# fp32 matmul peak (torch.mm 2048x2048, best of 5): {peak:.1f} GFLOP/s")
    order = random.Random(0)
    for batch in args.batches:
        steps = {name: phased_step(m, fits, batch) for name, (m, fits) in models.items()}
        for step, times in steps.values():  # warm-up (and tracing), not counted
            for _ in range(3):
                step()
            for ts in times.values():
                ts.clear()
        replay, calls = matmul_replay(models["vitlearn"][0], batch)
        replay()
        replay_ms: list[float] = []
        for _ in range(args.repeats):
            names = list(steps) + ["matmuls alone"]
            order.shuffle(names)
            for name in names:
                if name == "matmuls alone":
                    t = time.perf_counter()
                    replay()
                    replay_ms.append((time.perf_counter() - t) * 1e3)
                else:
                    step = steps[name][0]
                    for _ in range(args.steps):
                        step()

        totals = {name: [sum(ts) * 1e3 for ts in zip(*times.values())] for name, (_, times) in steps.items()}
        ref = statistics.median(totals["vit-pytorch"])
        print(f"\nbatch {batch}: ms per train step, median over {args.repeats * args.steps} steps "
              f"(ratio: vit-pytorch's step time / the row's)")
        print(f"{'row':20s} " + " ".join(f"{p:>9s}" for p in PHASES) + f" {'total':>8s} {'ratio':>6s}")
        for name, (_, times) in steps.items():
            cells = " ".join(f"{statistics.median(times[p]) * 1e3:9.3f}" for p in PHASES)
            total = statistics.median(totals[name])
            print(f"{name:20s} {cells} {total:8.3f} {ref / total:5.2f}x")
        alone = statistics.median(replay_ms)
        mine = statistics.median(totals["vitlearn"])
        print(f"{'matmuls alone':20s} {'':>39s} {alone:8.3f}   ({len(calls)} matmuls of vitlearn's forward "
              f"and backward: {alone / mine:.0%} of its step)")
        gflop = train_step_flops(models["vitlearn"][0], batch) / 1e9
        in_step, on_their_own = gflop / mine * 1e3, gflop / alone * 1e3  # GFLOP/s
        print(f"vitlearn's step: {gflop:.3f} GFLOP of matmuls; at the step's pace {in_step:.1f} GFLOP/s "
              f"= {in_step / peak:.0%} of the peak; the same matmuls alone {on_their_own:.1f} GFLOP/s = "
              f"{on_their_own / peak:.0%} of the peak (the ceiling for this step with these kernels, "
              f"if everything else took no time)")
    if args.per_matmul:
        per_matmul_table(calls, args.repeats)


if __name__ == "__main__":
    main()
