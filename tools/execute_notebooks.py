"""Re-execute the notebooks in place, so their stored outputs match the current library.

    python tools/execute_notebooks.py                 # all of notebooks/*.ipynb, in order
    python tools/execute_notebooks.py 01 05           # only those whose name starts so

Run it on the kind of machine CI uses (outputs are compared by nbval there). Each notebook
runs in a fresh kernel with notebooks/ as its working directory, like nbval does; the
seconds each took are printed. The vitlearn version that produced the outputs is stamped into
each notebook's metadata (metadata["vitlearn"]["version"]): the course site shows it on every
lesson, and tools/build_site.py refuses a notebook whose stamp differs from the version its first
cell requires (vitlearn.require_version).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

import vitlearn

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    if os.environ.get("VITLEARN_DATA_DIR"):
        os.environ["VITLEARN_DATA_DIR"] = str(Path(os.environ["VITLEARN_DATA_DIR"]).resolve())
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"  # as in Jupyter
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    if argv:
        notebooks = [nb for nb in notebooks if any(nb.name.startswith(a) for a in argv)]
    if not notebooks:
        print(f"no notebooks matched {argv}", file=sys.stderr)
        return 2
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        t0 = time.perf_counter()
        NotebookClient(nb, timeout=1800, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        nb.metadata.setdefault("vitlearn", {})["version"] = vitlearn.__version__  # keeps the grader's key
        nbformat.write(nb, path)
        print(f"{path.name}: {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
