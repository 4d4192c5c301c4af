"""Bad input gets a clear exception at the public surface that names what to change."""

import pytest
import torch

import vitlearn
from vitlearn import CheckpointError, DataNotFoundError


@pytest.fixture(scope="module")
def model():
    return vitlearn.ViT().eval()


def test_image_size_not_divisible_by_patch_size(model):
    divisors = r"choose patch_size from \[1, 2, 4, 7, 14, 28\]"
    with pytest.raises(ValueError, match=r"not divisible by patch_size=5.*" + divisors):
        vitlearn.ViT(img_size=28, patch_size=5)
    with pytest.raises(ValueError, match="not divisible by patch_size=5"):
        vitlearn.patchify(torch.randn(1, 1, 28, 28), 5)
    with pytest.raises(ValueError, match="not divisible by patch_size=7; pick a multiple of 7"):
        model.set_img_size(32)


def test_wrong_number_of_channels(model):
    with pytest.raises(ValueError, match=r"expects 1 channel\(s\) but the images have 3.*in_chans=3"):
        model(torch.randn(2, 3, 28, 28))


def test_wrong_spatial_size_without_resampling(model):
    with pytest.raises(ValueError, match=r"built for 28x28 images but got 56x56.*set_img_size\(56\)"):
        model(torch.randn(2, 1, 56, 56))


@pytest.mark.parametrize("shape,hint", [((1, 28, 28), "unsqueeze"), ((28, 28), r"\[None, None\]"),
                                        ((1, 1, 1, 28, 28), "4-D")])
def test_input_that_is_not_4d(model, shape, hint):
    with pytest.raises(ValueError, match=hint):
        model(torch.randn(*shape))


def test_input_that_is_not_a_tensor(model):
    with pytest.raises(TypeError, match="torch.Tensor"):
        model([[0.0] * 28] * 28)


def test_embed_dim_not_divisible_by_num_heads():
    divisors = r"\[1, 2, 4, 8, 16, 32, 64\]"
    with pytest.raises(ValueError, match=r"embed_dim=64 is not divisible by num_heads=5.*" + divisors):
        vitlearn.ViT(embed_dim=64, num_heads=5)
    with pytest.raises(ValueError, match="num_heads"):
        vitlearn.MultiHeadSelfAttention(embed_dim=10, num_heads=3)


def test_unknown_names():
    with pytest.raises(ValueError, match=r"unknown pool='max'; use one of \('cls', 'mean'\)"):
        vitlearn.ViT(pool="max")
    with pytest.raises(ValueError, match=r"unknown pos_embed='rope'.*learned"):
        vitlearn.ViT(pos_embed="rope")
    with pytest.raises(ValueError, match=r"unknown dataset 'cifar10'.*fashion-mnist"):
        vitlearn.load_dataset("cifar10")


def test_missing_data_directory_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("VITLEARN_DATA_DIR", str(tmp_path / "nothing"))
    with pytest.raises(DataNotFoundError) as err:
        vitlearn.load_dataset("mnist", download=False)
    assert str(tmp_path / "nothing") in str(err.value) and "VITLEARN_DATA_DIR" in str(err.value)


def test_data_dir_precedence(tmp_path, monkeypatch):
    from vitlearn.data import default_data_dir, resolve_data_dir

    monkeypatch.delenv("VITLEARN_DATA_DIR", raising=False)
    assert resolve_data_dir() == default_data_dir()
    assert default_data_dir().parts[-3:] == (".cache", "vitlearn", "data") or \
        default_data_dir().parts[-2:] == ("vitlearn", "data")
    monkeypatch.setenv("VITLEARN_DATA_DIR", str(tmp_path))
    assert resolve_data_dir() == tmp_path
    assert resolve_data_dir(tmp_path / "x") == tmp_path / "x"


