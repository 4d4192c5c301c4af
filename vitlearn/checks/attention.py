"""Step 7a (notebook 05): attention, causal attention, multi-head self-attention."""

# ruff: noqa: B023  (each mutant lambda is evaluated in the loop iteration that creates it)
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..attention import MultiHeadSelfAttention, scaled_dot_product_attention
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

_NAIVE = ("the softmax is computed as exp(s) / exp(s).sum(), which overflows to inf / inf = nan once a score "
          "passes about 88 (float32): subtract each row's max first, s - s.amax(dim=-1, keepdim=True), or "
          "use "
          "s.softmax(dim=-1)")


def _naive_softmax(s, dim=-1):
    e = s.exp()
    return e / e.sum(dim=dim, keepdim=True)


def _attn(q, k, v, *, scale="sqrt", dim=-1, transpose=False, mask=None, mask_value=float("-inf"),
          softmax=True, naive=False, scale_after=False):
    d = q.shape[-1]
    s = (k @ q.transpose(-2, -1)) if transpose else (q @ k.transpose(-2, -1))
    div = {"sqrt": math.sqrt(d), "none": 1.0, "d": float(d)}[scale]
    s = s if scale_after else s / div
    if mask is not None and mask_value is not None:
        s = s.masked_fill(mask, mask_value)
    w = (_naive_softmax(s, dim) if naive else s.softmax(dim=dim)) if softmax else s
    w = w / div if scale_after else w
    return w @ v, w


def _axes(t: torch.Tensor, *last: str) -> list[str]:
    """Names for the axes of an attention tensor: batch, heads, then ``last``."""
    lead = {0: [], 1: ["batch"], 2: ["batch", "heads"]}.get(t.ndim - len(last), [])
    return (lead + list(last)) if len(lead) + len(last) == t.ndim else []


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
    (dict(naive=True), _NAIVE),
    (dict(scale_after=True), "the weights are divided by sqrt(d) after the softmax, so rows sum to "
                             "1/sqrt(d); "
                             "scale the scores before it: softmax(q kᵀ / sqrt(d))"),
]


def _attn_inputs():
    return [(_randn(2, 5, 8, seed=70, scale=2), "float32"),
            (_randn(2, 4, 17, 16, seed=71, scale=2), "float32"),
            (_randn(3, 2, 7, 32, seed=72, scale=2), "float32"),
            (_randn(2, 3, 6, 4, seed=73, scale=2, dtype=torch.float64), "float64"),
            (_randn(2, 2, 6, 16, seed=74, scale=40), "float32, large scores (up to a few hundred)")]


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
    for i, (q0, label) in enumerate(cases):
        q, k, v = _qkv(q0, i)
        on = f"q, k, v {_shape(q)}" + (", large scores" if "large" in label else "")
        out, w = _unpack(_call("attention", fn, q, k, v), "attention", on, q.shape)
        fk = dict(factors={"sqrt(d)": math.sqrt(q.shape[-1]), "d": float(q.shape[-1])})
        ref_out, ref_w = scaled_dot_product_attention(q, k, v)
        n = q.shape[-2]
        muts = [(functools.partial(_attn, q, k, v, **kw), msg) for kw, msg in _ATTN_MUTANTS]
        _expect(w, ref_w, what="the attention weights", on=on,
                mutants=[(lambda m=m: m()[1], msg) for m, msg in muts], axes=_axes(w, "queries", "keys"),
                shape_hint=f"weights are [..., N, N] = {list(ref_w.shape)}: one row per query, one column "
                           "per key", **fk)
        _expect(out, ref_out, what="the attention output", on=on,
                mutants=[(lambda m=m: m()[0], msg) for m, msg in muts] +
                [(lambda: v, "the values are returned as they are: the output is weights @ v")],
                axes=_axes(out, "queries (tokens)", "features"), **fk,
                shape_hint=f"the output is [..., N, d_v] = {list(ref_out.shape)}: weights [.., {n}, {n}] @ v")
        _expect(out, F.scaled_dot_product_attention(q, k, v), what="the attention output", on=on,
                ref="F.scaled_dot_product_attention")
    _ok("check_attention", "outputs and weights equal vitlearn.scaled_dot_product_attention and "
                           f"F.scaled_dot_product_attention on {len(cases)} shapes, float32 and float64")


