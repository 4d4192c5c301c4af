"""Time to grade each notebook with `python -m vitlearn grade` (vitlearn.grading.grade_notebook):
the solution notebook as a fully solved submission (every check runs), in a fresh kernel.

    VITLEARN_DATA_DIR=... python benchmarks/grading_time.py               # without the training runs
    VITLEARN_DATA_DIR=... python benchmarks/grading_time.py --train       # with them (minutes each)
    python benchmarks/grading_time.py 05_attention 06_encoder             # some notebooks only

Goal (issue 21): at most 60 s per notebook without its training runs on the 2-core machine.
Prints one line per notebook: seconds, score, statuses (a solved notebook must get full points).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vitlearn.grading import grade_notebook  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="stems, e.g. 05_attention (default: all)")
    parser.add_argument("--train", action="store_true", help="run the training cells too")
    parser.add_argument("--timeout", type=int, default=None,
                        help="per-cell limit in seconds (default: 60, or 1800 with --train)")
    args = parser.parse_args(argv)
    timeout = args.timeout or (1800 if args.train else 60)
    paths = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.notebooks:
        paths = [p for p in paths if p.stem in args.notebooks]
    print(f"# {platform.processor() or platform.machine()}, {time.strftime('%Y-%m-%d %H:%M')}, "
          f"{'with' if args.train else 'without'} training, per-cell limit {timeout} s")
    total, worst, ok = 0.0, 0.0, True
    for path in paths:
        r = grade_notebook(path, train=args.train, timeout=timeout)
        statuses = ", ".join(f"{p.part}: {p.status}" for p in r.parts)
        print(f"{path.stem:28s} {r.seconds:6.1f} s  {r.score}/{r.max_score}  {r.error or statuses}",
              flush=True)
        total, worst = total + r.seconds, max(worst, r.seconds)
        ok &= r.error is None and r.score == r.max_score
    print(f"all {len(paths)}: {total:.0f} s in all, the slowest {worst:.1f} s; "
          f"{'every solved notebook got full points' if ok else 'NOT every solved notebook got full points'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
