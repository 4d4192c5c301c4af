"""The course website in a real browser: build it (python tools/build_site.py), serve _site/ on
127.0.0.1, open every page in headless Chromium (Debian's, driven by Playwright) with every request
to another host blocked and counted.

Per page: no blocked request, no failed request or HTTP error, no console error. Per lesson: as
many loaded images as its notebook stores (outputs and saved widget views), math rendered as
MathML with no raw TeX left in the text, no dead widget controls, the version that produced the
outputs shown; the exercise download serves the notebook with its blanks; the site's search finds
the attention lesson for "softmax". Screenshots go to artifacts/site/.

Skipped, with the reason, when /usr/bin/chromium, playwright or the site's packages are missing.
"""

from __future__ import annotations

import functools
import http.server
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
ARTIFACTS = ROOT / "artifacts" / "site"

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium) to run "
                "the course site's browser test", allow_module_level=True)
try:
    from playwright.sync_api import sync_playwright
except ImportError:
    pytest.skip("the playwright package is not installed: pip install -e '.[dev]'", allow_module_level=True)
for _module in ("sphinx", "myst_nb", "sphinx_book_theme", "latex2mathml"):
    pytest.importorskip(_module, reason="the site's packages are missing: pip install -e '.[site]'")

sys.path.insert(0, str(ROOT / "tools"))
import build_site  # noqa: E402

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def stored_images(path: Path) -> int:
    """Images a notebook stores: image outputs, and the pictures inside its saved widget views."""
    nb = nbformat.read(path, as_version=4)
    state = build_site._widget_state(nb)

    def images(outputs):
        return sum(1 for o in outputs if {"image/png", "image/jpeg"} & set(o.get("data", {})))

    count = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            count += images([output])
            if WIDGET_VIEW in output.get("data", {}):
                stack = [output["data"][WIDGET_VIEW]["model_id"]]
                while stack:
                    s = state[stack.pop().removeprefix("IPY_MODEL_")]["state"]
                    count += images(s.get("outputs", []))
                    stack += s.get("children", [])
    return count


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site built by the README's command (into a temporary folder), served on 127.0.0.1."""
    out = tmp_path_factory.mktemp("site") / "_site"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "tools/build_site.py", "-q", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"the site does not build:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    assert time.perf_counter() - t0 < 240, "the build should take about a minute (the issue allows 2)"
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(out))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield out, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


class Visit:
    """One page opened with every request to another host blocked; what went wrong is recorded."""

    def __init__(self, browser, url: str):
        self.blocked, self.failed, self.console = [], [], []
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("console", lambda m: self.console.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.console.append(f"uncaught: {e}"))
        self.page.on("requestfailed", lambda r: self.failed.append(f"{r.url} ({r.failure})"))
        self.page.on("response", lambda r: self.failed.append(f"{r.url} (HTTP {r.status})")
                     if r.status >= 400 else None)
        self.page.goto(url, wait_until="load")
        self.page.wait_for_load_state("networkidle")

    def _route(self, route):
        host = urlsplit(route.request.url).hostname
        if route.request.url.startswith(("data:", "blob:")) or host == "127.0.0.1":
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort()

    def assert_clean(self, name: str):
        # a blocked request also shows as a failed one: report it once, as blocked
        failed = [f for f in self.failed if not any(f.startswith(b) for b in self.blocked)]
        assert not self.blocked, f"{name} requests other hosts: {self.blocked}"
        assert not failed, f"{name}: failed requests {failed}"
        assert not self.console, f"{name}: console errors {self.console}"

    def close(self):
        self.context.close()


