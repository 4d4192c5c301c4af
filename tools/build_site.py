"""Build the course website into _site/ from the outputs stored in the notebooks.

    python tools/build_site.py                # check, stage, build with Sphinx (warnings are errors)
    python tools/build_site.py --check-only   # only the checks of the notebooks (seconds)
    python -m http.server -d _site            # read it, offline

It never executes a notebook: the pages show what tools/execute_notebooks.py stored. Before
anything is built every solution notebook is checked, and the build stops with a message naming
the notebook and the cell for: a notebook (or a code cell) never executed, an error output, an
image that cannot be found, a heading level skipped, a stale exercise edition, a saved widget
view whose state is missing, a notebook whose version line disagrees with the library.

Then the sources are staged into build/site-src/ (docs/ plus the notebooks, the bug zoo,
BENCHMARKS.md and the README sections the pages include), with three changes to the notebook
copies, never to the notebooks themselves:

- a lesson bar under the title: the vitlearn version that produced the outputs, downloads of the
  solution and exercise notebooks, Colab and Binder links to the exercise edition;
- saved widget views (which need a running kernel) become static: a tqdm bar becomes its final
  line, an explorer becomes the picture it showed and a note that it moves in Jupyter;
- relative links to repository files that are not pages (tests/bug_zoo.py, ...) point into the
  repository (pyproject.toml [project.urls] Repository).

Sphinx (MyST-NB, sphinx-book-theme) then builds with -W --keep-going, and a last check reads
every page of _site/: every local link and image must exist, and no page may load a script,
style, font or image from another host.
"""

from __future__ import annotations

import argparse
import base64
import functools
import html
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import nbformat

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
NOTEBOOKS = ROOT / "notebooks"
STAGE = ROOT / "build" / "site-src"
DOCTREES = ROOT / "build" / "site-doctrees"
OUT = ROOT / "_site"

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
_NOTEBOOK_RE = re.compile(r"^\d\d_[\w-]+\.ipynb$")
_MD_LINK_RE = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")
_HTML_IMG_RE = re.compile(r"<img\b[^>]*\bsrc=[\"']([^\"']+)[\"']", re.I)
_HEADING_RE = re.compile(r"^(#{1,6})\s+(.*\S)\s*$")
_FENCE_RE = re.compile(r"^\s*(```|~~~)")
_REQUIRE_RE = re.compile(r"""vitlearn\.require_version\(\s*["']([^"']+)["']\s*\)""")


class SiteError(Exception):
    """The site cannot be built as it should be; the message names the file (and cell) and the fix."""


def load_make_exercises():
    spec = importlib.util.spec_from_file_location("make_exercises", ROOT / "tools" / "make_exercises.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def repository_url() -> str:
    # a regular expression, not tomllib: the tool runs on Python 3.10 too
    m = re.search(r'^\[project\.urls\][^\[]*?^Repository\s*=\s*"([^"]+)"',
                  (ROOT / "pyproject.toml").read_text(), re.M | re.S)
    if not m:
        raise SiteError("pyproject.toml has no [project.urls] Repository: the launch links and the "
                        "links to source files are built from it")
    return m.group(1).rstrip("/")


def solution_notebooks(folder: Path = NOTEBOOKS) -> list[Path]:
    return sorted(p for p in folder.glob("*.ipynb") if _NOTEBOOK_RE.match(p.name))


# -- checks ----------------------------------------------------------------------------------------------

def _is_external(target: str) -> bool:
    return bool(urlsplit(target).scheme) or target.startswith("//")


def markdown_headings(text: str) -> list[tuple[int, str]]:
    """(level, title) of the ATX headings of a Markdown text, outside fenced code."""
    out, fenced = [], False
    for line in text.split("\n"):
        if _FENCE_RE.match(line):
            fenced = not fenced
        elif not fenced and (m := _HEADING_RE.match(line)):
            out.append((len(m.group(1)), m.group(2)))
    return out


def heading_problems(headings: list[tuple[str, int, str]], first_level: int = 1) -> list[str]:
    """Problems in a sequence of (where, level, title): the first heading must be at first_level and no
    heading may go more than one level deeper than the one before it."""
    problems, previous = [], first_level - 1
    for where, level, title in headings:
        if level > previous + 1:
            wanted = "the page title (#)" if previous == 0 else "#" * (previous + 1)
            problems.append(f"{where}: heading {'#' * level} {title!r} skips a level (expected at most "
                            f"{wanted}): the page outline and the sidebar would have a hole")
        previous = level
    return problems


def _widget_state(nb) -> dict:
    return nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})


