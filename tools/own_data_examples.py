"""The three fits of the "Train on your own data" note, short: an ImageFolder of generated
PNGs, torchvision's MNIST with ToTensor, and a TensorDataset; prints each test accuracy.

    flock /tmp/vitlearn-cpu.lock python tools/own_data_examples.py /tmp/shapes
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.utils.data import Subset, TensorDataset

import vitlearn
from vitlearn.data import DATASETS, normalize, resolve_data_dir

sys.path.insert(0, str(Path(__file__).parent))
from make_image_folder import CLASSES, make_folder  # noqa: E402


def run(name, train, test, **fit_kw):
    torch.manual_seed(0)
    model = vitlearn.ViT.for_dataset(train)
    history = vitlearn.fit(model, train, test, progress=False, device="cpu", **fit_kw)
    print(f"{name}: {len(train):,} training images, ViT(in_chans={model.in_chans}, "
          f"img_size={model.img_size}, patch_size={model.patch_size}, "
          f"num_classes={model.config.num_classes}), {len(history.epoch)} epoch(s): "
          f"test accuracy {history.final_test_acc:.2%} on {len(test):,} images, "
          f"{history.total_seconds:.0f} s", flush=True)


def main() -> None:
    from torchvision import datasets, transforms

    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/shapes")
    if not folder.exists():
        make_folder(folder / "train", CLASSES, 200, 32)
        make_folder(folder / "val", CLASSES, 50, 32, seed=1)
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(0.5, 0.5)])
    run("ImageFolder (generated PNGs)", datasets.ImageFolder(folder / "train", tf),
        datasets.ImageFolder(folder / "val", tf), epochs=2, batch_size=32)

    _, _, mean, std = DATASETS["mnist"]
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((mean,), (std,))])
    root = str(resolve_data_dir())
    run("torchvision MNIST, ToTensor", Subset(datasets.MNIST(root, train=True, transform=tf), range(5_000)),
        Subset(datasets.MNIST(root, train=False, transform=tf), range(1_000)), epochs=1)

    mnist = vitlearn.load_dataset("mnist", train=True)[:5_000]
    test = vitlearn.load_dataset("mnist", train=False)[:1_000]
    run("TensorDataset (MNIST tensors)", TensorDataset(normalize(mnist.images, mean, std), mnist.labels),
        TensorDataset(normalize(test.images, mean, std), test.labels), epochs=1)


if __name__ == "__main__":
    main()
