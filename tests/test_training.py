"""fit / evaluate / checkpoints on small in-memory data: seeded reruns, exact resume."""

import torch

import vitlearn
from vitlearn import ImageDataset
from vitlearn.training import warmup_cosine


def synthetic(n=256, seed=0):
    """A learnable toy set: the class decides where a bright square sits."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    images = torch.randint(0, 40, (n, 28, 28), generator=g, dtype=torch.uint8)
    for i, y in enumerate(labels.tolist()):
        r, c = divmod(y, 5)
        images[i, 4 + 10 * r:12 + 10 * r, 1 + 5 * c:6 + 5 * c] = 255
    return ImageDataset(images, labels, tuple(str(i) for i in range(10)), 0.13, 0.31, "mnist")


def small_model():
    torch.manual_seed(0)
    return vitlearn.ViT(embed_dim=32, depth=2, num_heads=2)


KW = dict(epochs=3, batch_size=32, lr=3e-3, progress=False, seed=3, max_shift=2)


def test_fit_learns_and_records_history():
    train, test = synthetic(512), synthetic(128, seed=1)
    history = vitlearn.fit(small_model(), train, test, epochs=4, batch_size=32, lr=1e-2,
                           max_shift=0, label_smoothing=0.0, progress=False)
    assert history.epoch == [1, 2, 3, 4]
    assert len(history.train_loss) == len(history.test_acc) == len(history.seconds) == 4
    assert history.train_loss[-1] < history.train_loss[0]
    assert history.final_test_acc > 0.9
    assert "test acc" in str(history)


def test_seeded_runs_are_bit_identical_and_seeds_matter():
    train, test = synthetic(), synthetic(64, seed=1)
    a, b, c = small_model(), small_model(), small_model()
    ha = vitlearn.fit(a, train, test, **KW)
    hb = vitlearn.fit(b, train, test, **KW)
    vitlearn.fit(c, train, test, **{**KW, "seed": 4})
    assert ha.train_loss == hb.train_loss
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa, pb), name
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_resumed_run_ends_where_the_uninterrupted_run_ends(tmp_path):
    train, test = synthetic(), synthetic(64, seed=1)
    full = small_model()
    h_full = vitlearn.fit(full, train, test, checkpoint=tmp_path / "run-{epoch}.pt", **KW)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run-1.pt", "run-2.pt", "run-3.pt"]
    resumed = small_model()
    h_res = vitlearn.fit(resumed, train, test, resume=tmp_path / "run-1.pt", **KW)
    assert h_res.epoch == [1, 2, 3] and h_res.train_loss == h_full.train_loss
    for (name, pa), pb in zip(full.named_parameters(), resumed.parameters()):
        assert torch.equal(pa, pb), name


def test_resume_refuses_different_settings(tmp_path):
    train, test = synthetic(64), synthetic(32, seed=1)
    vitlearn.fit(small_model(), train, test, checkpoint=tmp_path / "c.pt", **{**KW, "epochs": 1})
    try:
        vitlearn.fit(small_model(), train, test, resume=tmp_path / "c.pt", **{**KW, "lr": 1e-3})
    except ValueError as err:
        assert "lr" in str(err) and "same arguments" in str(err)
    else:
        raise AssertionError("resume with another lr should fail")


def test_checkpoint_round_trip_is_exact(tmp_path):
    model = vitlearn.ViT(pool="mean", pos_embed="sincos", depth=2).eval()
    path = vitlearn.save(model, tmp_path / "m.pt")
    loaded = vitlearn.load(path)
    assert loaded.config == model.config
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(loaded(x), model(x))
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name


def test_evaluate_counts_correct_predictions():
    data = synthetic(100)
    model = small_model()
    result = vitlearn.evaluate(model, data, batch_size=7)
    assert len(result.predictions) == 100
    expected = (model(vitlearn.data.normalize(data.images, data.mean, data.std)).argmax(-1)
                == data.labels).float().mean().item()
    assert abs(result.accuracy - expected) < 1e-6


def test_warmup_cosine_shape():
    f = [warmup_cosine(s, 100, 10) for s in range(100)]
    assert f[0] == 0.1 and f[9] == 1.0
    assert all(a >= b for a, b in zip(f[9:], f[10:]))
    assert f[-1] < 0.01


def test_random_shift_moves_content_and_keeps_background():
    from vitlearn.data import random_shift

    x = torch.full((64, 1, 28, 28), -0.4)
    x[:, :, 10:18, 10:18] = 2.0
    g = torch.Generator().manual_seed(0)
    y = random_shift(x, 2, g)
    assert y.shape == x.shape
    assert torch.equal(y.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)))  # the square never leaves
    assert not torch.equal(y, x)
    assert torch.equal(random_shift(x, 0), x)


def test_rotate_zoom_turns_about_the_centre_and_zooms():
    from vitlearn.data import rotate_zoom

    x = torch.rand(3, 2, 6, 6)
    quarter = rotate_zoom(x, torch.full((3,), 90.0), torch.ones(3))
    torch.testing.assert_close(quarter, torch.rot90(x, -1, dims=(-2, -1)), atol=1e-5, rtol=0)
    torch.testing.assert_close(rotate_zoom(x, torch.zeros(3), torch.ones(3)), x, atol=1e-5, rtol=0)
    # zoom 2 about the centre of a 4x4 image: the bright centre 2x2 grows over the border,
    # whose pixels now sample between it and the background (bilinear)
    square = torch.zeros(1, 1, 4, 4)
    square[..., 1:3, 1:3] = 1.0
    zoomed = rotate_zoom(square, torch.zeros(1), torch.full((1,), 2.0))[0, 0]
    assert torch.equal(zoomed[1:3, 1:3], torch.ones(2, 2))
    torch.testing.assert_close(zoomed[0], torch.tensor([0.5625, 0.75, 0.75, 0.5625]))


def test_random_affine_keeps_the_background_and_repeats_with_its_generator():
    from vitlearn.data import random_affine

    x = torch.full((32, 1, 28, 28), -0.4)
    x[:, :, 10:18, 12:16] = 2.0
    y = random_affine(x, 15, 0.1, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and not torch.equal(y, x)
    assert torch.allclose(y[:, :, :3, :], torch.tensor(-0.4))         # what came in is background
    assert torch.equal(y, random_affine(x, 15, 0.1, torch.Generator().manual_seed(0)))
    assert random_affine(x, 0, 0) is x                                 # off: the images untouched


def test_rotations_and_zooms_train_bit_for_bit_and_are_checked():
    train, test = synthetic(), synthetic(64, seed=1)
    kw = {**KW, "max_rotate": 10.0, "max_scale": 0.1}
    a, b, plain = small_model(), small_model(), small_model()
    ha, hb = vitlearn.fit(a, train, test, **kw), vitlearn.fit(b, train, test, **kw)
    assert ha.train_loss == hb.train_loss
    assert vitlearn.fit(plain, train, test, **KW).train_loss != ha.train_loss
    import pytest

    with pytest.raises(ValueError, match=r"max_rotate must be a number in \[0, 180\]"):
        vitlearn.fit(small_model(), train, test, **{**KW, "max_rotate": -5})
    with pytest.raises(ValueError, match="max_scale"):
        vitlearn.fit(small_model(), train, test, **{**KW, "max_scale": 1.0})


def test_mnist_loads_with_the_known_statistics(mnist):
    train, test = mnist
    assert train.images.shape == (60000, 28, 28) and train.images.dtype == torch.uint8
    assert len(test) == 10000 and train.classes[3] == "3"
    x = train.images.float() / 255
    assert abs(x.mean().item() - 0.1307) < 1e-3 and abs(x.std().item() - 0.3081) < 1e-3


def test_progress_bar_redraws_at_most_about_once_a_second(monkeypatch):
    """Each redraw in Jupyter is widget traffic; a per-step bar overflowed nbval's buffer."""
    import io
    import time

    import tqdm.auto
    import tqdm.std

    draws = []

    class CountingBar(tqdm.std.tqdm):
        def display(self, *args, **kwargs):
            draws.append(self.n)
            return super().display(*args, **kwargs)

    monkeypatch.setattr(tqdm.auto, "tqdm", lambda *a, **k: CountingBar(*a, file=io.StringIO(), **k))
    train, test = synthetic(1024), synthetic(64, seed=1)
    t0 = time.perf_counter()
    vitlearn.fit(small_model(), train, test, epochs=2, batch_size=4, progress=True)
    elapsed = time.perf_counter() - t0
    steps = 2 * 1024 // 4
    assert draws and draws[-1] == steps, "the bar must end at the last step"
    # one redraw per second, plus a few per epoch (description, postfix) and open/close
    assert len(draws) <= elapsed + 3 * 2 + 4, (len(draws), elapsed, steps)