def check_notebook(path: Path, *, library_version: str, exercises_dir: Path | None = None,
                   make_exercises=None) -> list[str]:
    """Every problem that would make the page of this solution notebook wrong or incomplete, each
    naming the notebook and the cell. exercises_dir: where its exercise edition is (default
    notebooks/exercises/ beside it)."""
    name = path.name
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as err:
        return [f"{name}: not a readable notebook ({err})"]
    problems: list[str] = []
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    if code_cells and not any(c.get("outputs") for c in code_cells):
        problems.append(f"{name}: no cell has stored outputs: execute it first "
                        f"(python tools/execute_notebooks.py {name[:2]})")
    state = _widget_state(nb)
    headings = []
    for index, cell in enumerate(nb.cells):
        where = f"{name}, cell {index}"
        if cell.cell_type == "markdown":
            for level, title in markdown_headings(cell.source):
                headings.append((where, level, title))
            targets = [m.group(3) for m in _MD_LINK_RE.finditer(cell.source) if m.group(1)]
            targets += _HTML_IMG_RE.findall(cell.source)
            for target in targets:
                if target.startswith("attachment:"):
                    if target.split(":", 1)[1] not in cell.get("attachments", {}):
                        problems.append(f"{where}: image {target!r} is not attached to the cell")
                elif not _is_external(target) and not (path.parent / unquote(target.split("#")[0])).is_file():
                    problems.append(f"{where}: image {target!r} not found (looked for "
                                    f"{(path.parent / target).resolve()})")
                elif _is_external(target):
                    problems.append(f"{where}: image {target!r} is on another host: the site must not "
                                    f"fetch anything from another host; put the file in notebooks/images/")
            continue
        if cell.cell_type != "code":
            continue
        if cell.execution_count is None and cell.source.strip():
            problems.append(f"{where}: never executed (no execution count): execute the notebook "
                            f"(python tools/execute_notebooks.py {name[:2]})")
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                problems.append(f"{where}: stores an error output ({output.get('ename')}: "
                                f"{output.get('evalue')}): fix the cell and re-execute the notebook")
                continue
            if output.output_type == "stream" and output.get("name") == "stderr" and \
                    re.search(r"Traceback \(most recent call last\)", output.get("text", "")):
                problems.append(f"{where}: stores a traceback on stderr: fix the cell and re-execute")
            data = output.get("data", {})
            for mime in ("image/png", "image/jpeg"):
                if mime in data and not _valid_base64_image(data[mime]):
                    problems.append(f"{where}: its {mime} output is empty or not an image")
            if WIDGET_VIEW in data:
                model_id = data[WIDGET_VIEW].get("model_id")
                if model_id not in state:
                    problems.append(f"{where}: a saved widget view whose state is not in the notebook's "
                                    f"metadata (model {model_id}): re-execute with "
                                    f"tools/execute_notebooks.py, which saves it")
                else:
                    problems += [f"{where}: {p}" for p in _widget_problems(state, model_id)]
    problems += heading_problems(headings)
    # the version this notebook was written for, and the one that produced its outputs
    first = code_cells[0].source if code_cells else ""
    m = _REQUIRE_RE.search(first)
    if not m:
        problems.append(f"{name}, cell {nb.cells.index(code_cells[0]) if code_cells else 0}: the first code "
                        f"cell does not call vitlearn.require_version(\"{library_version}\") (after "
                        f"import vitlearn): a learner with another version would get no clear message")
    elif m.group(1) != library_version:
        problems.append(f"{name}: its first cell requires vitlearn {m.group(1)} but the library is "
                        f"{library_version}: update the require_version line, re-execute the notebook")
    stamped = executed_version(nb)
    if stamped is not None and m and stamped != m.group(1):
        problems.append(f"{name}: executed with vitlearn {stamped} but written for {m.group(1)}: re-execute "
                        f"it (python tools/execute_notebooks.py {name[:2]})")
    # the exercise edition must be what tools/make_exercises.py generates from this notebook
    make_exercises = make_exercises or load_make_exercises()
    exercise = (exercises_dir or path.parent / "exercises") / name
    try:
        expected = make_exercises.render(path)
    except make_exercises.MarkerError as err:
        problems.append(f"{name}: {err}")
    else:
        if not exercise.is_file():
            problems.append(f"{name}: its exercise edition {exercise} is missing: run "
                            f"python tools/make_exercises.py")
        elif exercise.read_text(encoding="utf-8") != expected:
            problems.append(f"{name}: its exercise edition {exercise.name} is stale (it differs from what "
                            f"the solution notebook generates): run python tools/make_exercises.py")
    return problems


