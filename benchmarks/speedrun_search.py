"""The search behind the ``speedrun`` recipe of ``time_to_accuracy.py``: 4-epoch candidates on
the validation split (55,000 training images train, 5,000 held out score; the test set is not
looked at). Each candidate changes the baseline in one or two places; every run is seeded
(``--seed``, 0 by default), so a rerun on the same machine repeats its accuracies bit for bit.

    flock /tmp/vitlearn-cpu.lock .venv/bin/python benchmarks/speedrun_search.py            # all
    flock /tmp/vitlearn-cpu.lock .venv/bin/python benchmarks/speedrun_search.py p14-d256 shift-1

Baseline: the default ViT (patch 7, D=64, depth 4, 4 heads, MLP 128) with the ``fast`` recipe's
settings for 4 epochs (lr 2e-3, warm-up 0.5 epoch, cosine, weight decay 0.05, label smoothing
0.1, shifts of up to 2 px, batch 128). The rules of the speedrun (issue 11): a pure ViT (no
convolution beyond the patch projection), no pretrained weights, at most 4 epochs and 60 s.

Some candidates swap in parts that the library does not ship, defined here, each from a paper
on ViTs for small data sets: a LayerNorm before and after the patch projection (as
vit-pytorch's patch embedding), Shifted Patch Tokenization and Locality Self-Attention (Lee et
al. 2021, "Vision Transformer for Small-Size Datasets").
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F
from einops import rearrange
from harness import machine  # benchmarks/ is on sys.path as a script
from time_to_accuracy import center_crop
from torch import nn

import vitlearn
from vitlearn.data import load_dataset, train_val_split
from vitlearn.patches import PatchEmbedding, patchify

BASE_FIT = dict(epochs=4, batch_size=128, lr=2e-3, warmup_epochs=0.5, weight_decay=0.05,
                label_smoothing=0.1, max_shift=2)


class NormedPatchEmbedding(PatchEmbedding):
    """LayerNorm(patch pixels) -> Linear -> LayerNorm(D), as vit-pytorch embeds patches."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.pre = nn.LayerNorm(self.patch_size ** 2 * self.in_chans)
        self.post = nn.LayerNorm(self.embed_dim)

    def forward(self, images):
        return self.post(self.proj(self.pre(patchify(images, self.patch_size))))


