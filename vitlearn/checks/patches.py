"""Steps 2-4 (notebooks 00-02): patchify, unpatchify, the patch embedding and its counts."""

# ruff: noqa: B023  (each mutant lambda is evaluated in the loop iteration that creates it)
from __future__ import annotations

import functools

import torch
from einops import rearrange

from ..model import ViT
from ..patches import PatchEmbedding, patchify, unpatchify
from ._harness import (
    Mutant,
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

_PATCH_MUTANTS = [
    ("b c (h p1) (w p2) -> b (h w) (c p1 p2)",
     "pixels inside a patch are ordered (c p1 p2) (what F.unfold gives); the paper's flattening is (p1 p2 "
     "c): move the channels last before flattening, e.g. permute to [B, h, w, P, P, C]"),
    ("b c (h p1) (w p2) -> b (w h) (p1 p2 c)",
     "patches are in column-major order (down the columns first); ViT reads them row by row like text: the "
     "patch index is (h w), row-major, not (w h)"),
    ("b c (h p1) (w p2) -> b (h w) (p2 p1 c)",
     "each patch is transposed: its pixels are read column by column (p2 p1); read them row by row, (p1 p2 "
     "c)"),
    ("b c (h p1) (w p2) -> b (h w) (c p2 p1)",
     "pixels inside a patch are ordered (c p2 p1); the paper's flattening is (p1 p2 c)"),
    ("b c (p1 h) (w p2) -> b (h w) (p1 p2 c)",
     "the rows were split as (p1 h), not (h p1): each \"patch\" takes every (H/P)-th row, a strided grid "
     "spread over the whole image, not a P x P square: split H as (h p1)"),
    ("b c (p1 h) (p2 w) -> b (h w) (p1 p2 c)",
     "H and W were split as (p1 h) and (p2 w), not (h p1) and (w p2): each \"patch\" takes every (H/P)-th "
     "pixel, a strided grid spread over the whole image, not a P x P square"),
]


def _patchify_mutants(images: torch.Tensor, p: int) -> list[Mutant]:
    b, c, hh, ww = images.shape
    n = (hh // p) * (ww // p)
    out = [(functools.partial(rearrange, images, pattern, p1=p, p2=p), msg)
           for pattern, msg in _PATCH_MUTANTS]
    out.append((lambda: images.reshape(b, n, p * p * c),
                "the image was reshaped straight to [B, N, P*P*C] without a permute, which cuts rows of "
                "pixels, not P x P squares: reshape to [B, C, h, P, w, P], permute to [B, h, w, P, P, C], "
                "then flatten"))
    out.append((lambda: images.reshape(b, c, hh // p, p, ww // p, p).permute(0, 2, 4, 1, 3, 5)
                .reshape(b, n, p * p * c),
                "pixels inside a patch are ordered (c p1 p2); the paper's flattening is (p1 p2 c): permute "
                "to [B, h, w, P, P, C] (channels last) before flattening"))
    return out


def _patch_inputs():
    return [(_randn(2, 1, 28, 28), 7), (_randn(2, 1, 28, 28, seed=1), 4), (_randn(1, 1, 28, 28, seed=2), 28),
            (_randn(2, 3, 28, 28, seed=3), 7), (_randn(2, 3, 28, 28, seed=4), 2),
            (_randn(2, 3, 8, 12, seed=5), 4), (_randn(3, 2, 6, 6, seed=6, dtype=torch.float64), 3)]


@_check
def check_patchify(fn) -> None:
    """fn(images [B, C, H, W], patch_size) -> [B, N, P*P*C], row-major patches, pixels (p1 p2 c)."""
    cases = _patch_inputs()
    for images, p in cases:
        on = f"images {_shape(images)}, patch_size={p}"
        got = _call("patchify", fn, images, p)
        b, c, hh, ww = images.shape
        _expect(got, patchify(images, p), what="the patches", on=on, exact=True,
                mutants=_patchify_mutants(images, p),
                shape_hint=f"[B, N, P*P*C] = [{b}, {(hh // p) * (ww // p)}, {p * p * c}]: N = (H/P)*(W/P) "
                           "patches, each flattened to P*P*C numbers")
    _ok("check_patchify", f"equal to vitlearn.patchify, element for element, on {len(cases)} inputs (1, 2 "
                          "and 3 channels, patch sizes 2-28, a non-square image, float32 and float64)")


@_check
def check_unpatchify(fn) -> None:
    """fn(patches [B, N, P*P*C], patch_size, img_size, in_chans) -> images [B, C, H, W]."""
    # several channels first: with one channel some wrong orders coincide, and the first failing input
    # is the one whose mutant names the mistake
    cases = sorted([(x, p) for x, p in _patch_inputs() if x.shape[-1] == x.shape[-2]],
                   key=lambda c: -c[0].shape[1])
    for images, p in cases:
        b, c, s, _ = images.shape
        g = s // p
        patches = patchify(images, p)
        on = f"patches {_shape(patches)}, patch_size={p}, img_size={s}, in_chans={c}"
        got = _call("unpatchify", fn, patches, p, s, c)
        inv = [(functools.partial(rearrange, patches, "b (h w) (c p1 p2) -> b c (h p1) (w p2)",
                                  h=g, p1=p, p2=p, c=c),
                "the patch vector was split as (c p1 p2), but patchify flattens (p1 p2 c): split it as (P, "
                "P, C)"),
               (functools.partial(rearrange, patches, "b (w h) (p1 p2 c) -> b c (h p1) (w p2)",
                                  h=g, p1=p, p2=p, c=c),
                "the patches were put back column by column; they are in row-major order (h w)"),
               (functools.partial(rearrange, patches, "b (h w) (p2 p1 c) -> b c (h p1) (w p2)",
                                  h=g, p1=p, p2=p, c=c),
                "every patch comes back transposed: the vector is (p1 p2 c), rows of the patch first"),
               (lambda: rearrange(patches, "b (h w) (p1 p2 c) -> b c h w p1 p2", h=g, p1=p, p2=p, c=c)
                .reshape(b, c, s, s),
                "the pieces were merged in the order [B, C, h, w, p1, p2]: permute to [B, C, h, p1, w, p2] "
                "before merging (h p1) and (w p2)"),
               (lambda: patches.reshape(b, c, s, s),
                "the patches were reshaped straight to [B, C, H, W] without a permute: reshape to [B, h, w, "
                "P, P, C] and permute to [B, C, h, P, w, P] first")]
        _expect(got, unpatchify(patches, p, s, c), what="the images", on=on, exact=True, mutants=inv,
                shape_hint=f"expected [B, C, H, W] = [{b}, {c}, {s}, {s}]")
    _ok("check_unpatchify", f"inverts vitlearn.patchify exactly on {len(cases)} inputs (1-3 channels, patch "
                            "sizes 2-28)")


@_check
def check_patch_embedding(cls) -> None:
    """cls(*, img_size, patch_size, in_chans, embed_dim) with proj = nn.Linear(P*P*C, D)."""
    configs = [dict(img_size=28, patch_size=7, in_chans=1, embed_dim=64),
               dict(img_size=28, patch_size=4, in_chans=3, embed_dim=32),
               dict(img_size=12, patch_size=3, in_chans=2, embed_dim=16)]
    for i, cfg in enumerate(configs):
        what = f"{getattr(cls, '__name__', 'cls')}({', '.join(f'{k}={v}' for k, v in cfg.items())})"
        mine, ours = _build(cls, what, **cfg), PatchEmbedding(**cfg)
        names = _load(mine, ours, what)
        for b in (1, 4):
            images = _randn(b, cfg["in_chans"], cfg["img_size"], cfg["img_size"], seed=10 * i + b)
            on = f"{what}, images {_shape(images)}"
            got = _call(f"{what}.forward", mine, images)
            n, p = ours.num_patches, cfg["patch_size"]
            mutants = [(lambda m=m: ours.proj(m() if callable(m) else m), msg)
                       for m, msg in _patchify_mutants(images, p)]
            mutants.append((lambda: patchify(images, p),
                            "the patches are returned without the projection: apply self.proj"))
            want = ours(images)
            _expect(got, want.detach(), what="the patch tokens", on=on, mutants=mutants,
                    shape_hint=f"[B, N, D] = [{b}, {n}, {cfg['embed_dim']}]")
            conv = rearrange(ours.to_conv()(images), "b d h w -> b (h w) d")
            _expect(got, conv.detach(), what="the patch tokens", on=on, ref="nn.Conv2d(k=stride=P)")
        images = _randn(2, cfg["in_chans"], cfg["img_size"], cfg["img_size"], seed=99)
        _check_grads(mine, ours, names, lambda: mine(images), lambda: ours(images), what)
    _ok("check_patch_embedding", "equal to vitlearn.PatchEmbedding and nn.Conv2d(kernel=stride=P) with "
                                 f"copied weights on {len(configs)} configurations (1-3 channels), gradients "
                                 "reach every parameter")


@_check
def check_patch_embed_params(fn) -> None:
    """fn(patch_size, in_chans, embed_dim) -> the parameter count of the patch embedding."""
    configs = [(7, 1, 64), (4, 1, 64), (14, 3, 32), (16, 3, 768)]
    for p, c, d in configs:
        want = sum(t.numel() for t in PatchEmbedding(img_size=p, patch_size=p, in_chans=c,
                                                     embed_dim=d).parameters())
        got = _call("patch_embed_params", fn, p, c, d)
        _check_int("patch_embed_params", got, want, on=f"P={p}, C={c}, D={d}", mutants=[
            (p * p * c * d, "the bias is missing: nn.Linear(P*P*C, D) also has D biases"),
            (p * p * d + d, "the channels are missing: each patch has P*P*C numbers, so the weight is P*P*C "
                            "x D"),
            (p * c * d + d, "a patch has P*P pixels, not P: the weight is P*P*C x D"),
            (p * p * c * d + p * p * c, "the bias has one entry per OUTPUT dimension: D, not P*P*C"),
            (((28 // p) ** 2) * (p * p * c * d + d),
             "the layer is shared by all patches: count its weights once, not once per patch")],
            terms={"the weight (P*P*C x D)": p * p * c * d, "the bias (D)": d})
    _ok("check_patch_embed_params", f"matches the parameter count of real layers for {len(configs)} settings "
                                    "(P, C, D), up to ViT-Base/16 on RGB")


@_check
def check_token_count(num_tokens, patch_embed_params, *, patch_size: int) -> None:
    """The numbers of 00's exercise for vitlearn.ViT(patch_size=patch_size) (D=64, 1 channel, 28 px)."""
    model = ViT(patch_size=patch_size)
    true_tokens = model.embed(torch.zeros(1, 1, 28, 28)).shape[1]
    true_params = sum(p.numel() for p in model.patch_embed.parameters())
    g = 28 // patch_size
    _check_int("num_tokens", num_tokens, true_tokens, on=f"patch_size={patch_size}", mutants=[
        (g * g, "the [CLS] token is missing: the encoder gets N patch tokens plus one [CLS]"),
        (g + 1, "a 28x28 image has 28 // P patches per side, so (28 // P)**2 patches (plus [CLS])"),
        (g, "that is the number of patches per side; square it and add one for [CLS]"),
        (g * g + 2, "there is exactly one [CLS] token")],
               terms={"the [CLS] token (1)": 1, "the patches ((28 // P)**2)": g * g})
    _check_int("patch_embed_params", patch_embed_params, true_params, on=f"patch_size={patch_size}",
               mutants=[(patch_size * patch_size * 64, "the bias is missing: nn.Linear(P*P*C, D) has D "
                                                       "biases"),
                        (g * g * true_params, "the layer is shared by all patches: count it once")],
               terms={"the weight (P*P*C x D)": patch_size * patch_size * 64, "the bias (D)": 64})
    _ok("check_token_count", f"{true_tokens} tokens and {true_params:,} patch-embedding parameters, as "
                             f"measured on vitlearn.ViT(patch_size={patch_size})")
