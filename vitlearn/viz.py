"""Figures for the notebooks: digits, patches, embeddings, attention, training results.

Every function builds its figure with pyplot, closes it in pyplot's registry and returns the
:class:`matplotlib.figure.Figure`. Closing keeps Jupyter's inline backend from showing it a
second time at the end of the cell (it is shown once, as the cell's value) and keeps
figures made in loops or widgets from piling up. So in a notebook, end the cell with the
call (no ``;``), or ``display(fig)``; in a script, ``fig.savefig(...)``.

Attention always comes from ``model.attention_maps(images)`` ([B, depth, heads, T, T]), so
the figures work for any :class:`vitlearn.ViT`, including one built with a learner's own
``attn_layer``, with a [CLS] token (T = 1+N) or with ``pool='mean'`` (T = N). What the
attention figures show is computed in :mod:`vitlearn.attention_maps` (no matplotlib needed);
``viz.attention_rollout`` and ``viz.mean_attention_distance`` are those functions, kept here
for the notebooks that call them by this name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from .attention_maps import (
    MNIST_MEAN,
    MNIST_STD,
    attention_and_input,
    attention_rollout,
    mean_attention_distance,
    model_device,
    model_input,
    patch_distances,
    position_similarity,
)
from .data import ImageDataset
from .patches import check_patch_size, patchify
from .training import Evaluation, History, eval_mode, evaluate

__all__ = ["show_digits", "plot_patch_grid", "plot_patch_sequence", "plot_embedding_filters",
           "plot_position_similarity", "attention_rollout", "plot_attention_maps",
           "plot_attention_rollout", "mean_attention_distance", "plot_mean_attention_distance",
           "plot_training_curves", "plot_comparison", "plot_confusion_matrix",
           "plot_mistakes", "plot_data_scale", "MNIST_MEAN", "MNIST_STD"]

# Colour maps and colours, one per kind of thing drawn.
DIGIT_CMAP = "gray"               # images and pixel values
ATTENTION_CMAP = "inferno"        # attention scores drawn over a digit
FILTER_CMAP = "RdBu_r"            # signed weights: red positive, blue negative, white zero
SIMILARITY_CMAP = "viridis"       # cosine similarity in [-1, 1]
COUNT_CMAP = "Blues"              # confusion-matrix counts
GRID_COLOUR = "tab:orange"        # patch borders and patch numbers
MISTAKE_COLOUR = "tab:red"

# Sizes: tiles per row in the image grids, the smallest figure side (inches), font sizes.
TILE_COLUMNS = 8
MIN_FIGURE_SIDE = 2.0
TITLE_FONTSIZE = 10               # figure and single-panel titles
TILE_FONTSIZE = 9                 # one tile's title in a grid
SMALL_FONTSIZE = 8                # numbers inside a plot


# ---------------------------------------------------------------------------- helpers

def _new_figure(nrows: int, ncols: int, *, cell: float = 1.4, **kwargs) -> tuple[Figure, np.ndarray]:
    """A grid of ``cell``-inch square axes, always 2-D ([nrows, ncols])."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(max(MIN_FIGURE_SIDE, cell * ncols),
                                                    max(MIN_FIGURE_SIDE, cell * nrows)),
                             squeeze=False, **kwargs)
    return fig, axes


def _tiles(n: int, *, cell: float) -> tuple[Figure, list]:
    """``n`` tiles, :data:`TILE_COLUMNS` to a row; the unused axes of the last row are hidden."""
    cols = min(n, TILE_COLUMNS)
    fig, axes = _new_figure(math.ceil(n / cols), cols, cell=cell)
    _blank_unused(axes, n)
    return fig, list(axes.flat[:n])


def _finish(fig: Figure, *, tight: bool = True) -> Figure:
    if tight:
        fig.tight_layout()
    # Out of pyplot's registry: no second copy at the end of a notebook cell, no leak.
    plt.close(fig)
    return fig


