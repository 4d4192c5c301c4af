"""Steps 5-6: prepend a learnable [CLS] token and add position embeddings.

Self-attention treats its input as a *set*: shuffle the patches and the outputs shuffle the
same way. Position embeddings put the order back. The [CLS] token is an extra, learned
"query" vector whose final state summarises the whole image for the classifier.
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from .contract import check_positive_int

__all__ = ["ClassToken", "PositionEmbedding", "SinCosPositionEmbedding",
           "sincos_2d_position_embedding", "resample_position_embedding"]


class ClassToken(nn.Module):
    """[B, N, D] -> [B, 1+N, D]: one learned vector, shared by every image, put in front."""

    def __init__(self, *, embed_dim: int):
        super().__init__()
        check_positive_int("ClassToken", embed_dim=embed_dim)
        self.token = nn.Parameter(torch.randn(1, 1, embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cls = repeat(self.token, "1 1 d -> b 1 d", b=x.shape[0]).to(x.dtype)
        return torch.cat([cls, x], dim=1)


class _AddedPositions(nn.Module):
    """What both kinds share: a table ``pos`` [1, prefix + grid*grid, D] added to the tokens."""

    num_prefix_tokens: int
    pos: torch.Tensor

    @property
    def grid_size(self) -> int:
        return math.isqrt(self.pos.shape[1] - self.num_prefix_tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.pos.shape[1]:
            raise ValueError(f"got {x.shape[1]} tokens but the position embedding has "
                             f"{self.pos.shape[1]}; resample it with set_grid_size() "
                             "(model.set_img_size() for a whole ViT)")
        return x + self.pos.to(x.dtype)


class PositionEmbedding(_AddedPositions):
    """Learned position embeddings: one D-vector per token position, added to the tokens.

    ``num_prefix_tokens`` is 1 with a class token (it gets its own position) and 0 without.
    ``init_std``: the table starts as draws from N(0, init_std²). The default 1.0 is
    vit-pytorch's; timm and big_vision start at 0.02
    (``pos_embed_layer=functools.partial(PositionEmbedding, init_std=0.02)``; notebook 04
    compares the two).
    """

    def __init__(self, *, num_patches: int, embed_dim: int, num_prefix_tokens: int = 1,
                 init_std: float = 1.0):
        super().__init__()
        check_positive_int("PositionEmbedding", num_patches=num_patches, embed_dim=embed_dim)
        check_positive_int("PositionEmbedding", minimum=0, num_prefix_tokens=num_prefix_tokens)
        if (isinstance(init_std, bool) or not isinstance(init_std, numbers.Real)
                or not math.isfinite(init_std) or init_std < 0):
            raise ValueError(f"PositionEmbedding: init_std is the standard deviation of the starting "
                             f"table and must be a finite number >= 0 (e.g. 1.0 or 0.02), "
                             f"got init_std={init_std!r}")
        self.num_prefix_tokens = num_prefix_tokens
        # N(0, 1) by default, as vit-pytorch: at the scale of the patch embeddings, so positions
        # are visible from the first step instead of drowned out by content. (x * 1.0 == x
        # exactly, so the default draws the same table as before init_std existed.)
        self.pos = nn.Parameter(torch.randn(1, num_prefix_tokens + num_patches, embed_dim)
                                * float(init_std))

    @torch.no_grad()
    def set_grid_size(self, grid_size: int) -> None:
        """Resample to a new grid (e.g. 4x4 -> 8x8 patches) so the model runs at a new size."""
        self.pos = nn.Parameter(resample_position_embedding(
            self.pos, grid_size, num_prefix_tokens=self.num_prefix_tokens))


def sincos_2d_position_embedding(grid_size: int, embed_dim: int, *,
                                 num_prefix_tokens: int = 0,
                                 temperature: float = 10000.0) -> torch.Tensor:
    """Fixed 2-D sine-cosine embedding [1, prefix + grid*grid, D] (MAE / "Simple ViT" style).

    A quarter of the channels encode the row with sines, a quarter with cosines, and the same
    for the column, at geometrically spaced frequencies. Prefix tokens get zeros.
    """
    if embed_dim % 4:
        raise ValueError(f"the 2-D sin-cos embedding needs embed_dim divisible by 4, got {embed_dim}")
    ys, xs = torch.meshgrid(torch.arange(grid_size, dtype=torch.float64),
                            torch.arange(grid_size, dtype=torch.float64), indexing="ij")
    omega = 1.0 / temperature ** (torch.arange(embed_dim // 4, dtype=torch.float64) / (embed_dim // 4))
    ys = ys.flatten()[:, None] * omega[None, :]
    xs = xs.flatten()[:, None] * omega[None, :]
    pe = torch.cat([xs.sin(), xs.cos(), ys.sin(), ys.cos()], dim=1).float()  # [N, D]
    pe = torch.cat([torch.zeros(num_prefix_tokens, embed_dim), pe], dim=0)
    return pe[None]


class SinCosPositionEmbedding(_AddedPositions):
    """Fixed (not learned) 2-D sin-cos position embeddings, stored as a buffer."""

    def __init__(self, *, num_patches: int, embed_dim: int, num_prefix_tokens: int = 1):
        super().__init__()
        check_positive_int("SinCosPositionEmbedding", num_patches=num_patches, embed_dim=embed_dim)
        check_positive_int("SinCosPositionEmbedding", minimum=0, num_prefix_tokens=num_prefix_tokens)
        grid = math.isqrt(num_patches)
        if grid * grid != num_patches:
            raise ValueError(f"sin-cos position embeddings need a square grid, got {num_patches} patches")
        self.num_prefix_tokens, self.embed_dim = num_prefix_tokens, embed_dim
        self.register_buffer("pos", sincos_2d_position_embedding(
            grid, embed_dim, num_prefix_tokens=num_prefix_tokens), persistent=False)

    def set_grid_size(self, grid_size: int) -> None:
        self.pos = sincos_2d_position_embedding(
            grid_size, self.embed_dim, num_prefix_tokens=self.num_prefix_tokens).to(self.pos.device)


def resample_position_embedding(pos_embed: torch.Tensor, new_grid_size: int, *,
                                num_prefix_tokens: int = 1, mode: str = "bicubic") -> torch.Tensor:
    """Resample learned position embeddings [1, prefix + g*g, D] to a new g'xg' grid.

    The patch positions are a 2-D grid, so they are interpolated as an image with D channels;
    prefix tokens ([CLS]) have no place in the grid and are kept as they are.
    """
    check_positive_int("resample_position_embedding", new_grid_size=new_grid_size)
    if pos_embed.ndim != 3 or pos_embed.shape[0] != 1:
        raise ValueError(f"expected a position embedding [1, T, D], got {tuple(pos_embed.shape)}")
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    old = math.isqrt(grid.shape[1])
    if old * old != grid.shape[1]:
        raise ValueError(f"{grid.shape[1]} patch positions do not form a square grid; "
                         f"check num_prefix_tokens (got {num_prefix_tokens})")
    if new_grid_size == old:
        return pos_embed.clone()
    img = rearrange(grid, "1 (h w) d -> 1 d h w", h=old)
    img = F.interpolate(img.float(), size=(new_grid_size, new_grid_size), mode=mode,
                        align_corners=False).to(pos_embed.dtype)
    return torch.cat([prefix, rearrange(img, "1 d h w -> 1 (h w) d")], dim=1)
