"""Step 7a: scaled dot-product attention and multi-head self-attention.

Every token asks a question (query), advertises what it holds (key) and offers content
(value). Attention weights are softmax(q k^T / sqrt(d)), so each output is a weighted
average of the values, weighted by how well that token's query matches every key.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

__all__ = ["scaled_dot_product_attention", "MultiHeadSelfAttention"]


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T / sqrt(d)) v in plain tensor math; returns (output, attention weights).

    q, k: [..., N, d], v: [..., N, d_v] -> output [..., N, d_v], weights [..., N, N].
    Dividing by sqrt(d) keeps the dot products at unit scale, so the softmax does not
    saturate into a one-hot (and stop passing gradients) as d grows.
    """
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(f"incompatible shapes q {tuple(q.shape)}, k {tuple(k.shape)}, "
                         f"v {tuple(v.shape)}: q and k need the same last dim, k and v the same length")
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # [..., N, N]
    weights = scores.softmax(dim=-1)
    return weights @ v, weights


class MultiHeadSelfAttention(nn.Module):
    """h heads, each attending in its own D/h-dimensional subspace, then mixed by ``proj``.

    One Linear makes q, k and v for all heads at once (``qkv``). ``forward`` runs the fused
    kernel ``F.scaled_dot_product_attention`` for speed; with ``need_weights=True`` it runs
    the explicit math above instead and also returns the weights [B, h, N, N]. Both paths
    compute the same function.
    """

    def __init__(self, *, embed_dim: int, num_heads: int, qkv_bias: bool = True,
                 attn_dropout: float = 0.0, proj_dropout: float = 0.0):
        super().__init__()
        if embed_dim % num_heads:
            divisors = [h for h in range(1, embed_dim + 1) if embed_dim % h == 0]
            raise ValueError(f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}; "
                             f"choose num_heads from {divisors} or change embed_dim")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.attn_dropout = attn_dropout
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim, bias=qkv_bias)
        self.proj = nn.Linear(embed_dim, embed_dim)
        self.proj_drop = nn.Dropout(proj_dropout)

    def forward(self, x: torch.Tensor, need_weights: bool = False):
        # [B, N, 3D] -> three tensors [B, h, N, D/h]
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d",
                            three=3, h=self.num_heads).unbind(0)
        if need_weights:
            out, weights = scaled_dot_product_attention(q, k, v)
            if self.training and self.attn_dropout:
                out = F.dropout(weights, self.attn_dropout) @ v
        else:
            out, weights = F.scaled_dot_product_attention(
                q, k, v, dropout_p=self.attn_dropout if self.training else 0.0), None
        out = self.proj_drop(self.proj(rearrange(out, "b h n d -> b n (h d)")))  # [B, N, D]
        return (out, weights) if need_weights else out