def _digit(image) -> np.ndarray:
    """One image (uint8 or float; [H, W], [1, H, W] or [1, 1, H, W]) -> float array [H, W]."""
    x = torch.as_tensor(image)
    while x.ndim > 2 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 2:
        raise ValueError(f"expected one greyscale image [28, 28] or [1, 28, 28], got shape "
                         f"{tuple(torch.as_tensor(image).shape)}; pick one image, e.g. dataset.images[0]")
    return x.detach().float().cpu().numpy()


def _patch_scores(maps: torch.Tensor, prefix: int) -> torch.Tensor:
    """What each patch gets: the [CLS] query's attention, or (no [CLS]) the mean over queries.

    maps [..., T, T] -> [..., N].
    """
    if prefix:
        return maps[..., 0, prefix:]
    return maps.mean(dim=-2)


def _overlay(ax, image: np.ndarray, scores: np.ndarray, *, alpha: float = 0.6) -> None:
    """The digit in grey with a [g, g] score map stretched over it (nearest: one block per patch)."""
    h, w = image.shape
    ax.imshow(image, cmap=DIGIT_CMAP, extent=(0, w, h, 0))
    ax.imshow(scores, cmap=ATTENTION_CMAP, alpha=alpha, extent=(0, w, h, 0), interpolation="nearest")
    _plain(ax)


def _plain(ax) -> None:
    """No ticks: the axes of a picture."""
    ax.set_xticks([])
    ax.set_yticks([])


def _show_digit(ax, image, title: str, **title_kwargs) -> None:
    """One greyscale image as a titled tile."""
    ax.imshow(image.numpy() if isinstance(image, torch.Tensor) else image, cmap=DIGIT_CMAP)
    ax.set_title(title, fontsize=TILE_FONTSIZE, **title_kwargs)
    _plain(ax)


def _integer_ticks(*axes) -> None:
    for ax in axes:
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.yaxis.get_major_locator().set_params(integer=True)


def _white_gaps(cmap: str):
    """``cmap`` with NaN drawn white: the gaps between tiles in one canvas."""
    return plt.get_cmap(cmap).with_extremes(bad="white")


def _tile_canvas(tiles: np.ndarray, per_row: int) -> np.ndarray:
    """Tiles [N, a, a] (or RGB [N, a, a, 3]) laid out like text, ``per_row`` to a line, with a
    1-pixel gap: NaN for greyscale (drawn white by :func:`_white_gaps`), white for RGB. One
    image instead of N axes, so it is fast for any N."""
    n, a = len(tiles), tiles.shape[1]
    step = a + 1
    shape = (math.ceil(n / per_row) * step - 1, per_row * step - 1) + tiles.shape[3:]
    canvas = np.full(shape, np.nan if tiles.ndim == 3 else 1.0)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, per_row)
        canvas[r * step:r * step + a, c * step:c * step + a] = tile
    return canvas


def _blank_unused(axes: np.ndarray, used: int) -> None:
    for ax in axes.flat[used:]:
        ax.set_visible(False)


# ---------------------------------------------------------------------------- data and patches

def show_digits(dataset: ImageDataset, n: int = 16, *, title: str | None = None) -> Figure:
    """The first ``n`` images of ``dataset`` with their class names, to see what the model sees."""
    if not isinstance(dataset, ImageDataset):
        raise ValueError(f"expected a vitlearn.ImageDataset, got {type(dataset).__name__}; "
                         f"load one with vitlearn.load_dataset('mnist')")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    n = min(n, len(dataset))
    fig, axes = _tiles(n, cell=1.3)
    for i, ax in enumerate(axes):
        _show_digit(ax, dataset.images[i], dataset.classes[int(dataset.labels[i])])
    fig.suptitle(title or f"{n} {dataset.name} images and their labels")
    return _finish(fig)


