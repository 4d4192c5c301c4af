"""Instant checks for the learner's parts: run them, compare with ours, and name the mistake.

Every ``check_*`` function runs a part written in a notebook on several inputs, copies the
weights of our part into it by name, and compares the outputs with ours (and with the torch
built-in where there is one). A pass prints one line saying what was verified. A failure
raises :class:`CheckFailed` with the most likely mistake and its fix: when the output is
wrong, the check computes the outputs of the usual mistakes ("mutants": softmax over the
wrong axis, no scaling, post-norm, ...) on the same inputs with the same weights and names
the one that matches; when none does, it says which element differs and by how much.
A mutant is only consulted when the output is wrong, and never when it coincides with the
right answer on those inputs, so a correct part written differently cannot be misdiagnosed.

A ``NotImplementedError`` raised by the learner's code propagates unchanged (the exercise
edition's "you have not written this part yet"); any other exception becomes a CheckFailed
that names the call, the inputs' shapes and the original error (kept as ``__cause__``).
"""

# ruff: noqa: B023  (each mutant lambda is evaluated in the loop iteration that creates it)
from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .attention import MultiHeadSelfAttention, record_attention, scaled_dot_product_attention
from .data import iterate_batches
from .encoder import MLP, EncoderBlock
from .head import ClassificationHead
from .model import ViT
from .patches import PatchEmbedding, patchify, unpatchify
from .tokens import ClassToken, PositionEmbedding, resample_position_embedding, sincos_2d_position_embedding
from .training import make_optimizer, warmup_cosine

__all__ = [
    "CheckFailed",
    "check_patchify", "check_unpatchify", "check_patch_embedding", "check_patch_embed_params",
    "check_token_count", "check_vit", "check_class_token", "check_pool", "check_position_embedding",
    "check_sincos_2d", "check_resample", "check_attention", "check_causal_attention",
    "check_multi_head_attention", "check_layer_norm", "check_mlp", "check_encoder_block",
    "check_block_params", "check_classification_head", "check_cross_entropy", "check_random_shift",
    "check_warmup_cosine", "check_smoothed_cross_entropy", "check_weight_decay_groups",
    "check_schedule_numbers", "check_vit_params",
]


class CheckFailed(AssertionError):
    """The learner's part is wrong; the message names the likely mistake and the fix."""


# -- the machinery shared by every check ----------------------------------------------------

def _check(fn):
    """Run a check with its own seeded RNG (the notebook's random state is left untouched)
    and with autograd on (a check may be called under torch.no_grad())."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with torch.random.fork_rng(devices=[]), torch.enable_grad():
            torch.manual_seed(0)
            fn(*args, **kwargs)
    return wrapper


def _ok(name: str, text: str) -> None:
    print(f"{name}: correct — {text}")


def _shape(x) -> str:
    if isinstance(x, torch.Tensor):
        dt = str(x.dtype).replace("torch.", "")
        return f"[{', '.join(map(str, x.shape))}] {dt}" if x.ndim else f"scalar {dt}"
    return repr(x) if isinstance(x, (int, float, str, bool, type(None))) else type(x).__name__


def _desc(*args, **kwargs) -> str:
    parts = [_shape(a) for a in args] + [f"{k}={_shape(v)}" for k, v in kwargs.items()]
    return ", ".join(parts)


def _call(what: str, fn: Callable, *args, **kwargs):
    """Call the learner's code; its exceptions become one clear CheckFailed (NotImplementedError
    and CheckFailed pass through)."""
    try:
        return fn(*args, **kwargs)
    except (NotImplementedError, CheckFailed):
        raise
    except Exception as err:  # noqa: BLE001 - any learner error is reported, with its cause kept
        first = (str(err).strip().splitlines() or [""])[0]
        raise CheckFailed(f"{what} failed with {type(err).__name__}: {first} (called with "
                          f"{_desc(*args, **kwargs)})") from err


def _tols(dtype: torch.dtype) -> tuple[float, float]:
    return (1e-7, 1e-9) if dtype == torch.float64 else (1e-4, 1e-5)


def _close(a: torch.Tensor, b: torch.Tensor, *, exact: bool = False, loose: bool = False) -> bool:
    if a.shape != b.shape:
        return False
    if exact:
        return torch.equal(a, b)
    rtol, atol = _tols(b.dtype)
    if loose:
        rtol, atol = rtol * 10, atol * 10
    return torch.allclose(a.to(b.dtype), b, rtol=rtol, atol=atol, equal_nan=True)


Mutant = tuple[Callable[[], torch.Tensor] | torch.Tensor, str]


def _diagnose(got: torch.Tensor, want: torch.Tensor, mutants: Sequence[Mutant], *,
              exact: bool) -> str | None:
    """The message of the first mutant that the learner's output matches, if any. A mutant
    equal to the right answer on these inputs cannot be told apart and is skipped."""
    for mutant, message in mutants:
        try:
            m = mutant() if callable(mutant) else mutant
        except Exception:  # noqa: BLE001 - a mutant that cannot be computed here does not apply
            continue
        if m.shape == want.shape and _close(m, want, exact=exact):
            continue
        m = m.to(got.dtype) if got.is_floating_point() else m
        if m.shape != got.shape or not _close(got, m, exact=exact, loose=True):
            continue
        if m.shape == want.shape and not exact and got.is_floating_point() and \
                (got - m).abs().max() >= (got - want.to(got.dtype)).abs().max():
            continue  # nearer the right answer than this mistake
        return message
    return None


def _expect(got, want: torch.Tensor, *, what: str, on: str, ref: str = "ours",
            mutants: Sequence[Mutant] = (), exact: bool = False, shape_hint: str = "",
            check_dtype: bool = True) -> None:
    """Raise CheckFailed unless ``got`` equals ``want``; name the matching mutant if any."""
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"{what}: expected a tensor of shape {list(want.shape)}, got a "
                          f"{type(got).__name__} (inputs: {on})")
    if got.shape != want.shape:
        found = _diagnose(got, want, mutants, exact=exact)
        hint = f" {found}" if found else (f" {shape_hint}" if shape_hint else "")
        raise CheckFailed(f"{what}: got shape {list(got.shape)}, expected {list(want.shape)} (inputs: "
                          f"{on}).{hint}")
    if check_dtype and got.dtype != want.dtype:
        raise CheckFailed(f"{what}: got dtype {got.dtype}, expected {want.dtype} like the inputs (inputs: "
                          f"{on}); do not convert: compute in the inputs' dtype")
    got_d = got.detach()
    if _close(got_d, want, exact=exact):
        return
    found = _diagnose(got_d, want, mutants, exact=exact)
    if found:
        raise CheckFailed(f"{found} (seen in {what}; inputs: {on})")
    g, w = got_d.to(want.dtype), want.detach()
    bad_nan = ~torch.isfinite(g) & torch.isfinite(w)
    if bad_nan.any():
        idx = tuple(int(i) for i in bad_nan.nonzero()[0])
        raise CheckFailed(f"{what}: {int(bad_nan.sum())} inf/nan values where {ref} are finite, e.g. at "
                          f"index {list(idx)}: {g[idx].item()} (inputs: {on}); look for a log(0), a division "
                          "by zero or a softmax over a row that is all -inf")
    diff = (g - w).abs().nan_to_num(nan=float("inf"))
    idx = tuple(int(i) for i in (diff == diff.max()).nonzero()[0])
    n_bad = int((~torch.isclose(g, w, *_tols(want.dtype), equal_nan=True)).sum()) if not exact else \
        int((g != w).sum())
    raise CheckFailed(f"mismatch in {what} against {ref} (inputs: {on}): {n_bad} of {w.numel()} elements "
                      f"differ; the largest difference is {diff.max().item():.3g} at index {list(idx)} (got "
                      f"{g[idx].item():.6g}, expected {w[idx].item():.6g}). The shape is right, so look at "
                      "the order of the operations and the axes they act on")


def _build(cls, what: str, *args, **kwargs) -> nn.Module:
    module = _call(what, cls, *args, **kwargs)
    if not isinstance(module, nn.Module):
        raise CheckFailed(f"{what} returned a {type(module).__name__}, not an nn.Module: subclass nn.Module "
                          "and call super().__init__() first")
    return module


def _load(mine: nn.Module, ours: nn.Module, what: str, *, by_order: bool = False) -> dict[str, str]:
    """Copy our weights into the learner's module by name (or, with ``by_order``, by position
    when every shape lines up, e.g. an nn.Sequential MLP). Returns {their name: our name}."""
    theirs_sd, ours_sd = mine.state_dict(), ours.state_dict()
    if list(theirs_sd) and {k: tuple(v.shape) for k, v in theirs_sd.items()} == \
            {k: tuple(v.shape) for k, v in ours_sd.items()}:
        mine.load_state_dict(ours_sd)
        return {k: k for k in ours_sd}
    if by_order and [tuple(v.shape) for v in theirs_sd.values()] == \
            [tuple(v.shape) for v in ours_sd.values()]:
        mine.load_state_dict(dict(zip(theirs_sd, ours_sd.values())))
        return dict(zip(theirs_sd, ours_sd))
    missing = [f"{k} {list(v.shape)}" for k, v in ours_sd.items() if k not in theirs_sd]
    unexpected = [f"{k} {list(v.shape)}" for k, v in theirs_sd.items() if k not in ours_sd]
    mismatched = [f"{k}: yours {list(theirs_sd[k].shape)}, ours {list(v.shape)}"
                  for k, v in ours_sd.items() if k in theirs_sd and theirs_sd[k].shape != v.shape]
    lines = [f"{what}: its parameters do not line up with {type(ours).__name__}'s, so our weights cannot be "
             "copied in by name."]
    if missing:
        lines.append("missing (ours has them): " + ", ".join(missing))
    if unexpected:
        lines.append("unexpected (yours only): " + ", ".join(unexpected))
    if mismatched:
        lines.append("different shapes: " + ", ".join(mismatched))
    lines.append("Use the same attribute names and layer sizes as ours: "
                 + ", ".join(f"{k} {list(v.shape)}" for k, v in ours_sd.items()))
    raise CheckFailed("\n".join(lines))


def _check_grads(mine: nn.Module, ours: nn.Module, names: dict[str, str], run_mine, run_ours,
                 what: str) -> None:
    """Backpropagate the same random upstream gradient through both; every parameter of the
    learner's module must get a gradient, equal to ours."""
    mine.zero_grad(set_to_none=True)
    ours.zero_grad(set_to_none=True)
    out_m, out_o = run_mine(), run_ours()
    if isinstance(out_m, torch.Tensor) and not out_m.requires_grad:
        raise CheckFailed(f"{what}: the output does not depend on any parameter (no gradient reaches "
                          f"{', '.join(n for n, _ in mine.named_parameters())}): these parameters are never "
                          "used in forward (or only through .data, .detach() or torch.no_grad()), so they "
                          "would never learn")
    upstream = torch.randn(out_o.shape, generator=torch.Generator().manual_seed(1), dtype=out_o.dtype)
    _call(f"backward through {what}", lambda: (out_m * upstream).sum().backward())
    (out_o * upstream).sum().backward()
    theirs = dict(mine.named_parameters())
    ours_p = dict(ours.named_parameters())
    unused = [n for n, p in theirs.items() if p.requires_grad and p.grad is None]
    if unused:
        raise CheckFailed(f"{what}: no gradient reaches {', '.join(unused)}: this parameter is never used in "
                          "forward (or is used through .data, .detach() or torch.no_grad()), so it would "
                          "never learn")
    for n, p in theirs.items():
        o = ours_p.get(names.get(n, n))
        if o is not None and o.grad is not None and not _close(p.grad, o.grad, loose=True):
            raise CheckFailed(f"{what}: the output is right but the gradient of {n} differs from ours "
                              f"(largest difference {(p.grad - o.grad).abs().max().item():.3g}): part of the "
                              "computation is detached or done in place on a saved tensor")


