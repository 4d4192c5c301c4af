"""Step 7a: scaled dot-product attention and multi-head self-attention.

Every token asks a question (query), advertises what it holds (key) and offers content
(value). Attention weights are softmax(q k^T / sqrt(d)), so each output is a weighted
average of the values, weighted by how well that token's query matches every key.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .contract import asks_for_weights, check_dropout, check_positive_int, takes_keyword

__all__ = ["scaled_dot_product_attention", "MultiHeadSelfAttention", "record_attention", "check_heads",
           "check_num_queries"]


def check_heads(embed_dim: int, num_heads: int) -> None:
    """The one check that the heads split the embedding evenly (each gets D/h dimensions)."""
    if embed_dim % num_heads:
        divisors = [h for h in range(1, embed_dim + 1) if embed_dim % h == 0]
        raise ValueError(f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}; "
                         f"choose num_heads from {divisors} or change embed_dim")


def check_num_queries(num_queries: int | None, num_tokens: int) -> int:
    """How many of the first tokens ask (``num_queries``; None: all ``num_tokens``), checked."""
    if num_queries is None:
        return num_tokens
    if isinstance(num_queries, bool) or not isinstance(num_queries, int) or \
            not 1 <= num_queries <= num_tokens:
        raise ValueError(f"num_queries must be a whole number from 1 to the {num_tokens} tokens "
                         f"(the first num_queries tokens are updated), got {num_queries!r}")
    return num_queries


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                                 dropout_p: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T / sqrt(d)) v in plain tensor math; returns (output, attention weights).

    q, k: [..., N, d], v: [..., N, d_v] -> output [..., N, d_v], weights [..., N, N].
    Dividing by sqrt(d) keeps the dot products at unit scale, so the softmax does not
    saturate into a one-hot (and stop passing gradients) as d grows. ``dropout_p`` drops
    weights before they average the values (as the fused kernel does); the weights returned
    are the ones before dropout.
    """
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(f"incompatible shapes q {tuple(q.shape)}, k {tuple(k.shape)}, "
                         f"v {tuple(v.shape)}: q and k need the same last dim, k and v the same length")
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # [..., N, N]
    weights = scores.softmax(dim=-1)
    dropped = F.dropout(weights, dropout_p) if dropout_p else weights
    return dropped @ v, weights


class MultiHeadSelfAttention(nn.Module):
    """h heads, each attending in its own D/h-dimensional subspace, then mixed by ``proj``.

    One Linear makes q, k and v for all heads at once (``qkv``). Two paths compute the same
    function: PyTorch's fused kernel ``F.scaled_dot_product_attention`` and the explicit math
    above, which ``need_weights=True`` always uses because only it has the weights
    [B, h, N, N] to return. ``fused=None`` (default) picks the faster one per call: the fused
    kernel on GPUs and for all but very short sequences; the explicit math on a CPU for very
    short ones, where the fused kernel's blocking costs more than it saves (measured by
    ``python benchmarks/attention_paths.py``). ``fused=True`` / ``False`` forces a path.
    """

    #: sequences up to this length run the explicit math on a CPU when ``fused=None``
    CPU_MATH_MAX_TOKENS = 32

    def __init__(self, *, embed_dim: int, num_heads: int, qkv_bias: bool = True,
                 attn_dropout: float = 0.0, proj_dropout: float = 0.0,
                 fused: bool | None = None):
        super().__init__()
        check_positive_int("MultiHeadSelfAttention", embed_dim=embed_dim, num_heads=num_heads)
        check_dropout("MultiHeadSelfAttention", attn_dropout=attn_dropout, proj_dropout=proj_dropout)
        check_heads(embed_dim, num_heads)
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.attn_dropout = attn_dropout
        self.fused = fused
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim, bias=qkv_bias)
        self.proj = nn.Linear(embed_dim, embed_dim)
        self.proj_drop = nn.Dropout(proj_dropout)

    def forward(self, x: torch.Tensor, need_weights: bool = False, *, num_queries: int | None = None):
        """x [B, N, D] -> [B, N, D] (and the weights [B, h, N, N] with ``need_weights``).

        ``num_queries=n``: only the first n tokens ask (queries), all N still answer (keys and
        values): the output is [B, n, D], the weights [B, h, n, N]. ``ViT.forward`` uses it in
        the last block, where only [CLS]'s output reaches the head.
        """
        n = check_num_queries(num_queries, x.shape[1])
        # [B, N, 3D] -> three tensors [B, h, N, D/h]; only the first n tokens ask (queries)
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d",
                            three=3, h=self.num_heads).unbind(0)
        q = q[:, :, :n]
        dropout = self.attn_dropout if self.training else 0.0
        if need_weights or not self.use_fused(k):
            out, weights = scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        else:
            out, weights = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout), None
        out = self.proj_drop(self.proj(rearrange(out, "b h n d -> b n (h d)")))  # [B, n, D]
        return (out, weights) if need_weights else out

    def use_fused(self, k: torch.Tensor) -> bool:
        """Whether ``forward`` (without weights) calls the fused kernel for keys ``k`` [..., N, d]
        (the sequence length N decides)."""
        if self.fused is not None:
            return self.fused
        return k.device.type != "cpu" or k.shape[-2] > self.CPU_MATH_MAX_TOKENS