def _picture(image) -> np.ndarray:
    """One image to draw: greyscale -> float [H, W] as given (see :func:`_digit`); RGB ([3, H, W]
    channels first, as models take it, or [H, W, 3] as ``np.asarray(PIL image)`` gives it) ->
    float [H, W, 3] in [0, 1] (uint8 / 255; floats outside [0, 1], e.g. normalised, rescaled).
    Three greyscale digits [3, 28, 28] look exactly like one RGB image: pick one digit."""
    x = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image)
    while x.ndim > 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim == 3 and (x.shape[0] == 3 or (x.shape[-1] == 3 and x.shape[0] != 1)):
        rgb = x if x.shape[0] == 3 else x.permute(2, 0, 1)
        rgb = rgb.detach().cpu()
        rgb = rgb.float() / 255 if rgb.dtype == torch.uint8 else rgb.float()
        lo, hi = rgb.min(), rgb.max()
        if lo < 0 or hi > 1:
            rgb = (rgb - lo) / (hi - lo).clamp_min(1e-12)
        return rgb.permute(1, 2, 0).numpy()                       # [H, W, 3]
    try:
        return _digit(image)
    except ValueError:
        raise ValueError(f"expected one greyscale image [28, 28] or [1, 28, 28], or one RGB image "
                         f"[3, H, W] (or [H, W, 3]), got shape {tuple(x.shape)}; pick one image, "
                         f"e.g. dataset.images[0]") from None


def _picture_in_patches(image, patch_size: int) -> tuple[np.ndarray, int, int]:
    """(:func:`_picture` of ``image``, its height, its width), both checked against ``patch_size``."""
    img = _picture(image)
    h, w = img.shape[:2]
    check_patch_size(h, patch_size, what="the image height")
    check_patch_size(w, patch_size, what="the image width")
    return img, h, w


def plot_patch_grid(image, patch_size: int) -> Figure:
    """One image (a greyscale digit, or an RGB photo [3, H, W]) with the patch borders drawn on
    it and, when there are at most 64, each patch's index in the sequence."""
    img, h, w = _picture_in_patches(image, patch_size)
    gh, gw = h // patch_size, w // patch_size
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.imshow(img, cmap=DIGIT_CMAP if img.ndim == 2 else None, extent=(0, w, h, 0))
    border = GRID_COLOUR if img.ndim == 2 else "white"
    for k in range(1, gw):
        ax.axvline(k * patch_size, color=border, lw=1)
    for k in range(1, gh):
        ax.axhline(k * patch_size, color=border, lw=1)
    if gh * gw <= 64:  # numbers on a finer grid are unreadable
        for r in range(gh):
            for c in range(gw):
                ax.text((c + 0.5) * patch_size, (r + 0.5) * patch_size, str(r * gw + c),
                        ha="center", va="center", color=GRID_COLOUR,
                        fontsize=max(6, 16 - gw), fontweight="bold")
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    _plain(ax)
    ax.set_title(f"patch size {patch_size}: {gh}x{gw} grid = {gh * gw} patches", fontsize=TITLE_FONTSIZE)
    return _finish(fig)


