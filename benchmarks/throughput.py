"""Training / inference throughput of ``vitlearn.ViT()`` vs vit-pytorch and timm, same config.

All three are the same architecture size: 28x28x1 images, patch 7 (16 patches + [CLS]), D=64,
depth 4, 4 heads of 16, MLP 128, 10 classes. Models are timed interleaved (round-robin over
repeats) so that a slow patch of the shared machine hits all of them, and every figure is
reported as min / median / max over the repeats, plus the ratio of medians.

    flock /tmp/vitlearn-cpu.lock .venv/bin/python benchmarks/throughput.py
    flock /tmp/vitlearn-cpu.lock .venv/bin/python benchmarks/throughput.py --compile

Train step = forward, cross-entropy, zero_grad, backward, AdamW step, fp32, batch 128. The
``vitlearn`` row uses the optimizer ``vitlearn.fit`` builds (``make_optimizer``: fused AdamW);
``vitlearn/torch-AdamW``, vit-pytorch and timm use ``torch.optim.AdamW`` with its defaults, so
the difference between the two vitlearn rows is the optimizer and the rest is the model.
The row ``vitlearn/all-tokens`` takes vitlearn's main speed choice back out, in the same run: it
computes the last block for every token, as vit-pytorch and timm do (``ViT.forward`` computes it
for [CLS] alone, the only token the head reads; ``--no-ablations`` drops the row). FLOPs are counted
by ``torch.utils.flop_counter.FlopCounterMode`` (matmuls/attention only: LayerNorm, GELU, softmax
and the optimizer are not counted) and compared with the machine's fp32 matmul rate measured by
timing a large ``torch.mm``; each row counts its own model's FLOPs, so the vitlearn row counts the
smaller last block it runs.
"""

from __future__ import annotations

import argparse
import random
import statistics
from collections.abc import Callable

import torch
from harness import (  # benchmarks/ is on sys.path when run as a script
    header,
    interleaved_images_per_s,
    matmul_peak,
    timed,
    train_step_flops,
    train_step_fn,
)
from torch import nn

import vitlearn