def _valid_base64_image(value) -> bool:
    try:
        raw = base64.b64decode("".join(value) if isinstance(value, list) else value, validate=False)
    except Exception:
        return False
    return raw[:8] == b"\x89PNG\r\n\x1a\n" or raw[:3] == b"\xff\xd8\xff"


def _widget_problems(state: dict, model_id: str) -> list[str]:
    problems, stack = [], [model_id]
    while stack:
        mid = stack.pop()
        entry = state.get(mid)
        if entry is None:
            problems.append(f"a saved widget view refers to model {mid}, whose state is not saved")
            continue
        stack += [c.removeprefix("IPY_MODEL_") for c in entry["state"].get("children", [])]
    return problems


def executed_version(nb) -> str | None:
    return nb.metadata.get("vitlearn", {}).get("version")


def check_all(library_version: str) -> list[str]:
    make_exercises = load_make_exercises()
    problems = []
    notebooks = solution_notebooks()
    if not notebooks:
        problems.append(f"no solution notebooks (NN_*.ipynb) in {NOTEBOOKS}")
    for path in notebooks:
        problems += check_notebook(path, library_version=library_version, make_exercises=make_exercises)
    stale = make_exercises.main(["--check"]) if notebooks else 0
    if stale:
        problems.append("notebooks/exercises/ is out of date: run python tools/make_exercises.py")
    return problems


# -- staging: static widgets, lesson bar, links ----------------------------------------------------------

def _model(state, mid):
    return state[mid.removeprefix("IPY_MODEL_")]["state"]


def _widget_html(state: dict, mid: str) -> tuple[str, list[dict], list[str]]:
    """A static rendering of one saved widget: (html, outputs it displayed, [control: value])."""
    s = _model(state, mid)
    name = s.get("_model_name", "")
    if name in ("HBoxModel", "VBoxModel", "BoxModel", "GridBoxModel"):
        parts = [_widget_html(state, c) for c in s.get("children", [])]
        tag = "vl-hbox" if name == "HBoxModel" else "vl-vbox"
        return (f'<div class="{tag}">' + "".join(p[0] for p in parts) + "</div>",
                [o for p in parts for o in p[1]], [c for p in parts for c in p[2]])
    if name in ("HTMLModel", "LabelModel", "HTMLMathModel"):
        value = s.get("value", "")
        return (f"<span>{value if name != 'LabelModel' else html.escape(value)}</span>", [], [])
    if name in ("FloatProgressModel", "IntProgressModel"):
        return (f'<progress value="{s.get("value", 0)}" max="{s.get("max", 100)}"></progress>', [], [])
    if name == "OutputModel":
        return ("", list(s.get("outputs", [])), [])
    label = s.get("description") or name.removesuffix("Model")
    if "_options_labels" in s:
        index = s.get("index")
        labels = s["_options_labels"]
        value = labels[index] if isinstance(index, int) and 0 <= index < len(labels) else labels[0]
    else:
        value = s.get("value", "")
    return ("", [], [f"{label} = {value}"])


def static_widget_outputs(state: dict, output) -> list:
    """The outputs that replace one saved widget view on the page."""
    mid = output["data"][WIDGET_VIEW]["model_id"]
    body, shown, controls = _widget_html(state, mid)
    new = []
    if controls or shown:  # an explorer: the picture it showed, and that it moves in Jupyter
        for o in shown:
            o = nbformat.from_dict(dict(o))
            o.setdefault("metadata", {})
            if o.get("output_type") == "stream":
                o.setdefault("name", "stdout")
            new.append(o)
        status = re.sub(r"<[^>]+>", " ", body)
        status = " ".join(status.split())
        note = ("<p class=\"vl-widget-note\"><strong>A saved view of an interactive explorer.</strong> "
                f"Shown: {html.escape(', '.join(controls))}"
                + (f" ({status})" if status else "")
                + ". In Jupyter its controls change this picture: download the notebook or open it in "
                  "Colab or Binder (links at the top of the page) to try them.</p>")
        new.append(nbformat.v4.new_output("display_data", data={"text/html": note, "text/plain": note}))
    else:  # a progress bar: its final line
        text = " ".join(re.sub(r"<[^>]+>", " ", html.unescape(body)).split())
        new.append(nbformat.v4.new_output("display_data", data={
            "text/html": f'<div class="vl-progress">{body}</div>', "text/plain": text}))
    return new