def plot_patch_sequence(image, patch_size: int) -> Figure:
    """What the Transformer receives: the patches in row-major order (top) and, flattened, the
    [N, P*P*C] matrix whose rows are the tokens (bottom; for RGB each row holds the patch's
    pixels in :func:`vitlearn.patchify`'s (p1 p2 c) order, drawn in grey)."""
    img, h, w = _picture_in_patches(image, patch_size)
    c = 1 if img.ndim == 2 else img.shape[2]
    chw = torch.from_numpy(img)[None] if c == 1 else torch.from_numpy(img).permute(2, 0, 1)
    seq = patchify(chw[None], patch_size)[0].numpy()                          # [N, P*P*C]
    n, p = seq.shape[0], patch_size
    grid = w // p
    per_row = n if n <= 16 else 2 * grid
    patches = seq.reshape(n, p, p) if c == 1 else seq.reshape(n, p, p, c)
    strip = _tile_canvas(patches, per_row)

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.5, 6.5), height_ratios=[1, 1.3])
    if c == 1:
        top.imshow(strip, cmap=_white_gaps(DIGIT_CMAP), vmin=np.nanmin(seq), vmax=np.nanmax(seq),
                   interpolation="nearest")
    else:
        top.imshow(strip, interpolation="nearest")
    if n == per_row:  # one line: room to number the patches above it
        for i in range(n):
            top.text(i * (p + 1) + (p - 1) / 2, -0.7, str(i), ha="center", va="bottom",
                     fontsize=SMALL_FONTSIZE, color=GRID_COLOUR)
        top.set_ylim(p - 0.5, -0.5 - 0.5 * p)
    _plain(top)
    top.set_axis_off()
    top.set_title(f"the sequence: {n} patches of {p}x{p} pixels, in reading order", fontsize=TITLE_FONTSIZE)

    bottom.imshow(seq, cmap=DIGIT_CMAP, aspect="auto", interpolation="nearest")
    _integer_ticks(bottom)
    pixels = f"{p}*{p}" if c == 1 else f"{p}*{p}*{c}"
    bottom.set_xlabel(f"pixel within the patch ({pixels} = {p * p * c})")
    bottom.set_ylabel(f"patch (token) 0..{n - 1}")
    bottom.set_title(f"patchify: [{c}, {h}, {w}] -> [{n}, {p * p * c}]", fontsize=TITLE_FONTSIZE)
    return _finish(fig)


# ---------------------------------------------------------------------------- data scale

def plot_data_scale(result, *, title: str | None = None) -> Figure:
    """Test accuracy against training-set size, one line per model (log-scaled x axis): the
    ViT paper's figures 3-4 in miniature, from :func:`vitlearn.baselines.data_scale_experiment`
    (its result, or that result's ``to_dict()``)."""
    r = result.to_dict() if hasattr(result, "to_dict") else dict(result)
    missing = [k for k in ("model", "n_train", "test_acc") if k not in r]
    if missing or not r.get("model"):
        raise ValueError(f"expected the result of vitlearn.baselines.data_scale_experiment, "
                         f"{'lacking ' + str(missing) if missing else 'with no runs'}")
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    markers = iter("os^vDP*")
    for name in dict.fromkeys(r["model"]):
        pts = sorted((n, a) for m, n, a in zip(r["model"], r["n_train"], r["test_acc"]) if m == name)
        params = r.get("params", {}).get(name)
        label = f"{name} ({params:,} parameters)" if params else name
        ax.plot([n for n, _ in pts], [100 * a for _, a in pts], marker=next(markers, "o"), label=label)
        for n, a in pts:
            ax.annotate(f"{100 * a:.1f}", (n, 100 * a), textcoords="offset points", xytext=(0, 6),
                        ha="center", fontsize=SMALL_FONTSIZE)
    sizes = sorted(set(r["n_train"]))
    ax.set_xscale("log")
    ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
    ax.minorticks_off()
    ax.set_xlabel("training images (log scale)")
    ax.set_ylabel("test accuracy (%)")
    steps = sorted(set(r.get("steps", [])))
    budget = f", {steps[0]:,} optimizer steps each" if len(steps) == 1 else ""
    ax.set_title(title or f"{r.get('dataset', '')}: test accuracy vs training-set size{budget}",
                 fontsize=TITLE_FONTSIZE)
    ax.grid(alpha=0.3)
    ax.legend()
    return _finish(fig)


# ---------------------------------------------------------------------------- embeddings

