"""Step 7b: the Transformer encoder: LayerNorm, MLP, residuals, stacked ``depth`` times.

Each block is pre-norm (ViT paper, eq. 2-3):  x = x + MSA(LN(x));  x = x + MLP(LN(x)).
The residual path lets every block make a small correction to the tokens rather than
rewrite them, which is what makes deep stacks trainable. :class:`PostNormBlock` and
:class:`NoResidualBlock` are the variants notebook 06 compares it with (``block_fn=``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .attention import MultiHeadSelfAttention, check_heads, check_num_queries
from .contract import build_part, call_with_queries, check_dropout, check_positive_int

__all__ = ["MLP", "EncoderBlock", "PostNormBlock", "NoResidualBlock", "TransformerEncoder"]


class MLP(nn.Module):
    """Linear -> GELU -> Linear, applied to every token independently ([B, N, D] -> [B, N, D])."""

    def __init__(self, *, embed_dim: int, hidden_dim: int, dropout: float = 0.0):
        super().__init__()
        check_positive_int("MLP", embed_dim=embed_dim, hidden_dim=hidden_dim)
        check_dropout("MLP", dropout=dropout)
        self.fc1 = nn.Linear(embed_dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, embed_dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def check_mlp_ratio(owner: str, embed_dim: int, mlp_ratio: float) -> None:
    """The MLP's hidden width int(embed_dim * mlp_ratio) must be at least 1."""
    if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, (int, float)) or \
            int(embed_dim * mlp_ratio) < 1:
        raise ValueError(f"{owner}: mlp_ratio must be a number > 0 that gives the MLP at least one "
                         f"hidden unit (int(embed_dim * mlp_ratio) >= 1), got mlp_ratio={mlp_ratio!r}")


def _check_block_args(owner: str, embed_dim: int, num_heads: int, mlp_ratio: float,
                      dropout: float, attn_dropout: float) -> None:
    check_positive_int(owner, embed_dim=embed_dim, num_heads=num_heads)
    check_mlp_ratio(owner, embed_dim, mlp_ratio)
    check_dropout(owner, dropout=dropout, attn_dropout=attn_dropout)
    check_heads(embed_dim, num_heads)


