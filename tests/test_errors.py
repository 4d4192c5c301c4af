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