def lesson_bar(name: str, version: str | None, repo: str) -> str:
    exercise = f"notebooks/exercises/{name}"
    blob = f"{repo.removeprefix('https://github.com/')}"
    colab = f"https://colab.research.google.com/github/{blob}/blob/main/{exercise}"
    binder = f"https://mybinder.org/v2/gh/{blob}/main?labpath={quote(exercise)}"
    executed = (f"Outputs stored by vitlearn <strong>{html.escape(version)}</strong>" if version else
                "Outputs stored by vitlearn <strong>(version not recorded: re-execute with "
                "tools/execute_notebooks.py)</strong>")
    return (
        '<div class="vl-lesson-bar">\n'
        f'<p>{executed}. Download: <a class="vl-download-exercise" href="exercises/{name}" download>'
        f'exercise edition (.ipynb)</a> · <a class="vl-download-solution" href="{name}" download>'
        f'solution (.ipynb)</a></p>\n'
        f'<p>Open the exercise edition in <a class="vl-colab" href="{colab}">Colab</a> · '
        f'<a class="vl-binder" href="{binder}">Binder</a>. It needs <code>vitlearn</code> installed: in '
        f'Colab first run <code>!pip install "vitlearn[pretrained] @ git+{repo}"</code> '
        f'(<a href="../install.html#running-a-lesson-in-colab-or-binder">more</a>).</p>\n'
        "</div>\n")


def relink(source: str, source_path: Path, staged_pages: set[Path], repo: str) -> str:
    """Rewrite relative Markdown links (not images) to repository files that are not pages of the site
    into links to the file in the repository; links to pages and to missing files are left for Sphinx
    to resolve (a missing one fails the build)."""
    def sub(m):
        bang, text, target = m.groups()
        if bang or _is_external(target) or target.startswith("#"):
            return m.group(0)
        file_part, _, fragment = target.partition("#")
        resolved = (source_path.parent / unquote(file_part)).resolve()
        if resolved in staged_pages or not resolved.exists():
            return m.group(0)
        try:
            rel = resolved.relative_to(ROOT).as_posix()
        except ValueError:
            return m.group(0)
        kind = "tree" if resolved.is_dir() else "blob"
        return f"[{text}]({repo}/{kind}/main/{rel}{'#' + fragment if fragment else ''})"
    return _MD_LINK_RE.sub(sub, source)


def readme_section(readme: str, key: str) -> str:
    """README text between <!-- key:start --> and <!-- key:end -->, headings moved to start at ##."""
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    if start not in readme or end not in readme:
        raise SiteError(f"README.md lacks the markers {start} ... {end} around the text of that page")
    text = readme.split(start, 1)[1].split(end, 1)[0].strip("\n")
    levels = [level for level, _ in markdown_headings(text)]
    if levels:
        shift = min(levels) - 2
        lines, fenced = [], False
        for line in text.split("\n"):
            if _FENCE_RE.match(line):
                fenced = not fenced
            elif not fenced and (m := _HEADING_RE.match(line)):
                line = "#" * (len(m.group(1)) - shift) + " " + m.group(2)
            lines.append(line)
        text = "\n".join(lines)
    return text + "\n"


def readme_between_headings(readme: str, start: str, end: str) -> str:
    if start not in readme or end not in readme:
        raise SiteError(f"README.md has no {start!r} ... {end!r}: the site's pages include that part")
    return readme.split(start, 1)[1].split(end, 1)[0].strip("\n") + "\n"


def api_reference() -> str:
    import vitlearn

    lines = ["```{eval-rst}"]
    for name in vitlearn.__all__:
        obj = getattr(vitlearn, name)
        if isinstance(obj, type(vitlearn)):
            lines += [f".. automodule:: vitlearn.{name}", "   :members:", ""]
        elif isinstance(obj, type):
            lines += [f".. autoclass:: vitlearn.{name}", "   :members:", ""]
        else:
            lines += [f".. autofunction:: vitlearn.{name}", ""]
    lines.append("```")
    return "\n".join(lines) + "\n"


