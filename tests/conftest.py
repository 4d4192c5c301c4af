from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _have_mnist() -> bool:
    from vitlearn.data import resolve_data_dir

    return (resolve_data_dir() / "MNIST" / "raw" / "train-images-idx3-ubyte").exists()


@pytest.fixture(scope="session")
def mnist():
    """(train, test) MNIST in memory; skipped with the reason when the files are not there."""
    if not _have_mnist():
        pytest.skip("MNIST not found: set VITLEARN_DATA_DIR to a folder holding MNIST/raw")
    from vitlearn import load_dataset

    return load_dataset("mnist", train=True), load_dataset("mnist", train=False)


def synthetic_digits(n: int, seed: int):
    """Synthetic 'digits' for fast training tests: class k is a bright bar in row band k
    (learnable in a few steps), on uint8 noise; a vitlearn ImageDataset of n images."""
    import torch

    from vitlearn.data import ImageDataset

    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = torch.randint(0, 40, (n, 28, 28), generator=g, dtype=torch.uint8)
    for i, k in enumerate(labels.tolist()):
        images[i, 2 * k + 4: 2 * k + 6, 4:24] = 255
    return ImageDataset(images, labels, tuple(str(i) for i in range(10)), 0.1307, 0.3081)
