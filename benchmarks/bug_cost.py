"""What a silent bug costs: train the default ViT with one zoo bug plugged in, 1 epoch each.

Every bug here runs without an error and still learns, so only a check (vitlearn.checks)
or a number like this one gives it away. Each row trains ``vitlearn.ViT(**part)`` with the
buggy part from tests/bug_zoo.py for one epoch of full MNIST
(``vitlearn.fit(model, epochs=1, progress=False, seed=0)``, every run seeded alike) and
prints its test accuracy next to the correct model's. One epoch is a short, fixed budget:
it shows which mistakes slow learning down or break it, not where each would end up after
a full schedule.

    VITLEARN_DATA_DIR=/work/shared/data flock /tmp/vitlearn-cpu.lock \
        .venv/bin/python benchmarks/bug_cost.py

Not trained: bugs that crash at once (positions without a [CLS] slot, shape mistakes), the
channel order of patches (with 1 input channel (c p1 p2) == (p1 p2 c): harmless on MNIST),
and the functions the training loop does not take from the learner (loss, shift, groups).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

import vitlearn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import bug_zoo as zoo  # noqa: E402
from harness import header  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

#: (row label, the ViT keyword that plugs the bug in, the buggy part, fit keywords)
RUNS = [
    ("correct (vitlearn.ViT())", None, None, {}),
    ("attention: softmax over the queries (dim=-2)", "attn_layer", zoo.AttentionSoftmaxOverQueries, {}),
    ("attention: no 1/sqrt(d) scaling", "attn_layer", zoo.AttentionNoScaling, {}),
    ("attention: heads merged in (d h) order", "attn_layer", zoo.AttentionHeadsMergedDH, {}),
    ("attention: no output projection", "attn_layer", zoo.AttentionNoProjection, {}),
    ("block: post-norm", "block_fn", zoo.BlockPostNorm, {}),
    ("block: no attention residual", "block_fn", zoo.BlockNoAttnResidual, {}),
    ("block: no MLP residual", "block_fn", zoo.BlockNoMlpResidual, {}),
    ("block: MLP without GELU", "block_fn", zoo.BlockNoGelu, {}),
    ("block: LayerNorm over the tokens", "block_fn", zoo.BlockNormOverTokens, {}),
    ("[CLS] appended instead of prepended", "cls_token_layer", zoo.ClassTokenAppended, {}),
    ("head: softmax inside the head", "head_layer", zoo.HeadWithSoftmax, {}),
    ("patches: column-major order", "embed_layer", zoo.PatchEmbeddingColumnMajor, {}),
    ("schedule: warm-up off by one", None, None,
     {"lr_schedule": lambda s, total, warm: zoo.warmup_cosine_off_by_one(s, total, warm, 0.01)}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", type=int, help="row numbers to run (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    train = vitlearn.load_dataset("mnist")
    test = vitlearn.load_dataset("mnist", train=False)
    print(header())
    print("1 epoch of full MNIST each: vitlearn.fit(model, epochs=1, progress=False, seed=0)\n")
    print(f"{'#':>2}  {'bug':<46} {'plugged in as':<34} {'test acc':>8} {'vs correct':>10} {'time':>6}")
    baseline = None
    for i, (label, keyword, part, fit_kwargs) in enumerate(RUNS):
        if args.only and i not in args.only:
            continue
        torch.manual_seed(0)
        model = vitlearn.ViT(**({keyword: part} if keyword else {}))
        t0 = time.perf_counter()
        history = vitlearn.fit(model, train, test, epochs=1, progress=False, seed=0, **fit_kwargs)
        seconds = time.perf_counter() - t0
        acc = history.final_test_acc
        if baseline is None and keyword is None and not fit_kwargs:
            baseline = acc
        delta = f"{100 * (acc - baseline):+.2f} pt" if baseline is not None else ""
        where = f"{keyword}={part.__name__}" if keyword else \
            ("lr_schedule=warmup_cosine_off_by_one" if fit_kwargs else "")
        print(f"{i:>2}  {label:<46} {where:<34} {acc:>8.2%} {delta:>10} {seconds:>5.1f}s", flush=True)


if __name__ == "__main__":
    main()