def stage(repo: str) -> dict:
    """Write build/site-src/ (Sphinx's source folder). Returns facts the checks of _site/ use."""
    import vitlearn

    if STAGE.exists():
        shutil.rmtree(STAGE)
    shutil.copytree(DOCS, STAGE)
    (STAGE / "notebooks" / "images").mkdir(parents=True)
    extra = STAGE / "_extra" / "notebooks"
    (extra / "exercises").mkdir(parents=True)
    for f in (NOTEBOOKS / "images").iterdir():
        if f.is_file():
            shutil.copy2(f, STAGE / "notebooks" / "images" / f.name)
    shutil.copy2(ROOT / "ViT.png", STAGE / "ViT.png")

    notebooks = solution_notebooks()
    pages = {ROOT / "BENCHMARKS.md", NOTEBOOKS / "bug_zoo.md", ROOT / "README.md"} | set(notebooks)
    pages |= {ROOT / p.name for p in DOCS.glob("*.md")}
    versions, lessons = {}, []
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        state = _widget_state(nb)
        nb.metadata.pop("widgets", None)      # MyST-NB would load the widget manager from a CDN
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = relink(cell.source, path, pages, repo)
            elif cell.cell_type == "code":
                outputs = []
                for output in cell.get("outputs", []):
                    if WIDGET_VIEW in output.get("data", {}):
                        outputs += static_widget_outputs(state, output)
                    else:
                        outputs.append(output)
                cell.outputs = outputs
        version = executed_version(nb)
        versions[path.name] = version
        title = next((t for level, t in markdown_headings(nb.cells[0].source) if level == 1), path.stem)
        lessons.append((path, title))
        nb.cells.insert(1, nbformat.v4.new_markdown_cell(lesson_bar(path.name, version, repo)))
        nbformat.write(nb, STAGE / "notebooks" / path.name)
        shutil.copy2(path, extra / path.name)
        shutil.copy2(NOTEBOOKS / "exercises" / path.name, extra / "exercises" / path.name)
    for src, dst in ((ROOT / "BENCHMARKS.md", STAGE / "BENCHMARKS.md"),
                     (NOTEBOOKS / "bug_zoo.md", STAGE / "notebooks" / "bug_zoo.md")):
        dst.write_text(relink(src.read_text(encoding="utf-8"), src, pages, repo), encoding="utf-8")

    readme = relink((ROOT / "README.md").read_text(encoding="utf-8"), ROOT / "README.md", pages, repo)
    recorded = sorted({v for v in versions.values() if v})
    missing = [n for n, v in versions.items() if not v]
    if recorded and not missing:
        stored = f"the notebooks' outputs were stored by vitlearn {', '.join(recorded)}"
    else:
        by = ", ".join(recorded) or "(not recorded)"
        stored = (f"the notebooks' outputs were stored by vitlearn {by}; "
                  f"{len(missing)} of them do not record the version yet (re-execute them with "
                  f"tools/execute_notebooks.py)")
    version_line = (f"*This site shows vitlearn {vitlearn.__version__}: {stored}. Each notebook's first cell "
                    f"checks that your installed vitlearn is the version it was written for.*")
    steps = ["| | lesson | notebook |", "|---|---|---|"]
    for path, title in lessons:
        steps.append(f"| {path.name[:2]} | [{title}](notebooks/{path.name}) | `notebooks/{path.name}` |")
    colab = f'```\n!pip install "vitlearn[pretrained] @ git+{repo}"\n```'
    fill = {
        "version": version_line,
        "steps": "\n".join(steps),
        "toctree": "\n".join(f"notebooks/{p.stem}" for p, _ in lessons),
        "results": "### What it reaches\n\n"
                   + readme_between_headings(readme, "## What it reaches (this 2-core x86-64 CPU, fp32)",
                                             "## What each notebook's experiment finds")
                   + "\n### What each notebook's experiment finds\n\n"
                   + readme_between_headings(readme, "## What each notebook's experiment finds",
                                             "## In Python"),
        "readme teachers": readme_section(readme, "teachers"),
        "readme own-data": readme_section(readme, "own-data"),
        "readme quick-start": readme_between_headings(readme, "## Quick start",
                                                      "## The course: two editions of the notebooks"),
        "colab-install": colab,
        "api": api_reference(),
    }
    for page in STAGE.glob("*.md"):
        text = page.read_text(encoding="utf-8")
        for key, value in fill.items():
            text = text.replace(f"<!-- site:{key} -->", value.strip("\n"))
        if "<!-- site:" in text:
            unknown = re.search(r"<!-- site:[^>]*-->", text)[0]
            raise SiteError(f"docs/{page.name}: unknown placeholder {unknown}")
        page.write_text(text, encoding="utf-8")
    return {"notebooks": notebooks}