def _check_int(name: str, got, want: int, *, on: str, mutants: Sequence[tuple[int, str]] = ()) -> None:
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    if isinstance(got, bool) or not isinstance(got, numbers.Real):
        raise CheckFailed(f"{name} should be a number, got a {type(got).__name__} ({on})")
    if isinstance(got, float) and not got.is_integer():
        raise CheckFailed(f"{name} = {got} is not a whole number ({on}): a count of things is an int; use // "
                          "for integer division and int() for products with a float ratio")
    if int(got) == want:
        return
    for value, message in mutants:
        if value != want and int(got) == value:
            raise CheckFailed(f"{name} = {int(got):,} but the right value is {want:,} ({on}): {message}")
    raise CheckFailed(f"{name} = {int(got):,} but the right value is {want:,} ({on}); off by "
                      f"{int(got) - want:+,}")


def _randn(*shape, dtype=torch.float32, seed=0, scale=1.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * scale


# -- steps 2-4: patches ---------------------------------------------------------------------

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
    cases = [(x, p) for x, p in _patch_inputs() if x.shape[-1] == x.shape[-2]]
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
             "the layer is shared by all patches: count its weights once, not once per patch")])
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
        (g * g + 2, "there is exactly one [CLS] token")])
    _check_int("patch_embed_params", patch_embed_params, true_params, on=f"patch_size={patch_size}",
               mutants=[(patch_size * patch_size * 64, "the bias is missing: nn.Linear(P*P*C, D) has D "
                                                       "biases"),
                        (g * g * true_params, "the layer is shared by all patches: count it once")])
    _ok("check_token_count", f"{true_tokens} tokens and {true_params:,} patch-embedding parameters, as "
                             f"measured on vitlearn.ViT(patch_size={patch_size})")


# -- the whole model ------------------------------------------------------------------------

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


# -- step 5: the class token ----------------------------------------------------------------

@_check
def check_class_token(cls) -> None:
    """cls(*, embed_dim) with parameter ``token`` [1, 1, D]; forward [B, N, D] -> [B, 1+N, D]."""
    shapes = [(1, 4, 8), (3, 16, 64), (2, 5, 64)]
    for i, (b, n, d) in enumerate(shapes):
        what = f"{getattr(cls, '__name__', 'cls')}(embed_dim={d})"
        mine, ours = _build(cls, what, embed_dim=d), ClassToken(embed_dim=d)
        names = _load(mine, ours, what)
        x = _randn(b, n, d, seed=30 + i)
        on = f"tokens {_shape(x)}"
        tok = ours.token.detach()
        mutants = [(lambda: torch.cat([x, tok.expand(b, 1, d)], dim=1),
                    "the [CLS] token is appended at the end; ViT puts it FIRST (the head reads token 0): "
                    "torch.cat([cls, x], dim=1)"),
                   (lambda: torch.cat([tok.expand(b, 1, d), x[:, 1:]], dim=1),
                    "the [CLS] token overwrites the first patch token; it is an extra token in front"),
                   (lambda: torch.cat([tok.expand(b, 1, d), x], dim=2),
                    "the token was concatenated along the feature axis (dim=2); it is one more token: dim=1"),
                   (lambda: x + tok, "the token was added to every patch token; concatenate it in front "
                                     "instead")]
        got = _call(f"{what}.forward", mine, x)
        _expect(got, ours(x).detach(), what="the tokens with [CLS]", on=on, mutants=mutants,
                shape_hint=f"[B, 1+N, D] = [{b}, {n + 1}, {d}]: one extra token per image, in front")
        _check_grads(mine, ours, names, lambda: mine(x), lambda: ours(x), what)
    _ok("check_class_token", f"equal to vitlearn.ClassToken with the same token on {len(shapes)} shapes; the "
                             "token's gradient is the sum over the batch, as ours")


@_check
def check_pool(fn) -> None:
    """fn(tokens [B, T, D], pool) -> [B, D]: token 0 for 'cls', the mean of all tokens for 'mean'."""
    for i, (b, t, d) in enumerate([(8, 17, 64), (2, 5, 16)]):
        tokens = _randn(b, t, d, seed=40 + i)
        for pool in ("cls", "mean"):
            on = f"tokens {_shape(tokens)}, pool={pool!r}"
            want = tokens[:, 0] if pool == "cls" else tokens.mean(dim=1)
            mutants = [(lambda: tokens[:, -1], "this is the LAST token; [CLS] is prepended, so it is token "
                                               "0: tokens[:, 0]"),
                       (lambda: tokens[:, 1:].mean(dim=1),
                        "token 0 is left out of the mean; with pool='mean' vitlearn's ViT builds no [CLS] "
                        "token, so every token is a patch: tokens.mean(dim=1)"),
                       (lambda: tokens[:, 0] if pool == "mean" else tokens.mean(dim=1),
                        "the two modes are swapped: 'cls' keeps token 0, 'mean' averages over the tokens"),
                       (lambda: tokens.sum(dim=1), "this is the sum over the tokens; divide by their number "
                                                   "(tokens.mean(dim=1))"),
                       (lambda: tokens.max(dim=1).values, "this is the max over the tokens; use the mean")]
            got = _call("pool", fn, tokens, pool)
            _expect(got, want, what=f"the pooled vector (pool={pool!r})", on=on, mutants=mutants,
                    shape_hint=f"[B, D] = [{b}, {d}]: select (cls) or average (mean) over the token axis, "
                               "dim=1")
    _ok("check_pool", "'cls' reads token 0 and 'mean' averages all tokens, as ViT.forward_head, on 2 shapes")


# -- step 6: position embeddings ------------------------------------------------------------

@_check
def check_position_embedding(cls) -> None:
    """cls(*, num_patches, embed_dim, num_prefix_tokens=1) with ``pos`` [1, prefix+N, D]; adds."""
    configs = [(16, 64, 1), (16, 64, 0), (49, 32, 1)]
    for i, (n, d, prefix) in enumerate(configs):
        what = (f"{getattr(cls, '__name__', 'cls')}(num_patches={n}, embed_dim={d}, "
                f"num_prefix_tokens={prefix})")
        mine = _build(cls, what, num_patches=n, embed_dim=d, num_prefix_tokens=prefix)
        ours = PositionEmbedding(num_patches=n, embed_dim=d, num_prefix_tokens=prefix)
        pos = getattr(mine, "pos", None)
        if isinstance(pos, torch.Tensor) and pos.shape != ours.pos.shape:
            hint = (" The positions have no slot for [CLS]: make pos [1, num_prefix_tokens + num_patches, "
                    "D]; the [CLS] token needs a position too." if pos.shape[1:] == (n, d) and prefix else
                    " The prefix tokens ([CLS]) get a row only when num_prefix_tokens > 0: use "
                    "num_prefix_tokens + num_patches rows." if pos.shape[1:] == (n + 1, d) else
                    " pos is [1, T, D]: one row per token (prefix tokens first), broadcast over the batch.")
            raise CheckFailed(f"{what}: pos has shape {list(pos.shape)}, expected "
                              f"{list(ours.pos.shape)}.{hint}")
        names = _load(mine, ours, what)
        x = _randn(3, prefix + n, d, seed=50 + i)
        p = ours.pos.detach()
        mutants = [(lambda: x * p, "the positions multiply the tokens; they are ADDED: x + self.pos"),
                   (lambda: p.expand_as(x), "the tokens are dropped: return x + self.pos, not the positions"),
                   (lambda: torch.cat([x, p.expand(3, -1, -1)], dim=-1),
                    "the positions were concatenated to the features; ViT adds them: x + self.pos")]
        got = _call(f"{what}.forward", mine, x)
        _expect(got, ours(x).detach(), what="the tokens with positions", on=f"tokens {_shape(x)}",
                mutants=mutants, shape_hint="the output has the shape of the input, [B, T, D]")
        _check_grads(mine, ours, names, lambda: mine(x), lambda: ours(x), what)
    _ok("check_position_embedding", "equal to vitlearn.PositionEmbedding with copied positions on "
                                    f"{len(configs)} configurations (with and without a [CLS] slot), "
                                    "gradients flow to pos")


