"""Steps 5-6 (notebooks 03-04): the [CLS] token, pooling, position embeddings."""

# ruff: noqa: B023  (each mutant lambda is evaluated in the loop iteration that creates it)
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from ..tokens import ClassToken, PositionEmbedding, resample_position_embedding, sincos_2d_position_embedding
from ._harness import (
    CheckFailed,
    _build,
    _call,
    _check,
    _check_grads,
    _expect,
    _load,
    _ok,
    _randn,
    _shape,
)


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
                axes=["batch", "tokens", "features"],
                dtype_hint="the table is added to the model's float32 tokens, and a float64 table would "
                           "promote them all to float64: build it in float32 (torch.arange(..., "
                           "dtype=torch.float32)) or return table.float()",
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
                    "back in front unchanged"),
                   (lambda: interp(img=pos[:, prefix:].reshape(1, -1, old, old)),
                    "the [1, g*g, D] grid was reshaped to [1, D, g, g] without a permute, so rows of "
                    "positions "
                    "and features are mixed before interpolating: rearrange(grid, '1 (h w) d -> 1 d h w') "
                    "(a permute, then the reshape)"),
                   (lambda: torch.cat([pos[:, :prefix], interp()[:, prefix:].reshape(1, new, new, -1)
                                       .permute(0, 3, 1, 2).reshape(1, new * new, -1)], dim=1),
                    "the interpolated [1, D, g', g'] was flattened back without a permute (reshape to [1, "
                    "g'*g', "
                    "D] mixes features and positions): rearrange(img, '1 d h w -> 1 (h w) d')"),
                   (lambda: torch.cat([interp()[:, prefix:], pos[:, :prefix]], dim=1),
                    "the prefix ([CLS]) rows are put back after the grid; they go in front: "
                    "torch.cat([prefix, "
                    "grid], dim=1)"),
                   (lambda: torch.cat([pos[:, :prefix], rearrange(F.interpolate(
                       grid, size=(new, new), mode="bicubic", align_corners=False, antialias=True),
                       "1 d h w -> 1 (h w) d")], dim=1),
                    "antialias=True blurs the grid when it shrinks; ours (and timm's) interpolates without "
                    "it "
                    "(antialias=False, the default)")]
        _expect(got, want, what="the resampled positions", on=on, mutants=mutants,
                shape_hint=f"[1, prefix + new*new, D] = [1, {prefix + new * new}, 64]: keep the prefix rows")
        if prefix and not torch.equal(got[:, :prefix], pos[:, :prefix]):
            raise CheckFailed("the prefix ([CLS]) rows changed: keep them exactly as they are")
    _ok("check_resample", f"equal to vitlearn.resample_position_embedding on {len(configs)} grids (growing, "
                          "shrinking, with and without a [CLS] row)")