@_check
def check_causal_attention(fn) -> None:
    """fn(q, k, v) -> (out, weights), query i attending only to keys j <= i."""
    cases = _attn_inputs()
    for i, (q0, label) in enumerate(cases):
        q, k, v = _qkv(q0, i)
        n = q.shape[-2]
        on = f"q, k, v {_shape(q)}" + (", large scores" if "large" in label else "")
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
                 "scores are too large by sqrt(d): divide q kᵀ by sqrt(head_dim)"),
                (functools.partial(_attn, q, k, v, mask=future, naive=True), _NAIVE),
                (functools.partial(_attn, q, k, v, mask=future.T, transpose=True),
                 "q and k are swapped (k qᵀ), so row i holds key i's match with every query: scores = q @ "
                 "k.transpose(-2, -1)")]
        _expect(w, ref_w, what="the causal weights", on=on,
                mutants=[(lambda m=m: m()[1], s) for m, s in muts], axes=_axes(w, "queries", "keys"),
                shape_hint=f"weights are [..., N, N] = {list(ref_w.shape)}")
        _expect(out, ref_out, what="the causal output", on=on,
                axes=_axes(out, "queries (tokens)", "features"),
                mutants=[(lambda m=m: m()[0], s) for m, s in muts])
        _expect(out, F.scaled_dot_product_attention(q, k, v, is_causal=True), what="the causal output",
                on=on, ref="F.scaled_dot_product_attention(is_causal=True)")
    _ok("check_causal_attention", "equal to F.scaled_dot_product_attention(is_causal=True), weights zero "
                                  f"above the diagonal, on {len(cases)} shapes, float32 and float64")


