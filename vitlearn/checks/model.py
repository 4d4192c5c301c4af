"""The whole model (notebooks 03, 09): a learner's ViT and its parameter count."""

# ruff: noqa: B023  (each mutant lambda is evaluated in the loop iteration that creates it)
from __future__ import annotations

import torch

from ..model import ViT
from ._harness import (
    _build,
    _call,
    _check,
    _check_grads,
    _check_int,
    _expect,
    _load,
    _ok,
    _randn,
    _shape,
)


@_check
def check_vit(cls) -> None:
    """A subclass of vitlearn.ViT (e.g. overriding forward_features) or any cls(**ViT keywords)."""
    configs = [{}, dict(patch_size=4, embed_dim=32, depth=2, num_heads=2, num_classes=5)]
    for i, cfg in enumerate(configs):
        what = f"{getattr(cls, '__name__', 'cls')}({', '.join(f'{k}={v}' for k, v in cfg.items())})"
        mine, ours = _build(cls, what, **cfg), ViT(**cfg)
        names = _load(mine, ours, what)
        mine.eval()
        ours.eval()
        images = _randn(3, 1, 28, 28, seed=20 + i)
        on = f"{what}, images {_shape(images)}"

        def tail(x, blocks):
            for blk in blocks:
                x = blk(x)
            return ours.forward_head(x)

        def embed(pos=True, cls_tok=True):
            x = ours.patch_embed(images)
            x = ours.cls_token(x) if cls_tok else x
            return ours.pos_embed(x) if pos else x

        blocks = list(ours.encoder.blocks)
        mutants = [(lambda: tail(embed(pos=False), blocks),
                    "the position embedding is never added: after the [CLS] token, x = self.pos_embed(x)"),
                   (lambda: tail(embed(), []), "the encoder blocks are skipped: run x through every block "
                                               "of self.encoder.blocks"),
                   (lambda: tail(embed(), blocks[:1]), "only the first block runs: loop over all blocks, x "
                                                       "= block(x), feeding each block's output to the next"),
                   (lambda: tail(embed(), blocks[-1:]), "only the last block's output is kept: loop over "
                                                        "all blocks, x = block(x), feeding each block's "
                                                        "output to the next"),
                   (lambda: ours.forward_head(ours.encoder(embed())[:, ::-1]),
                    "the tokens come out reversed, so the head reads a patch token, not [CLS]")]
        got = _call(f"{what}(images)", mine, images)
        _expect(got, ours(images).detach(), what="the logits", on=on, mutants=mutants,
                shape_hint=f"logits are [B, num_classes] = [3, {ours.head.fc.out_features}]")
        if hasattr(mine, "forward_features"):
            feats = _call(f"{what}.forward_features", mine.forward_features, images)
            _expect(feats, ours.forward_features(images).detach(), what="forward_features", on=on,
                    shape_hint="forward_features returns the encoded tokens [B, 1+N, D]")
        mine.train()
        ours.train()
        _check_grads(mine, ours, names, lambda: mine(images), lambda: ours(images), what)
    _ok("check_vit", f"same logits and features as vitlearn.ViT with copied weights on {len(configs)} "
                     "configurations, gradients reach every parameter")


@_check
def check_vit_params(fn) -> None:
    """fn(*, img_size, patch_size, in_chans, num_classes, embed_dim, depth, mlp_ratio) -> int."""
    configs = [dict(img_size=28, patch_size=7, in_chans=1, num_classes=10, embed_dim=64, depth=4,
                    mlp_ratio=2.0),
               dict(img_size=32, patch_size=4, in_chans=3, num_classes=100, embed_dim=192, depth=6,
                    mlp_ratio=4.0),
               dict(img_size=224, patch_size=16, in_chans=3, num_classes=1000, embed_dim=768, depth=12,
                    mlp_ratio=4.0)]
    for cfg in configs:
        with torch.device("meta"):
            model = ViT(num_heads=1, **cfg)
        want = sum(p.numel() for p in model.parameters())
        d, depth, k = cfg["embed_dim"], cfg["depth"], cfg["num_classes"]
        n = (cfg["img_size"] // cfg["patch_size"]) ** 2
        hdim = int(d * cfg["mlp_ratio"])
        block = sum(p.numel() for p in model.encoder.blocks[0].parameters())
        on = ", ".join(f"{key}={v}" for key, v in cfg.items())
        got = _call("vit_params", fn, **cfg)
        _check_int("vit_params", got, want, on=on, mutants=[
            (want - d, "off by D: the [CLS] token (D numbers) or its row of the position table (1 + N rows, "
                       "not N) is missing"),
            (want - 2 * d, "off by 2D: the [CLS] token and its position row, or the head's LayerNorm (gain "
                           "and bias), are missing"),
            (want - (n + 1) * d, "the position embedding [(1 + N) x D] is missing"),
            (want - (n + 1) * d - d, "the [CLS] token and the position embedding are missing"),
            (want - depth * 4 * d, "the blocks' LayerNorms (2 per block, gain and bias each: 4D) are "
                                   "missing"),
            (want - (depth - 1) * block, "only one encoder block is counted; there are depth of them"),
            (want - depth * (3 * d + d + hdim + d), "the biases of the blocks' Linear layers are missing"),
            (want - d * k - k, "the classifier fc (D x K + K) is missing"),
            (want - cfg["patch_size"] ** 2 * cfg["in_chans"] * d - d, "the patch embedding (P*P*C x D + D) "
                                                                      "is missing"),
        ], terms={"the patch embedding (P*P*C x D + D)": cfg["patch_size"] ** 2 * cfg["in_chans"] * d + d,
                  "the [CLS] token (D)": d, "the position table ((1 + N) x D)": (n + 1) * d,
                  "one encoder block": block, "the blocks' biases": depth * (3 * d + d + hdim + d),
                  "the head's LayerNorm (2D)": 2 * d, "the classifier (D x K + K)": d * k + k})
    _ok("check_vit_params", f"matches vitlearn.ViT counted on the meta device for {len(configs)} "
                            "configurations, up to ViT-B/16 at 224 px with 1000 classes (86.6M)")