def _sincos(grid, dim, prefix, temperature, *, order="xy", freq_div=4, interleave=False):
    ys, xs = torch.meshgrid(torch.arange(grid, dtype=torch.float64),
                            torch.arange(grid, dtype=torch.float64), indexing="ij")
    omega = 1.0 / temperature ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // freq_div))
    ys, xs = ys.flatten()[:, None] * omega, xs.flatten()[:, None] * omega
    a, b = (xs, ys) if order == "xy" else (ys, xs)
    parts = [a.sin(), b.sin(), a.cos(), b.cos()] if interleave else [a.sin(), a.cos(), b.sin(), b.cos()]
    pe = torch.cat(parts, dim=1).float()
    return torch.cat([torch.zeros(prefix, dim), pe])[None]


@_check
def check_sincos_2d(fn) -> None:
    """fn(grid_size, embed_dim, num_prefix_tokens=0, temperature=10000.0) -> [1, prefix+g*g, D]."""
    configs = [(4, 64, 1), (4, 64, 0), (8, 32, 1), (14, 128, 0)]
    for g, d, prefix in configs:
        on = f"grid_size={g}, embed_dim={d}, num_prefix_tokens={prefix}"
        got = _call("sincos_2d", fn, g, d, prefix)
        want = sincos_2d_position_embedding(g, d, num_prefix_tokens=prefix)
        mutants = [(lambda: _sincos(g, d, prefix, 1e4, order="yx"),
                    "rows and columns are swapped: the first half of the channels encodes the column (x, "
                    "the position within a row), the second half the row"),
                   (lambda: _sincos(g, d, prefix, 1e4, interleave=True),
                    "the four blocks are in the wrong order: (sin x, cos x, sin y, cos y), each D/4 wide"),
                   (lambda: _sincos(g, d, prefix, 1e4, freq_div=2),
                    "the frequencies are spaced over D/2; there are D/4 of them: omega_k = 1 / "
                    "temperature**(k / (D/4))"),
                   (lambda: _sincos(g, d, prefix, 1.0), "the temperature is not used: omega_k = 1 / "
                                                        "temperature**(k / (D/4))"),
                   (lambda: want[:, prefix:],
                    "the prefix rows are missing: put num_prefix_tokens rows of zeros first")]
        _expect(got, want, what="the sin-cos table", on=on, mutants=mutants,
                shape_hint=f"[1, prefix + grid*grid, D] = [1, {prefix + g * g}, {d}]")
    got = _call("sincos_2d", fn, 4, 32, 1, 100.0)
    _expect(got, sincos_2d_position_embedding(4, 32, num_prefix_tokens=1, temperature=100.0),
            what="the sin-cos table", on="grid_size=4, embed_dim=32, num_prefix_tokens=1, temperature=100.0",
            mutants=[(lambda: _sincos(4, 32, 1, 1e4), "the temperature argument is ignored (10000 is used)")])
    _ok("check_sincos_2d", f"equal to vitlearn.sincos_2d_position_embedding on {len(configs) + 1} grids, "
                           "embedding sizes, prefix counts and temperatures")


@_check
def check_resample(fn) -> None:
    """fn(pos [1, prefix+g*g, D], new_grid_size, num_prefix_tokens=1) -> [1, prefix+g'*g', D]."""
    configs = [(4, 8, 1), (4, 2, 1), (4, 6, 0), (7, 14, 1)]
    for i, (old, new, prefix) in enumerate(configs):
        pos = _randn(1, prefix + old * old, 64, seed=60 + i)
        on = f"pos {_shape(pos)}, {old}x{old} -> {new}x{new}, num_prefix_tokens={prefix}"
        got = _call("resample", fn, pos, new, num_prefix_tokens=prefix)
        want = resample_position_embedding(pos, new, num_prefix_tokens=prefix)
        grid = rearrange(pos[:, prefix:], "1 (h w) d -> 1 d h w", h=old)

        def interp(img=grid, mode="bicubic", ac=False, out="1 d h w -> 1 (h w) d"):
            kw = {} if mode == "nearest" else {"align_corners": ac}
            r = F.interpolate(img, size=(new, new), mode=mode, **kw)
            return torch.cat([pos[:, :prefix], rearrange(r, out)], dim=1)

        mutants = [(lambda: interp(mode="bilinear"), "bilinear interpolation; ours is mode='bicubic'"),
                   (lambda: interp(ac=True), "align_corners=True; ours uses align_corners=False"),
                   (lambda: interp(mode="nearest"), "nearest-neighbour; ours is mode='bicubic', "
                                                    "align_corners=False"),
                   (lambda: interp(out="1 d h w -> 1 (w h) d"),
                    "the grid comes back column by column; flatten it row-major, '1 d h w -> 1 (h w) d'"),
                   (lambda: interp(img=rearrange(pos[:, prefix:], "1 (w h) d -> 1 d h w", h=old)),
                    "the grid was unflattened column by column; it is row-major: '1 (h w) d -> 1 d h w'"),
                   (lambda: interp()[:, prefix:],
                    "the prefix ([CLS]) rows are dropped: split them off, interpolate the grid, put them "
                    "back in front unchanged")]
        _expect(got, want, what="the resampled positions", on=on, mutants=mutants,
                shape_hint=f"[1, prefix + new*new, D] = [1, {prefix + new * new}, 64]: keep the prefix rows")
        if prefix and not torch.equal(got[:, :prefix], pos[:, :prefix]):
            raise CheckFailed("the prefix ([CLS]) rows changed: keep them exactly as they are")
    _ok("check_resample", f"equal to vitlearn.resample_position_embedding on {len(configs)} grids (growing, "
                          "shrinking, with and without a [CLS] row)")


# -- step 7a: attention ---------------------------------------------------------------------

def _attn(q, k, v, *, scale="sqrt", dim=-1, transpose=False, mask=None, mask_value=float("-inf"),
          softmax=True):
    d = q.shape[-1]
    s = (k @ q.transpose(-2, -1)) if transpose else (q @ k.transpose(-2, -1))
    s = s / {"sqrt": math.sqrt(d), "none": 1.0, "d": float(d)}[scale]
    if mask is not None and mask_value is not None:
        s = s.masked_fill(mask, mask_value)
    w = s.softmax(dim=dim) if softmax else s
    return w @ v, w


_ATTN_MUTANTS = [
    (dict(dim=-2), "each row of the weights must sum to 1 over the keys: softmax over the last dimension "
                   "(dim=-1), not over the queries (dim=-2)"),
    (dict(dim=1), "the softmax runs over dim=1 (the heads or the batch); it must run over the keys: dim=-1"),
    (dict(scale="none"), "scores are too large by sqrt(d): divide q kᵀ by sqrt(head_dim), "
                         "math.sqrt(q.shape[-1])"),
    (dict(scale="d"), "scores are too small by sqrt(d): divide q kᵀ by sqrt(head_dim), not by head_dim"),
    (dict(transpose=True), "the weights are transposed (k qᵀ): row i must hold query i's match with every "
                           "key: q @ k.transpose(-2, -1)"),
    (dict(softmax=False), "the scores are used without a softmax: weights = softmax(scores, dim=-1)"),
]


def _attn_inputs():
    return [(_randn(2, 5, 8, seed=70, scale=2), "float32"),
            (_randn(2, 4, 17, 16, seed=71, scale=2), "float32"),
            (_randn(3, 2, 7, 32, seed=72, scale=2), "float32"),
            (_randn(2, 3, 6, 4, seed=73, scale=2, dtype=torch.float64), "float64")]


def _qkv(t, i):
    g = torch.Generator().manual_seed(100 + i)
    k = torch.randn(t.shape, generator=g, dtype=t.dtype) * 2
    return t, k, torch.randn(t.shape, generator=g, dtype=t.dtype)


def _unpack(result, what, on, b_shape):
    if not isinstance(result, (tuple, list)) or len(result) != 2 or not all(
            isinstance(r, torch.Tensor) for r in result):
        got = type(result).__name__ + (f" of {len(result)}" if isinstance(result, (tuple, list)) else "")
        raise CheckFailed(f"{what} must return a pair (output, weights), got a {got} (inputs: {on}). "
                          "F.scaled_dot_product_attention returns only the output: compute the weights "
                          "softmax(q kᵀ / sqrt(d)) yourself and return both")
    return result