def _pca_rows(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Principal components of the rows of weight [D, K]: (components [k, K], explained ratio [k])."""
    centred = weight - weight.mean(axis=0, keepdims=True)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    var = s ** 2
    return vt, var / max(var.sum(), 1e-12)


def plot_embedding_filters(model, n: int | None = None, *, pca: bool = False) -> Figure:
    """The patch-embedding projection ``model.patch_embed.proj.weight`` [D, P*P*C]: each row is
    the pixel pattern that one embedding dimension responds to, drawn as a PxP image.

    ``pca=True`` draws the rows' principal components instead (as in figure 7 of the ViT
    paper), which summarise all D filters in a few patterns.
    """
    proj = getattr(getattr(model, "patch_embed", None), "proj", None)
    weight = getattr(proj, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
        raise ValueError("plot_embedding_filters needs model.patch_embed.proj.weight [D, P*P*C] "
                         "(a Linear patch embedding); this model's patch_embed has no such layer")
    p, c = model.patch_size, getattr(model, "in_chans", 1)
    if weight.shape[1] != p * p * c:
        raise ValueError(f"proj.weight has {weight.shape[1]} inputs, expected P*P*C = {p * p * c}")
    # rows are ordered (p1 p2 c) like patchify; average the channels to draw one PxP image
    w = weight.detach().float().cpu().numpy().reshape(-1, p, p, c).mean(axis=-1).reshape(-1, p * p)
    if pca:
        w, ratio = _pca_rows(w)
        what = "principal components of the patch-embedding filters"
    else:
        what = "patch-embedding filters (rows of proj.weight)"
    n = len(w) if n is None else min(n, len(w))
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    fig, axes = _tiles(n, cell=1.1)
    for i, ax in enumerate(axes):
        lim = float(np.abs(w[i]).max()) or 1.0
        ax.imshow(w[i].reshape(p, p), cmap=FILTER_CMAP, vmin=-lim, vmax=lim, interpolation="nearest")
        ax.set_title(f"{i}" + (f" ({ratio[i]:.0%})" if pca else ""), fontsize=SMALL_FONTSIZE)
        _plain(ax)
    fig.suptitle(f"{what}, {p}x{p}", fontsize=TITLE_FONTSIZE)
    return _finish(fig)


def plot_position_similarity(model, *, reference=None) -> Figure:
    """Cosine similarity of each patch's position embedding with every other one (ViT paper,
    figure 7): tile (r, c) shows how alike position (r, c) is to every position in the grid.
    A trained model rediscovers the 2-D layout: each tile is brightest near its own place.

    ``reference`` (a table shaped like ``model.pos_embed.pos``, e.g. a copy taken before
    training) is subtracted first, so the picture shows what training *changed*: a learned
    table starts as random vectors much longer than a short training moves them, and that
    random start hides the change in the plain similarities.
    """
    sim = position_similarity(model, reference=reference).numpy()                              # [N, N]
    grid = math.isqrt(sim.shape[0])
    title = ("similarity of what training changed (pos - reference)" if reference is not None
             else "position embedding similarity")

    # One canvas of grid x grid tiles, tile i = position i's similarities as a [grid, grid] image.
    canvas = _tile_canvas(sim.reshape(grid * grid, grid, grid), per_row=grid)
    step = grid + 1
    size = min(9.0, 2.5 + 0.45 * grid)
    fig, ax = plt.subplots(figsize=(size + 0.9, size))
    im = ax.imshow(canvas, cmap=_white_gaps(SIMILARITY_CMAP), vmin=-1, vmax=1, interpolation="nearest")
    centres = [k * step + (grid - 1) / 2 for k in range(grid)]
    ax.set_xticks(centres, [str(k) for k in range(grid)])
    ax.set_yticks(centres, [str(k) for k in range(grid)])
    ax.set_xlabel("input patch column")
    ax.set_ylabel("input patch row")
    for side in ax.spines.values():
        side.set_visible(False)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, label="cosine similarity")
    ax.set_title(title, fontsize=11)
    return _finish(fig)


# ---------------------------------------------------------------------------- attention

def _pick(index: int | None, size: int, what: str) -> list[int]:
    if index is None:
        return list(range(size))
    if not -size <= index < size:
        raise ValueError(f"{what}={index} is out of range: this model has {size} {what}s, "
                         f"use 0..{size - 1} (or None for all)")
    return [index % size]


def plot_attention_maps(model, image, *, layer: int | None = None, head: int | None = None,
                        mean: float = MNIST_MEAN, std: float = MNIST_STD) -> Figure:
    """Where the model looks: the [CLS] token's attention over the patches, drawn on the digit,
    one tile per layer (rows) and head (columns); ``layer``/``head`` pick one (0-based).

    With pool='mean' there is no [CLS] token, so each tile shows the attention every patch
    receives, averaged over all queries. uint8 images are normalised with ``mean``/``std``.
    """
    x, maps, prefix, grid = attention_and_input(model, image, mean, std)
    if x.shape[0] != 1:
        raise ValueError(f"plot_attention_maps draws one image, got a batch of {x.shape[0]}; "
                         f"pass images[i]")
    depth, heads = maps.shape[1], maps.shape[2]
    layers, chosen_heads = _pick(layer, depth, "layer"), _pick(head, heads, "head")
    scores = _patch_scores(maps[0], prefix)                # [depth, heads, N]
    img = x[0, 0].numpy()
    fig, axes = _new_figure(len(layers), len(chosen_heads), cell=1.9 if len(chosen_heads) > 1 else 3.5)
    for r, li in enumerate(layers):
        for c, hi in enumerate(chosen_heads):
            _overlay(axes[r, c], img, scores[li, hi].reshape(grid, grid).numpy())
            axes[r, c].set_title(f"layer {li}, head {hi}", fontsize=TILE_FONTSIZE)
    who = ("[CLS] attention over the patches" if prefix
           else "attention each patch receives\n(mean over queries: no [CLS] with pool='mean')")
    fig.suptitle(who, fontsize=TITLE_FONTSIZE)
    return _finish(fig)


def plot_attention_rollout(model, images, labels=None, *, mean: float = MNIST_MEAN,
                           std: float = MNIST_STD) -> Figure:
    """Digits (top row) and their attention rollout (bottom row), titled with the label (when
    given) and the model's prediction. ``images`` may be a (small) ImageDataset."""
    if isinstance(images, ImageDataset):
        labels = images.labels if labels is None else labels
    x = model_input(images, mean, std)
    if x.shape[0] > 32:
        raise ValueError(f"got {x.shape[0]} images; plot at most 32 at a time, e.g. images[:8]")
    rollout = attention_rollout(model, x)                                  # [B, N]
    grid = math.isqrt(rollout.shape[1])
    with eval_mode(model):
        preds = model(x.to(model_device(model))).argmax(dim=-1).cpu()
    b = x.shape[0]
    fig, axes = _new_figure(2, b, cell=1.6)
    for i in range(b):
        img = x[i, 0].numpy()
        title = f"pred {int(preds[i])}"
        if labels is not None:
            title = f"label {int(labels[i])}\n{title}"
        _show_digit(axes[0, i], img, title)
        _overlay(axes[1, i], img, rollout[i].reshape(grid, grid).numpy(), alpha=0.7)
    axes[0, 0].set_ylabel("digit")
    axes[1, 0].set_ylabel("rollout")
    fig.suptitle("attention rollout: what reaches the classifier through all layers", fontsize=TITLE_FONTSIZE)
    return _finish(fig)


