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