@_check
def check_attention(fn) -> None:
    """fn(q, k, v) -> (out [..., N, d], weights [..., N, N]), softmax(q kᵀ / sqrt(d)) v."""
    cases = _attn_inputs()
    for i, (q0, _) in enumerate(cases):
        q, k, v = _qkv(q0, i)
        on = f"q, k, v {_shape(q)}"
        out, w = _unpack(_call("attention", fn, q, k, v), "attention", on, q.shape)
        ref_out, ref_w = scaled_dot_product_attention(q, k, v)
        n = q.shape[-2]
        muts = [(functools.partial(_attn, q, k, v, **kw), msg) for kw, msg in _ATTN_MUTANTS]
        _expect(w, ref_w, what="the attention weights", on=on,
                mutants=[(lambda m=m: m()[1], msg) for m, msg in muts],
                shape_hint=f"weights are [..., N, N] = {list(ref_w.shape)}: one row per query, one column "
                           "per key")
        _expect(out, ref_out, what="the attention output", on=on,
                mutants=[(lambda m=m: m()[0], msg) for m, msg in muts] +
                [(lambda: v, "the values are returned as they are: the output is weights @ v")],
                shape_hint=f"the output is [..., N, d_v] = {list(ref_out.shape)}: weights [.., {n}, {n}] @ v")
        _expect(out, F.scaled_dot_product_attention(q, k, v), what="the attention output", on=on,
                ref="F.scaled_dot_product_attention")
    _ok("check_attention", "outputs and weights equal vitlearn.scaled_dot_product_attention and "
                           f"F.scaled_dot_product_attention on {len(cases)} shapes, float32 and float64")


@_check
def check_causal_attention(fn) -> None:
    """fn(q, k, v) -> (out, weights), query i attending only to keys j <= i."""
    cases = _attn_inputs()
    for i, (q0, _) in enumerate(cases):
        q, k, v = _qkv(q0, i)
        n = q.shape[-2]
        on = f"q, k, v {_shape(q)}"
        future = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
        out, w = _unpack(_call("causal attention", fn, q, k, v), "causal attention", on, q.shape)
        ref_out, ref_w = _attn(q, k, v, mask=future)
        muts = [(functools.partial(_attn, q, k, v, mask=torch.triu(torch.ones(n, n, dtype=torch.bool))),
                 "the diagonal is masked too, so query 0 sees nothing (a row of -inf gives nan): each query "
                 "may attend to itself: torch.triu(..., diagonal=1)"),
                (functools.partial(_attn, q, k, v, mask=future.T),
                 "the past is masked instead of the future: mask the keys j > i, torch.triu(..., "
                 "diagonal=1)"),
                (functools.partial(_attn, q, k, v, mask=future, mask_value=0.0),
                 "masked scores are set to 0, which still gets weight after the softmax: set them to "
                 "float('-inf')"),
                (lambda: (_attn(q, k, v)[1].masked_fill(future, 0) @ v,
                          _attn(q, k, v)[1].masked_fill(future, 0)),
                 "the mask is applied after the softmax, so the rows no longer sum to 1: mask the scores "
                 "with -inf BEFORE the softmax"),
                (functools.partial(_attn, q, k, v), "nothing is masked: set the scores where j > i to -inf"),
                (functools.partial(_attn, q, k, v, mask=future, dim=-2),
                 "each row of the weights must sum to 1 over the keys: softmax over the last dimension"),
                (functools.partial(_attn, q, k, v, mask=future, scale="none"),
                 "scores are too large by sqrt(d): divide q kᵀ by sqrt(head_dim)")]
        _expect(w, ref_w, what="the causal weights", on=on,
                mutants=[(lambda m=m: m()[1], s) for m, s in muts],
                shape_hint=f"weights are [..., N, N] = {list(ref_w.shape)}")
        _expect(out, ref_out, what="the causal output", on=on,
                mutants=[(lambda m=m: m()[0], s) for m, s in muts])
        _expect(out, F.scaled_dot_product_attention(q, k, v, is_causal=True), what="the causal output",
                on=on, ref="F.scaled_dot_product_attention(is_causal=True)")
    _ok("check_causal_attention", "equal to F.scaled_dot_product_attention(is_causal=True), weights zero "
                                  f"above the diagonal, on {len(cases)} shapes, float32 and float64")


def _mhsa(ref: MultiHeadSelfAttention, x, *, split="three h d", merge="h d", scale="head", dim=-1,
          proj=True, heads=None):
    h = heads or ref.num_heads
    q, k, v = rearrange(ref.qkv(x), f"b n ({split}) -> three b h n d", three=3, h=h).unbind(0)
    s = q @ k.transpose(-2, -1)
    s = s / {"head": math.sqrt(q.shape[-1]), "none": 1.0, "d": float(q.shape[-1]),
             "embed": math.sqrt(ref.embed_dim)}[scale]
    w = s.softmax(dim=dim)
    o = rearrange(w @ v, f"b h n d -> b n ({merge})")
    return (ref.proj(o) if proj else o), w


_MHSA_MUTANTS = [
    (dict(dim=-2), "each row of the weights must sum to 1 over the keys: softmax over the last dimension"),
    (dict(scale="none"), "scores are too large by sqrt(d): divide q kᵀ by sqrt(head_dim)"),
    (dict(scale="d"), "scores are too small by sqrt(d): divide q kᵀ by sqrt(head_dim), not by head_dim"),
    (dict(scale="embed"), "scores are divided by sqrt(embed_dim); each head works in head_dim = D / h "
                          "dimensions: divide by sqrt(head_dim)"),
    (dict(merge="d h"), "heads are merged in (d h) order; concatenate them as (h d): rearrange(out, 'b h n "
                        "d -> b n (h d)'), i.e. transpose to [B, N, h, d] before reshaping"),
    (dict(split="three d h"), "heads are split in (d h) order; qkv's output is laid out (three h d): "
                              "rearrange(qkv, 'b n (three h d) -> three b h n d', three=3, h=h)"),
    (dict(split="h three d"), "qkv's output is split as (h three d); ours (and nn.MultiheadAttention's "
                              "in_proj) is laid out (three h d): first all queries, then keys, then values"),
    (dict(split="three d h", merge="d h"), "heads are split and merged in (d h) order; qkv's output is laid "
                                           "out (three h d) and the heads are concatenated as (h d)"),
    (dict(proj=False), "no output projection: the concatenated heads must go through self.proj"),
    (dict(heads=1, scale="embed"), "the heads are never split: attention runs once over all D dimensions; "
                                   "split q, k, v into num_heads heads of D / h each"),
]


def _attn_module_call(mine, x, what, on, need_weights):
    if not need_weights:
        return _call(f"{what}.forward", mine, x)
    try:
        result = mine(x, need_weights=True)
    except TypeError as err:
        if "need_weights" in str(err):
            raise CheckFailed(f"{what}.forward does not accept need_weights: write forward(self, x, "
                              "need_weights=False) and return (out, weights) when it is True (the attention "
                              "maps of model.attention_maps() need them)") from err
        return _call(f"{what}.forward(x, need_weights=True)", mine, x, need_weights=True)
    except (NotImplementedError, CheckFailed):
        raise
    except Exception:  # noqa: BLE001 - re-run through _call for the uniform message
        return _call(f"{what}.forward(x, need_weights=True)", mine, x, need_weights=True)
    return _unpack(result, f"{what}.forward(x, need_weights=True)", on, x.shape)


@_check
def check_multi_head_attention(cls) -> None:
    """cls(*, embed_dim, num_heads) with qkv = nn.Linear(D, 3D) (three h d) and proj = nn.Linear(D, D)."""
    configs = [(64, 4, 2, 17), (32, 2, 3, 5), (24, 3, 1, 9), (16, 1, 2, 4)]
    for i, (d, h, b, n) in enumerate(configs):
        what = f"{getattr(cls, '__name__', 'cls')}(embed_dim={d}, num_heads={h})"
        mine = _build(cls, what, embed_dim=d, num_heads=h)
        ours = MultiHeadSelfAttention(embed_dim=d, num_heads=h)
        ours.fused = False
        names = _load(mine, ours, what)
        x = _randn(b, n, d, seed=80 + i, scale=2)
        on = f"{what}, x {_shape(x)}"
        muts = [(functools.partial(_mhsa, ours, x, **kw), msg) for kw, msg in _MHSA_MUTANTS]
        got = _attn_module_call(mine, x, what, on, False)
        if isinstance(got, (tuple, list)):
            raise CheckFailed(f"{what}(x) returned a {type(got).__name__}; without need_weights=True it must "
                              "return only the output tensor [B, N, D] (the encoder block adds it to x)")
        ref_out, ref_w = ours(x, need_weights=True)
        _expect(got, ref_out.detach(), what="the attention output", on=on,
                mutants=[(lambda m=m: m()[0].detach(), s) for m, s in muts],
                shape_hint=f"the output is [B, N, D] = [{b}, {n}, {d}]")
        torch_msa = nn.MultiheadAttention(d, h, batch_first=True)
        torch_msa.load_state_dict({"in_proj_weight": ours.qkv.weight, "in_proj_bias": ours.qkv.bias,
                                   "out_proj.weight": ours.proj.weight, "out_proj.bias": ours.proj.bias})
        t_out, t_w = torch_msa(x, x, x, need_weights=True, average_attn_weights=False)
        _expect(got, t_out.detach(), what="the attention output", on=on, ref="nn.MultiheadAttention")
        out2, w = _attn_module_call(mine, x, what, on, True)
        _expect(out2, ref_out.detach(), what="the output with need_weights=True", on=on)
        _expect(w, ref_w.detach(), what="the attention weights", on=on,
                mutants=[(lambda m=m: m()[1].detach(), s) for m, s in muts],
                shape_hint=f"weights are per head: [B, h, N, N] = {list(ref_w.shape)}")
        _expect(w, t_w.detach(), what="the attention weights", on=on, ref="nn.MultiheadAttention")
        _check_grads(mine, ours, names, lambda: mine(x), lambda: ours(x), what)
    _ok("check_multi_head_attention", "outputs and per-head weights equal vitlearn.MultiHeadSelfAttention "
                                      f"and nn.MultiheadAttention with copied weights on {len(configs)} "
                                      "shapes (1-4 heads), gradients reach every parameter")


