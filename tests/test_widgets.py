"""vitlearn.widgets without a browser: move the controls, check what the explorer shows."""

import matplotlib

matplotlib.use("Agg")

import ipywidgets as widgets  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import vitlearn  # noqa: E402
from vitlearn.widgets import PATCH_SIZES, attention_explorer, figure_png, patch_explorer  # noqa: E402


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (12, 28, 28), dtype=torch.uint8, generator=g)
    return vitlearn.ImageDataset(images, torch.arange(12) % 10, classes=tuple(str(i) for i in range(10)),
                                 mean=0.1307, std=0.3081)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return vitlearn.ViT(embed_dim=16, depth=3, num_heads=2, mlp_ratio=1.0)


def test_patch_explorer_starts_at_the_requested_state(data):
    w = patch_explorer(data, index=2, patch_size=7)
    assert isinstance(w, widgets.VBox)
    assert isinstance(w.patch_size_slider, widgets.SelectionSlider)
    assert list(w.patch_size_slider.options) == list(PATCH_SIZES)
    assert {2, 4, 7, 14} <= set(w.patch_size_slider.options)
    assert w.patch_size_slider.description == "patch size"
    assert (w.index_slider.min, w.index_slider.max, w.index_slider.value) == (0, 11, 2)
    assert "patch size 7: 16 patches of 49 pixels" in w.status.value
    assert figure_png(w.grid_output) and figure_png(w.sequence_output)
    assert plt.get_fignums() == []                                   # figures were freed


def test_patch_explorer_patch_size_slider_redraws(data):
    w = patch_explorer(data)
    grid_before, seq_before = figure_png(w.grid_output), figure_png(w.sequence_output)
    w.patch_size_slider.value = 4
    assert "patch size 4: 49 patches of 16 pixels" in w.status.value
    assert figure_png(w.grid_output) != grid_before
    assert figure_png(w.sequence_output) != seq_before
    assert len(w.grid_output.outputs) == 1                            # replaced, not appended
    w.patch_size_slider.value = 28
    assert "patch size 28: 1 patch of 784 pixels" in w.status.value


def test_patch_explorer_index_slider_redraws(data):
    w = patch_explorer(data)
    before = figure_png(w.grid_output)
    w.index_slider.value = 5
    assert "digit 5, label 5" in w.status.value
    assert figure_png(w.grid_output) != before


def test_patch_explorer_rejects_bad_arguments(data):
    with pytest.raises(ValueError, match="does not divide 28"):
        patch_explorer(data, patch_size=5)
    with pytest.raises(ValueError, match="out of range"):
        patch_explorer(data, index=12)


def test_attention_explorer_layer_and_head(data, model):
    w = attention_explorer(model, data, index=1)
    assert isinstance(w, widgets.VBox)
    assert [v for _, v in w.layer_dropdown.options] == [None, 0, 1, 2]
    assert [v for _, v in w.head_dropdown.options] == [None, 0, 1]
    assert "digit 1: label 1" in w.status.value
    assert "layer all" in w.status.value
    all_maps = figure_png(w.output)
    w.layer_dropdown.value = 2
    assert "layer 2, head all" in w.status.value
    one_layer = figure_png(w.output)
    assert one_layer != all_maps
    w.head_dropdown.value = 1
    assert "layer 2, head 1" in w.status.value
    assert figure_png(w.output) != one_layer
    before = figure_png(w.output)
    w.index_slider.value = 7
    assert "digit 7: label 7" in w.status.value
    assert figure_png(w.output) != before
    assert plt.get_fignums() == []


def test_attention_explorer_works_with_mean_pooling(data):
    model = vitlearn.ViT(embed_dim=16, depth=1, num_heads=4, pool="mean", patch_size=4)
    w = attention_explorer(model, data)
    assert [v for _, v in w.head_dropdown.options] == [None, 0, 1, 2, 3]
    w.head_dropdown.value = 3
    assert "head 3" in w.status.value and figure_png(w.output)