def test_corrupt_truncated_and_foreign_checkpoints(tmp_path):
    good = vitlearn.save(vitlearn.ViT(depth=1), tmp_path / "good.pt")
    data = good.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.pt").write_bytes(b"this is not a checkpoint" * 10)
    corrupt = bytearray(data)
    corrupt[len(data) // 3: len(data) // 3 + 64] = b"\xff" * 64
    (tmp_path / "corrupt.pt").write_bytes(bytes(corrupt))
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    torch.save(vitlearn.ViT(depth=1).state_dict(), tmp_path / "state_dict.pt")
    for name in ("truncated", "garbage", "corrupt", "foreign", "state_dict"):
        with pytest.raises(CheckpointError, match="not a (readable )?vitlearn checkpoint"):
            vitlearn.load(tmp_path / f"{name}.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        vitlearn.load(tmp_path / "missing.pt")


def test_checkpoint_never_unpickles_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": "vitlearn.checkpoint", "evil": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError):
        vitlearn.load(tmp_path / "evil.pt")


def test_custom_parts_must_be_passed_again_to_load(tmp_path):
    from test_parts import HandAttention

    path = vitlearn.save(vitlearn.ViT(attn_layer=HandAttention, depth=1), tmp_path / "custom.pt")
    with pytest.raises(CheckpointError, match="attn_layer=test_parts.HandAttention"):
        vitlearn.load(path)
    assert isinstance(vitlearn.load(path, attn_layer=HandAttention).encoder.blocks[0].attn, HandAttention)


def test_fit_rejects_bad_settings():
    from test_training import small_model, synthetic

    with pytest.raises(ValueError, match="epochs >= 1"):
        vitlearn.fit(small_model(), synthetic(32), synthetic(8), epochs=0, progress=False)
    with pytest.raises(ValueError, match="larger than the 32 training images"):
        vitlearn.fit(small_model(), synthetic(32), synthetic(8), batch_size=64, progress=False)


# -- issue 11, part 2: nonsense input fails at the surface, before any work is lost ----------

def test_raw_uint8_images_say_how_to_convert(model):
    raw = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)  # what MNIST holds
    with pytest.raises(TypeError, match=r"torch.uint8.*images.float\(\) / 255 and normalise.*normalize"):
        model(raw)
    with pytest.raises(TypeError, match="uint8"):
        model.attention_maps(raw)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_images_of_another_float_dtype_say_how_to_convert(model, dtype):
    with pytest.raises(TypeError, match=rf"images are {dtype}.*weights are torch.float32.*images.float\(\)"
                                        rf".*model.to\({dtype}\)"):
        model(torch.randn(2, 1, 28, 28, dtype=dtype))
    # and the advice works
    assert model.to(torch.float64)(torch.randn(1, 1, 28, 28, dtype=torch.float64)).dtype == torch.float64
    model.float()


def test_patch_embedding_alone_checks_its_input_once_inside_a_vit(model):
    emb = vitlearn.PatchEmbedding()
    with pytest.raises(TypeError, match="uint8"):
        emb(torch.zeros(1, 1, 28, 28, dtype=torch.uint8))
    assert emb.check_input and not model.patch_embed.check_input  # the ViT checks, at its entry
    calls = []
    import vitlearn.model as vm
    original = vm.check_images
    vm.check_images = lambda *a, **k: (calls.append(1), original(*a, **k))[1]
    try:
        model(torch.randn(1, 1, 28, 28))
    finally:
        vm.check_images = original
    assert len(calls) == 1


@pytest.mark.parametrize("kwargs,name", [
    (dict(depth=0), "depth"), (dict(num_heads=0), "num_heads"), (dict(embed_dim=0), "embed_dim"),
    (dict(patch_size=0), "patch_size"), (dict(img_size=-28), "img_size"),
    (dict(num_classes=0), "num_classes"),
    (dict(in_chans=0), "in_chans"), (dict(depth=2.5), "depth"), (dict(embed_dim=64.0), "embed_dim"),
    (dict(num_classes=True), "num_classes"), (dict(mlp_ratio=0), "mlp_ratio"), (dict(dropout=1.0), "dropout"),
    (dict(attn_dropout=-0.1), "attn_dropout"),
])
def test_non_positive_or_non_integer_sizes_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=rf"ViT: .*{name}"):
        vitlearn.ViT(**kwargs)


@pytest.mark.parametrize("make,name", [
    (lambda: vitlearn.PatchEmbedding(patch_size=0), "patch_size"),
    (lambda: vitlearn.PatchEmbedding(embed_dim=0), "embed_dim"),
    (lambda: vitlearn.ClassToken(embed_dim=0), "embed_dim"),
    (lambda: vitlearn.PositionEmbedding(num_patches=0, embed_dim=8), "num_patches"),
    (lambda: vitlearn.PositionEmbedding(num_patches=4, embed_dim=8, num_prefix_tokens=-1),
     "num_prefix_tokens"),
    (lambda: vitlearn.SinCosPositionEmbedding(num_patches=16, embed_dim=0), "embed_dim"),
    (lambda: vitlearn.MultiHeadSelfAttention(embed_dim=8, num_heads=0), "num_heads"),
    (lambda: vitlearn.MultiHeadSelfAttention(embed_dim=8, num_heads=2, attn_dropout=2), "attn_dropout"),
    (lambda: vitlearn.MLP(embed_dim=8, hidden_dim=0), "hidden_dim"),
    (lambda: vitlearn.EncoderBlock(embed_dim=8, num_heads=2, mlp_ratio=-1), "mlp_ratio"),
    (lambda: vitlearn.TransformerEncoder(embed_dim=8, depth=0, num_heads=2), "depth"),
    (lambda: vitlearn.ClassificationHead(embed_dim=8, num_classes=0), "num_classes"),
    (lambda: vitlearn.patchify(torch.randn(1, 1, 28, 28), 0), "patch_size"),
])
def test_every_public_constructor_refuses_nonsense_sizes(make, name):
    with pytest.raises(ValueError, match=name):
        make()