# -- step 7b: LayerNorm, MLP, the encoder block ---------------------------------------------

@_check
def check_layer_norm(cls) -> None:
    """cls(dim, eps=1e-6) with parameters weight, bias: normalise over the last dimension."""
    cases = [((8, 17, 64), 1e-6, 1.0), ((4, 32), 1e-6, 1.0), ((2, 3, 5, 16), 1e-6, 1.0),
             ((6, 10, 64), 1e-6, 1e-3), ((3, 7, 32), 1e-2, 0.05)]
    for i, (shape, eps, scale) in enumerate(cases):
        d = shape[-1]
        what = f"{getattr(cls, '__name__', 'cls')}({d}, eps={eps})"
        mine, ours = _build(cls, what, d, eps=eps), nn.LayerNorm(d, eps=eps)
        with torch.no_grad():
            ours.weight.copy_(1 + 0.5 * _randn(d, seed=90 + i))
            ours.bias.copy_(_randn(d, seed=95 + i))
        names = _load(mine, ours, what)
        x = _randn(*shape, seed=100 + i, scale=scale) + 3 * scale
        on = f"x {_shape(x)}" + (f" (small values: std {scale})" if scale != 1 else "")
        wt, bs = ours.weight.detach(), ours.bias.detach()
        mu = x.mean(-1, keepdim=True)

        def norm(var, eps_in=True, dims=-1, mean=None):
            m = x.mean(dims, keepdim=True) if mean is None else mean
            return ((x - m) / (var + eps).sqrt() if eps_in else (x - m) / (var.sqrt() + eps)) * wt + bs

        mutants = [(lambda: norm(x.var(-1, keepdim=True, unbiased=True)),
                    "the variance is the unbiased one (divides by D-1); LayerNorm divides by D: "
                    "x.var(dim=-1, unbiased=False)"),
                   (lambda: norm(x.var(-1, keepdim=True, unbiased=False), eps_in=False),
                    "eps is added to the standard deviation; it goes inside the square root: (x - mean) / "
                    "sqrt(var + eps)"),
                   (lambda: norm(x.var(1, keepdim=True, unbiased=False), dims=1),
                    "the statistics are taken over dim=1 (the tokens); LayerNorm normalises each token over "
                    "its own features: mean and var over the last dimension (dim=-1)"),
                   (lambda: norm(x.var(0, keepdim=True, unbiased=False), dims=0),
                    "the statistics are taken over the batch (that is BatchNorm); LayerNorm uses the last "
                    "dimension: dim=-1, keepdim=True"),
                   (lambda: ((x - mu) / (x.var(-1, keepdim=True, unbiased=False) + eps).sqrt()) * bs + wt,
                    "weight and bias are swapped: x_hat * weight + bias"),
                   (lambda: (x - mu) / (x.var(-1, keepdim=True, unbiased=False) + eps).sqrt(),
                    "the gain and bias are not applied: x_hat * self.weight + self.bias"),
                   (lambda: F.layer_norm(x, (d,), wt, bs, 1e-6) if eps != 1e-6 else x,
                    "the eps argument is ignored (1e-6 is hard-coded): store self.eps = eps and use it"),
                   (lambda: F.layer_norm(x, (d,), wt, bs, 1e-5) if eps != 1e-5 else x,
                    "eps is 1e-5 (nn.LayerNorm's default), not the eps argument: store self.eps = eps")]
        got = _call(f"{what}.forward", mine, x)
        _expect(got, F.layer_norm(x, (d,), wt, bs, eps).detach(), what="the normalised tokens", on=on,
                mutants=mutants, ref="nn.LayerNorm", shape_hint="LayerNorm keeps the shape of its input")
        _check_grads(mine, ours, names, lambda: mine(x), lambda: ours(x), what)
    _ok("check_layer_norm", f"equal to nn.LayerNorm with the same weight, bias and eps on {len(cases)} "
                            "inputs (2-D to 4-D, small-variance inputs where eps matters), gradients equal")


@_check
def check_mlp(cls) -> None:
    """cls(*, embed_dim, hidden_dim, dropout=0.0): fc1 -> GELU -> fc2 (an nn.Sequential works too)."""
    configs = [(64, 128, 2, 17), (32, 128, 3, 5), (16, 8, 1, 3)]
    for i, (d, hdim, b, n) in enumerate(configs):
        what = f"{getattr(cls, '__name__', 'cls')}(embed_dim={d}, hidden_dim={hdim})"
        mine, ours = _build(cls, what, embed_dim=d, hidden_dim=hdim), MLP(embed_dim=d, hidden_dim=hdim)
        names = _load(mine, ours, what, by_order=True)
        x = _randn(b, n, d, seed=110 + i)
        on = f"{what}, x {_shape(x)}"
        fc1, fc2 = ours.fc1, ours.fc2
        mutants = [(lambda: fc2(fc1(x)), "there is no activation between fc1 and fc2: two Linear layers in "
                                         "a row are one Linear layer; put nn.GELU() between them"),
                   (lambda: fc2(F.relu(fc1(x))), "the activation is ReLU; ViT's MLP uses GELU (nn.GELU())"),
                   (lambda: fc2(F.gelu(fc1(x), approximate="tanh")),
                    "GELU's tanh approximation is used; ours is the exact GELU (nn.GELU() default)"),
                   (lambda: F.gelu(fc2(fc1(x))), "GELU is applied after fc2; it goes between fc1 and fc2"),
                   (lambda: fc2(F.gelu(fc1(x))) + x, "the MLP adds its input (a residual); the residual "
                                                     "belongs to the encoder block, not the MLP"),
                   (lambda: F.gelu(fc1(x)), "fc2 is never applied: fc2(act(fc1(x)))")]
        got = _call(f"{what}.forward", mine, x)
        _expect(got, ours(x).detach(), what="the MLP output", on=on, mutants=mutants,
                shape_hint=f"the MLP maps [B, N, D] -> [B, N, D] = [{b}, {n}, {d}] (fc1: D -> hidden, fc2: "
                           "hidden -> D)")
        _check_grads(mine, ours, names, lambda: mine(x), lambda: ours(x), what)
    _ok("check_mlp", "equal to vitlearn.MLP (Linear -> GELU -> Linear) with copied weights on "
                     f"{len(configs)} sizes, gradients reach every parameter")


def _block_variant(ref: EncoderBlock, x, kind):
    ln1, ln2 = ref.norm1, ref.norm2
    attn, mlp = ref.attn, ref.mlp
    if kind == "post":
        x = ln1(x + attn(x))
        return ln2(x + mlp(x))
    if kind == "no_attn_res":
        x = attn(ln1(x))
        return x + mlp(ln2(x))
    if kind == "no_mlp_res":
        x = x + attn(ln1(x))
        return mlp(ln2(x))
    if kind == "no_res":
        return mlp(ln2(attn(ln1(x))))
    if kind == "parallel":
        return x + attn(ln1(x)) + mlp(ln2(x))
    if kind == "normed_stream":
        x = ln1(x)
        x = x + attn(x)
        x = ln2(x)
        return x + mlp(x)
    if kind == "norm1_twice":
        x = x + attn(ln1(x))
        return x + mlp(ln1(x))
    if kind == "no_gelu":
        x = x + attn(ln1(x))
        return x + mlp.fc2(mlp.fc1(ln2(x)))
    if kind == "ln_tokens":
        def ln(x, m):
            mu, var = x.mean(1, keepdim=True), x.var(1, keepdim=True, unbiased=False)
            return (x - mu) / (var + m.eps).sqrt() * m.weight + m.bias
        x = x + attn(ln(x, ln1))
        return x + mlp(ln(x, ln2))
    if kind == "no_norm":
        x = x + attn(x)
        return x + mlp(x)
    raise ValueError(kind)


_BLOCK_MUTANTS = [
    ("post", "this block normalises after the residual (post-norm, the original Transformer); ViT "
             "normalises inside the branch, before attention and before the MLP: x = x + attn(norm1(x)); x "
             "= x + mlp(norm2(x))"),
    ("no_attn_res", "the attention residual is missing: x = x + attn(norm1(x)), not x = attn(norm1(x))"),
    ("no_mlp_res", "the MLP residual is missing: x = x + mlp(norm2(x)), not x = mlp(norm2(x))"),
    ("no_res", "both residual connections are missing: x = x + attn(norm1(x)); x = x + mlp(norm2(x))"),
    ("parallel", "attention and MLP both read the block's input (a parallel block); in ViT the MLP reads "
                 "the output of the attention residual: x = x + attn(norm1(x)); then x = x + mlp(norm2(x))"),
    ("normed_stream", "the LayerNorm output replaces x, so the residual stream is normalised; keep the skip "
                      "path untouched: x = x + attn(norm1(x))"),
    ("norm1_twice", "norm1 is used before the MLP too; the MLP has its own LayerNorm: mlp(norm2(x))"),
    ("no_gelu", "the MLP has no activation between fc1 and fc2: put nn.GELU() between them"),
    ("ln_tokens", "the LayerNorms normalise over dim=1 (the tokens); LayerNorm normalises each token over "
                  "its own features: statistics over the last dimension, dim=-1 (nn.LayerNorm(embed_dim))"),
    ("no_norm", "the LayerNorms are skipped: x = x + attn(norm1(x)); x = x + mlp(norm2(x))"),
]