def test_every_page_loads_offline_without_errors(site, browser):
    out, base = site
    pages = [p.relative_to(out).as_posix() for p in build_site.site_pages(out)]
    for required in ("index.html", "install.html", "teachers.html", "own_data.html", "api.html",
                     "BENCHMARKS.html", "notebooks/bug_zoo.html", "search.html",
                     *(f"notebooks/{p.stem}.html" for p in build_site.solution_notebooks())):
        assert required in pages, f"{required} is missing from the site ({len(pages)} pages)"
    for rel in pages:
        visit = Visit(browser, f"{base}/{rel}")
        try:
            visit.assert_clean(rel)
            if rel == "index.html":
                text = visit.page.inner_text("body")
                assert "outputs were stored by vitlearn" in text, "the home page should name the version"
                for nb in build_site.solution_notebooks():   # every lesson linked from the home page
                    assert visit.page.locator(f'article a[href="notebooks/{nb.stem}.html"]').count(), nb.name
        finally:
            visit.close()


@pytest.mark.parametrize("notebook", [p.name for p in build_site.solution_notebooks()])
def test_lesson_page(site, browser, notebook):
    out, base = site
    path = ROOT / "notebooks" / notebook
    visit = Visit(browser, f"{base}/notebooks/{Path(notebook).stem}.html")
    page = visit.page
    try:
        visit.assert_clean(notebook)
        # every stored image is on the page, and loaded
        images = page.locator("article .cell_output img")
        assert images.count() == stored_images(path), (
            f"{notebook}: {images.count()} images on the page, {stored_images(path)} stored in the notebook")
        broken = page.evaluate("""() => [...document.querySelectorAll('article img')]
                                       .filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)""")
        assert not broken, f"{notebook}: images that did not load: {broken}"
        # math: rendered MathML, no raw TeX in the text (code and the math itself aside)
        raw = "".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")
        if "$" in raw.replace("`$`", ""):
            assert page.locator("article math").count() > 0, f"{notebook}: no rendered math"
        leftover = page.evaluate("""() => { const a = document.querySelector('article').cloneNode(true);
            a.querySelectorAll('pre, code, math, .cell_output').forEach(e => e.remove());
            return a.textContent; }""")
        for tex in ("$$", "\\frac", "\\times", "\\text{", "\\mathbb"):
            assert tex not in leftover, f"{notebook}: raw TeX {tex!r} left in the page text"
        # saved widget views: no dead controls
        assert page.locator("article input[type=range], article select, .jupyter-widgets").count() == 0
        # the version, downloads and launch links
        bar = page.locator(".vl-lesson-bar")
        assert "Outputs stored by vitlearn" in bar.inner_text()
        for selector in (".vl-colab", ".vl-binder"):
            href = bar.locator(selector).get_attribute("href")
            assert f"notebooks/exercises/{notebook}" in href.replace("%2F", "/"), (selector, href)
        exercise = page.request.get(page.locator(".vl-download-exercise").evaluate("a => a.href"))
        assert exercise.ok
        served = json.loads(exercise.body())
        source = "".join("".join(c["source"]) for c in served["cells"] if c["cell_type"] == "code")
        assert served == json.loads((ROOT / "notebooks" / "exercises" / notebook).read_text())
        if "### BEGIN SOLUTION" in path.read_text():
            assert "raise NotImplementedError" in source and "### BEGIN SOLUTION" not in source
        solution = page.request.get(page.locator(".vl-download-solution").evaluate("a => a.href"))
        assert solution.ok and json.loads(solution.body()) == json.loads(path.read_text())
        if notebook.startswith("05"):
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "05_attention_top.png"))
            note = page.locator(".vl-widget-note").first
            note.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "05_attention_explorer.png"))
            assert "moves" in note.inner_text() or "change this picture" in note.inner_text()
    finally:
        visit.close()


def test_search_for_softmax_lists_the_attention_lesson(site, browser):
    out, base = site
    visit = Visit(browser, f"{base}/search.html?q=softmax")
    try:
        results = visit.page.locator("#search-results a[href*='05_attention']")
        results.first.wait_for(timeout=20_000)
        visit.assert_clean("search.html?q=softmax")
    finally:
        visit.close()