class AllTokensViT(vitlearn.ViT):
    """vitlearn.ViT with the last block computed for every token, as vit-pytorch and timm do
    (``ViT.forward`` computes it for [CLS] alone): the row that shows what that saves."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(images))


def build_models(compile_: bool, ablations: bool) -> dict[str, nn.Module]:
    models: dict[str, nn.Module] = {"vitlearn": vitlearn.ViT(), "vitlearn/torch-AdamW": vitlearn.ViT()}
    if ablations:
        models["vitlearn/all-tokens"] = AllTokensViT()
    try:
        from vit_pytorch import ViT as LucidViT

        models["vit-pytorch"] = LucidViT(image_size=28, patch_size=7, num_classes=10, dim=64, depth=4,
                                         heads=4, mlp_dim=128, channels=1, dim_head=16)
    except ImportError:
        print("# vit-pytorch not installed: .venv/bin/pip install vit-pytorch")
    try:
        from timm.models.vision_transformer import VisionTransformer

        models["timm"] = VisionTransformer(img_size=28, patch_size=7, in_chans=1, num_classes=10,
                                           embed_dim=64, depth=4, num_heads=4, mlp_ratio=2.0)
    except ImportError:
        print("# timm not installed: .venv/bin/pip install timm")
    if compile_:
        models["vitlearn+compile"] = torch.compile(vitlearn.ViT())
    return models


def infer_fn(model: nn.Module, batch: int) -> Callable[[], None]:
    x = torch.randn(batch, 1, 28, 28, generator=torch.Generator().manual_seed(1))

    def run() -> None:
        model.eval()
        with torch.inference_mode():
            model(x)

    return run


def stats(xs: list[float]) -> str:
    return f"{min(xs):9.0f} {statistics.median(xs):9.0f} {max(xs):9.0f}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--steps", type=int, default=5, help="train steps per model per repeat")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile(vitlearn.ViT())")
    ap.add_argument("--infer-batch", type=int, default=1000)
    ap.add_argument("--no-ablations", action="store_true",
                    help="leave out the row vitlearn/all-tokens")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    print(header())
    torch.manual_seed(0)
    models = build_models(args.compile, not args.no_ablations)
    for name, m in models.items():
        print(f"# {name}: {sum(p.numel() for p in m.parameters()):,} parameters")

    # --- training throughput, interleaved ---
    steps = {name: train_step_fn(name, m, args.batch) for name, m in models.items()}
    for name, fn in steps.items():  # warm-up (and compilation)
        t = timed(fn, 3)
        print(f"# warm-up {name}: {t:.1f} s")
    # the ratios below are medians of per-repeat ratios
    train_ips = interleaved_images_per_s(steps, repeats=args.repeats, steps_per_turn=args.steps,
                                         batch=args.batch, order=random.Random(0))

    # --- inference throughput and batch-1 latency, interleaved ---
    # (the optimizer plays no part here: one vitlearn row is enough)
    infer_models = {n: m for n, m in models.items() if "torch-AdamW" not in n}
    infers = {n: infer_fn(m, args.infer_batch) for n, m in infer_models.items()}
    singles = {n: infer_fn(m, 1) for n, m in infer_models.items()}
    for n in infer_models:
        infers[n](), singles[n]()
    infer_ips: dict[str, list[float]] = {n: [] for n in infer_models}
    latency_ms: dict[str, list[float]] = {n: [] for n in infer_models}
    for _ in range(args.repeats):
        for n in infer_models:
            infer_ips[n].append(3 * args.infer_batch / timed(infers[n], 3))
            latency_ms[n].append(timed(singles[n], 50) / 50 * 1e3)

    peak = matmul_peak()
    print(f"\nfp32 matmul peak (torch.mm 2048x2048, best of 5): {peak:.1f} GFLOP/s")
    ref = "vit-pytorch" if "vit-pytorch" in models else None
    print(f"\ntraining, batch {args.batch}, {args.steps} steps x {args.repeats} repeats (images/s)")
    print(f"{'model':22s} {'min':>9s} {'median':>9s} {'max':>9s} {'GFLOP/s':>8s} {'% peak':>7s} "
          f"{'ratio':>6s}  (ratio: median over repeats of images/s / vit-pytorch's)")
    for name in models:
        flops = train_step_flops(models[name] if "compile" not in name else models["vitlearn"], args.batch)
        med = statistics.median(train_ips[name])
        gflops = flops / args.batch * med / 1e9
        ratio = (statistics.median(a / b for a, b in zip(train_ips[name], train_ips[ref])) if ref
                 else float("nan"))
        print(f"{name:22s} {stats(train_ips[name])} {gflops:8.2f} {gflops / peak:7.1%} {ratio:6.2f}x")
    if ref:
        per_repeat = [a / b for a, b in zip(train_ips["vitlearn"], train_ips[ref])]
        print(f"vitlearn / vit-pytorch per repeat: min {min(per_repeat):.2f}x, median "
              f"{statistics.median(per_repeat):.2f}x, max {max(per_repeat):.2f}x (target >= 1.3x)")
    if "timm" in models:
        per_repeat = [a / b for a, b in zip(train_ips["vitlearn"], train_ips["timm"])]
        print(f"vitlearn / timm per repeat: min {min(per_repeat):.2f}x, median "
              f"{statistics.median(per_repeat):.2f}x, max {max(per_repeat):.2f}x")
    if ref and "vitlearn+compile" in models:
        per_repeat = [a / b for a, b in zip(train_ips["vitlearn+compile"], train_ips[ref])]
        print(f"vitlearn+compile / vit-pytorch per repeat: min {min(per_repeat):.2f}x, median "
              f"{statistics.median(per_repeat):.2f}x, max {max(per_repeat):.2f}x")

    print(f"\ninference, batch {args.infer_batch} (images/s)")
    print(f"{'model':22s} {'min':>9s} {'median':>9s} {'max':>9s} {'ratio':>6s}")
    for name in infer_models:
        ratio = (statistics.median(infer_ips[name]) / statistics.median(infer_ips[ref]) if ref
                 else float("nan"))
        print(f"{name:22s} {stats(infer_ips[name])} {ratio:6.2f}x")
    print("\nbatch-1 latency (ms, mean of 50 calls per repeat)")
    print(f"{'model':22s} {'min':>9s} {'median':>9s} {'max':>9s}")
    for name in infer_models:
        xs = latency_ms[name]
        print(f"{name:22s} {min(xs):9.3f} {statistics.median(xs):9.3f} {max(xs):9.3f}")


if __name__ == "__main__":
    main()
