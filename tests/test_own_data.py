"""Training on one's own images (issue 19, part 1): any Dataset of (image, label), a
DataLoader, an image folder; the checks before the first step; the MNIST path unchanged."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

import vitlearn
from vitlearn.data import ImageFolderError, normalize, scan_image_folder

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(epochs=1, batch_size=32, progress=False, device="cpu")


def synthetic(n=256, seed=0):
    """Class k: a bright square at a place fixed by k (tests/test_training.py's toy set)."""
    from test_training import synthetic as make

    return make(n, seed)


def small(**kw):
    torch.manual_seed(0)
    return vitlearn.ViT(**{"embed_dim": 32, "depth": 1, "num_heads": 2, **kw})


def as_tensor_dataset(data):
    """The same images as float [N, 1, 28, 28], normalised as fit normalises an ImageDataset."""
    return TensorDataset(normalize(data.images, data.mean, data.std), data.labels)


def test_mnist_fit_matches_the_original_code(mnist):
    """The in-memory path draws the same batches and random numbers as before the change:
    tests/data/reference_fit.json was written by the code at be77a9b (tools/reference_fit.py)."""
    sys.path.insert(0, str(ROOT / "tools"))
    from reference_fit import reference_run

    reference = json.loads((ROOT / "tests" / "data" / "reference_fit.json").read_text())
    assert reference_run() == reference


def test_a_tensor_dataset_trains_exactly_as_the_same_images_in_memory():
    """Same shuffle, same shifts, same losses: the generic path is the in-memory one but for
    where the pixels come from (normalised by the dataset, not by fit)."""
    train, test = synthetic(), synthetic(64, seed=1)
    kw = dict(FAST, epochs=2, max_shift=2, seed=3)
    a, b = small(), small()
    ha = vitlearn.fit(a, train, test, **kw)
    hb = vitlearn.fit(b, as_tensor_dataset(train), as_tensor_dataset(test), **kw)
    assert ha.train_loss == hb.train_loss and ha.test_acc == hb.test_acc
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    ea, eb = vitlearn.evaluate(a, test), vitlearn.evaluate(a, as_tensor_dataset(test))
    assert torch.equal(ea.predictions, eb.predictions) and ea.loss == pytest.approx(eb.loss)


def test_subset_and_dataloader_train_and_learn():
    train, test = as_tensor_dataset(synthetic(512)), as_tensor_dataset(synthetic(128, seed=1))
    history = vitlearn.fit(small(), Subset(train, range(480)), test,
                           **dict(FAST, epochs=4, lr=1e-2, max_shift=0))
    assert history.final_test_acc > 0.9
    loader = DataLoader(train, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    model = small()
    history = vitlearn.fit(model, loader, DataLoader(test, batch_size=50),
                           **dict(FAST, epochs=4, lr=1e-2, max_shift=0))
    assert history.final_test_acc > 0.9
    assert len(vitlearn.evaluate(model, DataLoader(test, batch_size=50)).labels) == 128


def make_folder(root: Path, classes=("cat", "dog"), n=12, size=16, mode="RGB") -> Path:
    """Generated PNGs (tools/make_image_folder.py): class k is a bright square in quarter k."""
    sys.path.insert(0, str(ROOT / "tools"))
    from make_image_folder import make_folder as make

    return make(root, classes, n, size, mode)


def test_torchvision_image_folder_and_for_dataset(tmp_path):
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    make_folder(tmp_path / "train", n=40)
    make_folder(tmp_path / "val", n=8)
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(0.5, 0.5)])
    train, val = ImageFolder(tmp_path / "train", tf), ImageFolder(tmp_path / "val", tf)
    model = vitlearn.ViT.for_dataset(train, embed_dim=32, depth=1, num_heads=2)
    assert (model.in_chans, model.img_size, model.patch_size, model.config.num_classes) == (3, 16, 8, 2)
    history = vitlearn.fit(model, train, val, checkpoint=tmp_path / "m.pt",
                           **dict(FAST, epochs=5, batch_size=16, lr=1e-2, max_shift=1))
    assert history.final_test_acc == 1.0
    assert vitlearn.load_checkpoint(tmp_path / "m.pt")["dataset"]["classes"] == ["cat", "dog"]