def plot_mean_attention_distance(model, data_or_images, *, mean: float = MNIST_MEAN,
                                 std: float = MNIST_STD) -> Figure:
    """Mean attention distance (:func:`mean_attention_distance`) as in the ViT paper's figure 7
    (right): x = layer, y = distance in pixels, one dot per head. The dashed line is what
    attention spread evenly over all patches would give; a head at 0 attends only to itself."""
    distances = mean_attention_distance(model, data_or_images, mean=mean, std=std).numpy()  # [depth, h]
    depth, heads = distances.shape
    grid = math.isqrt(model.num_patches)
    uniform = float(patch_distances(grid, model.patch_size).mean())
    n = model_input(data_or_images, mean, std).shape[0]
    fig, ax = plt.subplots(figsize=(max(6.0, 2.6 + 0.8 * depth), 3.8))
    offsets = np.linspace(-0.12, 0.12, heads) if heads > 1 else np.zeros(1)   # heads side by side
    for h in range(heads):
        ax.scatter(np.arange(depth) + offsets[h], distances[:, h], s=36, label=f"head {h}")
    ax.axhline(uniform, color="grey", linestyle="--", linewidth=1,
               label=f"uniform over\nall patches ({uniform:.1f} px)")
    ax.set_xticks(range(depth))
    ax.set_xlim(-0.5, depth - 0.5)
    ax.set_ylim(0, max(float(distances.max()), uniform) * 1.15 + 0.5)
    ax.set_xlabel("layer (network depth)")
    ax.set_ylabel("mean attention distance (pixels)")
    ax.legend(fontsize=SMALL_FONTSIZE, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.set_title(f"mean attention distance per head ({n} image{'s' if n != 1 else ''}, "
                 f"{model.patch_size}x{model.patch_size}-pixel patches)", fontsize=TITLE_FONTSIZE)
    return _finish(fig)


# ---------------------------------------------------------------------------- training results

def plot_training_curves(history: History | dict) -> Figure:
    """Loss (left) and train/test accuracy (right) per epoch, from ``fit``'s History (or its
    ``to_dict()``, as stored in checkpoints)."""
    h = history.to_dict() if isinstance(history, History) else dict(history)
    missing = [k for k in ("epoch", "train_loss", "train_acc", "test_acc") if k not in h]
    if missing:
        raise ValueError(f"history lacks {missing}; pass the History returned by vitlearn.fit")
    if not h["epoch"]:
        raise ValueError("the history is empty: train for at least one epoch first")
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    left.plot(h["epoch"], h["train_loss"], "o-", label="train loss")
    left.set_xlabel("epoch")
    left.set_ylabel("cross-entropy")
    left.set_title("training loss", fontsize=TITLE_FONTSIZE)
    right.plot(h["epoch"], [100 * a for a in h["train_acc"]], "o-", label="train")
    right.plot(h["epoch"], [100 * a for a in h["test_acc"]], "s-", label="test")
    right.set_xlabel("epoch")
    right.set_ylabel("accuracy (%)")
    right.set_title(f"accuracy (final test {100 * h['test_acc'][-1]:.2f}%)", fontsize=TITLE_FONTSIZE)
    right.legend()
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    return _finish(fig)


def plot_comparison(comparison, *, title: str | None = None) -> Figure:
    """Test accuracy after every epoch for each variant of :func:`vitlearn.experiments.compare`:
    one faint line per seed, the mean over seeds bold, the final mean written at the end."""
    names = getattr(comparison, "names", None)
    if not names:
        raise ValueError("plot_comparison needs the result of vitlearn.experiments.compare(...)")
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for i, name in enumerate(names):
        colour = f"C{i % 10}"
        histories = comparison.histories[name]
        for h in histories if len(histories) > 1 else []:
            ax.plot(h.epoch, [100 * a for a in h.test_acc], "-", color=colour, alpha=0.3, lw=1)
        epochs = histories[0].epoch
        mean = [100 * sum(h.test_acc[e] for h in histories) / len(histories) for e in range(len(epochs))]
        ax.plot(epochs, mean, "o-", color=colour, lw=2,
                label=f"{name} ({mean[-1]:.2f}%)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    seeds = comparison.seeds
    ax.set_title(title or f"test accuracy per epoch ({len(seeds)} seed{'s' if len(seeds) > 1 else ''}"
                          f"{', mean bold' if len(seeds) > 1 else ''})", fontsize=TITLE_FONTSIZE)
    ax.grid(alpha=0.3)
    ax.set_xticks(comparison.histories[names[0]][0].epoch)
    ax.legend(fontsize=SMALL_FONTSIZE, loc="lower right")
    return _finish(fig)


def _evaluation(model, data: ImageDataset | None, evaluation: Evaluation | None) -> Evaluation:
    if isinstance(model, Evaluation):
        evaluation = model
    if evaluation is not None:
        return evaluation
    if model is None or data is None:
        raise ValueError("pass a model and the data to evaluate it on, or evaluation=vitlearn.evaluate("
                         "model, data) to reuse an evaluation you already have")
    return evaluate(model, data)


def plot_confusion_matrix(model=None, data: ImageDataset | None = None, *,
                          evaluation: Evaluation | None = None,
                          classes: Sequence[str] | None = None) -> Figure:
    """Counts of (true class, predicted class): the off-diagonal cells are the confusions.

    Pass ``evaluation=`` (a :class:`vitlearn.Evaluation`) to skip a second pass over the data.
    """
    ev = _evaluation(model, data, evaluation)
    if classes is None:
        classes = data.classes if data is not None else None
    k = len(classes) if classes is not None else int(max(ev.labels.max(), ev.predictions.max())) + 1
    classes = list(classes) if classes is not None else [str(i) for i in range(k)]
    counts = torch.zeros(k, k, dtype=torch.long)
    counts.index_put_((ev.labels.long(), ev.predictions.long()), torch.ones(len(ev.labels), dtype=torch.long),
                      accumulate=True)
    fig, ax = plt.subplots(figsize=(0.45 * k + 2.0, 0.45 * k + 1.5))
    ax.imshow(np.log1p(counts.numpy()), cmap=COUNT_CMAP)
    top = counts.max().item()
    for t in range(k):
        for p in range(k):
            v = counts[t, p].item()
            if v:
                ax.text(p, t, str(v), ha="center", va="center", fontsize=7,
                        color="white" if math.log1p(v) > 0.6 * math.log1p(top) else "black")
    ax.set_xticks(range(k), classes, rotation=90 if max(map(len, classes)) > 2 else 0)
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix: {ev.accuracy:.2%} correct of {len(ev.labels)}", fontsize=TITLE_FONTSIZE)
    return _finish(fig)


def plot_mistakes(model=None, data: ImageDataset | None = None, n: int = 16, *,
                  evaluation: Evaluation | None = None) -> Figure:
    """The first ``n`` misclassified images, titled "true / predicted". ``data`` is needed for
    the pictures; pass ``evaluation=`` to reuse an evaluation of that same data."""
    if data is None:
        raise ValueError("plot_mistakes needs data= (the ImageDataset that was evaluated) to draw the images")
    ev = _evaluation(model, data, evaluation)
    if len(ev.labels) != len(data):
        raise ValueError(f"the evaluation covers {len(ev.labels)} images but data has {len(data)}; "
                         f"pass the data that was evaluated")
    wrong = (ev.predictions != ev.labels).nonzero().flatten()[:n].tolist()
    if not wrong:
        fig, ax = plt.subplots(figsize=(4, 1.5))
        ax.text(0.5, 0.5, f"no mistakes on these {len(data)} images", ha="center", va="center")
        ax.set_axis_off()
        return _finish(fig, tight=False)
    fig, axes = _tiles(len(wrong), cell=1.35)
    for ax, i in zip(axes, wrong):
        t, p = data.classes[int(ev.labels[i])], data.classes[int(ev.predictions[i])]
        _show_digit(ax, data.images[i], f"{t} / {p}", color=MISTAKE_COLOUR)
    total = int((ev.predictions != ev.labels).sum())
    fig.suptitle(f"mistakes (true / predicted): {len(wrong)} of {total}", fontsize=TITLE_FONTSIZE)
    return _finish(fig)