@contextmanager
def record_attention(module: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Record the attention weights of every attention layer in ``module`` while it runs.

    ::

        with record_attention(model.encoder) as maps:
            out = model.encoder(tokens)      # runs as usual, returns only the tokens
        maps[i]                              # layer i's weights [B, heads, N, N]

    The attention layers are the submodules registered as ``attn`` (``block.attn``), or
    ``module`` itself when it has none and its ``forward`` takes ``need_weights``. Hooks ask
    each of them for its weights (``need_weights=True``), keep them in the list (in the order
    the layers run) and hand the caller what it asked for: only the output, so no other layer
    needs to know, or ``(out, weights)`` to a block that itself calls
    ``self.attn(x, need_weights=True)``, exactly as without the recorder. The hooks are
    removed on exit, also when the forward pass raises. Like the timm
    ``forward_intermediates`` and vit-pytorch ``Recorder`` approaches, this leaves the
    forward code of the blocks untouched.
    """
    layers = [m for name, m in module.named_modules() if name.rsplit(".", 1)[-1] == "attn"]
    if not layers and takes_keyword(module, "need_weights"):
        layers = [module]
    if not layers:
        raise ValueError(f"{type(module).__name__} has no attention layer to record: none of its "
                         f"submodules is registered as `attn` (self.attn = ...) and its forward "
                         f"takes no need_weights argument")
    maps: list[torch.Tensor] = []
    caller_asked: list[bool] = []  # per call in flight: did the caller itself ask for the weights?

    def ask_for_weights(layer, args, kwargs):
        caller_asked.append(asks_for_weights(args, kwargs))
        if len(args) > 1:
            args = (args[0], True, *args[2:])
        else:
            kwargs = {**kwargs, "need_weights": True}
        return args, kwargs

    def keep_weights(layer, args, output):
        asked = caller_asked.pop()
        if not (isinstance(output, tuple) and len(output) == 2 and isinstance(output[1], torch.Tensor)):
            raise TypeError(f"{type(layer).__name__}.forward(x, need_weights=True) must return "
                            f"(out, weights [B, heads, N, N]); got {type(output).__name__}")
        maps.append(output[1])
        return output if asked else output[0]

    handles = []
    try:
        for layer in layers:
            handles.append(layer.register_forward_pre_hook(ask_for_weights, with_kwargs=True))
            handles.append(layer.register_forward_hook(keep_weights))
        yield maps
    finally:
        for handle in handles:
            handle.remove()