@_check
def check_encoder_block(cls) -> None:
    """cls(*, embed_dim, num_heads, mlp_ratio=2.0, dropout=0.0, attn_dropout=0.0), pre-norm."""
    configs = [(64, 4, 2.0, 2, 17), (32, 2, 4.0, 3, 5)]
    for i, (d, h, ratio, b, n) in enumerate(configs):
        what = f"{getattr(cls, '__name__', 'cls')}(embed_dim={d}, num_heads={h}, mlp_ratio={ratio})"
        mine = _build(cls, what, embed_dim=d, num_heads=h, mlp_ratio=ratio)
        ours = EncoderBlock(embed_dim=d, num_heads=h, mlp_ratio=ratio)
        ours.attn.fused = False
        with torch.no_grad():
            for j, ln in enumerate((ours.norm1, ours.norm2)):
                ln.weight.copy_(1 + 0.5 * _randn(d, seed=120 + 2 * i + j))
                ln.bias.copy_(0.5 * _randn(d, seed=130 + 2 * i + j))
        names = _load(mine, ours, what)
        x = _randn(b, n, d, seed=140 + i) * 2 + 1
        on = f"{what}, x {_shape(x)}"
        got = _call(f"{what}.forward", mine, x)
        if isinstance(got, (tuple, list)):
            raise CheckFailed(f"{what}(x) returned a {type(got).__name__}; without need_weights=True it must "
                              "return only the tokens [B, N, D]")
        _expect(got, ours(x).detach(), what="the block output", on=on,
                mutants=[(lambda k=k: _block_variant(ours, x, k).detach(), msg) for k, msg in _BLOCK_MUTANTS],
                shape_hint=f"a block maps [B, N, D] -> [B, N, D] = [{b}, {n}, {d}]")
        layer = nn.TransformerEncoderLayer(d, h, dim_feedforward=int(d * ratio), dropout=0.0,
                                           activation="gelu",
                                           batch_first=True, norm_first=True, layer_norm_eps=1e-6)
        sd = ours.state_dict()
        layer.load_state_dict({
            "self_attn.in_proj_weight": sd["attn.qkv.weight"], "self_attn.in_proj_bias": sd["attn.qkv.bias"],
            "self_attn.out_proj.weight": sd["attn.proj.weight"],
            "self_attn.out_proj.bias": sd["attn.proj.bias"],
            "linear1.weight": sd["mlp.fc1.weight"], "linear1.bias": sd["mlp.fc1.bias"],
            "linear2.weight": sd["mlp.fc2.weight"], "linear2.bias": sd["mlp.fc2.bias"],
            "norm1.weight": sd["norm1.weight"], "norm1.bias": sd["norm1.bias"],
            "norm2.weight": sd["norm2.weight"], "norm2.bias": sd["norm2.bias"]})
        layer.eval()
        _expect(got, layer(x).detach(), what="the block output", on=on,
                ref="nn.TransformerEncoderLayer(norm_first=True, activation='gelu')")
        if isinstance(getattr(mine, "attn", None), nn.Module):
            with record_attention(ours) as ref_maps:
                ours(x)

            def run_recorded():
                with record_attention(mine) as maps:
                    mine(x)
                return maps

            maps = _call(f"{what}(x) under vitlearn.record_attention (it calls self.attn(..., "
                         "need_weights=True))",
                         run_recorded)
            if len(maps) != 1:
                raise CheckFailed(f"{what}: self.attn ran {len(maps)} times in one forward pass; a block "
                                  "attends once: x = x + self.attn(self.norm1(x))")
            _expect(maps[0], ref_maps[0].detach(), what="the block's attention weights", on=on,
                    shape_hint=f"[B, h, N, N] = {list(ref_maps[0].shape)}")
        _check_grads(mine, ours, names, lambda: mine(x), lambda: ours(x), what)
    _ok("check_encoder_block", "equal to vitlearn.EncoderBlock and "
                               "nn.TransformerEncoderLayer(norm_first=True, activation='gelu') with copied "
                               f"weights on {len(configs)} sizes, attention weights too, gradients reach "
                               "every parameter")


@_check
def check_block_params(fn) -> None:
    """fn(D, mlp_ratio) -> the number of parameters of one encoder block."""
    configs = [(64, 2.0), (32, 4.0), (768, 4.0), (48, 1.5)]
    for d, ratio in configs:
        want = sum(p.numel() for p in EncoderBlock(embed_dim=d, num_heads=1, mlp_ratio=ratio).parameters())
        hdim = int(d * ratio)
        biases = 3 * d + d + hdim + d
        got = _call("block_params", fn, d, ratio)
        _check_int("block_params", got, want, on=f"D={d}, mlp_ratio={ratio}", mutants=[
            (want - 4 * d, "the two LayerNorms are missing: each has a gain and a bias of D numbers (4D in "
                           "all)"),
            (want - 2 * d, "one LayerNorm is missing, or only their gains (or biases) are counted: 2 x (D + "
                           "D)"),
            (want - biases, "the biases are missing: qkv has 3D, proj D, fc1 H and fc2 D"),
            (want - biases - 4 * d, "biases and LayerNorms are missing"),
            (want - 2 * d * d - 2 * d, "q, k and v need three D x D matrices (qkv is D -> 3D), not one"),
            (want - d * d - d, "the output projection proj (D x D + D) is missing"),
            (want - hdim * d - d, "fc2 (H x D + D) is missing"),
        ])
    _ok("check_block_params", f"matches the parameter count of vitlearn.EncoderBlock for {len(configs)} "
                              "sizes, up to ViT-Base (D=768)")


# -- step 8: the head and the loss ----------------------------------------------------------

@_check
def check_classification_head(cls) -> None:
    """cls(*, embed_dim, num_classes) with norm (LayerNorm) and fc (Linear): [B, D] -> logits [B, K]."""
    configs = [(64, 10, 8), (32, 5, 1)]
    for i, (d, k, b) in enumerate(configs):
        what = f"{getattr(cls, '__name__', 'cls')}(embed_dim={d}, num_classes={k})"
        mine = _build(cls, what, embed_dim=d, num_classes=k)
        ours = ClassificationHead(embed_dim=d, num_classes=k)
        with torch.no_grad():
            ours.norm.weight.copy_(1 + 0.5 * _randn(d, seed=150 + i))
            ours.norm.bias.copy_(0.5 * _randn(d, seed=155 + i))
        names = _load(mine, ours, what)
        x = _randn(b, d, seed=160 + i) * 3 + 1
        on = f"{what}, pooled {_shape(x)}"
        logits = ours(x).detach()
        mutants = [(lambda: logits.softmax(-1), "the head returns probabilities (softmax inside the head); "
                                                "return the logits: F.cross_entropy applies log-softmax "
                                                "itself, and a softmax before it squashes the gradients"),
                   (lambda: logits.log_softmax(-1), "the head returns log-probabilities; return the raw "
                                                    "logits (F.cross_entropy does the log-softmax)"),
                   (lambda: ours.fc(x), "the LayerNorm is skipped: self.fc(self.norm(x))"),
                   (lambda: torch.sigmoid(logits), "a sigmoid is applied; return the raw logits")]
        got = _call(f"{what}.forward", mine, x)
        _expect(got, logits, what="the logits", on=on, mutants=mutants,
                shape_hint=f"logits are [B, num_classes] = [{b}, {k}]")
        _check_grads(mine, ours, names, lambda: mine(x), lambda: ours(x), what)
    _ok("check_classification_head", "equal to vitlearn.ClassificationHead (LayerNorm + Linear, logits) "
                                     f"with copied weights on {len(configs)} sizes, gradients reach every "
                                     "parameter")


def _loss_cases():
    g = torch.Generator().manual_seed(170)
    base = [(torch.randn(32, 10, generator=g) * 3, torch.randint(0, 10, (32,), generator=g)),
            (torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randint(0, 3, (5,), generator=g))]
    return base + [(base[0][0] * 1000, base[0][1])]


def _check_scalar(got, what, on):
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"{what}: expected a scalar tensor, got a {type(got).__name__} ({on}): keep it a "
                          "tensor (no .item()), so that loss.backward() works")
    if got.shape != ():
        raise CheckFailed(f"{what}: got shape {list(got.shape)}, expected a single number (shape []) ({on}): "
                          "take the mean over the batch")


@_check
def check_cross_entropy(fn) -> None:
    """fn(logits [B, K], labels [B]) -> the mean cross-entropy, exact even for huge logits."""
    for logits, labels in _loss_cases():
        big = logits.abs().max() > 100
        on = (f"logits {_shape(logits)}" + (" (large values, x1000)" if big else "")
              + f", labels {_shape(labels)}")
        got = _call("cross_entropy", fn, logits, labels)
        _check_scalar(got, "the loss", on)
        idx = torch.arange(len(labels))
        lp = logits.log_softmax(-1)
        mutants = [(lambda: -torch.log(logits.softmax(-1))[idx, labels].mean(),
                    "the loss is computed as log(softmax(logits)), which underflows to log(0) = -inf for "
                    "large logits: use F.log_softmax (log-sum-exp), exact for any logits"),
                   (lambda: -lp[idx, labels].sum(), "this is the sum over the batch; F.cross_entropy takes "
                                                    "the mean"),
                   (lambda: lp[idx, labels].mean(), "the sign is wrong: the loss is MINUS the "
                                                    "log-probability"),
                   (lambda: -logits.log_softmax(0)[idx, labels].mean(),
                    "the log-softmax runs over the batch (dim=0); it runs over the classes: dim=-1"),
                   (lambda: -logits[idx, labels].mean(), "the logits are used as log-probabilities: apply "
                                                         "F.log_softmax(logits, dim=-1) first")]
        _expect(got, F.cross_entropy(logits, labels), what="the loss", on=on, ref="F.cross_entropy",
                mutants=mutants)
    _ok("check_cross_entropy", "equal to F.cross_entropy on ordinary, float64 and huge (x1000) logits")