def test_config_checks_once_and_set_img_size_uses_it():
    cfg = vitlearn.ViTConfig(depth=2)
    assert vitlearn.ViT.from_config(cfg).config == cfg
    with pytest.raises(ValueError, match="not divisible by patch_size=7"):
        cfg.replace(img_size=30)
    with pytest.raises(ValueError, match="need depth >= 1"):
        vitlearn.ViTConfig(depth=0)


def test_fit_refuses_labels_the_model_cannot_output_before_training(tmp_path):
    from test_training import synthetic

    model = vitlearn.ViT(num_classes=5, embed_dim=16, depth=1, num_heads=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"labels run from 0 to 9 but the model has 5 outputs.*"
                                         r"ViT\(num_classes=10\)"):
        vitlearn.fit(model, synthetic(64), synthetic(16), epochs=1, batch_size=16, progress=False,
                     checkpoint=tmp_path / "c.pt")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "no step was taken"
    assert not (tmp_path / "c.pt").exists()


def test_fit_checks_the_classes_of_a_model_without_config_by_one_forward():
    from test_training import synthetic

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(28 * 28, 3)

        def forward(self, x):
            return self.fc(x.flatten(1))

    with pytest.raises(ValueError, match="3 outputs"):
        vitlearn.fit(Tiny(), synthetic(64), synthetic(16), epochs=1, batch_size=16, progress=False)


def test_fit_refuses_an_unwritable_checkpoint_before_training(tmp_path):
    from test_training import small_model, synthetic

    (tmp_path / "file").write_text("a file, not a folder")
    model = small_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(OSError, match=r"cannot write the checkpoint .*file/sub/run.pt.*folder you can write"):
        vitlearn.fit(model, synthetic(64), synthetic(16), epochs=1, batch_size=16, progress=False,
                     checkpoint=tmp_path / "file" / "sub" / "run.pt")
    with pytest.raises(IsADirectoryError, match="is a folder; give a file name"):
        vitlearn.fit(model, synthetic(64), synthetic(16), epochs=1, batch_size=16, progress=False,
                     checkpoint=tmp_path)
    with pytest.raises(ValueError, match=r"only placeholder .* \{epoch\}"):
        vitlearn.fit(model, synthetic(64), synthetic(16), epochs=1, batch_size=16, progress=False,
                     checkpoint=tmp_path / "run-{step}.pt")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "no step was taken"


def test_fit_stops_on_a_non_finite_loss_with_the_step_and_advice():
    from test_training import small_model, synthetic

    model = small_model()
    with torch.no_grad():
        model.head.fc.bias[0] = float("inf")
    with pytest.raises(FloatingPointError, match=r"loss became (nan|inf) at step 1 \(epoch 1\).*Lower lr"
                                                 r".*clip_grad"):
        vitlearn.fit(model, synthetic(64), synthetic(16), epochs=1, batch_size=16, progress=False)


@pytest.mark.parametrize("kwargs,match", [
    (dict(lr=float("nan")), "lr must be"), (dict(lr=0), "lr must be"),
    (dict(batch_size=0), "batch_size >= 1"),
    (dict(weight_decay=-1), "weight_decay"), (dict(label_smoothing=1.0), "label_smoothing"),
    (dict(max_shift=-1), "max_shift"), (dict(clip_grad=-1.0), "clip_grad"), (dict(epochs=1.5), "epochs"),
])
def test_fit_settings_are_checked_before_any_data_is_touched(kwargs, match):
    from test_training import small_model, synthetic

    with pytest.raises(ValueError, match=match):
        vitlearn.fit(small_model(), synthetic(32), synthetic(8), **{"epochs": 1, "progress": False, **kwargs})


def test_fit_refuses_data_that_is_not_an_image_dataset():
    from test_training import small_model, synthetic

    with pytest.raises(TypeError, match="ImageDataset"):
        vitlearn.fit(small_model(), torch.zeros(10, 28, 28), synthetic(8), progress=False)
    with pytest.raises(TypeError, match="labels.long"):
        bad = synthetic(32)
        bad.labels = bad.labels.float()
        vitlearn.fit(small_model(), bad, synthetic(8), progress=False)
