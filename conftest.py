"""Loaded by pytest for every path under the repository (tests/ and notebooks/ alike)."""

import os
from pathlib import Path

# Notebook kernels run in notebooks/ and inherit this process's environment, so a relative
# data folder (CI passes ../shared/data) is made absolute before any kernel starts.
if os.environ.get("VITLEARN_DATA_DIR"):
    os.environ["VITLEARN_DATA_DIR"] = str(Path(os.environ["VITLEARN_DATA_DIR"]).resolve())

# Give the kernels the inline backend a user's Jupyter has (with MPLBACKEND=Agg, plt.show()
# in a notebook shows nothing and warns on stderr). Tests that draw in this process pick Agg
# themselves (matplotlib.use("Agg")).
os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