# -- checks of the built site ----------------------------------------------------------------------------

class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.resources = [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        elif tag == "link" and a.get("href"):
            (self.resources if a.get("rel") in ("stylesheet", "preload", "icon", "modulepreload")
             else self.links).append(a["href"])
        for key in ("src", "data-src", "poster"):
            if a.get(key):
                self.resources.append(a[key])
        if a.get("srcset"):
            self.resources += [part.split()[0] for part in a["srcset"].split(",") if part.strip()]


@functools.cache
def _ids(page: Path) -> frozenset[str]:
    return frozenset(re.findall(r'\bid="([^"]+)"', page.read_text(encoding="utf-8")))


def site_pages(out: Path) -> list[Path]:
    """The pages of the site (not the themes' template fragments in _static/)."""
    return sorted(p for p in out.rglob("*.html") if "_static" not in p.relative_to(out).parts)


def check_site(out: Path) -> list[str]:
    """Every local link and resource of every page exists; no page loads anything from another host."""
    problems = []
    pages = site_pages(out)
    for page in pages:
        refs = _Refs()
        refs.feed(page.read_text(encoding="utf-8"))
        rel = page.relative_to(out)
        for url in refs.resources:
            if _is_external(url) and not url.startswith("data:"):
                problems.append(f"{rel}: loads {url} from another host (the site must work offline)")
        for url in refs.links + refs.resources:
            parts = urlsplit(url)
            if parts.scheme or url.startswith("//") or not (parts.path or parts.fragment):
                continue
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                problems.append(f"{rel}: link or image {url!r} points to nothing in _site/")
            elif parts.fragment and target.suffix == ".html" and parts.fragment not in _ids(target):
                problems.append(f"{rel}: link {url!r}: {target.name} has no #{parts.fragment}")
    for css in out.rglob("*.css"):
        for url in re.findall(r"url\(\s*['\"]?([^'\")]+)", css.read_text(encoding="utf-8", errors="replace")):
            if _is_external(url) and not url.startswith("data:"):
                problems.append(f"{css.relative_to(out)}: fetches {url} from another host")
        text = css.read_text(encoding="utf-8", errors="replace")
        for url in re.findall(r"@import\s+(?:url\()?['\"]?(https?://[^'\")\s]+)", text):
            problems.append(f"{css.relative_to(out)}: imports {url} from another host")
    return problems


# -- main ------------------------------------------------------------------------------------------------

def build(out: Path = OUT, *, quiet: bool = False) -> int:
    import vitlearn

    t0 = time.perf_counter()
    problems = check_all(vitlearn.__version__)
    if problems:
        raise SiteError("the notebooks cannot be published as they are:\n  " + "\n  ".join(problems))
    repo = repository_url()
    stage(repo)
    if out.exists():
        shutil.rmtree(out)
    env = dict(os.environ, VITLEARN_SITE_REPO=str(ROOT), PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-E", "-j", "auto",
           "-d", str(DOCTREES), str(STAGE), str(out)] + (["-q"] if quiet else [])
    proc = subprocess.run(cmd, env=env)
    if proc.returncode:
        raise SiteError(f"Sphinx reported the warnings or errors above (exit {proc.returncode}); "
                        f"the staged sources are in {STAGE.relative_to(ROOT)}/")
    (out / ".nojekyll").write_text("")   # GitHub Pages: serve _static/ and _sphinx_design_static/ as is
    problems = check_site(out)
    if problems:
        raise SiteError("the built site is broken:\n  " + "\n  ".join(problems))
    pages = len(site_pages(out))
    print(f"built {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}: {pages} pages "
          f"in {time.perf_counter() - t0:.0f} s; read it with: python -m http.server -d {out.name}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check-only", action="store_true", help="only check the notebooks; build nothing")
    parser.add_argument("--out", type=Path, default=OUT, help="output folder (default _site/)")
    parser.add_argument("-q", "--quiet", action="store_true", help="Sphinx prints only warnings")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    try:
        if args.check_only:
            import vitlearn

            problems = check_all(vitlearn.__version__)
            if problems:
                raise SiteError("the notebooks cannot be published as they are:\n  " + "\n  ".join(problems))
            print("the notebooks can be published")
            return 0
        return build(args.out.resolve(), quiet=args.quiet)
    except SiteError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
