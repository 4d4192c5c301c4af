"""tools/build_site.py refuses to publish a broken lesson, naming the notebook and the cell.

Each case breaks a temporary copy of a real solution notebook (and its exercise edition) in one
way and calls the site's check on it; no site is built, nothing is executed (seconds). The
real-browser test of the built site is tests/test_site.py.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import nbformat
import pytest

import vitlearn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import build_site  # noqa: E402

MAKE_EXERCISES = build_site.load_make_exercises()
NAME = "03_cls_token.ipynb"  # small, has images, widgets, math and blanks


@pytest.fixture
def lesson(tmp_path):
    """A copy of notebooks/03 and its exercise edition; returns (path, edit) where edit(fn) changes
    the solution notebook and, unless stale=True, regenerates its exercise edition."""
    (tmp_path / "exercises").mkdir()
    (tmp_path / "images").mkdir()
    path = tmp_path / NAME
    shutil.copy2(ROOT / "notebooks" / NAME, path)

    def edit(fn, *, stale=False):
        nb = nbformat.read(path, as_version=4)
        fn(nb)
        nbformat.write(nb, path)
        if not stale:
            (tmp_path / "exercises" / NAME).write_text(MAKE_EXERCISES.render(path), encoding="utf-8")

    edit(lambda nb: None)
    return path, edit


def problems(path, version=None):
    return build_site.check_notebook(path, library_version=version or vitlearn.__version__,
                                     make_exercises=MAKE_EXERCISES)


def test_the_real_notebooks_pass():
    assert build_site.check_all(vitlearn.__version__) == []


def test_a_clean_copy_passes(lesson):
    path, _ = lesson
    assert problems(path) == []


def test_notebook_without_outputs(lesson):
    path, edit = lesson

    def clear(nb):
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
    edit(clear)
    found = problems(path)
    assert any(p.startswith(f"{NAME}: no cell has stored outputs") for p in found), found
    assert any(p.startswith(f"{NAME}, cell ") and "never executed" in p for p in found), found


def test_error_output_names_the_cell(lesson):
    path, edit = lesson
    index = []

    def fail(nb):
        i = max(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
        index.append(i)
        nb.cells[i].outputs.append(nbformat.v4.new_output("error", ename="RuntimeError", evalue="boom",
                                                          traceback=["RuntimeError: boom"]))
    edit(fail)
    assert f"{NAME}, cell {index[0]}: stores an error output (RuntimeError: boom)" in " ".join(problems(path))


def test_missing_image(lesson):
    path, edit = lesson
    edit(lambda nb: nb.cells.insert(2, nbformat.v4.new_markdown_cell("![the grid](images/nowhere.png)")))
    found = problems(path)
    assert any(p.startswith(f"{NAME}, cell 2: image 'images/nowhere.png' not found") for p in found), found
    (path.parent / "images" / "nowhere.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    assert problems(path) == []


def test_image_from_another_host(lesson):
    path, edit = lesson
    edit(lambda nb: nb.cells.insert(2, nbformat.v4.new_markdown_cell('<img src="https://example.org/a.png">')))
    assert any("cell 2: image 'https://example.org/a.png' is on another host" in p for p in problems(path))


def test_empty_image_output(lesson):
    path, edit = lesson
    where = []

    def empty(nb):
        for i, cell in enumerate(nb.cells):
            for out in cell.get("outputs", []):
                if "image/png" in out.get("data", {}):
                    out.data["image/png"] = ""
                    where.append(i)
                    return
    edit(empty)
    assert f"{NAME}, cell {where[0]}: its image/png output is empty or not an image" in problems(path)


def test_skipped_heading_level(lesson):
    path, edit = lesson
    edit(lambda nb: nb.cells.insert(1, nbformat.v4.new_markdown_cell("#### Too deep\n\ntext")))
    found = problems(path)
    assert any(p.startswith(f"{NAME}, cell 1: heading #### 'Too deep' skips a level") for p in found), found


def test_headings_inside_code_fences_are_not_headings():
    assert build_site.markdown_headings("# Title\n```python\n### not a heading\n```\n## Real") == \
        [(1, "Title"), (2, "Real")]
    assert build_site.heading_problems([("a", 1, "T"), ("a", 2, "S"), ("b", 3, "x"), ("b", 2, "y")]) == []
    assert build_site.heading_problems([("a", 2, "T")])  # a page must start with its title


def test_stale_exercise_edition(lesson):
    path, edit = lesson

    def change(nb):
        cell = next(c for c in nb.cells if c.cell_type == "code" and "### BEGIN SOLUTION" in c.source)
        marker = "### BEGIN SOLUTION"
        cell.source = cell.source.replace(marker, "x = 1  # new line\n    " + marker, 1)
    edit(change, stale=True)
    assert f"{NAME}: its exercise edition {NAME} is stale (it differs from what the solution notebook " \
           f"generates): run python tools/make_exercises.py" in problems(path)
    (path.parent / "exercises" / NAME).unlink()
    assert any("exercise edition" in p and "is missing" in p for p in problems(path))


def test_widget_view_without_its_state(lesson):
    path, edit = lesson
    edit(lambda nb: nb.metadata.pop("widgets"))
    found = problems(path)
    assert found and all("a saved widget view whose state is not in the notebook's metadata" in p
                         for p in found), found


def test_version_line_and_stamp(lesson):
    path, edit = lesson
    v = vitlearn.__version__   # what every notebook's first cell requires
    assert any(f"requires vitlearn {v} but the library is 9.9.9" in p for p in problems(path, "9.9.9"))
    edit(lambda nb: nb.metadata.update(vitlearn={"version": "0.0.1"}))
    assert any(f"executed with vitlearn 0.0.1 but written for {v}" in p for p in problems(path, v))

    def drop(nb):
        cell = next(c for c in nb.cells if c.cell_type == "code")
        cell.source = "\n".join(x for x in cell.source.split("\n") if "require_version" not in x)
    edit(drop)
    assert any("does not call vitlearn.require_version" in p for p in problems(path, v))


def test_static_widgets_keep_the_picture_and_say_it_moves_in_jupyter():
    nb = nbformat.read(ROOT / "notebooks" / "05_attention.ipynb", as_version=4)
    state = build_site._widget_state(nb)
    views = [o for c in nb.cells for o in c.get("outputs", []) if build_site.WIDGET_VIEW in o.get("data", {})]
    explorer = [o for o in views if "AttentionExplorer" in o.data["text/plain"]][0]
    new = build_site.static_widget_outputs(state, explorer)
    assert ["image/png" in o.get("data", {}) for o in new] == [True, False]
    note = new[1].data["text/html"]
    assert "digit = 0" in note and "In Jupyter its controls change" in note
    bar = build_site.static_widget_outputs(state, views[0])
    assert len(bar) == 1 and "<progress" in bar[0].data["text/html"]
    assert "100%" in bar[0].data["text/plain"] and "1404/1404" in bar[0].data["text/plain"]


def test_readme_sections_start_at_level_two():
    readme = "x\n<!-- t:start -->\n#### A\ntext\n##### B\n```\n# code\n```\n<!-- t:end -->\n"
    assert build_site.readme_section(readme, "t") == "## A\ntext\n### B\n```\n# code\n```\n"
    with pytest.raises(build_site.SiteError, match="lacks the markers <!-- own-data:start -->"):
        build_site.readme_section(readme, "own-data")


def test_site_check_finds_broken_links_and_other_hosts(tmp_path):
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "a.css").write_text("@font-face { src: url(https://fonts.gstatic.com/x.woff2) }")
    (tmp_path / "ok.html").write_text('<a href="https://example.org">fine: a link</a><img src="ok.html">'
                                      '<h2 id="here">x</h2><a href="ok.html#here">y</a>'
                                      '<a href="#nowhere">z</a>')
    (tmp_path / "bad.html").write_text('<script src="https://cdn.example.org/x.js"></script>'
                                       '<a href="missing.html#top">x</a>')
    found = build_site.check_site(tmp_path)
    assert found == ["bad.html: loads https://cdn.example.org/x.js from another host (the site must work "
                     "offline)", "bad.html: link or image 'missing.html#top' points to nothing in _site/",
                     "ok.html: link '#nowhere': ok.html has no #nowhere",
                     "_static/a.css: fetches https://fonts.gstatic.com/x.woff2 from another host"]
