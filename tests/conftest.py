import os
from pathlib import Path

import pytest

# Notebook kernels run in notebooks/, so a relative data folder (CI passes ../shared/data)
# is made absolute here, before any kernel starts and inherits the environment.
if os.environ.get("VITLEARN_DATA_DIR"):
    os.environ["VITLEARN_DATA_DIR"] = str(Path(os.environ["VITLEARN_DATA_DIR"]).resolve())
# Notebook kernels inherit this process's environment: give them the inline backend a user's
# Jupyter has (with MPLBACKEND=Agg, plt.show() in a notebook shows nothing and warns on stderr).
# Tests that draw in this process pick Agg themselves (matplotlib.use("Agg")).
os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"

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
