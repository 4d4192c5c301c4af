"""What the paper's figures 6 and 7 compute, as tensors and numbers: attention rollout, mean
attention distance (figure 7 right) from ``model.attention_maps`` (which
:func:`vitlearn.attention.record_attention` records), and the similarity of the learned
position embeddings (figure 7 centre) with how it falls with distance on the patch grid.
:mod:`vitlearn.viz` draws them; this module needs no matplotlib.

Attention always comes from ``model.attention_maps(images)`` ([B, depth, heads, T, T]), so
these work for any :class:`vitlearn.ViT`, including one built with a learner's own
``attn_layer``, with a [CLS] token (T = 1+N) or with ``pool='mean'`` (T = N).
"""

from __future__ import annotations

import math

import torch

from .data import DATASETS, ImageDataset, normalize

__all__ = ["attention_rollout", "mean_attention_distance", "patch_distances", "position_similarity",
           "rank_correlation", "similarity_distance_correlation", "similarity_by_distance", "model_input",
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


def position_similarity(model, *, reference=None) -> torch.Tensor:
    """Cosine similarity of every patch's position embedding with every other one -> [N, N]
    (ViT paper, figure 7 centre; row-major patch order, prefix tokens such as [CLS] left out).

    ``reference`` (a table shaped like ``model.pos_embed.pos``, e.g. a copy taken before
    training) is subtracted first: the similarity of what training *changed*.
    """
    pos_embed = getattr(model, "pos_embed", None)
    if pos_embed is None:
        raise ValueError("this model has no position embedding (pos_embed='none'); build it with "
                         "pos_embed='learned' or 'sincos' to compare position similarities")
    pos = getattr(pos_embed, "pos", None)
    if not isinstance(pos, torch.Tensor) or pos.ndim != 3:
        raise ValueError("position similarity needs model.pos_embed.pos [1, prefix+N, D]; "
                         f"{type(pos_embed).__name__} has no such tensor")
    prefix, _ = prefix_and_grid(model, pos.shape[1])
    pos = pos.detach().float().cpu()
    if reference is not None:
        ref = torch.as_tensor(reference).detach().float().cpu()
        if ref.shape != pos.shape:
            raise ValueError(f"reference has shape {tuple(ref.shape)}, but model.pos_embed.pos has "
                             f"{tuple(pos.shape)}; pass a copy of the same table taken earlier, e.g. "
                             f"pos_at_init = model.pos_embed.pos.detach().clone() before training")
        pos = pos - ref
    patches = torch.nn.functional.normalize(pos[0, prefix:], dim=-1)               # [N, D]
    return patches @ patches.T                                                      # [N, N]


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks 0..n-1 of a 1-D tensor, ties given the mean of their ranks (Spearman's convention)."""
    order = torch.argsort(x, stable=True)
    ranks = torch.empty_like(x, dtype=torch.float64)
    ranks[order] = torch.arange(len(x), dtype=torch.float64)
    values, inverse = torch.unique(x, return_inverse=True)
    sums = torch.zeros(len(values), dtype=torch.float64).index_add_(0, inverse, ranks)
    counts = torch.zeros(len(values), dtype=torch.float64).index_add_(0, inverse, torch.ones_like(ranks))
    return (sums / counts)[inverse]


def rank_correlation(a, b) -> float:
    """Spearman's rank correlation of two equally long 1-D sequences: +1 when b always rises
    with a, -1 when it always falls, about 0 when their orders are unrelated."""
    a = torch.as_tensor(a, dtype=torch.float64).flatten()
    b = torch.as_tensor(b, dtype=torch.float64).flatten()
    if a.shape != b.shape or len(a) < 2:
        raise ValueError(f"rank_correlation needs two sequences of the same length >= 2, got "
                         f"{len(a)} and {len(b)} values")
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = (ra.square().sum() * rb.square().sum()).sqrt()
    if denom == 0:
        raise ValueError("rank_correlation is undefined when one sequence is constant")
    return float((ra * rb).sum() / denom)


def _pairs(model, reference, max_distance: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(cosine similarity, distance in patches) of every pair of distinct patches i < j, at
    most ``max_distance`` patches apart if given."""
    sim = position_similarity(model, reference=reference).double()
    grid = math.isqrt(sim.shape[0])
    dist = patch_distances(grid, 1)                                                 # [N, N] in patches
    i, j = torch.triu_indices(len(sim), len(sim), offset=1)
    sim, dist = sim[i, j], dist[i, j]
    if max_distance is not None:
        if not max_distance >= 1:
            raise ValueError(f"max_distance is in patches and must be >= 1 (neighbours are 1 apart), "
                             f"got {max_distance!r}")
        keep = dist <= max_distance + 1e-9
        sim, dist = sim[keep], dist[keep]
    return sim, dist


def similarity_distance_correlation(model, *, reference=None, max_distance: float | None = None) -> float:
    """How strongly the position embeddings encode the 2-D layout, as one number: Spearman's
    rank correlation, over all pairs of distinct patches, between their embeddings' cosine
    similarity and their distance on the grid. About -1: the nearer two patches, the more
    alike their embeddings, everywhere (the paper's figure 7); about 0: no layout learnt
    (a random table). ``max_distance`` (in patches) keeps only pairs that close: on MNIST the
    patches along the border are all background and grow alike however far apart they are,
    which hides the neighbourhood structure from the all-pairs number."""
    sim, dist = _pairs(model, reference, max_distance)
    return rank_correlation(sim, dist)


def similarity_by_distance(model, *, reference=None) -> dict[float, float]:
    """Mean cosine similarity of position embeddings for each distance between two distinct
    patches on the grid (in patches: 1, 1.41, 2, ...): how similarity falls with distance."""
    sim, dist = _pairs(model, reference)
    dist = dist.round(decimals=2)
    return {float(d): float(sim[dist == d].mean()) for d in torch.unique(dist)}