def _mhsa(ref: MultiHeadSelfAttention, x, *, split="three h d", merge="h d", scale="head", dim=-1,
          proj=True, heads=None, order=(0, 1, 2), raw_split=False, raw_merge=False, qk_swapped=False,
          naive=False, scale_after=False):
    """Our multi-head attention with one of the usual mistakes switched on."""
    h = heads or ref.num_heads
    b, n, d = x.shape
    if raw_split:  # [B, N, D] viewed as [B, h, N, d] without a transpose
        qkv = [t.reshape(b, h, n, d // h) for t in ref.qkv(x).chunk(3, dim=-1)]
    else:
        qkv = rearrange(ref.qkv(x), f"b n ({split}) -> three b h n d", three=3, h=h).unbind(0)
    q, k, v = (qkv[i] for i in order)
    s = (k @ q.transpose(-2, -1)) if qk_swapped else (q @ k.transpose(-2, -1))
    div = {"head": math.sqrt(q.shape[-1]), "none": 1.0, "d": float(q.shape[-1]), "embed": math.sqrt(d)}[scale]
    s = s if scale_after else s / div
    w = _naive_softmax(s, dim) if naive else s.softmax(dim=dim)
    w = w / div if scale_after else w
    o = (w @ v).reshape(b, n, d) if raw_merge else rearrange(w @ v, f"b h n d -> b n ({merge})")
    return (ref.proj(o) if proj else o), w


_RAW_SPLIT = ("the heads were made with a reshape alone: [B, N, D] viewed as [B, h, N, d] mixes tokens and "
              "heads; "
              "reshape to [B, N, h, d], then .transpose(1, 2) to [B, h, N, d]")
_RAW_MERGE = ("the heads were merged with a reshape alone: [B, h, N, d] read as [B, N, D] without a "
              "transpose "
              "mixes heads and tokens: out.transpose(1, 2).reshape(B, N, D)")

_MHSA_MUTANTS = [
    (dict(dim=-2), "each row of the weights must sum to 1 over the keys: softmax over the last dimension"),
    (dict(dim=1), "the softmax runs over dim=1, the heads; it must run over the keys: dim=-1"),
    (dict(scale="none"), "scores are too large by sqrt(d): divide q kᵀ by sqrt(head_dim)"),
    (dict(scale="d"), "scores are too small by sqrt(d): divide q kᵀ by sqrt(head_dim), not by head_dim"),
    (dict(scale="embed"), "scores are divided by sqrt(embed_dim); each head works in head_dim = D / h "
                          "dimensions: divide by sqrt(head_dim)"),
    (dict(scale_after=True), "the weights are divided by sqrt(head_dim) after the softmax; scale the scores "
                             "before it: softmax(q kᵀ / sqrt(head_dim))"),
    (dict(naive=True), _NAIVE),
    (dict(merge="d h"), "heads are merged in (d h) order; concatenate them as (h d): rearrange(out, 'b h n "
                        "d -> b n (h d)'), i.e. transpose to [B, N, h, d] before reshaping"),
    (dict(split="three d h"), "heads are split in (d h) order; qkv's output is laid out (three h d): "
                              "rearrange(qkv, 'b n (three h d) -> three b h n d', three=3, h=h)"),
    (dict(split="h three d"), "qkv's output is split as (h three d); ours (and nn.MultiheadAttention's "
                              "in_proj) is laid out (three h d): first all queries, then keys, then values"),
    (dict(split="three d h", merge="d h"), "heads are split and merged in (d h) order; qkv's output is laid "
                                           "out (three h d) and the heads are concatenated as (h d)"),
    (dict(raw_split=True), _RAW_SPLIT),
    (dict(raw_merge=True), _RAW_MERGE),
    (dict(raw_split=True, raw_merge=True), "the heads were made and merged with reshapes alone, no "
                                           "transpose: "
                                           "[B, N, D] -> [B, N, h, d] -> transpose(1, 2) to split, and "
                                           "transpose(1, 2) back before reshaping to [B, N, D] to merge"),
    (dict(qk_swapped=True), "q and k are swapped (k qᵀ): row i of the weights holds key i's match with every "
                            "query; scores = q @ k.transpose(-2, -1)"),
    (dict(order=(0, 2, 1)), "keys and values are swapped: qkv's output is (q, k, v) in that order; you took "
                            "the second third as the values and the last as the keys"),
    (dict(order=(2, 1, 0)), "queries and values are swapped: qkv's output is (q, k, v) in that order"),
    (dict(order=(1, 2, 0)), "q, k and v are taken in the wrong order from qkv's output: it is (q, k, v)"),
    (dict(order=(2, 0, 1)), "q, k and v are taken in the wrong order from qkv's output: it is (q, k, v)"),
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
    configs = [(64, 4, 2, 17, 2), (32, 2, 3, 5, 2), (24, 3, 1, 9, 2), (16, 1, 2, 4, 2), (32, 2, 2, 6, 60)]
    for i, (d, h, b, n, scale) in enumerate(configs):
        what = f"{getattr(cls, '__name__', 'cls')}(embed_dim={d}, num_heads={h})"
        mine = _build(cls, what, embed_dim=d, num_heads=h)
        ours = MultiHeadSelfAttention(embed_dim=d, num_heads=h)
        ours.fused = False
        names = _load(mine, ours, what)
        x = _randn(b, n, d, seed=80 + i, scale=scale)
        on = f"{what}, x {_shape(x)}" + (f" (large values, std {scale}: large scores)" if scale > 2 else "")
        fk = dict(factors={"sqrt(head_dim)": math.sqrt(d // h), "head_dim": d / h,
                           "sqrt(embed_dim)": math.sqrt(d)})
        muts = [(functools.partial(_mhsa, ours, x, **kw), msg) for kw, msg in _MHSA_MUTANTS]
        got = _attn_module_call(mine, x, what, on, False)
        if isinstance(got, (tuple, list)):
            raise CheckFailed(f"{what}(x) returned a {type(got).__name__}; without need_weights=True it must "
                              "return only the output tensor [B, N, D] (the encoder block adds it to x)")
        ref_out, ref_w = ours(x, need_weights=True)
        _expect(got, ref_out.detach(), what="the attention output", on=on,
                mutants=[(lambda m=m: m()[0].detach(), s) for m, s in muts],
                axes=["batch", "tokens", "features"], **fk,
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
                axes=["batch", "heads", "queries", "keys"], **fk,
                shape_hint=f"weights are per head: [B, h, N, N] = {list(ref_w.shape)}")
        _expect(w, t_w.detach(), what="the attention weights", on=on, ref="nn.MultiheadAttention")
        if scale == 2:  # a saturated softmax has gradients near 0, equal only up to rounding
            _check_grads(mine, ours, names, lambda: mine(x), lambda: ours(x), what)
    _ok("check_multi_head_attention", "outputs and per-head weights equal vitlearn.MultiHeadSelfAttention "
                                      f"and nn.MultiheadAttention with copied weights on {len(configs)} "
                                      "shapes (1-4 heads), gradients reach every parameter")