class EncoderBlock(nn.Module):
    """The paper's block (ViT eq. 2-3): pre-LayerNorm, with a residual around each sub-layer.
    ``attn_layer`` builds the attention module (default: ours), so a learner's class can
    replace it. It is called as ``attn_layer(embed_dim=, num_heads=)``, plus
    ``attn_dropout=`` / ``proj_dropout=`` when those are not 0, and must return
    ``(out, weights)`` when called with ``need_weights=True`` (:func:`record_attention`).

    The blocks it is compared with in notebook 06 are their own classes with the same
    parameters (:class:`PostNormBlock`, :class:`NoResidualBlock`), plugged in with
    ``ViT(block_fn=...)`` as timm plugs in its ``ResPostBlock``.
    """

    def __init__(self, *, embed_dim: int, num_heads: int, mlp_ratio: float = 2.0,
                 dropout: float = 0.0, attn_dropout: float = 0.0,
                 attn_layer: Callable[..., nn.Module] | None = None,
                 norm_eps: float = 1e-6):
        super().__init__()
        _check_block_args(type(self).__name__, embed_dim, num_heads, mlp_ratio, dropout, attn_dropout)
        options = {k: v for k, v in (("attn_dropout", attn_dropout), ("proj_dropout", dropout)) if v}
        self.norm1 = nn.LayerNorm(embed_dim, eps=norm_eps)
        self.attn = build_part(attn_layer or MultiHeadSelfAttention, "attn_layer",
                               dict(embed_dim=embed_dim, num_heads=num_heads), options)
        self.norm2 = nn.LayerNorm(embed_dim, eps=norm_eps)
        self.mlp = MLP(embed_dim=embed_dim, hidden_dim=int(embed_dim * mlp_ratio), dropout=dropout)

    def forward(self, x: torch.Tensor, *, num_queries: int | None = None) -> torch.Tensor:
        """x [B, N, D] -> [B, N, D]. ``num_queries=n``: only the first n tokens are updated
        (they attend to all N): -> [B, n, D]. ``ViT.forward`` asks the last block for [CLS]
        alone, the only token the head reads."""
        check_num_queries(num_queries, x.shape[1])
        if num_queries is None:
            x = x + self.attn(self.norm1(x))  # [B, N, D]
        else:
            x = x[:, :num_queries] + self._attend(self.norm1(x), num_queries)  # [B, n, D]
        x = x + self.mlp(self.norm2(x))
        return x

    def _attend(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """Attention outputs of the first n tokens: ours computes only those; a learner's
        attention without ``num_queries`` computes all N, of which the first n are kept."""
        # ours takes num_queries (known without a signature lookup, which torch.compile would trace)
        ours = type(self.attn).forward is MultiHeadSelfAttention.forward
        return call_with_queries(self.attn, x, n, takes_it=True if ours else None)


class PostNormBlock(EncoderBlock):
    """The original Transformer's block (Vaswani et al. 2017; timm's ``ResPostBlock``;
    ``nn.TransformerEncoderLayer(norm_first=False)``): LayerNorm *after* each residual add,
    ``x = LN(x + MSA(x))``, ``x = LN(x + MLP(x))``. The paper's parameters, built in the
    same order, so a model of these starts from the same weights as one of
    :class:`EncoderBlock`.

    Every LayerNorm sits on the residual path itself, so the identity path from the loss
    back to the input is normalised at every block. Xiong et al. 2020 ("On Layer
    Normalization in the Transformer Architecture") show that at initialisation this makes
    the gradients of the layers near the output large, which is why post-norm needs a
    learning-rate warm-up; the paper's pre-norm block keeps the identity path clean and
    trains without one.
    """

    def forward(self, x: torch.Tensor, *, num_queries: int | None = None) -> torch.Tensor:
        """x [B, N, D] -> [B, N, D] (-> [B, n, D] with ``num_queries=n``)."""
        check_num_queries(num_queries, x.shape[1])
        n = x.shape[1] if num_queries is None else num_queries
        x = self.norm1(x[:, :n] + self._attend(x, n))  # LN after the residual add
        return self.norm2(x + self.mlp(x))


class NoResidualBlock(EncoderBlock):
    """The paper's pre-norm sub-layers without the ``x +``: ``x = MSA(LN(x))``,
    ``x = MLP(LN(x))``; each sub-layer's output replaces its input. The block loses the
    identity path: every block must re-transmit everything worth keeping, and the gradient
    reaches the first blocks only through all the later ones, which is what makes deep
    stacks without skip connections hard to train. Same parameters as :class:`EncoderBlock`.
    """

    def forward(self, x: torch.Tensor, *, num_queries: int | None = None) -> torch.Tensor:
        """x [B, N, D] -> [B, N, D] (-> [B, n, D] with ``num_queries=n``)."""
        check_num_queries(num_queries, x.shape[1])
        n = x.shape[1] if num_queries is None else num_queries
        x = self._attend(self.norm1(x), n)  # no "x +"
        return self.mlp(self.norm2(x))


class TransformerEncoder(nn.Module):
    """``depth`` blocks in a row. ``block_fn`` builds each block (default: :class:`EncoderBlock`),
    called as ``block_fn(embed_dim=, num_heads=, mlp_ratio=)``, plus ``dropout=``,
    ``attn_dropout=`` and ``attn_layer=`` when they are set. Attention maps:
    :func:`vitlearn.attention.record_attention`."""

    def __init__(self, *, embed_dim: int, depth: int, num_heads: int, mlp_ratio: float = 2.0,
                 dropout: float = 0.0, attn_dropout: float = 0.0,
                 attn_layer: Callable[..., nn.Module] | None = None,
                 block_fn: Callable[..., nn.Module] | None = None):
        super().__init__()
        check_positive_int("TransformerEncoder", depth=depth)
        _check_block_args("TransformerEncoder", embed_dim, num_heads, mlp_ratio, dropout, attn_dropout)
        options = {k: v for k, v in (("dropout", dropout), ("attn_dropout", attn_dropout),
                                     ("attn_layer", attn_layer)) if v}
        shape = dict(embed_dim=embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio)
        self.blocks = nn.ModuleList(build_part(block_fn or EncoderBlock, "block_fn", shape, options)
                                    for _ in range(depth))

    def forward(self, x: torch.Tensor, *, num_queries: int | None = None) -> torch.Tensor:
        """x [B, N, D] -> [B, N, D]; with ``num_queries=n`` the last block updates only the
        first n tokens -> [B, n, D] (see :meth:`EncoderBlock.forward`)."""
        check_num_queries(num_queries, x.shape[1])
        for block in self.blocks[:-1]:
            x = block(x)
        last = self.blocks[-1]
        if num_queries is None:
            return last(x)
        ours = type(last).forward is EncoderBlock.forward  # a learner's block may compute all N
        return call_with_queries(last, x, num_queries, takes_it=True if ours else None)