def cli(*args):
    return subprocess.run([sys.executable, "-m", "vitlearn", *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


def test_cli_trains_on_a_folder_and_predict_prints_the_class_names(tmp_path):
    make_folder(tmp_path / "pets", n=30)
    out = cli("train", "--data-dir", str(tmp_path / "pets"), "--epochs", "6", "--batch-size", "16",
              "--lr", "1e-2", "--embed-dim", "32", "--depth", "1", "--num-heads", "2",
              "--val-split", "0.2", "--no-progress", "--output", str(tmp_path / "pets.pt"))
    assert out.returncode == 0, out.stderr
    assert f"on 48 images of {tmp_path / 'pets'} for 6 epoch(s)" in out.stdout
    acc = float(out.stdout.split("test accuracy: ")[1].split("%")[0])
    assert acc == 100.0, out.stdout
    pred = cli("predict", str(tmp_path / "pets.pt"), str(tmp_path / "pets" / "cat"))
    assert pred.returncode == 0, pred.stderr
    lines = pred.stdout.splitlines()
    assert len(lines) == 30 and all(": cat (probability" in line for line in lines), pred.stdout
    ev = cli("evaluate", str(tmp_path / "pets.pt"), "--data-dir", str(tmp_path / "pets"))
    assert "test accuracy: 100.00% (60 images of" in ev.stdout, ev.stdout + ev.stderr


def test_cli_folder_with_grey_images_and_img_size(tmp_path):
    make_folder(tmp_path / "g" / "train", n=10, size=20, mode="L")
    make_folder(tmp_path / "g" / "test", n=4, size=20, mode="L")
    out = cli("train", "--data-dir", str(tmp_path / "g"), "--img-size", "24", "--epochs", "1",
              "--batch-size", "8", "--embed-dim", "16", "--depth", "1", "--num-heads", "2",
              "--no-progress", "--output", str(tmp_path / "g.pt"))
    assert out.returncode == 0, out.stderr
    model = vitlearn.load(tmp_path / "g.pt")
    assert (model.in_chans, model.img_size, model.patch_size) == (1, 24, 6)


@pytest.mark.parametrize("layout, match", [
    ("one class", r"one class folder \(cat\).*at least two"),
    ("no images", r"class folder .*dog holds no images"),
    ("mixed sizes", r"different sizes \(.*is 16x16, .*is 20x20\).*--img-size"),
    ("unreadable", r"broken\.png is not an image PIL can read"),
    ("empty", r"has no class sub-folders"),
])
def test_bad_folders_get_errors_naming_the_file_or_folder(tmp_path, layout, match):
    root = tmp_path / "data"
    root.mkdir()
    if layout == "one class":
        make_folder(root, classes=("cat",), n=2)
    elif layout == "no images":
        make_folder(root, n=2)
        for f in (root / "dog").iterdir():
            f.unlink()
    elif layout == "mixed sizes":
        make_folder(root, n=2)
        make_folder(root, classes=("emu",), n=1, size=20)
    elif layout == "unreadable":
        make_folder(root, n=2)
        (root / "dog" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ImageFolderError, match=match):
        scan_image_folder(root)
    if layout != "empty":  # an empty folder is where MNIST would be downloaded to
        out = cli("train", "--data-dir", str(root), "--no-progress", "--output", str(tmp_path / "x.pt"))
        assert out.returncode == 2 and out.stderr.startswith("error: "), out.stderr
        assert "Traceback" not in out.stderr


class Pairs(Dataset):
    """Items given as they are: for the checks of what a dataset holds."""

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def grey(n=8, label=0):
    return [(torch.zeros(1, 28, 28), label) for _ in range(n)]


@pytest.mark.parametrize("items, error, match", [
    ([torch.zeros(1, 28, 28)] * 4, TypeError, r"train\[0\] is a torch.float32 tensor .* \(image, label\)"),
    ([(Image.new("L", (28, 28)), 0)] * 4, TypeError, r"PIL.*transform=torchvision.transforms.ToTensor\(\)"),
    ([(torch.zeros(1, 28, 28, dtype=torch.uint8), 0)] * 4, TypeError, r"uint8.*ToTensor\(\) scales"),
    ([(torch.zeros(28, 28), 0)] * 4, ValueError, r"\[28, 28\].*image.unsqueeze\(0\)"),
    ([(torch.zeros(1, 28, 28), 0.5)] * 4, TypeError, r"label is 0.5 .*integer class index"),
    ([(torch.zeros(3, 28, 28), 0)] * 4, ValueError, r"3 channel\(s\).*in_chans=1.*ViT\(in_chans=3"),
    ([(torch.zeros(1, 32, 32), 0)] * 4, ValueError, r"32x32 .*img_size=28.*ViT\(img_size=32"),
])
def test_dataset_items_are_checked_before_the_first_step(items, error, match):
    with pytest.raises(error, match=match):
        vitlearn.fit(small(), Pairs(items), Pairs(grey()), **FAST)


def test_labels_out_of_range_are_named():
    images = torch.zeros(64, 1, 28, 28)
    labels = torch.arange(64) % 12  # 12 classes, a 10-class model
    with pytest.raises(ValueError, match=r"train labels run from 0 to 11 .* ViT\(num_classes=12\)"):
        vitlearn.fit(small(), TensorDataset(images, labels), Pairs(grey()), **FAST)
    # no targets to read up front: the first batch holding one stops the run, naming it
    items = grey(64) + [(torch.zeros(1, 28, 28), 12)]
    with pytest.raises(ValueError, match=r"train batch 0 holds the label 12.*10 outputs"):
        vitlearn.fit(small(), Pairs(items), Pairs(grey()), **dict(FAST, batch_size=65))


def test_fit_with_a_generic_train_needs_test():
    with pytest.raises(TypeError, match="needs test="):
        vitlearn.fit(small(), Pairs(grey()), **FAST)
