"""`python -m vitlearn` train / evaluate / predict end to end on a small slice of MNIST."""

import subprocess
import sys

import pytest
import torch
from PIL import Image

from vitlearn.cli import load_image


def run(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "vitlearn", *args], capture_output=True,
                          text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def trained(mnist, tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "small.pt"
    out = run("train", "--epochs", "3", "--limit", "6000", "--batch-size", "64", "--lr", "3e-3",
              "--no-progress", "--output", str(path)).stdout
    return path, out


def test_train_prints_accuracy_and_saves(trained):
    path, out = trained
    assert "training a ViT (139,018 parameters) on 6,000 mnist images" in out
    assert "test accuracy:" in out and path.is_file()
    acc = float(out.split("test accuracy: ")[1].split("%")[0])
    assert acc > 60, out  # 6,000 images, 3 epochs: far above the 10% of guessing


def test_evaluate_prints_test_accuracy(trained):
    path, _ = trained
    out = run("evaluate", str(path)).stdout
    assert "test accuracy:" in out and "10,000 mnist test images" in out


def test_predict_reads_any_image_size_and_mode(trained, mnist, tmp_path):
    path, _ = trained
    _, test = mnist
    digit = test.images[0].numpy()  # a 7, white on black
    Image.fromarray(digit).resize((100, 100)).save(tmp_path / "big.png")
    Image.fromarray(255 - digit).convert("RGB").save(tmp_path / "dark_on_light.jpg", quality=95)
    Image.fromarray(digit).convert("RGBA").save(tmp_path / "rgba.png")
    files = [tmp_path / n for n in ("big.png", "dark_on_light.jpg", "rgba.png")]
    out = run("predict", str(path), *map(str, files)).stdout.strip().splitlines()
    assert len(out) == 3
    for line in out:
        assert "(probability 0." in line or "(probability 1.000)" in line
    # every view of the same digit gets the same answer
    assert len({line.split(": ")[1].split(" (")[0] for line in out}) == 1


def test_predict_rejects_a_file_that_is_not_an_image(trained, tmp_path):
    path, _ = trained
    (tmp_path / "notes.png").write_text("not really a png")
    proc = run("predict", str(path), str(tmp_path / "notes.png"), check=False)
    assert proc.returncode != 0
    assert "is not an image PIL can read" in proc.stderr


def test_evaluate_rejects_a_non_checkpoint(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"garbage")
    proc = run("evaluate", str(tmp_path / "x.pt"), check=False)
    assert proc.returncode == 2 and "not a readable vitlearn checkpoint" in proc.stderr


def test_missing_data_dir_is_a_clear_error(tmp_path):
    proc = run("train", "--data-dir", str(tmp_path / "none"), "--epochs", "1", check=False)
    assert proc.returncode == 2
    assert str(tmp_path / "none") in proc.stderr and "VITLEARN_DATA_DIR" in proc.stderr


def test_load_image_inverts_dark_on_light(tmp_path):
    img = torch.full((28, 28), 250, dtype=torch.uint8)
    img[8:20, 12:16] = 10
    Image.fromarray(img.numpy()).save(tmp_path / "d.png")
    x = load_image(tmp_path / "d.png")
    assert x.shape == (28, 28) and x.dtype == torch.uint8
    assert x[0, 0] < 20 and x[14, 14] > 230


def test_info_prints_the_default_model():
    assert "parameters: 139,018" in run("info").stdout


def test_model_flags_build_the_vit_config_and_round_trip(mnist, tmp_path):
    import vitlearn

    path = tmp_path / "tiny.pt"
    run("train", "--epochs", "1", "--limit", "600", "--batch-size", "64", "--embed-dim", "32", "--depth", "2",
        "--num-heads", "2", "--patch-size", "4", "--no-progress", "--output", str(path))
    expected = vitlearn.ViTConfig(embed_dim=32, depth=2, num_heads=2, patch_size=4)
    assert vitlearn.load(path).config == expected
    assert f"default ViT: {vitlearn.ViTConfig()}" in run("info").stdout


@pytest.mark.parametrize("flags,message", [(("--depth", "0"), "need depth >= 1"),
                                           (("--num-heads", "5"), "not divisible by num_heads=5"),
                                           (("--epochs", "0"), "need epochs >= 1"),
                                           (("--limit", "-5"), "--limit must be >= 0")])
def test_nonsense_flags_fail_before_loading_data(tmp_path, flags, message):
    proc = run("train", "--data-dir", str(tmp_path / "none"), *flags, check=False)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_unwritable_output_fails_before_training(mnist, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    proc = run("train", "--epochs", "1", "--limit", "600", "--no-progress",
               "--output", str(tmp_path / "file" / "vit.pt"), check=False)
    assert proc.returncode == 2 and "cannot write the checkpoint" in proc.stderr, proc.stderr
    assert "epoch 1:" not in proc.stdout
