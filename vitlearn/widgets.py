"""Interactive explorers for the notebooks (ipywidgets).

Each explorer is a VBox you can display; its controls and outputs are attributes, so a test
(or a curious learner) can set ``explorer.patch_size_slider.value = 4`` and see the result.
Figures are rendered to PNG and put into an ``ipywidgets.Output`` as display data, the same
thing ``clear_output(wait=True)`` + ``display(fig)`` would leave there, but it also works
without a running kernel (in tests) and swaps the picture in one step (no flicker).
"""

from __future__ import annotations

import base64
import html
import io

import ipywidgets as widgets
import torch
from matplotlib.figure import Figure

from . import viz
from .attention_maps import model_device
from .data import ImageDataset

__all__ = ["patch_explorer", "attention_explorer", "PatchExplorer", "AttentionExplorer",
           "PATCH_SIZES", "show_figure", "figure_png"]

IMAGE_SIZE = 28  # MNIST digits are 28x28
PATCH_SIZES = tuple(p for p in range(1, IMAGE_SIZE + 1) if IMAGE_SIZE % p == 0)  # (1, 2, 4, 7, 14, 28)


def show_figure(output: widgets.Output, fig: Figure, *, dpi: int = 80) -> None:
    """Replace what ``output`` shows with ``fig`` (as a PNG), then free the figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    fig.clf()
    output.outputs = ({"output_type": "display_data",
                       "data": {"image/png": base64.b64encode(buf.getvalue()).decode("ascii"),
                                "text/plain": f"<Figure: {fig.get_label() or 'vitlearn'}>"},
                       "metadata": {}},)


def figure_png(output: widgets.Output) -> str | None:
    """The base64 PNG ``output`` shows now (None when empty): lets tests see a redraw."""
    for item in output.outputs:
        png = item.get("data", {}).get("image/png")
        if png:
            return png
    return None


def _check_dataset(dataset) -> None:
    if not isinstance(dataset, ImageDataset) or len(dataset) == 0:
        raise ValueError("expected a non-empty vitlearn.ImageDataset, e.g. vitlearn.load_dataset('mnist')")


def _check_index(index: int, dataset: ImageDataset) -> None:
    if not 0 <= index < len(dataset):
        raise ValueError(f"index={index} is out of range; the dataset has {len(dataset)} images "
                         f"(use 0..{len(dataset) - 1})")


def _digit_slider(dataset: ImageDataset, index: int) -> widgets.IntSlider:
    """The "digit" slider both explorers share: which image of ``dataset`` to show."""
    return widgets.IntSlider(value=index, min=0, max=len(dataset) - 1, description="digit",
                             continuous_update=False, style={"description_width": "initial"})


class PatchExplorer(widgets.VBox):
    """Step 2-3 explorer: choose a patch size and a digit; see the grid and the sequence."""

    def __init__(self, dataset: ImageDataset, *, index: int = 0, patch_size: int = 7):
        _check_dataset(dataset)
        _check_index(index, dataset)
        if patch_size not in PATCH_SIZES:
            raise ValueError(f"patch_size={patch_size} does not divide {IMAGE_SIZE}; "
                             f"choose one of {PATCH_SIZES}")
        self.dataset = dataset
        self.patch_size_slider = widgets.SelectionSlider(
            options=list(PATCH_SIZES), value=patch_size, description="patch size",
            continuous_update=False, style={"description_width": "initial"})
        self.index_slider = _digit_slider(dataset, index)
        self.status = widgets.HTML()
        self.grid_output = widgets.Output()
        self.sequence_output = widgets.Output()
        super().__init__([widgets.HBox([self.patch_size_slider, self.index_slider]), self.status,
                          widgets.HBox([self.grid_output, self.sequence_output])])
        self.add_class("vitlearn-patch-explorer")
        self.patch_size_slider.observe(self.update, names="value")
        self.index_slider.observe(self.update, names="value")
        self.update()

    def update(self, change=None) -> None:
        p, i = self.patch_size_slider.value, self.index_slider.value
        grid = IMAGE_SIZE // p
        n = grid * grid
        label = self.dataset.classes[int(self.dataset.labels[i])]
        self.status.value = (f"<b>patch size {p}: {n} patch{'es' if n > 1 else ''} of {p * p} pixels</b>"
                             f" (a {grid}x{grid} grid; digit {i}, label {html.escape(label)})")
        image = self.dataset.images[i]
        show_figure(self.grid_output, viz.plot_patch_grid(image, p))
        show_figure(self.sequence_output, viz.plot_patch_sequence(image, p))


def patch_explorer(dataset: ImageDataset, *, index: int = 0, patch_size: int = 7) -> PatchExplorer:
    """Sliders for the patch size (the divisors of 28) and the digit; shows the digit cut into
    patches and the flattened patch sequence, and says how many tokens that makes."""
    return PatchExplorer(dataset, index=index, patch_size=patch_size)


class AttentionExplorer(widgets.VBox):
    """Step 7 explorer: choose a digit, a layer and a head; see where the [CLS] token looks."""

    def __init__(self, model, dataset: ImageDataset, *, index: int = 0):
        _check_dataset(dataset)
        _check_index(index, dataset)
        self.model, self.dataset = model, dataset
        maps = model.attention_maps(self._image(index).to(model_device(model)))  # probe once
        depth, heads = maps.shape[1], maps.shape[2]
        self.index_slider = _digit_slider(dataset, index)
        self.layer_dropdown = widgets.Dropdown(
            options=[("all", None)] + [(str(k), k) for k in range(depth)], value=None,
            description="layer", layout=widgets.Layout(width="150px"))
        self.head_dropdown = widgets.Dropdown(
            options=[("all", None)] + [(str(k), k) for k in range(heads)], value=None,
            description="head", layout=widgets.Layout(width="150px"))
        self.status = widgets.HTML()
        self.output = widgets.Output()
        super().__init__([widgets.HBox([self.index_slider, self.layer_dropdown, self.head_dropdown]),
                          self.status, self.output])
        self.add_class("vitlearn-attention-explorer")
        for control in (self.index_slider, self.layer_dropdown, self.head_dropdown):
            control.observe(self.update, names="value")
        self.update()

    def _image(self, i: int) -> torch.Tensor:
        return self.dataset[i].tensors()[0]  # normalised like the training data: [1, 1, 28, 28]

    def update(self, change=None) -> None:
        i = self.index_slider.value
        layer, head = self.layer_dropdown.value, self.head_dropdown.value
        x = self._image(i)
        proba = self.model.predict_proba(x.to(model_device(self.model)))[0].cpu()
        pred = int(proba.argmax())
        classes = self.dataset.classes
        label = classes[int(self.dataset.labels[i])]
        self.status.value = (f"digit {i}: label {html.escape(label)}, predicted "
                             f"{html.escape(classes[pred])} (p = {proba[pred]:.2f}); "
                             f"layer {'all' if layer is None else layer}, "
                             f"head {'all' if head is None else head}")
        show_figure(self.output, viz.plot_attention_maps(self.model, x, layer=layer, head=head))


def attention_explorer(model, dataset: ImageDataset, *, index: int = 0) -> AttentionExplorer:
    """Pick a digit, a layer and a head (or all) and see the attention maps of ``model``."""
    return AttentionExplorer(model, dataset, index=index)