@_check
def check_smoothed_cross_entropy(fn) -> None:
    """fn(logits, labels, eps) -> F.cross_entropy(logits, labels, label_smoothing=eps)."""
    cases = [(lg, lb, eps) for lg, lb in _loss_cases() for eps in (0.1, 0.3)]
    cases.append((_loss_cases()[0][0], _loss_cases()[0][1], 0.0))
    for logits, labels, eps in cases:
        big = logits.abs().max() > 100
        on = (f"logits {_shape(logits)}" + (" (large values, x1000)" if big else "")
              + f", labels {_shape(labels)}, eps={eps}")
        got = _call("smoothed_cross_entropy", fn, logits, labels, eps)
        _check_scalar(got, "the loss", on)
        k = logits.shape[-1]
        idx = torch.arange(len(labels))
        lp = logits.log_softmax(-1)
        nll = -lp[idx, labels]
        onehot = F.one_hot(labels, k).to(logits.dtype)
        mutants = [(lambda: -(((1 - eps) * onehot + eps / (k - 1) * (1 - onehot)) * lp).sum(-1).mean(),
                    "eps is spread over the K-1 wrong classes; label smoothing (PyTorch's and the ViT "
                    "recipe's) spreads eps/K over ALL K classes, the true one included: (1-eps)*nll + "
                    "eps*mean(-log p)"),
                   (lambda: ((1 - eps) * nll - eps * lp.sum(-1)).mean(),
                    "eps multiplies the SUM of -log p over the classes; each class gets eps/K: use the mean "
                    "over the classes"),
                   (lambda: ((1 - eps) * nll).mean(), "the uniform part is missing: add eps * mean(-log p) "
                                                      "over the classes"),
                   (lambda: nll.mean(), "eps is ignored: this is the plain cross-entropy"),
                   (lambda: ((1 - eps) * -torch.log(logits.softmax(-1))[idx, labels]
                             - eps * torch.log(logits.softmax(-1)).mean(-1)).mean(),
                    "the log-probabilities come from log(softmax(logits)), which gives -inf for large "
                    "logits: use F.log_softmax")]
        _expect(got, F.cross_entropy(logits, labels, label_smoothing=eps), what="the smoothed loss", on=on,
                ref="F.cross_entropy(label_smoothing=eps)", mutants=mutants)
    _ok("check_smoothed_cross_entropy", f"equal to F.cross_entropy(label_smoothing=eps) on {len(cases)} "
                                        "cases (eps 0, 0.1, 0.3; float64; huge logits)")


# -- training: augmentation, schedule, optimizer groups ------------------------------------

def _shifted(images: torch.Tensor, dy: int, dx: int, fill: str = "corner") -> torch.Tensor:
    """Every image moved so that out[r, c] = in[r + dy, c + dx]; uncovered pixels get ``fill``."""
    b, c, h, w = images.shape
    if fill == "roll":
        return torch.roll(images, shifts=(-dy, -dx), dims=(2, 3))
    base = images[:, :, :1, :1].expand(b, c, h, w) if fill == "corner" else torch.zeros_like(images)
    out = base.clone()
    rs, re_ = max(0, -dy), min(h, h - dy)
    cs, ce = max(0, -dx), min(w, w - dx)
    if rs < re_ and cs < ce:
        out[:, :, rs:re_, cs:ce] = images[:, :, rs + dy:re_ + dy, cs + dx:ce + dx]
    return out


def _match_shift(got: torch.Tensor, images: torch.Tensor, reach: int, fill: str) -> torch.Tensor:
    """[B, 2] the (dy, dx) in [-reach, reach] that turns each input into its output, or a large
    sentinel where none does."""
    found = torch.full((len(images), 2), 10**6, dtype=torch.long)
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            cand = _shifted(images, dy, dx, fill)
            same = torch.isclose(got, cand, rtol=1e-5, atol=1e-5).flatten(1).all(dim=1)
            newly = same & (found[:, 0] == 10**6)
            found[newly] = torch.tensor([dy, dx])
    return found


@_check
def check_random_shift(fn) -> None:
    """fn(images [B, C, H, W], max_shift, generator=None): each image moved by its own integer
    (dy, dx) in [-max_shift, max_shift], the uncovered border filled with the corner value."""
    s = 2
    images = _randn(400, 2, 8, 8, seed=180) + 1.5  # normalised-like: the background is not 0
    on = f"images {_shape(images)}, max_shift={s}"
    got = _call("random_shift", fn, images, s, generator=torch.Generator().manual_seed(0))
    if not isinstance(got, torch.Tensor) or got.shape != images.shape or got.dtype != images.dtype:
        _expect(got, images, what="the shifted images", on=on,  # raises: the type, shape or dtype is off
                shape_hint="the shifted images keep the input's shape [B, C, H, W]")
    found = _match_shift(got, images, s, "corner")
    bad = (found[:, 0] == 10**6).nonzero().flatten()
    if len(bad):
        i = int(bad[0])
        one, img = got[i:i + 1], images[i:i + 1]
        if (_match_shift(one, img, s, "roll")[0, 0] != 10**6).item():
            msg = ("pixels that leave one side come back on the other (torch.roll wraps around): fill the "
                   "uncovered border with the background, the image's corner value images[:, :, :1, :1] "
                   "(pad, then crop a window)")
        elif (_match_shift(one, img, s, "zero")[0, 0] != 10**6).item():
            msg = ("the uncovered border is filled with 0, but the images are normalised, so the background "
                   "is not 0: fill with the corner value images[:, :, :1, :1]")
        elif (_match_shift(one, img, 2 * s + 1, "corner")[0, 0] != 10**6).item():
            msg = (f"the image moved by more than max_shift={s} pixels: draw dy and dx in [-max_shift, "
                   "max_shift], torch.randint(-s, s + 1, ...) or a window offset in [0, 2s]")
        elif all((_match_shift(got[i:i + 1, ch:ch + 1], images[i:i + 1, ch:ch + 1], s, "corner")[0, 0]
                  != 10**6).item() for ch in range(images.shape[1])):
            msg = ("the channels of one image moved by different amounts: move all channels of an image "
                   "together")
        else:
            msg = ("it is not a copy of the input moved by whole pixels with a background-filled border: "
                   "take a window of the padded image, canvas[:, dy:dy + H, dx:dx + W]")
        raise CheckFailed(f"image {i} of the output is wrong ({on}): {msg}")
    pairs = {tuple(p) for p in found.tolist()}
    dys, dxs = {p[0] for p in pairs}, {p[1] for p in pairs}
    if len(pairs) == 1:
        raise CheckFailed(f"every image in the batch got the same shift {pairs.pop()} ({on}): draw one (dy, "
                          "dx) per image, e.g. torch.randint(0, 2 * s + 1, (2, B), generator=generator)")
    full = set(range(-s, s + 1))
    if dys != full or dxs != full:
        missing = sorted((full - dys) | (full - dxs))
        hint = (" Shifts are only non-negative: they must go both ways, [-s, s]." if min(dys | dxs) >= 0 else
                " torch.randint's upper bound is exclusive: randint(low, high + 1)."
                if len(missing) == 1 else "")
        raise CheckFailed(f"over 400 images the shifts never took the value(s) {missing} ({on}); every "
                          f"integer in [-{s}, {s}] must be possible in both directions.{hint}")
    again = _call("random_shift", fn, images, s, generator=torch.Generator().manual_seed(0))
    if not torch.equal(again, got):
        raise CheckFailed("two calls with generators seeded alike gave different shifts: draw the random "
                          "offsets with that generator, torch.randint(..., generator=generator), so that "
                          "runs repeat")
    same = _call("random_shift", fn, images[:4], 0)
    _expect(same, images[:4], what="the output for max_shift=0", on=f"images {_shape(images[:4])}, "
                                                                    "max_shift=0",
            shape_hint="max_shift=0 returns the images unchanged")
    _call("random_shift", fn, images[:4], 1)
    _ok("check_random_shift", f"each of 400 images is moved by its own (dy, dx) in [-{s}, {s}] with a "
                              f"background-filled border, all {len(pairs)} shifts occur, the generator makes "
                              "it repeatable")


def _schedule_mutants(total, warmup, min_f):
    def cos(progress, m=min_f):
        return m + (1 - m) * 0.5 * (1 + math.cos(math.pi * progress))

    def prog(step):
        return min(1.0, (step - warmup) / max(1, total - warmup))

    ref = functools.partial(warmup_cosine, total_steps=total, warmup_steps=warmup, min_factor=min_f)
    return [
        (lambda st: st / warmup if st < warmup else ref(st),
         "warm-up off by one: step 0 gets factor 0, so the first update does nothing, and step warmup_steps "
         "- 1 never reaches 1: use (step + 1) / warmup_steps"),
        (lambda st: (st + 1) / warmup if st <= warmup else ref(st),
         "the warm-up runs one step too long (step <= warmup_steps), so step warmup_steps gets a factor "
         "above 1: use step < warmup_steps"),
        (lambda st: (st + 1) / warmup if st < warmup else cos(min(1.0, st / total)),
         "the cosine starts counting at step 0, not at the end of the warm-up: progress = (step - "
         "warmup_steps) / (total_steps - warmup_steps)"),
        (lambda st: (st + 1) / warmup if st < warmup else cos(min(1.0, (st - warmup) / total)),
         "the cosine progress is divided by total_steps; divide by the steps after the warm-up, total_steps "
         "- warmup_steps"),
        (lambda st: (st + 1) / warmup if st < warmup else cos(prog(st), 0.0),
         "min_factor is ignored: the factor decays to 0; it should end at min_factor: min_factor + (1 - "
         "min_factor) * 0.5 * (1 + cos(pi * progress))"),
        (lambda st: (st + 1) / warmup if st < warmup else min_f + 0.5 * (1 + math.cos(math.pi * prog(st))),
         "min_factor is added without scaling the cosine, so the peak is 1 + min_factor: min_factor + (1 - "
         "min_factor) * 0.5 * (1 + cos(pi * progress))"),
        (lambda st: (st + 1) / warmup if st < warmup else cos((st - warmup) / max(1, total - warmup)),
         "after total_steps the factor comes back up (the cosine is not clamped): progress = min(1, ...)"),
        (lambda st: (st + 1) / warmup if st < warmup else
         min_f + (1 - min_f) * math.cos(math.pi / 2 * prog(st)),
         "this is a quarter cosine, cos(pi/2 * progress); the schedule is half a period: 0.5 * (1 + cos(pi "
         "* progress))"),
    ]


