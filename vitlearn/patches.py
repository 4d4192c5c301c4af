"""Steps 1-4: cut an image into patches, flatten them, project each one to D dimensions.

A Transformer consumes a *sequence* of vectors. ViT turns an image into one by cutting it
into non-overlapping ``P x P`` patches (step 2), flattening every patch into a vector of
``P*P*C`` numbers (step 3) and projecting each vector linearly to ``embed_dim`` (step 4).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

__all__ = ["patchify", "unpatchify", "PatchEmbedding", "check_images"]


def check_images(images: torch.Tensor, patch_size: int, *, in_chans: int | None = None,
                 img_size: int | None = None) -> None:
    """Raise a ValueError that says what to change when ``images`` cannot be patchified."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor of images [B, C, H, W], got {type(images).__name__}")
    if images.ndim != 4:
        hint = (" Add a batch dimension with images.unsqueeze(0)." if images.ndim == 3 else
                " Add channel and batch dimensions with images[None, None]." if images.ndim == 2 else "")
        raise ValueError(f"expected a 4-D batch of images [B, C, H, W], got shape "
                         f"{tuple(images.shape)}.{hint}")
    _, c, h, w = images.shape
    if in_chans is not None and c != in_chans:
        raise ValueError(f"the model expects {in_chans} channel(s) but the images have {c} "
                         f"(shape {tuple(images.shape)}); convert the images (e.g. to greyscale) "
                         f"or build the model with in_chans={c}")
    if img_size is not None and (h, w) != (img_size, img_size):
        raise ValueError(f"the model was built for {img_size}x{img_size} images but got {h}x{w}; "
                         f"resize the images, or call model.set_img_size({h}) to resample the "
                         f"position embeddings to the new grid")
    if h % patch_size or w % patch_size:
        raise ValueError(f"image size {h}x{w} is not divisible by patch_size={patch_size}; "
                         f"choose a patch size that divides both sides (for 28: 1, 2, 4, 7, 14, 28) "
                         f"or pad/resize the images")


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, N, P*P*C]: patches in row-major order, pixels ordered (p1 p2 c)."""
    check_images(images, patch_size)
    return rearrange(images, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=patch_size, p2=patch_size)


def unpatchify(patches: torch.Tensor, patch_size: int, img_size: int | tuple[int, int],
               in_chans: int) -> torch.Tensor:
    """Exact inverse of :func:`patchify`: [B, N, P*P*C] -> [B, C, H, W]."""
    h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
    if patches.ndim != 3:
        raise ValueError(f"expected patches [B, N, P*P*C], got shape {tuple(patches.shape)}")
    if h % patch_size or w % patch_size:
        raise ValueError(f"img_size {h}x{w} is not divisible by patch_size={patch_size}")
    n, d = (h // patch_size) * (w // patch_size), patch_size * patch_size * in_chans
    if patches.shape[1:] != (n, d):
        raise ValueError(f"for {h}x{w} images, patch_size={patch_size} and in_chans={in_chans} the "
                         f"patches must be [B, {n}, {d}], got {tuple(patches.shape)}")
    return rearrange(patches, "b (h w) (p1 p2 c) -> b c (h p1) (w p2)",
                     h=h // patch_size, p1=patch_size, p2=patch_size, c=in_chans)


class PatchEmbedding(nn.Module):
    """Steps 2-4: patchify, then one shared Linear layer maps every patch to ``embed_dim``.

    Because the patches do not overlap, this is the same computation as a Conv2d whose kernel
    and stride both equal the patch size (``from_conv``/``to_conv`` convert the weights).
    The Linear form is the one the paper writes down; it is also what runs here.
    """

    def __init__(self, *, img_size: int = 28, patch_size: int = 7, in_chans: int = 1,
                 embed_dim: int = 64):
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size={img_size} is not divisible by patch_size={patch_size}; "
                             f"choose a patch size that divides the image size")
        self.img_size, self.patch_size, self.in_chans = img_size, patch_size, in_chans
        self.embed_dim = embed_dim
        self.grid_size = img_size // patch_size
        self.num_patches = self.grid_size ** 2
        self.proj = nn.Linear(patch_size * patch_size * in_chans, embed_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images, self.patch_size, in_chans=self.in_chans)
        return self.proj(patchify(images, self.patch_size))  # [B, N, D]

    @torch.no_grad()
    def load_conv(self, conv: nn.Conv2d) -> PatchEmbedding:
        """Copy weights from the Conv2d form: conv weight [D, C, P, P] -> linear [D, (P P C)]."""
        self.proj.weight.copy_(rearrange(conv.weight, "d c p1 p2 -> d (p1 p2 c)"))
        if conv.bias is not None:
            self.proj.bias.copy_(conv.bias)
        return self

    @torch.no_grad()
    def to_conv(self) -> nn.Conv2d:
        """The equivalent Conv2d(kernel_size=stride=patch_size) with this module's weights."""
        p = self.patch_size
        conv = nn.Conv2d(self.in_chans, self.embed_dim, kernel_size=p, stride=p)
        conv.weight.copy_(rearrange(self.proj.weight, "d (p1 p2 c) -> d c p1 p2", p1=p, p2=p))
        conv.bias.copy_(self.proj.bias)
        return conv