class ShiftedPatchTokenization(nn.Module):
    """Lee et al. 2021: the image and four copies shifted diagonally by half a patch, stacked as
    channels, cut into patches, LayerNorm, Linear, LayerNorm. Every token sees its neighbours'
    edges; the projection is still one Linear per patch (no convolution)."""

    def __init__(self, *, img_size=28, patch_size=7, in_chans=1, embed_dim=64):
        super().__init__()
        self.patch_size = patch_size
        self.num_patches = (img_size // patch_size) ** 2
        dim = patch_size ** 2 * in_chans * 5
        self.pre, self.proj, self.post = nn.LayerNorm(dim), nn.Linear(dim, embed_dim), nn.LayerNorm(embed_dim)

    def forward(self, x):
        s, (h, w) = self.patch_size // 2, x.shape[-2:]
        padded = F.pad(x, (s, s, s, s))
        shifted = [padded[..., s + dy:s + dy + h, s + dx:s + dx + w]
                   for dy, dx in ((s, s), (s, -s), (-s, s), (-s, -s))]
        x = torch.cat([x, *shifted], dim=1)
        return self.post(self.proj(self.pre(patchify(x, self.patch_size))))


class LocalitySelfAttention(vitlearn.MultiHeadSelfAttention):
    """Lee et al. 2021: a learned softmax temperature (starting at 1/sqrt(d)) and no token
    attending to itself (the diagonal masked), which sharpens attention on the others."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.log_scale = nn.Parameter(torch.tensor(math.log(self.head_dim ** -0.5)))

    def forward(self, x, need_weights=False, *, num_queries=None):
        n = x.shape[1] if num_queries is None else num_queries
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3,
                            h=self.num_heads)
        scores = q[:, :, :n] @ k.transpose(-2, -1) * self.log_scale.exp()  # [B, h, n, N]
        scores = scores.masked_fill(torch.eye(n, x.shape[1], dtype=torch.bool), float("-inf"))
        weights = scores.softmax(dim=-1)
        out = self.proj(rearrange(weights @ v, "b h n d -> b n (h d)"))
        return (out, weights) if need_weights else out


def xavier_init(model: nn.Module) -> None:
    """The JAX ViT's Linear init (Xavier uniform weights, zero biases) instead of PyTorch's."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)


def zero_head(model: nn.Module) -> None:
    nn.init.zeros_(model.head.fc.weight)
    nn.init.zeros_(model.head.fc.bias)


# name -> (ViT keyword arguments, fit keyword arguments (over BASE_FIT), data, init)
CANDIDATES: dict[str, tuple[dict, dict, dict, object]] = {
    "base": ({}, {}, {}, None),
    "no-aug": ({}, dict(max_shift=0, label_smoothing=0.0), {}, None),
    "shift-1": ({}, dict(max_shift=1), {}, None),
    "lr-3e-3": ({}, dict(lr=3e-3), {}, None),
    "no-label-smoothing": ({}, dict(label_smoothing=0.0), {}, None),
    "batch-64": ({}, dict(batch_size=64, lr=1.5e-3), {}, None),
    "depth-6": (dict(depth=6), {}, {}, None),
    "mlp-ratio-4": (dict(mlp_ratio=4.0), {}, {}, None),
    "d96": (dict(embed_dim=96, num_heads=6), dict(max_shift=1), {}, None),
    "p6-crop24": (dict(patch_size=6), {}, dict(crop=24), None),
    "p4-crop20": (dict(patch_size=4), {}, dict(crop=20), None),
    "p4-crop20-shift-1": (dict(patch_size=4), dict(max_shift=1), dict(crop=20), None),
    "p4-d48-crop24": (dict(patch_size=4, embed_dim=48), {}, dict(crop=24), None),
    "p4-d32": (dict(patch_size=4, embed_dim=32), {}, {}, None),
    "normed-patches": (dict(embed_layer=NormedPatchEmbedding), {}, {}, None),
    "spt": (dict(embed_layer=ShiftedPatchTokenization), {}, {}, None),
    "lsa": (dict(attn_layer=LocalitySelfAttention), dict(max_shift=1), {}, None),
    "sincos": (dict(pos_embed="sincos"), dict(max_shift=1), {}, None),
    "short-warmup-to-0": ({}, dict(max_shift=1, lr=1.5e-3, warmup_epochs=0.25, min_lr_factor=0.0),
                          {}, None),
    "xavier": ({}, dict(max_shift=1), {}, xavier_init),
    "zero-head": ({}, dict(max_shift=1), {}, zero_head),
    "p14-d128": (dict(patch_size=14, embed_dim=128), dict(max_shift=1), {}, None),
    "p14-d128-shift-2": (dict(patch_size=14, embed_dim=128), {}, {}, None),
    "p14-d128-depth-6": (dict(patch_size=14, embed_dim=128, depth=6), dict(max_shift=1), {}, None),
    "p14-d128-mlp-4": (dict(patch_size=14, embed_dim=128, mlp_ratio=4.0), dict(max_shift=1), {}, None),
    "p14-d128-lr-3e-3": (dict(patch_size=14, embed_dim=128), dict(max_shift=1, lr=3e-3), {}, None),
    "p14-d128-batch-64": (dict(patch_size=14, embed_dim=128), dict(max_shift=1, batch_size=64, lr=1.5e-3),
                          {}, None),
    "p14-d160": (dict(patch_size=14, embed_dim=160, num_heads=8), dict(max_shift=1), {}, None),
    "p14-d256": (dict(patch_size=14, embed_dim=256, num_heads=8), dict(max_shift=1), {}, None),
    # Muon for the encoder's matrices, AdamW for the rest (fit(optimizer="muon"), vitlearn.optim)
    "muon": ({}, dict(optimizer="muon"), {}, None),
    "p14-d128-muon": (dict(patch_size=14, embed_dim=128), dict(max_shift=1, optimizer="muon"), {}, None),
    "p14-d128-muon-lr-1.5e-3": (dict(patch_size=14, embed_dim=128),
                                dict(max_shift=1, optimizer="muon", lr=1.5e-3), {}, None),
    "p14-d128-muon-no-label-smoothing": (dict(patch_size=14, embed_dim=128),
                                         dict(max_shift=1, optimizer="muon", label_smoothing=0.0), {}, None),
    "p14-d128-muon-batch-256": (dict(patch_size=14, embed_dim=128),
                                dict(max_shift=1, optimizer="muon", batch_size=256, lr=3e-3), {}, None),
    "p14-d128-mlp-4-muon-batch-256": (dict(patch_size=14, embed_dim=128, mlp_ratio=4.0),
                                      dict(max_shift=1, optimizer="muon", batch_size=256, lr=3e-3), {}, None),
    "p14-d128-depth-6-muon-batch-256": (dict(patch_size=14, embed_dim=128, depth=6),
                                        dict(max_shift=1, optimizer="muon", batch_size=256, lr=3e-3),
                                        {}, None),
    # issue 23's lesson-speedrun: the lessons' 4x4 grid of 7x7 patches (16 patches), Muon
    "p7-muon-no-label-smoothing": ({}, dict(max_shift=1, optimizer="muon", label_smoothing=0.0), {}, None),
    "p7-muon-batch-256": ({}, dict(max_shift=1, optimizer="muon", label_smoothing=0.0, batch_size=256,
                                   lr=3e-3), {}, None),
    "p7-d96-muon": (dict(embed_dim=96), dict(max_shift=1, optimizer="muon", label_smoothing=0.0), {}, None),
    "p7-d128-muon-batch-256": (dict(embed_dim=128), dict(max_shift=1, optimizer="muon", label_smoothing=0.0,
                                                         batch_size=256, lr=3e-3), {}, None),
}


def run(name: str, train, val, seed: int = 0) -> dict:
    model_kw, fit_over, data_kw, init = CANDIDATES[name]
    fit_kw = {**BASE_FIT, **fit_over}
    if data_kw.get("crop"):
        train, val = center_crop(train, data_kw["crop"]), center_crop(val, data_kw["crop"])
        model_kw = {"img_size": data_kw["crop"], **model_kw}
    torch.manual_seed(seed)
    model = vitlearn.ViT(**model_kw)
    if init is not None:
        init(model)
    hist = vitlearn.fit(model, train, val, seed=seed, progress=False, **fit_kw)
    return {"name": name, "curve": hist.test_acc, "seconds": hist.total_seconds,
            "params": sum(p.numel() for p in model.parameters())}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help=f"candidates (default: all): {', '.join(CANDIDATES)}")
    ap.add_argument("--seed", type=int, default=0, help="initial weights and fit's seed")
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args(argv)
    unknown = [n for n in args.names if n not in CANDIDATES]
    if unknown:
        ap.error(f"unknown candidates {unknown}; choose from {list(CANDIDATES)}")
    train, val = train_val_split(load_dataset("mnist", train=True), 5000)
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}  {machine()}\n# base fit {json.dumps(BASE_FIT)}, "
          f"seed {args.seed}")
    print(f"{'candidate':20s} {'params':>8s} {'val after epochs 1-4':>36s} {'seconds':>8s}")
    results = []
    for name in args.names or CANDIDATES:
        r = run(name, train, val, args.seed)
        results.append(r)
        print(f"{name:20s} {r['params']:8,d} {' '.join(f'{a:8.2%}' for a in r['curve']):>36s} "
              f"{r['seconds']:8.1f}", flush=True)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
