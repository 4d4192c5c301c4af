"""Steps 1-4: cut an image into patches, flatten them, project each one to D dimensions.

A Transformer consumes a *sequence* of vectors. ViT turns an image into one by cutting it
into non-overlapping ``P x P`` patches (step 2), flattening every patch into a vector of
``P*P*C`` numbers (step 3) and projecting each vector linearly to ``embed_dim`` (step 4).

:class:`HybridEmbedding` is the paper's alternative input (section 3.1): a small CNN's feature
map, cut into 1x1 patches and projected the same way.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from .contract import check_positive_int

__all__ = ["patchify", "unpatchify", "PatchEmbedding", "HybridEmbedding", "check_images",
           "check_patch_size"]


def check_patch_size(img_size: int, patch_size: int, *, what: str = "img_size") -> None:
    """The one check that patches tile the image: ``img_size`` must be a multiple of ``patch_size``."""
    check_positive_int("patches", patch_size=patch_size)
    if img_size % patch_size:
        divisors = [p for p in range(1, img_size + 1) if img_size % p == 0]
        raise ValueError(f"{what}={img_size} is not divisible by patch_size={patch_size}; pick a "
                         f"multiple of {patch_size}, or choose patch_size from {divisors} "
                         f"(or pad/resize the images)")


def _three_d_hint(shape: torch.Size, in_chans: int | None) -> str:
    """Which axis a 3-D tensor lacks: [C, H, W] (one image) needs the batch axis in front;
    [B, H, W] (a batch of grey images) needs the channel axis after the batch axis."""
    if shape[0] == (in_chans or shape[0]) and (in_chans or 1) > 1 or shape[0] == 1:
        return (f" It reads as one image [C, H, W] = {list(shape)}: add the batch axis with "
                f"images.unsqueeze(0) -> [1, C, H, W].")
    if in_chans in (None, 1):
        return (f" It reads as a batch of grey images without their channel axis [B, H, W] = "
                f"{list(shape)}: add the channel axis with images.unsqueeze(1) -> [B, 1, H, W].")
    return (f" The model takes in_chans={in_chans} channels: a batch is [B, {in_chans}, H, W]; "
            f"one image [{in_chans}, H, W] needs images.unsqueeze(0).")


def check_images(images: torch.Tensor, patch_size: int, *, in_chans: int | None = None,
                 img_size: int | None = None, dtype: torch.dtype | None = None) -> None:
    """Raise an error that says what to change when ``images`` cannot go into the model.

    ``dtype`` is the dtype of the model's weights: raw uint8 pixels, or float64 images for a
    float32 model, would otherwise fail deep inside a matrix multiplication.
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor of images [B, C, H, W], got {type(images).__name__}")
    if images.ndim != 4:
        hint = (_three_d_hint(images.shape, in_chans) if images.ndim == 3 else
                " Add channel and batch dimensions with images[None, None]." if images.ndim == 2 else "")
        raise ValueError(f"expected a 4-D batch of images [B, C, H, W], got shape "
                         f"{tuple(images.shape)}.{hint}")
    if dtype is not None and images.dtype != dtype:
        if not images.dtype.is_floating_point:
            raise TypeError(f"the images are {images.dtype} (raw pixel values?) but the model computes "
                            f"in {dtype}; convert with images.float() / 255 and normalise "
                            f"(vitlearn.data.normalize(images, mean, std), or dataset.tensors())")
        raise TypeError(f"the images are {images.dtype} but the model's weights are {dtype}; convert "
                        f"with images.float() (or images.to({dtype})), or model.to({images.dtype})")
    _, c, h, w = images.shape
    if in_chans is not None and c != in_chans:
        raise ValueError(f"the model expects {in_chans} channel(s) but the images have {c} "
                         f"(shape {tuple(images.shape)}); convert the images (e.g. to greyscale) "
                         f"or build the model with in_chans={c}")
    if img_size is not None and (h, w) != (img_size, img_size):
        raise ValueError(f"the model was built for {img_size}x{img_size} images but got {h}x{w}; "
                         f"resize the images, or call model.set_img_size({h}) to resample the "
                         f"position embeddings to the new grid")
    check_patch_size(h, patch_size, what="image height")
    check_patch_size(w, patch_size, what="image width")


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, N, P*P*C]: patches in row-major order, pixels ordered (p1 p2 c)."""
    check_images(images, patch_size)
    return _patches(images, patch_size)


def _patches(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """:func:`patchify` without the check, for callers that have already checked."""
    return rearrange(images, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=patch_size, p2=patch_size)


def unpatchify(patches: torch.Tensor, patch_size: int, img_size: int | tuple[int, int],
               in_chans: int) -> torch.Tensor:
    """Exact inverse of :func:`patchify`: [B, N, P*P*C] -> [B, C, H, W]."""
    h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
    if patches.ndim != 3:
        raise ValueError(f"expected patches [B, N, P*P*C], got shape {tuple(patches.shape)}")
    check_patch_size(h, patch_size, what="height")
    check_patch_size(w, patch_size, what="width")
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

    Used alone it checks its input; inside a :class:`~vitlearn.ViT` the model checks the
    images once, at its entry, and sets ``check_input = False``.
    """

    check_input: bool = True

    def __init__(self, *, img_size: int = 28, patch_size: int = 7, in_chans: int = 1,
                 embed_dim: int = 64):
        super().__init__()
        check_positive_int("PatchEmbedding", img_size=img_size, patch_size=patch_size,
                           in_chans=in_chans, embed_dim=embed_dim)
        check_patch_size(img_size, patch_size)
        self.img_size, self.patch_size, self.in_chans = img_size, patch_size, in_chans
        self.embed_dim = embed_dim
        self.grid_size = img_size // patch_size
        self.num_patches = self.grid_size ** 2
        self.proj = nn.Linear(patch_size * patch_size * in_chans, embed_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.check_input:
            check_images(images, self.patch_size, in_chans=self.in_chans, dtype=self.proj.weight.dtype)
        return self.proj(_patches(images, self.patch_size))  # [B, N, D]

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


def _stem_sides(img_size: int) -> list[int]:
    """The feature-map side after 0, 1, 2, ... stride-2 3x3 convolutions (padding 1): each
    one takes a side ``s`` to ``ceil(s / 2)``, down to 1. ``[28, 14, 7, 4, 2, 1]`` for 28."""
    sides = [img_size]
    while sides[-1] > 1:
        sides.append((sides[-1] + 1) // 2)
    return sides


class HybridEmbedding(nn.Module):
    """Steps 2-4 of the paper's *hybrid* ViT (section 3.1): the tokens come from a CNN's
    feature map instead of raw pixel patches.

    A small convolutional stem (3x3 Conv - BatchNorm - ReLU, each with stride 2 and padding 1,
    so each halves the side, rounding up) turns ``[B, C, H, W]`` into a feature map of
    ``img_size / patch_size`` on a side: on 28 px, patch 7 takes three layers (28 -> 14 -> 7 -> 4),
    16 tokens like :class:`PatchEmbedding`. That map is cut into 1x1 patches (each position's
    ``stem_width`` channels are one token) and projected by one shared Linear to ``embed_dim``.
    ``patch_size`` thus sets the number of tokens N, as in the plain ViT; it is the stem's
    overall stride, up to the rounding.

    Why: the plain patch embedding keeps almost none of a CNN's image priors (only the cutting
    into patches and the weight sharing across them). The stem adds them back: locality (3x3
    windows), translation equivariance, and a hierarchy of features, each token summarising an
    overlapping neighbourhood instead of an isolated P x P square. The paper found hybrids
    slightly better than plain ViTs at small compute budgets, with the gap vanishing for larger
    models (section 4.4, figure 5).

    Same constructor keywords as :class:`PatchEmbedding` (so ``ViT(embed_layer=HybridEmbedding)``
    works), plus ``stem_width``, the channels of every conv layer. The number of tokens must be
    reachable by halving: a ValueError lists the patch sizes that are, otherwise.
    """

    check_input: bool = True

    def __init__(self, *, img_size: int = 28, patch_size: int = 7, in_chans: int = 1,
                 embed_dim: int = 64, stem_width: int = 32):
        super().__init__()
        check_positive_int("HybridEmbedding", img_size=img_size, patch_size=patch_size,
                           in_chans=in_chans, embed_dim=embed_dim, stem_width=stem_width)
        check_patch_size(img_size, patch_size)
        grid = img_size // patch_size
        sides = _stem_sides(img_size)
        if grid not in sides:
            raise ValueError(self._unreachable(img_size, patch_size, "HybridEmbedding"))
        self.patch_size, self.in_chans, self.embed_dim = patch_size, in_chans, embed_dim
        self.stem_width = stem_width
        self.num_stride2 = sides.index(grid)  # how many layers halve the side
        layers, channels = [], in_chans
        for i in range(max(self.num_stride2, 1)):  # at least one layer (stride 1 when grid == img_size)
            stride = 2 if i < self.num_stride2 else 1
            layers += [nn.Conv2d(channels, stem_width, kernel_size=3, stride=stride, padding=1, bias=False),
                       nn.BatchNorm2d(stem_width), nn.ReLU()]
            channels = stem_width
        self.stem = nn.Sequential(*layers)
        self.proj = nn.Linear(stem_width, embed_dim)  # the 1x1 "patch" projection, E of eq. 1
        self.img_size = img_size  # sets grid_size and num_patches

    def _unreachable(self, img_size: int, patch_size: int, owner: str) -> str:
        sides = _stem_sides(img_size)
        layers = getattr(self, "num_stride2", None)
        if layers is None:  # building: any number of stride-2 layers will do
            ok = sorted(img_size // s for s in sides if img_size % s == 0)
            return (f"{owner}: stride-2 convolutions take a {img_size}-pixel side to "
                    f"{', '.join(map(str, sides))} pixels, never to img_size / patch_size = "
                    f"{img_size // patch_size} (patch_size={patch_size}); choose patch_size from {ok}, "
                    f"or resize the images")
        side = sides[layers] if layers < len(sides) else 1
        return (f"{owner}: this stem has {layers} stride-2 layer(s), which take {img_size}-pixel "
                f"images to a {side}x{side} feature map, not the {img_size // patch_size}x"
                f"{img_size // patch_size} grid of patch_size={patch_size}; build a new model for "
                f"this size")

    @property
    def img_size(self) -> int:
        return self._img_size

    def check_img_size(self, img_size: int) -> None:
        """Raise unless this stem can run at ``img_size``: its strides are fixed, so only sizes
        it maps onto the grid of ``patch_size`` work. ``ViT.set_img_size`` asks this before it
        changes anything, so a refused size leaves the model as it was."""
        check_positive_int("HybridEmbedding", img_size=img_size)
        check_patch_size(img_size, self.patch_size)
        sides = _stem_sides(img_size)
        if len(sides) <= self.num_stride2 or sides[self.num_stride2] != img_size // self.patch_size:
            raise ValueError(self._unreachable(img_size, self.patch_size, "HybridEmbedding"))

    @img_size.setter
    def img_size(self, img_size: int) -> None:
        # ViT.set_img_size sets img_size, grid_size and num_patches here.
        self.check_img_size(img_size)
        self._img_size = img_size
        self.grid_size = img_size // self.patch_size
        self.num_patches = self.grid_size ** 2

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.check_input:
            check_images(images, self.patch_size, in_chans=self.in_chans, img_size=self.img_size,
                         dtype=self.proj.weight.dtype)
        features = self.stem(images)                               # [B, stem_width, h, w]
        tokens = rearrange(features, "b c h w -> b (h w) c")       # 1x1 patches: [B, N, stem_width]
        return self.proj(tokens)                                   # [B, N, D]
