"""vitlearn.viz: every figure renders, on tiny untrained models and synthetic digits (no data files)."""

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import nn  # noqa: E402

import vitlearn  # noqa: E402
from vitlearn import attention_maps, viz  # noqa: E402
from vitlearn.attention_maps import attention_rollout, mean_attention_distance  # noqa: E402

CLASSES = tuple(str(i) for i in range(10))


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 28, 28), dtype=torch.uint8, generator=g)
    return vitlearn.ImageDataset(images, torch.arange(40) % 10, classes=CLASSES, mean=0.1307, std=0.3081)


def tiny(**kwargs) -> vitlearn.ViT:
    torch.manual_seed(0)
    return vitlearn.ViT(**{**dict(embed_dim=16, depth=2, num_heads=2, mlp_ratio=1.0), **kwargs})


class LearnerAttention(nn.Module):
    """A learner's own attention: separate q/k/v layers, written from scratch."""

    def __init__(self, *, embed_dim, num_heads):
        super().__init__()
        self.h = num_heads
        self.q, self.k, self.v = (nn.Linear(embed_dim, embed_dim) for _ in range(3))
        self.out = nn.Linear(embed_dim, embed_dim)

    def forward(self, x, need_weights=False):
        b, n, d = x.shape
        split = lambda t: t.view(b, n, self.h, d // self.h).transpose(1, 2)  # [B, h, N, d/h]
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        w = (q @ k.transpose(-2, -1) / (d // self.h) ** 0.5).softmax(-1)
        y = self.out((w @ v).transpose(1, 2).reshape(b, n, d))
        return (y, w) if need_weights else y


MODELS = {
    "cls": lambda: tiny(),
    "mean": lambda: tiny(pool="mean", patch_size=4),
    "custom_attention": lambda: tiny(attn_layer=LearnerAttention),
    "sincos": lambda: tiny(pos_embed="sincos", patch_size=14),
}


@pytest.fixture(autouse=True)
def no_open_figures():
    """Every viz function hands its figure back closed: nothing piles up in pyplot."""
    plt.close("all")
    yield
    assert plt.get_fignums() == []


def images_in(ax):
    return [im.get_array().shape for im in ax.get_images()]


def visible_axes(fig: Figure):
    return [ax for ax in fig.axes if ax.get_visible()]


def test_show_digits(data):
    fig = viz.show_digits(data, n=10, title="ten digits")
    assert isinstance(fig, Figure)
    axes = visible_axes(fig)
    assert len(axes) == 10
    assert images_in(axes[0]) == [(28, 28)]
    assert [ax.get_title() for ax in axes] == [str(int(y)) for y in data.labels[:10]]
    assert fig._suptitle.get_text() == "ten digits"


def test_show_digits_caps_n_at_the_dataset_size(data):
    assert len(visible_axes(viz.show_digits(data[:3], n=16))) == 3


@pytest.mark.parametrize("patch_size,patches", [(2, 196), (4, 49), (7, 16), (14, 4), (28, 1)])
def test_plot_patch_grid(data, patch_size, patches):
    fig = viz.plot_patch_grid(data.images[0], patch_size)
    (ax,) = fig.axes
    assert images_in(ax) == [(28, 28)]
    assert f"{patches} patches" in ax.get_title()
    grid = 28 // patch_size
    assert len(ax.get_lines()) == 2 * (grid - 1)                  # the patch borders
    numbers = [t.get_text() for t in ax.texts]
    assert numbers == ([str(i) for i in range(patches)] if patches <= 64 else [])


@pytest.mark.parametrize("image", [lambda d: d.images[0], lambda d: d.images[0].float()[None] / 255])
def test_plot_patch_grid_accepts_uint8_and_float(data, image):
    assert images_in(viz.plot_patch_grid(image(data), 7).axes[0]) == [(28, 28)]


@pytest.mark.parametrize("patch_size", [1, 4, 7, 28])
def test_plot_patch_sequence(data, patch_size):
    fig = viz.plot_patch_sequence(data.images[0], patch_size)
    top, bottom = fig.axes
    n, pp = (28 // patch_size) ** 2, patch_size ** 2
    assert images_in(bottom) == [(n, pp)]
    assert f"[{n}, {pp}]" in bottom.get_title()
    assert f"{n} patches" in top.get_title()
    # the matrix rows are exactly vitlearn.patchify's tokens
    expected = vitlearn.patchify(data.images[0].float()[None, None], patch_size)[0]
    assert torch.equal(torch.as_tensor(bottom.get_images()[0].get_array()), expected)


def test_patch_functions_reject_a_bad_patch_size(data):
    with pytest.raises(ValueError, match=r"the image height=28 is not divisible by patch_size=5.*"
                                         r"choose patch_size from \[1, 2, 4, 7, 14, 28\]"):
        viz.plot_patch_grid(data.images[0], 5)
    with pytest.raises(ValueError, match="one greyscale image"):
        viz.plot_patch_sequence(data.images[:2], 7)


@pytest.mark.parametrize("pca", [False, True])
def test_plot_embedding_filters(pca):
    model = tiny()
    fig = viz.plot_embedding_filters(model, n=12, pca=pca)
    axes = visible_axes(fig)
    assert len(axes) == 12
    assert images_in(axes[0]) == [(7, 7)]
    assert ("principal components" in fig._suptitle.get_text()) == pca
    assert len(visible_axes(viz.plot_embedding_filters(model))) == 16  # all D rows by default


@pytest.mark.parametrize("kind", ["cls", "mean", "sincos"])
def test_plot_position_similarity(kind):
    model = MODELS[kind]()
    grid = 28 // model.patch_size
    fig = viz.plot_position_similarity(model)
    ax = fig.axes[0]
    ((h, w),) = images_in(ax)
    assert h == w == grid * (grid + 1) - 1                          # grid x grid tiles with gaps
    # tile (r, c) is brightest at its own position: cosine similarity 1 with itself
    canvas = ax.get_images()[0].get_array()
    for i in range(grid * grid):
        r, c = divmod(i, grid)
        assert canvas[r * (grid + 1) + r, c * (grid + 1) + c] == pytest.approx(1.0, abs=1e-5)
    assert "similarity" in ax.get_title()


def test_plot_position_similarity_of_what_changed_since_a_reference():
    """With a reference table, the tiles are the cosine similarities of pos - reference."""
    model = tiny()
    grid = 4
    reference = model.pos_embed.pos.detach().clone()
    rows = torch.arange(16) // grid                                   # a change that depends on the row only
    change = torch.zeros(1, 17, 16)
    change[0, 1:, 0] = torch.where(rows < 2, 1.0, -1.0)
    change[0, 1:, 1] = 0.5
    with torch.no_grad():
        model.pos_embed.pos += change
    canvas = viz.plot_position_similarity(model, reference=reference).axes[0].get_images()[0].get_array()
    diff = torch.nn.functional.normalize(change[0, 1:], dim=-1)
    expected = (diff @ diff.T).reshape(16, grid, grid)
    for i in range(16):
        r, c = divmod(i, grid)
        tile = canvas[r * (grid + 1):r * (grid + 1) + grid, c * (grid + 1):c * (grid + 1) + grid]
        torch.testing.assert_close(torch.as_tensor(tile.data).float(), expected[i], atol=1e-5, rtol=0)
    # same rows alike (1), top and bottom halves apart (-0.6): nothing like the random table
    assert expected[0, 1, 3] == pytest.approx(1.0) and expected[0, 3, 0] == pytest.approx(-0.6)
    plain = viz.plot_position_similarity(model).axes[0].get_images()[0].get_array()
    assert abs(float(plain[0, grid - 1]) - 1.0) > 0.1                  # without reference: another picture
    assert "changed" in viz.plot_position_similarity(model, reference=reference).axes[0].get_title()


def test_plot_position_similarity_rejects_a_reference_of_another_shape():
    model = tiny()
    with pytest.raises(ValueError, match="pos_at_init = model.pos_embed.pos"):
        viz.plot_position_similarity(model, reference=torch.zeros(1, 16, 16))


def test_plot_position_similarity_without_position_embedding():
    with pytest.raises(ValueError, match="no position embedding"):
        viz.plot_position_similarity(tiny(pos_embed="none"))


@pytest.mark.parametrize("kind", list(MODELS))
def test_attention_rollout(data, kind):
    model = MODELS[kind]()
    rollout = attention_rollout(model, data.images[:5])
    assert rollout.shape == (5, model.num_patches)
    assert (rollout >= 0).all() and (rollout <= 1).all()
    if model.pool == "mean":                                         # all tokens are patches
        torch.testing.assert_close(rollout.sum(-1), torch.ones(5))
    else:                                                            # the rest stays on [CLS]
        assert (rollout.sum(-1) < 1).all()


def test_attention_rollout_matches_the_definition(data):
    model = tiny()
    x = vitlearn.data.normalize(data.images[:2], 0.1307, 0.3081)
    maps = model.attention_maps(x).mean(dim=2)                       # [B, depth, T, T]
    eye = torch.eye(maps.shape[-1])
    joint = eye
    for layer in range(maps.shape[1]):
        a = maps[:, layer] + eye
        joint = (a / a.sum(-1, keepdim=True)) @ joint
    torch.testing.assert_close(attention_rollout(model, x), joint[:, 0, 1:])
    torch.testing.assert_close(attention_rollout(model, data.images[:2]), joint[:, 0, 1:])


def test_attention_rollout_with_identity_attention_is_uniform(data):
    """Attention that spreads evenly everywhere gives every patch the same share."""
    model = tiny(pool="mean")
    with torch.no_grad():
        for block in model.encoder.blocks:
            block.attn.qkv.weight.zero_()
            block.attn.qkv.bias.zero_()
    rollout = attention_rollout(model, data.images[:1])
    torch.testing.assert_close(rollout, torch.full_like(rollout, 1 / model.num_patches))


@pytest.mark.parametrize("kind", list(MODELS))
def test_plot_attention_maps_all_layers_and_heads(data, kind):
    model = MODELS[kind]()
    fig = viz.plot_attention_maps(model, data.images[0])
    assert len(fig.axes) == 2 * 2                                    # depth x heads
    grid = 28 // model.patch_size
    assert images_in(fig.axes[0]) == [(28, 28), (grid, grid)]        # digit + attention overlay
    assert fig.axes[3].get_title() == "layer 1, head 1"
    assert ("[CLS]" in fig._suptitle.get_text().split("\n")[0]) == (model.pool == "cls")


def test_plot_attention_maps_one_layer_and_head(data):
    model = tiny()
    fig = viz.plot_attention_maps(model, data.images[0], layer=1, head=0)
    (ax,) = fig.axes
    assert ax.get_title() == "layer 1, head 0"
    cls_row = model.attention_maps(vitlearn.data.normalize(data.images[:1], 0.1307, 0.3081))[0, 1, 0, 0, 1:]
    torch.testing.assert_close(torch.as_tensor(ax.get_images()[1].get_array()).flatten().float(), cls_row)
    assert len(viz.plot_attention_maps(model, data.images[0], layer=-1).axes) == 2


def test_plot_attention_maps_rejects_bad_choices(data):
    with pytest.raises(ValueError, match="use 0..1"):
        viz.plot_attention_maps(tiny(), data.images[0], layer=2)
    with pytest.raises(ValueError, match="one image"):
        viz.plot_attention_maps(tiny(), data.images[:2])


@pytest.mark.parametrize("kind", ["cls", "mean", "custom_attention"])
def test_plot_attention_rollout(data, kind):
    model = MODELS[kind]()
    fig = viz.plot_attention_rollout(model, data.images[:4], labels=data.labels[:4])
    assert len(fig.axes) == 8
    grid = 28 // model.patch_size
    assert images_in(fig.axes[0]) == [(28, 28)]
    assert images_in(fig.axes[4]) == [(28, 28), (grid, grid)]
    assert fig.axes[1].get_title().startswith("label 1\npred ")
    fig = viz.plot_attention_rollout(model, data[:3])                # a dataset brings its labels
    assert len(fig.axes) == 6 and fig.axes[2].get_title().startswith("label 2")


def test_plot_training_curves():
    history = vitlearn.History(epoch=[1, 2, 3], train_loss=[1.2, 0.6, 0.4], train_acc=[0.6, 0.85, 0.9],
                               test_acc=[0.8, 0.9, 0.95], lr=[1e-3, 5e-4, 1e-5], seconds=[10, 10, 10])
    for h in (history, history.to_dict()):
        fig = viz.plot_training_curves(h)
        loss_ax, acc_ax = fig.axes
        assert list(loss_ax.get_lines()[0].get_ydata()) == [1.2, 0.6, 0.4]
        assert [line.get_label() for line in acc_ax.get_lines()] == ["train", "test"]
        assert list(acc_ax.get_lines()[1].get_ydata()) == pytest.approx([80, 90, 95])
        assert "95.00%" in acc_ax.get_title()
    with pytest.raises(ValueError, match="empty"):
        viz.plot_training_curves(vitlearn.History())


def test_plot_confusion_matrix(data):
    model = tiny()
    fig = viz.plot_confusion_matrix(model, data)
    (ax,) = fig.axes
    assert images_in(ax) == [(10, 10)]
    ev = vitlearn.evaluate(model, data)
    assert f"{ev.accuracy:.2%}" in ax.get_title()
    assert sum(int(t.get_text()) for t in ax.texts) == len(data)     # every image counted once


def test_plot_confusion_matrix_from_an_evaluation(data):
    ev = vitlearn.Evaluation(0.5, 1.0, predictions=torch.tensor([0, 1, 1, 2]),
                             labels=torch.tensor([0, 1, 2, 2]))
    for fig in (viz.plot_confusion_matrix(evaluation=ev), viz.plot_confusion_matrix(ev)):
        ax = fig.axes[0]
        assert images_in(ax) == [(3, 3)]
        assert sorted(t.get_text() for t in ax.texts) == ["1", "1", "1", "1"]
    fig = viz.plot_confusion_matrix(evaluation=ev, classes=CLASSES)
    assert images_in(fig.axes[0]) == [(10, 10)]
    with pytest.raises(ValueError, match="evaluation="):
        viz.plot_confusion_matrix()


def test_plot_mistakes(data):
    preds = data.labels.clone()
    preds[[3, 5, 8]] = (preds[[3, 5, 8]] + 1) % 10
    ev = vitlearn.Evaluation(37 / 40, 0.1, predictions=preds, labels=data.labels)
    fig = viz.plot_mistakes(data=data, evaluation=ev)
    axes = visible_axes(fig)
    assert [ax.get_title() for ax in axes] == ["3 / 4", "5 / 6", "8 / 9"]
    assert images_in(axes[0]) == [(28, 28)]
    assert len(visible_axes(viz.plot_mistakes(data=data, evaluation=ev, n=2))) == 2
    assert len(visible_axes(viz.plot_mistakes(tiny(), data, n=5))) <= 5    # runs the model itself


def test_plot_mistakes_with_none(data):
    ev = vitlearn.Evaluation(1.0, 0.0, predictions=data.labels.clone(), labels=data.labels)
    fig = viz.plot_mistakes(data=data, evaluation=ev)
    assert "no mistakes" in fig.axes[0].texts[0].get_text()


def test_figures_render_to_png(data, tmp_path):
    """Closed figures still draw (that is how they are shown in notebooks and widgets)."""
    fig = viz.plot_attention_maps(tiny(), data.images[0])
    fig.savefig(tmp_path / "maps.png")
    assert (tmp_path / "maps.png").stat().st_size > 1000


# ---------------------------------------------------------------------------- RGB photos (notebook 09)

def rgb_image(size=32):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=g)


@pytest.mark.parametrize("patch_size,patches", [(16, 4), (8, 16), (4, 64), (2, 256)])
def test_plot_patch_grid_rgb(patch_size, patches):
    fig = viz.plot_patch_grid(rgb_image(), patch_size)
    (ax,) = fig.axes
    assert images_in(ax) == [(32, 32, 3)]                         # drawn in colour
    assert f"{patches} patches" in ax.get_title()
    assert len(ax.get_lines()) == 2 * (32 // patch_size - 1)
    assert len(ax.texts) == (patches if patches <= 64 else 0)


@pytest.mark.parametrize("image", [
    lambda x: x,                                    # uint8 [3, H, W]
    lambda x: x.float() / 255,                      # float in [0, 1]
    lambda x: (x.float() / 255 - 0.5) / 0.5,        # normalised, as a model takes it
    lambda x: x[None],                              # a batch of one [1, 3, H, W]
    lambda x: x.permute(1, 2, 0).numpy(),           # [H, W, 3], as np.asarray(PIL image) gives it
])
def test_rgb_images_in_every_layout_draw_the_same_picture(image):
    x = rgb_image()
    expected = (x.float() / 255).permute(1, 2, 0).numpy()
    drawn = viz.plot_patch_grid(image(x), 8).axes[0].get_images()[0].get_array()
    assert drawn.shape == (32, 32, 3)
    assert abs(drawn - expected).max() < 1e-6


@pytest.mark.parametrize("patch_size", [8, 16])
def test_plot_patch_sequence_rgb(patch_size):
    x = rgb_image()
    fig = viz.plot_patch_sequence(x, patch_size)
    top, bottom = fig.axes
    n, d = (32 // patch_size) ** 2, patch_size * patch_size * 3
    assert images_in(bottom) == [(n, d)]
    assert f"[3, 32, 32] -> [{n}, {d}]" in bottom.get_title()
    assert f"{n} patches of {patch_size}x{patch_size}" in top.get_title()
    assert top.get_images()[0].get_array().ndim == 3              # the patches in colour
    # the matrix rows are exactly vitlearn.patchify's tokens (pixels ordered p1 p2 c)
    expected = vitlearn.patchify(x.float()[None] / 255, patch_size)[0]
    torch.testing.assert_close(torch.as_tensor(bottom.get_images()[0].get_array()), expected)


def test_patch_functions_reject_two_channels_with_a_clear_error():
    with pytest.raises(ValueError, match="one RGB image"):
        viz.plot_patch_grid(torch.zeros(2, 28, 28), 7)
    with pytest.raises(ValueError, match="is not divisible by patch_size=5"):
        viz.plot_patch_sequence(rgb_image(), 5)


def data_scale_result():
    from vitlearn.baselines import DataScaleResult

    return DataScaleResult(model=["ViT", "CNN", "ViT", "CNN"], fraction=[0.1, 0.1, 1.0, 1.0],
                           n_train=[6000, 6000, 60000, 60000], steps=[936] * 4,
                           test_acc=[0.95, 0.98, 0.98, 0.99], seconds=[1.0] * 4,
                           params={"ViT": 139018, "CNN": 136498})


@pytest.mark.parametrize("as_dict", [False, True])
def test_plot_data_scale(as_dict):
    result = data_scale_result()
    fig = viz.plot_data_scale(result.to_dict() if as_dict else result)
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["ViT (139,018 parameters)", "CNN (136,498 parameters)"]
    assert list(lines[0].get_xdata()) == [6000, 60000]
    assert list(lines[1].get_ydata()) == pytest.approx([98.0, 99.0])
    assert ax.get_xscale() == "log"
    assert "936 optimizer steps each" in ax.get_title()
    assert sorted(t.get_text() for t in ax.texts) == ["95.0", "98.0", "98.0", "99.0"]


def test_plot_data_scale_rejects_other_input():
    with pytest.raises(ValueError, match="data_scale_experiment"):
        viz.plot_data_scale({"model": []})
    with pytest.raises(ValueError, match="data_scale_experiment"):
        viz.plot_data_scale({"epoch": [1]})


# ---------------------------------------------------------------------------- mean attention distance

class FixedAttention(nn.Module):
    """Attention whose weights are a given pattern [T, T] (the same for every head and image):
    a hand-made map whose mean attention distance is known without the code under test."""

    pattern: torch.Tensor = None  # set per test

    def __init__(self, *, embed_dim, num_heads):
        super().__init__()
        self.h = num_heads

    def forward(self, x, need_weights=False):
        w = self.pattern.to(x.dtype).expand(x.shape[0], self.h, -1, -1)    # [B, h, T, T]
        y = w @ x[:, None]                                                 # [B, h, T, D]
        y = y.mean(dim=1)
        return (y, w) if need_weights else y


def fixed_attention_model(pattern, **kwargs):
    attn = type("Pattern", (FixedAttention,), {"pattern": pattern})
    return tiny(attn_layer=attn, **kwargs)


def centre_distance(i, j, grid, patch_size):
    """Pixels between the centres of patches i and j (row-major), by Pythagoras."""
    (ri, ci), (rj, cj) = divmod(i, grid), divmod(j, grid)
    return patch_size * math.hypot(ri - rj, ci - cj)


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_mean_attention_distance_of_self_attention_only_is_zero(data, pool):
    """Every token attends only to itself: each query's distance is 0."""
    model = fixed_attention_model(torch.eye(17 if pool == "cls" else 16), pool=pool)
    d = mean_attention_distance(model, data.images[:3])
    assert d.shape == (2, 2)                                         # [depth, heads]
    torch.testing.assert_close(d, torch.zeros(2, 2))


def test_mean_attention_distance_of_uniform_attention_is_the_mean_pairwise_distance(data):
    """Zero queries and keys: every token attends evenly to all 17 tokens; over the 16 patch
    keys (renormalised, [CLS] left out) that is the mean distance between any two patches."""
    model = tiny(patch_size=7)
    with torch.no_grad():
        for block in model.encoder.blocks:
            qk = 2 * block.attn.qkv.in_features                       # rows (three h d): q, k, then v
            block.attn.qkv.weight[:qk].zero_()
            block.attn.qkv.bias[:qk].zero_()
    expected = sum(centre_distance(i, j, 4, 7) for i in range(16) for j in range(16)) / 16 ** 2
    d = mean_attention_distance(model, data.images[:5])
    torch.testing.assert_close(d, torch.full((2, 2), expected))


def test_mean_attention_distance_renormalises_over_patches_and_reads_queries_as_rows(data):
    """Each patch query puts half its weight on [CLS] and half on patch 0 (the top-left one):
    without [CLS] that is all on patch 0, so the distance is the mean distance to patch 0.
    Reading the keys as rows, or keeping [CLS]'s half, gives another number."""
    pattern = torch.zeros(17, 17)
    pattern[:, 0] = 0.5
    pattern[:, 1] = 0.5
    model = fixed_attention_model(pattern)
    expected = sum(centre_distance(0, j, 4, 7) for j in range(16)) / 16
    torch.testing.assert_close(mean_attention_distance(model, data.images[:2]),
                               torch.full((2, 2), expected))


def test_mean_attention_distance_averages_over_images_in_batches(data):
    model = tiny(patch_size=4)
    whole = mean_attention_distance(model, data.images[:7])
    torch.testing.assert_close(mean_attention_distance(model, data.images[:7], batch_size=3), whole)
    one_by_one = torch.stack([mean_attention_distance(model, data.images[i:i + 1]) for i in range(7)])
    torch.testing.assert_close(one_by_one.mean(dim=0), whole)
    torch.testing.assert_close(mean_attention_distance(model, data[:7]), whole)  # a dataset
    assert ((whole > 0) & (whole < centre_distance(0, 48, 7, 4))).all()


@pytest.mark.parametrize("kind", list(MODELS))
def test_plot_mean_attention_distance(data, kind):
    model = MODELS[kind]()
    fig = viz.plot_mean_attention_distance(model, data[:6])
    (ax,) = fig.axes
    dots = [c.get_offsets() for c in ax.collections]                 # one scatter per head
    assert len(dots) == 2
    distances = mean_attention_distance(model, data[:6])
    for head, xy in enumerate(dots):
        assert torch.allclose(torch.as_tensor(xy[:, 1]).float(), distances[:, head], atol=1e-5)
        assert [round(float(x)) for x in xy[:, 0]] == [0, 1]          # x = layer
    assert "pixels" in ax.get_ylabel()
    assert "6 images" in ax.get_title()


def test_the_attention_measures_need_no_matplotlib_and_viz_keeps_their_names():
    import subprocess
    import sys
    code = ("import sys; sys.modules['matplotlib'] = None; "  # any matplotlib import now fails
            "from vitlearn.attention_maps import attention_rollout, mean_attention_distance; "
            "import torch, vitlearn; m = vitlearn.ViT(depth=1); x = torch.randn(2, 1, 28, 28); "
            "print(tuple(attention_rollout(m, x).shape), tuple(mean_attention_distance(m, x).shape))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["(2,", "16)", "(1,", "4)"]
    assert viz.attention_rollout is attention_rollout  # notebook 09 calls it so
    assert viz.mean_attention_distance is mean_attention_distance
    assert "matplotlib" not in attention_maps.__dict__
