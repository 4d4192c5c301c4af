"""Step 7b: the Transformer encoder: LayerNorm, MLP, residuals, stacked ``depth`` times.

Each block is pre-norm (ViT paper, eq. 2-3):  x = x + MSA(LN(x));  x = x + MLP(LN(x)).
The residual path lets every block make a small correction to the tokens rather than
rewrite them, which is what makes deep stacks trainable.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .attention import MultiHeadSelfAttention

__all__ = ["MLP", "EncoderBlock", "TransformerEncoder"]


class MLP(nn.Module):
    """Linear -> GELU -> Linear, applied to every token independently ([B, N, D] -> [B, N, D])."""

    def __init__(self, *, embed_dim: int, hidden_dim: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(embed_dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, embed_dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class EncoderBlock(nn.Module):
    """Pre-LayerNorm block. ``attn_layer`` builds the attention module, so a learner's own
    class (taking ``embed_dim=, num_heads=`` and returning ``(out, weights)`` when called
    with ``need_weights=True``) can replace ours."""

    def __init__(self, *, embed_dim: int, num_heads: int, mlp_ratio: float = 2.0,
                 dropout: float = 0.0, attn_dropout: float = 0.0,
                 attn_layer: Callable[..., nn.Module] = MultiHeadSelfAttention,
                 norm_eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(embed_dim, eps=norm_eps)
        kwargs = {"attn_dropout": attn_dropout, "proj_dropout": dropout} if (
            attn_layer is MultiHeadSelfAttention) else {}
        self.attn = attn_layer(embed_dim=embed_dim, num_heads=num_heads, **kwargs)
        self.norm2 = nn.LayerNorm(embed_dim, eps=norm_eps)
        self.mlp = MLP(embed_dim=embed_dim, hidden_dim=int(embed_dim * mlp_ratio), dropout=dropout)

    def forward(self, x: torch.Tensor, need_weights: bool = False):
        weights = None
        if need_weights:
            a, weights = self.attn(self.norm1(x), need_weights=True)
        else:
            a = self.attn(self.norm1(x))
        x = x + a                       # [B, N, D]
        x = x + self.mlp(self.norm2(x))
        return (x, weights) if need_weights else x


class TransformerEncoder(nn.Module):
    """``depth`` blocks in a row. ``block_fn`` builds each block (same keyword arguments as
    :class:`EncoderBlock`)."""

    def __init__(self, *, embed_dim: int, depth: int, num_heads: int, mlp_ratio: float = 2.0,
                 dropout: float = 0.0, attn_dropout: float = 0.0,
                 attn_layer: Callable[..., nn.Module] = MultiHeadSelfAttention,
                 block_fn: Callable[..., nn.Module] = EncoderBlock):
        super().__init__()
        kwargs = dict(embed_dim=embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio,
                      dropout=dropout, attn_dropout=attn_dropout)
        if attn_layer is not MultiHeadSelfAttention:
            kwargs["attn_layer"] = attn_layer
        self.blocks = nn.ModuleList(block_fn(**kwargs) for _ in range(depth))

    def forward(self, x: torch.Tensor, need_weights: bool = False):
        if not need_weights:
            for block in self.blocks:
                x = block(x)
            return x
        maps = []
        for block in self.blocks:
            x, w = block(x, need_weights=True)
            maps.append(w)
        return x, torch.stack(maps, dim=1)  # [B, depth, h, N, N]
