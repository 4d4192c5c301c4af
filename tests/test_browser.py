"""The patch explorer in a real browser: JupyterLab + headless Chromium driven by Playwright.

Runs the notebook up to the widget cell with the keyboard (Shift+Enter, as a learner would),
moves the "patch size" slider with the arrow keys and checks that the status text and the
drawn figure change. Two notebooks: a small generated one (needs no data files) and the real
``notebooks/01_patches.ipynb`` (copied to a temporary folder, so the repo's file is never
touched; it needs MNIST). Screenshots go to ``artifacts/browser/``.

Skipped, with the reason, when /usr/bin/chromium or the ``playwright`` package is missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
ARTIFACTS = ROOT / "artifacts" / "browser"
PATCH_SIZES = (1, 2, 4, 7, 14, 28)
KERNEL_TIMEOUT_MS = 150_000  # kernel start + `import torch` + the cells above, on a busy 2-core box

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium) to run "
                "the real-browser widget test", allow_module_level=True)
try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:
    pytest.skip("the playwright package is not installed: pip install -e '.[dev]'", allow_module_level=True)

SYNTHETIC_CELLS = [
    ("markdown", "# Patch explorer (generated for tests/test_browser.py)"),
    ("code", "import torch\nimport vitlearn\n\n"
             "g = torch.Generator().manual_seed(0)\n"
             "images = torch.randint(0, 256, (8, 28, 28), dtype=torch.uint8, generator=g)\n"
             "classes = tuple(str(i) for i in range(10))\n"
             "data = vitlearn.ImageDataset(images, torch.arange(8), classes, mean=0.1307, std=0.3081)"),
    ("code", "from vitlearn.widgets import patch_explorer\n\npatch_explorer(data)"),
    ("code", "raise RuntimeError('the test runs the notebook only up to the widget cell')"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_notebook(path: Path, cells) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "markdown" else nbformat.v4.new_code_cell(src)
                for kind, src in cells]
    nbformat.write(nb, path)


def _widget_cell(path: Path) -> int:
    """Index (among all cells) of the first code cell that calls patch_explorer(...)."""
    cells = json.loads(path.read_text())["cells"]
    for i, cell in enumerate(cells):
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "code" and "patch_explorer(" in source:
            return i
    pytest.fail(f"{path.name} has no cell that calls patch_explorer(...)")


class Lab:
    def __init__(self, root: Path, port: int, token: str, proc: subprocess.Popen):
        self.root, self.port, self.token, self.proc = root, port, token, proc

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}?token={self.token}"

    def api(self, path: str, method: str = "GET"):
        req = urllib.request.Request(self.url(f"api/{path}"), method=method)
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
        return json.loads(body) if body else None


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on a free port, serving a temporary folder; stopped (kernels too) at the end."""
    root = tmp_path_factory.mktemp("lab")
    home = tmp_path_factory.mktemp("lab-home")
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)                       # the kernel gets the inline backend, as for a user
    env.update(JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               IPYTHONDIR=str(home / "ipython"), PYTHONUNBUFFERED="1")
    if env.get("VITLEARN_DATA_DIR"):
        env["VITLEARN_DATA_DIR"] = str(Path(env["VITLEARN_DATA_DIR"]).resolve())
    log = open(home / "jupyter.log", "wb")           # noqa: SIM115 (closed in finally)
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--IdentityProvider.token={token}",
           "--ServerApp.ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
           f"--ServerApp.root_dir={root}", f"--LabApp.user_settings_dir={home / 'settings'}",
           f"--LabApp.workspaces_dir={home / 'workspaces'}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers and CI often run as root
        cmd.append("--allow-root")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = Lab(root, port, token, proc)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                log_text = (home / "jupyter.log").read_text()
                pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{log_text}")
            try:
                server.api("status")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not answer in 90 s:\n{(home / 'jupyter.log').read_text()}")
                time.sleep(0.5)
        yield server
    finally:
        try:
            for kernel in server.api("kernels") or []:
                server.api(f"kernels/{kernel['id']}", method="DELETE")
        except (urllib.error.URLError, OSError):
            pass
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def explore(browser, lab: Lab, notebook: Path, screenshot: Path) -> None:
    """Open ``notebook``, run it down to the patch explorer, move the slider, check the redraw."""
    rel = notebook.relative_to(lab.root).as_posix()
    widget_cell = _widget_cell(notebook)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    try:
        # a workspace of its own per notebook: JupyterLab must not reopen the previous test's tabs
        page.goto(lab.url(f"lab/workspaces/{notebook.stem}/tree/{rel}"))
        panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
        cells = panel.locator(".jp-Notebook .jp-Cell")
        expect(cells.first).to_be_visible(timeout=90_000)
        expect(cells).to_have_count(len(json.loads(notebook.read_text())["cells"]))
        dialog = page.locator(".jp-Dialog")
        if dialog.count():                                 # e.g. "select kernel": take the default
            dialog.locator(".jp-mod-accept").click()
        expect(panel.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(1,
                                                                                                    timeout=90_000)

        # Run the cells down to and including the widget cell, one Shift+Enter each.
        cells.first.locator(".jp-InputPrompt").click()
        page.keyboard.press("Escape")                      # command mode
        for _ in range(widget_cell + 1):
            page.keyboard.press("Shift+Enter")
            time.sleep(0.2)

        explorer = panel.locator(".vitlearn-patch-explorer").first
        expect(explorer).to_be_visible(timeout=KERNEL_TIMEOUT_MS)
        status = explorer.locator(".widget-html-content").first
        grid_img = explorer.locator(".jp-OutputArea-output img").first
        expect(status).to_contain_text("patches", timeout=30_000)
        expect(grid_img).to_be_visible()
        slider = explorer.locator(".widget-slider", has=page.locator("label", has_text="patch size"))
        expect(slider).to_have_count(1)
        readout = slider.locator(".widget-readout")
        before_size = int(readout.inner_text().strip())
        before_status, before_src = status.inner_text(), grid_img.get_attribute("src")
        before_png = grid_img.screenshot()
        assert f"patch size {before_size}:" in before_status

        i = PATCH_SIZES.index(before_size)
        key, after_size = ("ArrowLeft", PATCH_SIZES[i - 1]) if i > 0 else ("ArrowRight", PATCH_SIZES[1])
        handle = slider.locator(".noUi-handle")
        handle.focus()
        handle.press(key)

        n = (28 // after_size) ** 2
        expect(readout).to_have_text(str(after_size))
        expect(status).to_contain_text(f"patch size {after_size}: {n} patch", timeout=60_000)
        # the output area re-renders: a new <img> (the locator finds it) with a new picture
        expect(grid_img).not_to_have_attribute("src", before_src, timeout=60_000)
        assert status.inner_text() != before_status
        time.sleep(0.3)                                     # let the new image paint
        assert grid_img.screenshot() != before_png

        screenshot.parent.mkdir(parents=True, exist_ok=True)
        explorer.scroll_into_view_if_needed()
        page.screenshot(path=str(screenshot))
    except Exception:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(Exception):               # keep the real error, not this one's
            page.screenshot(path=str(screenshot.with_name(screenshot.stem + "-failed.png")))
        raise
    finally:
        page.close()


def test_patch_explorer_in_a_generated_notebook(lab, browser):
    notebook = lab.root / "generated" / "patch_explorer.ipynb"
    notebook.parent.mkdir(exist_ok=True)
    _write_notebook(notebook, SYNTHETIC_CELLS)
    explore(browser, lab, notebook, ARTIFACTS / "patch_explorer_generated.png")


def test_patch_explorer_in_notebook_01(lab, browser):
    source = ROOT / "notebooks" / "01_patches.ipynb"
    if not source.exists():
        pytest.skip("notebooks/01_patches.ipynb does not exist yet")
    from conftest import _have_mnist

    if not _have_mnist():
        pytest.skip("notebook 01 needs MNIST: set VITLEARN_DATA_DIR to a folder holding MNIST/raw")
    shutil.copytree(ROOT / "notebooks", lab.root / "notebooks",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "*.pt"))
    explore(browser, lab, lab.root / "notebooks" / "01_patches.ipynb", ARTIFACTS / "01_patches.png")
