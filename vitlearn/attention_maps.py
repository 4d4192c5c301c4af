"""What the figures of attention compute, as tensors: attention rollout and mean attention
distance (ViT paper, figure 7), from ``model.attention_maps`` (which
:func:`vitlearn.attention.record_attention` records). :mod:`vitlearn.viz` draws them; this
module needs no matplotlib.

Attention always comes from ``model.attention_maps(images)`` ([B, depth, heads, T, T]), so
these work for any :class:`vitlearn.ViT`, including one built with a learner's own
``attn_layer``, with a [CLS] token (T = 1+N) or with ``pool='mean'`` (T = N).
"""

from __future__ import annotations

import math

import torch

from .data import DATASETS, ImageDataset, normalize

__all__ = ["attention_rollout", "mean_attention_distance", "patch_distances", "model_input",
           "model_device", "prefix_and_grid", "attention_and_input", "MNIST_MEAN", "MNIST_STD"]

_, _, MNIST_MEAN, MNIST_STD = DATASETS["mnist"]  # what uint8 images are normalised with


def model_input(images, mean: float, std: float) -> torch.Tensor:
    """uint8 images are normalised like the training data; float images are used as given.

    Returns [B, 1, H, W]. Accepts one image ([H, W], [1, H, W]) or a batch ([B, H, W], [B, 1, H, W]).
    """
    if isinstance(images, ImageDataset):
        return normalize(images.images, images.mean, images.std)
    x = torch.as_tensor(images)
    if x.dtype == torch.uint8:
        x = normalize(x, mean, std)
    else:
        x = x.float()
    if x.ndim == 2:
        x = x[None, None]
    elif x.ndim == 3:
        x = x[:, None]  # [B, H, W] (or one image [1, H, W]) -> [B, 1, H, W]
    if x.ndim != 4:
        raise ValueError(f"expected images [B, 1, H, W] (or one image [H, W]), got shape {tuple(x.shape)}")
    return x


def model_device(model) -> torch.device:
    """Where the model's weights live (the CPU for a model without parameters)."""
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def prefix_and_grid(model, num_tokens: int) -> tuple[int, int]:
    """(number of prefix tokens such as [CLS], patch-grid side) for a sequence of T tokens."""
    n = model.num_patches
    grid = math.isqrt(n)
    if grid * grid != n or num_tokens < n:
        raise ValueError(f"cannot map {num_tokens} attention tokens onto a square grid of {n} patches")
    return num_tokens - n, grid


def attention_and_input(model, images, mean: float, std: float,
                        ) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """(model input [B, 1, H, W], attention [B, depth, heads, T, T] on the CPU, prefix, grid)."""
    x = model_input(images, mean, std)
    maps = model.attention_maps(x.to(model_device(model)))
    if not isinstance(maps, torch.Tensor) or maps.ndim != 5:
        raise ValueError("model.attention_maps(images) must return [B, depth, heads, T, T]; check that "
                         "the attention layer returns (output, weights [B, heads, T, T]) when "
                         "called with need_weights=True")
    prefix, grid = prefix_and_grid(model, maps.shape[-1])
    return x.cpu(), maps.detach().float().cpu(), prefix, grid


@torch.no_grad()
def attention_rollout(model, images, *, mean: float = MNIST_MEAN, std: float = MNIST_STD) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema, 2020): how much each patch flows into the output
    through all layers, not just the last one -> [B, N].

    Per layer: average the heads and add the identity (the residual connection carries each
    token on unchanged), renormalise the rows, then multiply the layers together. The result
    is the [CLS] row over the patch tokens; without [CLS] (pool='mean') the mean over rows,
    since the mean of all tokens is what gets classified. uint8 images are normalised with
    ``mean``/``std`` first; float images are passed to the model as they are.
    """
    _, maps, prefix, _ = attention_and_input(model, images, mean, std)
    a = maps.mean(dim=2)                                   # [B, depth, T, T]
    eye = torch.eye(a.shape[-1])
    a = a + eye
    a = a / a.sum(dim=-1, keepdim=True)
    rollout = eye.expand(a.shape[0], -1, -1)
    for layer in range(a.shape[1]):
        rollout = a[:, layer] @ rollout                    # [B, T, T]
    if prefix:
        return rollout[:, 0, prefix:]                      # [B, N]
    return rollout.mean(dim=1)


def patch_distances(grid: int, patch_size: int) -> torch.Tensor:
    """Distance in pixels between the centres of every pair of patches on a grid x grid layout
    (row-major, like patchify) -> [N, N]."""
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    centres = torch.stack([rows.flatten(), cols.flatten()], dim=-1).double() * patch_size  # [N, 2]
    return torch.cdist(centres, centres)


@torch.no_grad()
def mean_attention_distance(model, images, *, mean: float = MNIST_MEAN, std: float = MNIST_STD,
                            batch_size: int = 250) -> torch.Tensor:
    """How far each head looks, in pixels (ViT paper, figure 7 right) -> [depth, heads].

    For each query patch, the attention-weighted distance from its centre to the centres of
    the key patches; then the mean over query patches and images. It is the attention
    counterpart of a CNN's receptive field: a head at about 0 looks at its own patch, a large
    value means it gathers from across the image.

    Only patch tokens count: the [CLS] token (or any prefix token) is dropped from the queries
    and from the keys, and each query's weights over the patch keys are renormalised to sum to
    1, since [CLS] has no place in the image. uint8 images are normalised with ``mean``/``std``
    first; float images are passed as they are. ``images`` may be an ImageDataset; they are run
    ``batch_size`` at a time.
    """
    x = model_input(images, mean, std)
    if x.shape[0] == 0:
        raise ValueError("mean_attention_distance needs at least one image")
    total, dist = None, None
    for start in range(0, x.shape[0], batch_size):
        _, maps, prefix, grid = attention_and_input(model, x[start:start + batch_size], mean, std)
        if dist is None:
            dist = patch_distances(grid, model.patch_size)                     # [N, N] pixels
        w = maps[..., prefix:, prefix:].double()                                # [B, depth, h, N, N]
        w = w / w.sum(dim=-1, keepdim=True).clamp_min(1e-30)                    # over patch keys
        per_query = (w * dist).sum(dim=-1)                                      # [B, depth, h, N]
        part = per_query.mean(dim=-1).sum(dim=0)                                # [depth, h]
        total = part if total is None else total + part
    return (total / x.shape[0]).float()
