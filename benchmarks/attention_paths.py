"""Fused kernel vs explicit math for the attention of a whole ViT train step, per sequence length.

``vitlearn.MultiHeadSelfAttention(fused=None)`` picks a path per call; this script is the
measurement behind that choice. For each patch size (7: 17 tokens, 4: 50 tokens, 2: 197 tokens on
28x28 MNIST) it builds the default ViT twice with the same weights, one with every block's
attention forced to ``fused=True`` (PyTorch's ``F.scaled_dot_product_attention``), one with
``fused=False`` (the explicit softmax(q k^T / sqrt(d)) v), and times full train steps (forward,
cross-entropy, backward, fit's AdamW) in short turns, shuffled, so that the shared machine's slow
and fast phases hit both alike. The ratio is the median over repeats of per-repeat ratios.

    flock /tmp/vitlearn-cpu.lock .venv/bin/python benchmarks/attention_paths.py
"""

from __future__ import annotations

import argparse
import random
import statistics

import torch
from harness import header, interleaved_images_per_s, train_step_fn  # benchmarks/ is on sys.path

import vitlearn
from vitlearn import MultiHeadSelfAttention


def train_step(patch_size: int, batch: int, fused: bool):
    torch.manual_seed(0)
    model = vitlearn.ViT(patch_size=patch_size)
    for block in model.encoder.blocks:
        block.attn.fused = fused
    return train_step_fn("vitlearn", model, batch)  # fit's optimizer, as in throughput.py (harness.py)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patch-sizes", default="7,4,2")
    ap.add_argument("--tokens", type=int, default=128 * 17, help="batch x tokens, about")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--steps", type=int, default=3, help="train steps per path per repeat")
    args = ap.parse_args(argv)
    print(f"{header()}\n# default ViT train step, fit's AdamW")
    print(f"# fused=None runs the explicit math for up to "
          f"{MultiHeadSelfAttention.CPU_MATH_MAX_TOKENS} tokens on a CPU")
    print(f"{'patch':>5} {'tokens':>6} {'batch':>5} {'fused img/s (min/med/max)':>27} "
          f"{'math img/s (min/med/max)':>27} {'math / fused':>12} {'auto picks':>10}")
    rng = random.Random(0)
    for p in (int(s) for s in args.patch_sizes.split(",")):
        n = (28 // p) ** 2 + 1
        batch = max(1, args.tokens // n)
        steps = {True: train_step(p, batch, True), False: train_step(p, batch, False)}
        for fn in steps.values():
            fn(), fn()  # warm-up
        ips = interleaved_images_per_s(steps, repeats=args.repeats, steps_per_turn=args.steps,
                                       batch=batch, order=rng)
        ratio = statistics.median(m / f for m, f in zip(ips[False], ips[True]))
        auto = "fused" if MultiHeadSelfAttention(embed_dim=64, num_heads=4).use_fused(
            torch.empty(1, 4, n, 16)) else "math"

        def fmt(xs: list[float]) -> str:
            return f"{min(xs):.0f}/{statistics.median(xs):.0f}/{max(xs):.0f}"

        print(f"{p:5d} {n:6d} {batch:5d} {fmt(ips[True]):>27} {fmt(ips[False]):>27} "
              f"{ratio:11.2f}x {auto:>10}", flush=True)


if __name__ == "__main__":
    main()
