"""Step 7b (notebook 06): LayerNorm, the MLP, the encoder block and its parameter count."""

# ruff: noqa: B023  (each mutant lambda is evaluated in the loop iteration that creates it)
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from ..encoder import MLP, EncoderBlock
from ._harness import (
    CheckFailed,
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
    _check_dropout(cls, "MLP", dict(embed_dim=16, hidden_dim=32),
                   lambda p: MLP(embed_dim=16, hidden_dim=32, dropout=p), _randn(4, 9, 16, seed=119),
                   "after the GELU and after fc2 (ours: nn.Dropout(dropout) at both places)", by_order=True)
    _ok("check_mlp", "equal to vitlearn.MLP (Linear -> GELU -> Linear) with copied weights on "
                     f"{len(configs)} sizes, gradients reach every parameter; dropout acts in train mode "
                     "only")


def _check_dropout(cls, role: str, sizes: dict, build_ours, x, where: str, *, by_order: bool = False) -> None:
    """Built with dropout=0.5, the part must drop in train mode (the same output as ours with the
    same seed is not required, only that it differs from eval mode) and not in eval mode."""
    args = ", ".join(f"{k}={v}" for k, v in sizes.items())
    what = f"{getattr(cls, '__name__', 'cls')}({args}, dropout=0.5)"
    mine, ours = _build(cls, what, **sizes, dropout=0.5), build_ours(0.5)
    _load(mine, ours, what, by_order=by_order)
    on = f"x {_shape(x)}"
    ours.eval()
    mine.eval()
    got_eval = _call(f"{what}.forward in eval mode", mine, x)
    if isinstance(got_eval, torch.Tensor) and not torch.allclose(got_eval, ours(x), rtol=1e-4, atol=1e-5):
        raise CheckFailed(f"{what}: in eval mode the output differs from ours ({on}): dropout must switch "
                          "off in model.eval(); use nn.Dropout (it does), or F.dropout(x, p, "
                          "training=self.training)")
    mine.train()
    got_train = _call(f"{what}.forward in train mode", mine, x)
    if isinstance(got_train, torch.Tensor) and torch.equal(got_train, got_eval):
        raise CheckFailed(f"{what}: dropout is never applied ({on}): built with dropout=0.5, its output in "
                          "train "
                          f"mode equals its output in eval mode. Use the dropout argument: "
                          "nn.Dropout(dropout) "
                          f"{where}")


def _ln_tokens(x, ln):
    """A LayerNorm with ln's gain and bias but statistics over the tokens (dim=1)."""
    mu, var = x.mean(1, keepdim=True), x.var(1, keepdim=True, unbiased=False)
    return (x - mu) / (var + ln.eps).sqrt() * ln.weight + ln.bias


# The usual wrong blocks, each computed from our block b's own parts on the input x, with what
# to say when the learner's output matches it. (y, z, w are intermediate streams.)
_BLOCK_MUTANTS = [
    (lambda b, x: b.norm2((y := b.norm1(x + b.attn(x))) + b.mlp(y)),
     "this block normalises after the residual (post-norm, the original Transformer); ViT normalises inside "
     "the branch, before attention and before the MLP: x = x + attn(norm1(x)); x = x + mlp(norm2(x))"),
    (lambda b, x: (y := b.attn(b.norm1(x))) + b.mlp(b.norm2(y)),
     "the attention residual is missing: x = x + attn(norm1(x)), not x = attn(norm1(x))"),
    (lambda b, x: b.mlp(b.norm2(x + b.attn(b.norm1(x)))),
     "the MLP residual is missing: x = x + mlp(norm2(x)), not x = mlp(norm2(x))"),
    (lambda b, x: b.mlp(b.norm2(b.attn(b.norm1(x)))),
     "both residual connections are missing: x = x + attn(norm1(x)); x = x + mlp(norm2(x))"),
    (lambda b, x: x + b.attn(b.norm1(x)) + b.mlp(b.norm2(x)),
     "attention and MLP both read the block's input (a parallel block); in ViT the MLP reads the output of "
     "the attention residual: x = x + attn(norm1(x)); then x = x + mlp(norm2(x))"),
    (lambda b, x: (w := b.norm2((z := b.norm1(x)) + b.attn(z))) + b.mlp(w),
     "the LayerNorm output replaces x, so the residual stream is normalised; keep the skip path untouched: "
     "x = x + attn(norm1(x))"),
    (lambda b, x: (y := x + b.attn(b.norm1(x))) + b.mlp(b.norm1(y)),
     "norm1 is used before the MLP too; the MLP has its own LayerNorm: mlp(norm2(x))"),
    (lambda b, x: (y := x + b.attn(b.norm1(x))) + b.mlp.fc2(b.mlp.fc1(b.norm2(y))),
     "the MLP has no activation between fc1 and fc2: put nn.GELU() between them"),
    (lambda b, x: (y := x + b.attn(_ln_tokens(x, b.norm1))) + b.mlp(_ln_tokens(y, b.norm2)),
     "the LayerNorms normalise over dim=1 (the tokens); LayerNorm normalises each token over its own "
     "features: statistics over the last dimension, dim=-1 (nn.LayerNorm(embed_dim))"),
    (lambda b, x: (y := x + b.attn(x)) + b.mlp(y),
     "the LayerNorms are skipped: x = x + attn(norm1(x)); x = x + mlp(norm2(x))"),
]


@contextlib.contextmanager
def _recording(attn: nn.Module):
    """Record the weights of every call of ``attn`` while giving each caller what it asked for: a
    block that calls self.attn(x, need_weights=True) itself still gets (out, weights)."""
    maps, forward = [], attn.forward

    def recording_forward(*args, need_weights=False, **kwargs):
        out, weights = forward(*args, need_weights=True, **kwargs)
        maps.append(weights.detach())
        return (out, weights) if need_weights else out

    attn.forward = recording_forward
    try:
        yield maps
    finally:
        del attn.forward


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
                mutants=[(lambda m=m: m(ours, x).detach(), msg) for m, msg in _BLOCK_MUTANTS],
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
            with _recording(ours.attn) as ref_maps:
                ours(x)

            def run_recorded():
                with _recording(mine.attn) as maps:
                    mine(x)
                return maps

            maps = _call(f"{what}(x) while its attention weights are recorded (the check calls "
                         "self.attn's forward with need_weights=True)", run_recorded)
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
            (want + 2 * d * (4 * d - hdim) + 4 * d - hdim,
             "the MLP's hidden width is 4D whatever mlp_ratio is: H = int(D * mlp_ratio)"),
        ], terms={"the weight of qkv (D x 3D)": 3 * d * d, "the bias of qkv (3D)": 3 * d,
                  "the weight of proj (D x D)": d * d, "the bias of proj (D)": d,
                  "the weight of fc1 (D x H)": d * hdim, "the bias of fc1 (H)": hdim,
                  "the weight of fc2 (H x D)": hdim * d, "the bias of fc2 (D)": d,
                  "the LayerNorm pair (a gain and a bias each, 4D)": 4 * d, "one LayerNorm (2D)": 2 * d})
    _ok("check_block_params", f"matches the parameter count of vitlearn.EncoderBlock for {len(configs)} "
                              "sizes, up to ViT-Base (D=768)")