def test_compiled_training_follows_the_eager_run():
    import shutil

    import pytest

    if not (shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")):
        pytest.skip("torch.compile on a CPU needs a C++ compiler (apt-get install g++)")
    from torch._dynamo.utils import counters

    train, test = synthetic(256), synthetic(64, seed=1)
    eager = vitlearn.fit(small_model(), train, test, **{**KW, "epochs": 2})
    counters.clear()
    compiled = vitlearn.fit(small_model(), train, test, compile=True, **{**KW, "epochs": 2})
    assert counters["stats"]["unique_graphs"] >= 1, "compile=True must train a compiled graph"
    # the same training up to float rounding: fused kernels round differently
    torch.testing.assert_close(compiled.train_loss, eager.train_loss, rtol=2e-3, atol=1e-4)
    assert abs(compiled.final_test_acc - eager.final_test_acc) <= 2 / 64


def test_vit_config_round_trips_through_a_checkpoint_and_old_dict_checkpoints_load(tmp_path):
    from dataclasses import asdict

    model = vitlearn.ViT(embed_dim=32, depth=2, num_heads=2, pool="mean", dropout=0.1).eval()
    path = vitlearn.save(model, tmp_path / "m.pt")
    state = vitlearn.load_checkpoint(path)
    assert state["config"] == asdict(model.config)  # a plain dict in the file: loads weights-only
    loaded = vitlearn.load(path)
    assert isinstance(loaded.config, vitlearn.ViTConfig) and loaded.config == model.config
    # a checkpoint written before ViTConfig (config stored as the constructor's dict) still loads
    old = dict(state, config=dict(img_size=28, patch_size=7, in_chans=1, num_classes=10, embed_dim=32,
                                  depth=2, num_heads=2, mlp_ratio=2.0, pool="mean", pos_embed="learned",
                                  dropout=0.1, attn_dropout=0.0))
    torch.save(old, tmp_path / "old.pt")
    assert vitlearn.load(tmp_path / "old.pt").config == model.config


def test_fit_records_its_settings_as_a_train_config(tmp_path):
    from dataclasses import asdict

    from vitlearn.training import TrainConfig

    vitlearn.fit(small_model(), synthetic(64), synthetic(16), checkpoint=tmp_path / "c.pt",
                 **{**KW, "epochs": 1})
    saved = vitlearn.load_checkpoint(tmp_path / "c.pt")["train_config"]
    assert saved == asdict(TrainConfig(epochs=1, batch_size=32, lr=3e-3, seed=3, max_shift=2, train_size=64))


def test_seed_streams_are_named_and_fixed():
    from vitlearn.training import AUGMENT_STREAM, DROPOUT_STREAM, SEED_STRIDE, epoch_generators

    shuffle, augment = epoch_generators(seed=2, epoch=3, rank=1)
    assert shuffle.initial_seed() == 2 * SEED_STRIDE + 3
    assert augment.initial_seed() == 2 * SEED_STRIDE + 3 + 2 * AUGMENT_STREAM
    assert torch.initial_seed() == 2 * SEED_STRIDE + 3 + 2 * DROPOUT_STREAM
