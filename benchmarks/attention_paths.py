"""Fused kernel vs explicit math in ``vitlearn.MultiHeadSelfAttention``, forward + backward.

Why ``fused=None`` picks the explicit math for short sequences on a CPU: PyTorch's fused
``F.scaled_dot_product_attention`` (a flash-attention kernel on CPU) works in blocks, which pays
off for long sequences and costs more than it saves for ViT-on-MNIST's 17 tokens. The two paths
are timed interleaved, for several sequence lengths at about the same number of tokens per batch
(2,176 = 128 images x 17 tokens), D=64, 4 heads; min / median / max over the repeats.

    flock /tmp/vitlearn-cpu.lock .venv/bin/python benchmarks/attention_paths.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vitlearn import MultiHeadSelfAttention


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", default="17,50,65,101,145,197,257")
    ap.add_argument("--tokens", type=int, default=128 * 17, help="batch x length, about")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}  torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; forward + backward of MultiHeadSelfAttention(64, 4)")
    print(f"# fused=None uses the explicit math up to {MultiHeadSelfAttention.CPU_MATH_MAX_TOKENS} "
          "tokens on a CPU")
    print(f"{'tokens':>6} {'batch':>5} {'fused ms (min/med/max)':>24} {'math ms (min/med/max)':>24} "
          f"{'math speed-up':>13} {'auto picks':>10}")
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(embed_dim=64, num_heads=4)
    for n in (int(s) for s in args.lengths.split(",")):
        batch = max(1, args.tokens // n)
        x = torch.randn(batch, n, 64, requires_grad=True)
        grad = torch.randn(batch, n, 64)

        def run(fused: bool, x: torch.Tensor = x, grad: torch.Tensor = grad) -> None:
            attn.fused = fused
            attn(x).backward(grad)

        times: dict[bool, list[float]] = {True: [], False: []}
        for fused in times:
            run(fused), run(fused)  # warm-up
        for _ in range(args.repeats):
            for fused in times:
                t = time.perf_counter()
                for _ in range(args.iters):
                    run(fused)
                times[fused].append((time.perf_counter() - t) / args.iters * 1e3)
        attn.fused = None
        auto = "fused" if attn.use_fused(x.new_empty(1, 4, n, 16)) else "math"

        def fmt(xs: list[float]) -> str:
            return f"{min(xs):.2f}/{statistics.median(xs):.2f}/{max(xs):.2f}"

        ratio = statistics.median(times[True]) / statistics.median(times[False])
        print(f"{n:6d} {batch:5d} {fmt(times[True]):>24} {fmt(times[False]):>24} {ratio:12.2f}x "
              f"{auto:>10}")


if __name__ == "__main__":
    main()