@_check
def check_warmup_cosine(fn) -> None:
    """fn(step, total_steps, warmup_steps, min_factor=0.0) -> learning-rate factor (a float)."""
    configs = [(1000, 100, 0.0), (11232, 468, 0.01), (200, 1, 0.1), (50, 10, 0.5)]
    for total, warmup, min_f in configs:
        on = f"total_steps={total}, warmup_steps={warmup}, min_factor={min_f}"
        steps = range(total + 3)
        values = []
        for st in steps:
            v = _call("warmup_cosine", fn, st, total, warmup, min_f)
            if isinstance(v, torch.Tensor) and v.numel() == 1:
                v = v.item()
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise CheckFailed(f"warmup_cosine returned a {type(v).__name__} at step {st} ({on}); it "
                                  "should return a number, the factor that multiplies the peak learning rate")
            values.append(float(v))
        want = [warmup_cosine(st, total, warmup, min_f) for st in steps]
        wrong = [st for st in steps if not math.isclose(values[st], want[st], rel_tol=1e-9, abs_tol=1e-12)]
        if not wrong:
            continue
        for mutant, msg in _schedule_mutants(total, warmup, min_f):
            mv = [mutant(st) for st in steps]
            if all(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) for a, b in zip(mv, want)):
                continue
            if all(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) for a, b in zip(mv, values)):
                raise CheckFailed(f"the schedule is wrong ({on}): {msg}")
        st = wrong[0]
        raise CheckFailed(f"the factor is wrong at {len(wrong)} of {len(want)} steps ({on}); the first is "
                          f"step {st}: got {values[st]:.6g}, expected {want[st]:.6g}. Warm-up: (step + 1) / "
                          "warmup_steps while step < warmup_steps; then min_factor + (1 - min_factor) * 0.5 "
                          "* (1 + cos(pi * progress)), progress = min(1, (step - warmup_steps) / "
                          "(total_steps - warmup_steps))")
    _ok("check_warmup_cosine", "equal to vitlearn.training.warmup_cosine at every step (and 3 past the end) "
                               f"of {len(configs)} schedules")


def _kind(name: str, p: torch.Tensor) -> str:
    if name.endswith("bias"):
        return "bias"
    if "norm" in name:
        return "LayerNorm gain"
    if "pos" in name:
        return "position embedding"
    if "cls" in name or "token" in name:
        return "[CLS] token"
    return "weight matrix" if p.ndim >= 2 else "1-D parameter"


@_check
def check_weight_decay_groups(model: nn.Module, decay, no_decay) -> None:
    """The two parameter lists built for AdamW: decay = weight matrices only; the rest no_decay."""
    names = {id(p): n for n, p in model.named_parameters()}
    groups = {}
    for label, group in (("decay", decay), ("no_decay", no_decay)):
        try:
            items = list(group)
        except TypeError as err:
            raise CheckFailed(f"{label} should be a list of the model's parameters, got a "
                              f"{type(group).__name__}") from err
        for p in items:
            if not isinstance(p, torch.Tensor):
                raise CheckFailed(f"{label} should hold parameters (tensors), but it holds a "
                                  f"{type(p).__name__}: use model.parameters() or the p of "
                                  "model.named_parameters(), not the names")
            if id(p) not in names:
                raise CheckFailed(f"{label} holds a tensor of shape {list(p.shape)} that is not a parameter "
                                  "of this model: build the lists from model.parameters()")
        groups[label] = {id(p) for p in items}
    both = groups["decay"] & groups["no_decay"]
    if both:
        raise CheckFailed(f"{len(both)} parameter(s) are in both lists, e.g. {names[next(iter(both))]}: each "
                          "parameter belongs to exactly one group")
    ref = make_optimizer(model, lr=1e-3, weight_decay=0.05).param_groups
    want_decay, want_no = {id(p) for p in ref[0]["params"]}, {id(p) for p in ref[1]["params"]}
    neither = (want_decay | want_no) - groups["decay"] - groups["no_decay"]
    if neither:
        n = sorted(names[i] for i in neither)
        raise CheckFailed(f"{len(n)} parameter(s) are in neither list, e.g. {n[:3]}: AdamW would never "
                          "update them; put every parameter in one of the two groups")
    params = dict(model.named_parameters())
    wrongly = sorted(names[i] for i in groups["decay"] - want_decay)
    if wrongly:
        kinds = sorted({_kind(n, params[n]) for n in wrongly})
        raise CheckFailed(f"weight decay is applied to {len(wrongly)} tensor(s) that should not be decayed "
                          f"({', '.join(kinds)}), e.g. {wrongly[:3]}: decay pulls them towards 0, which only "
                          "hurts (a zero bias or LayerNorm gain, a washed-out [CLS] token or position "
                          "table). Decay only the weight matrices of the Linear layers (p.ndim == 2); put "
                          "the rest in no_decay")
    missed = sorted(names[i] for i in groups["no_decay"] - want_no)
    if missed:
        raise CheckFailed(f"{len(missed)} weight matrix(es) are not decayed, e.g. {missed[:3]}: the weights "
                          "of the Linear layers (p.ndim == 2) go in the decay group")
    _ok("check_weight_decay_groups", "the same groups as vitlearn.training.make_optimizer: "
                                     f"{len(want_decay)} weight matrices decayed, {len(want_no)} biases, "
                                     "gains, [CLS] and position tensors not")


@_check
def check_schedule_numbers(*, steps_per_epoch, total_steps, warmup_steps, lr_halfway, n_train, batch_size,
                           epochs, warmup_epochs, peak_lr, min_factor) -> None:
    """The numbers of 08's exercise, against counted batches and a real LambdaLR driven halfway."""
    labels = torch.zeros(n_train, dtype=torch.uint8)
    batches = sum(1 for _ in iterate_batches(labels, labels, batch_size, drop_last=True))
    on = f"n_train={n_train}, batch_size={batch_size}"
    _check_int("steps_per_epoch", steps_per_epoch, batches, on=on, mutants=[
        (math.ceil(n_train / batch_size), "the last, partial batch is counted, but fit drops it "
                                          "(drop_last): n_train // batch_size")])
    total = epochs * batches
    _check_int("total_steps", total_steps, total, on=f"{on}, epochs={epochs}", mutants=[
        (batches, "that is one epoch; total_steps = epochs * steps_per_epoch"),
        (epochs * math.ceil(n_train / batch_size), "the partial batches are counted: use n_train // "
                                                   "batch_size")])
    warm = max(1, round(warmup_epochs * batches))
    _check_int("warmup_steps", warmup_steps, warm, on=f"{on}, warmup_epochs={warmup_epochs}", mutants=[
        (round(warmup_epochs), "warmup_steps counts optimizer steps, not epochs: round(warmup_epochs * "
                               "steps_per_epoch)"),
        (int(warmup_epochs * batches), "use round(), not int(): fit rounds to the nearest step")])
    param = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=peak_lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda st: warmup_cosine(st, total, warm, min_factor))
    for _ in range(total // 2):
        opt.step()
        sched.step()
    want = opt.param_groups[0]["lr"]
    if isinstance(lr_halfway, torch.Tensor):
        lr_halfway = lr_halfway.item()
    if not isinstance(lr_halfway, numbers.Real) or not math.isclose(lr_halfway, want, rel_tol=1e-9):
        factor = warmup_cosine(total // 2, total, warm, min_factor)
        msgs = [(factor, "this is the schedule's factor: multiply it by peak_lr"),
                (peak_lr * warmup_cosine(total // 2 - 1, total, warm, min_factor),
                 f"off by one step: after {total // 2} scheduler steps the factor is f({total // 2})"),
                (peak_lr * 0.5 * (1 + math.cos(math.pi * 0.5)), "min_factor and the warm-up are ignored: "
                                                                "use the schedule warmup_cosine(total_steps "
                                                                "// 2, total_steps, warmup_steps, "
                                                                "min_factor)")]
        hint = next((m for v, m in msgs
                     if isinstance(lr_halfway, numbers.Real) and math.isclose(lr_halfway, v, rel_tol=1e-9)),
                    "lr_halfway = peak_lr * warmup_cosine(total_steps // 2, total_steps, warmup_steps, "
                    "min_factor)")
        raise CheckFailed(f"lr_halfway = {lr_halfway!r}, but a LambdaLR driven for {total // 2} steps gives "
                          f"{want:.6g}: {hint}")
    _ok("check_schedule_numbers", f"{batches} steps per epoch (counted), {total} in all, {warm} of warm-up; "
                                  f"the learning rate halfway, {want:.6f}, equals a real LambdaLR's")


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
        ])
    _ok("check_vit_params", f"matches vitlearn.ViT counted on the meta device for {len(configs)} "
                            "configurations, up to ViT-B/16 at 224 px with 1000 classes (86.6M)")
