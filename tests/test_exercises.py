"""The exercise edition (notebooks/exercises/) is generated from the solution notebooks by
tools/make_exercises.py: these tests keep the two in step and check that every exercise notebook
stops, when run, at its first blank with that blank's hint."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = ROOT / "notebooks" / "exercises"

_spec = importlib.util.spec_from_file_location("make_exercises", ROOT / "tools" / "make_exercises.py")
make_exercises = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_exercises)

SOURCES = make_exercises.source_notebooks()
NAMES = [p.name for p in SOURCES]
# definitions that stay solved in the exercise edition: 01's wrapper that plugs the learner's
# my_patchify into a model to train (the patch embedding itself is 02's part)
GIVEN = {("01_patches.ipynb", "MyPatchEmbedding")}


def _blanked_cells(nb) -> list[tuple[int, list[dict]]]:
    """[(cell index, blanks)] for the code cells of a solution notebook that hold markers."""
    out = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            blanks = make_exercises.find_blanks(cell.source, f"cell {i}")
            if blanks:
                out.append((i, blanks))
    return out


def _read(path: Path):
    return nbformat.read(path, as_version=4)


def test_the_series_is_there():
    assert NAMES[0].startswith("00_") and len(NAMES) >= 9, NAMES


@pytest.mark.parametrize("name", NAMES)
def test_committed_edition_is_up_to_date(name):
    target = EXERCISES / name
    assert target.exists(), f"{target.relative_to(ROOT)} is missing: run python tools/make_exercises.py"
    assert target.read_text(encoding="utf-8") == make_exercises.render(ROOT / "notebooks" / name), (
        f"notebooks/exercises/{name} is not what the generator writes from notebooks/{name}: "
        "run python tools/make_exercises.py and commit the result")


def test_no_stray_exercise_notebooks():
    assert sorted(p.name for p in EXERCISES.glob("*.ipynb")) == NAMES


def test_generator_is_deterministic():
    for path in SOURCES:
        assert make_exercises.render(path) == make_exercises.render(path)


@pytest.mark.parametrize("name", NAMES)
def test_every_learner_part_is_blanked(name):
    blanked = _blanked_cells(_read(ROOT / "notebooks" / name))
    if name.startswith("00_"):
        # 00 may keep the parts later notebooks teach, but its own exercise (tokens and parameters) is blank
        cells = [_read(ROOT / "notebooks" / name).cells[i].source for i, _ in blanked]
        assert any("num_tokens =" in src and "patch_embed_params =" in src for src in cells), (
            "00's exercise (num_tokens, patch_embed_params) must be fenced by solution markers")
    else:
        assert blanked, f"{name} has no solution markers: its learner parts would be shipped solved"
    # every from-scratch definition the learner writes (def my_... / class My...) holds a blank in 01-08
    if not name.startswith("00_"):
        nb = _read(ROOT / "notebooks" / name)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code" or i in dict(blanked):
                continue
            for m in re.finditer(r"^(?:def (my_\w+)|class (My\w+))", cell.source, re.MULTILINE):
                defined = m.group(1) or m.group(2)
                assert (name, defined) in GIVEN, (
                    f"{name}, cell {i}: {defined} is written from scratch but not blanked")


@pytest.mark.parametrize("name", NAMES)
def test_no_solution_line_survives(name):
    solution = _read(ROOT / "notebooks" / name)
    exercise = _read(EXERCISES / name)
    assert len(exercise.cells) == len(solution.cells)
    for i, blanks in _blanked_cells(solution):
        generated = {line.strip() for line in exercise.cells[i].source.split("\n")}
        for b in blanks:
            assert f"raise NotImplementedError({b['hint']!r})" in generated
            for line in b["body"]:
                if line.strip():
                    assert line.strip() not in generated, (
                        f"{name}, cell {i}: the solution line {line.strip()!r} is still in the exercises")


@pytest.mark.parametrize("name", NAMES)
def test_exercise_edition_is_the_same_notebook_without_answers(name):
    solution = _read(ROOT / "notebooks" / name)
    exercise = _read(EXERCISES / name)
    assert "widgets" not in exercise.metadata, f"{name}: the solution run's saved widget views were copied"
    for i, (s, e) in enumerate(zip(solution.cells, exercise.cells)):
        assert s.cell_type == e.cell_type and s.get("id") == e.get("id")
        if e.cell_type == "code":
            assert e.outputs == [] and e.execution_count is None, f"{name}, cell {i}: outputs not cleared"
            if not make_exercises.find_blanks(s.source):
                assert e.source == s.source, f"{name}, cell {i}: a cell without markers changed"
        elif e.cell_type == "markdown":
            assert e.source == make_exercises.relink_markdown(s.source), f"{name}, cell {i}: prose differs"


def test_relink_only_moves_links_out_of_the_folder():
    text = ("[a](01_patches.ipynb) [b](02_patch_embedding.ipynb#x) ![c](../ViT.png) [d](bug_zoo.md) "
            "[e](https://x.org/a.md) [f](#top)")
    assert make_exercises.relink_markdown(text) == (
        "[a](01_patches.ipynb) [b](02_patch_embedding.ipynb#x) ![c](../../ViT.png) [d](../bug_zoo.md) "
        "[e](https://x.org/a.md) [f](#top)")


def test_stub_keeps_signature_and_indentation():
    src = ("class A:\n    def f(self, x):\n        ### BEGIN SOLUTION — hint: add one\n"
           "        y = x + 1\n        return y\n        ### END SOLUTION\n\nA()")
    out = make_exercises.blank_source(src)
    assert out == ("class A:\n    def f(self, x):\n        # YOUR CODE HERE\n"
                   "        raise NotImplementedError('add one')\n\nA()")
    namespace = {}
    exec(out, namespace)                                   # the class is still importable
    with pytest.raises(NotImplementedError, match="add one"):
        namespace["A"]().f(1)
    with pytest.raises(NotImplementedError, match="count"):   # a blanked top-level assignment raises at once
        exec(make_exercises.blank_source("### BEGIN SOLUTION — hint: count\nn = 3\n### END SOLUTION\nn"), {})


@pytest.mark.parametrize("bad", [
    "### BEGIN SOLUTION\nx = 1\n### END SOLUTION",                           # no hint
    "### BEGIN SOLUTION — hint: h\nx = 1",                                     # no end
    "x = 1\n### END SOLUTION",                                                 # no begin
    "### BEGIN SOLUTION — hint: h\n### END SOLUTION",                          # empty
    "### BEGIN SOLUTION — hint: h\n### BEGIN SOLUTION — hint: h\n### END SOLUTION",
    "x = 1  ### BEGIN SOLUTION — hint: h\ny = 2\n### END SOLUTION",          # not alone on its line
])
def test_malformed_markers_are_refused(bad):
    with pytest.raises(make_exercises.MarkerError):
        make_exercises.blank_source(bad)


def _relative_links(source: str) -> list[str]:
    return [t for t in re.findall(r"\]\(([^)\s]+)\)", source) if not re.match(r"^([a-z]+:|#|/)", t)]


@pytest.mark.parametrize("name", NAMES)
def test_links_resolve_in_both_editions(name):
    for folder in (ROOT / "notebooks", EXERCISES):
        nb = _read(folder / name)
        assert "bug_zoo.md" in nb.cells[0].source, f"{name}: the first cell should link bug_zoo.md"
        for cell in nb.cells:
            if cell.cell_type != "markdown":
                continue
            for target in _relative_links(cell.source):
                file = target.split("#")[0]
                assert (folder / file).exists(), f"{folder.name}/{name}: the link {target} leads nowhere"


def _names_of(cell_source: str, blank: dict) -> list[str]:
    """What the learner defines in a blank: the enclosing top-level def/class, else the names it assigns."""
    lines = cell_source.split("\n")
    if blank["indent"]:
        for line in reversed(lines[:blank["begin"]]):
            m = re.match(r"(?:def|class) (\w+)", line)
            if m:
                return [m.group(1)]
        raise AssertionError(f"an indented blank outside any def/class: line {blank['begin'] + 1}")
    names = []
    for line in blank["body"]:
        m = re.match(r"([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s*=[^=]", line)
        if m:
            names += [n.strip() for n in m.group(1).split(",")]
    return names


@pytest.mark.parametrize("name", NAMES)
def test_a_check_follows_every_blank(name):
    nb = _read(ROOT / "notebooks" / name)
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    for i, blanks in _blanked_cells(nb):
        source = nb.cells[i].source
        nxt = next((j for j in code if j > i), None)
        for b in blanks:
            after = "\n".join(source.split("\n")[b["end"] + 1:])
            following = after + "\n" + (nb.cells[nxt].source if nxt is not None else "")
            calls = re.findall(r"checks\.check_\w+\(([^)]*)\)", following, re.DOTALL)
            for defined in _names_of(source, b):
                assert any(re.search(rf"\b{defined}\b", args) for args in calls), (
                    f"{name}, cell {i}: no vitlearn.checks call on {defined} right after its blank "
                    "(in the same cell or the next code cell)")


def _have_mnist() -> bool:
    from vitlearn.data import resolve_data_dir

    return (resolve_data_dir() / "MNIST" / "raw" / "train-images-idx3-ubyte").exists()


def _stages() -> list[tuple[str, int]]:
    """(notebook, k) for every blank k of every solution notebook (0 = the first blank)."""
    out = []
    for path in SOURCES:
        count = sum(len(b) for _, b in _blanked_cells(_read(path)))
        out += [(path.name, k) for k in range(count)]
    return out


@pytest.mark.parametrize(("name", "stage"), _stages())
def test_exercise_notebook_stops_at_the_next_blank(name, stage):
    """Run the exercise notebook as a learner would, with the parts before blank `stage` written
    (stage 0: the edition as shipped, nothing written): it must stop in the cell of that blank or
    after it, with that blank's NotImplementedError, never with a NameError or any other error from
    code that ran past a blank, and never run to the end."""
    if not _have_mnist():
        pytest.skip("MNIST not found: set VITLEARN_DATA_DIR to a folder holding MNIST/raw")
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    solution = _read(ROOT / "notebooks" / name)
    blanks = [(i, b) for i, bs in _blanked_cells(solution) for b in bs]
    cell, blank = blanks[stage]
    # stage 0 runs the committed edition itself; later stages, the generator's output with parts written
    nb = _read(EXERCISES / name) if stage == 0 else make_exercises.make_exercise(solution, name, solved=stage)
    # the kernel inherits this environment: VITLEARN_DATA_DIR (made absolute), MPLBACKEND (conftest.py)
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(EXERCISES)}})
    with pytest.raises(CellExecutionError) as info:
        client.execute()
    err = info.value
    failed = next(i for i, c in enumerate(nb.cells)
                  if c.cell_type == "code" and any(o.get("output_type") == "error" for o in c.outputs))
    assert failed >= cell, (
        f"{name}, blank {stage}: stopped in cell {failed}, before the blank (cell {cell}): "
        f"{err.ename}: {err.evalue}")
    if err.ename == "CheckFailed":   # a check may report the missing part itself, naming the stub's error
        assert "NotImplementedError" in err.evalue, f"{name}, blank {stage}: CheckFailed: {err.evalue}"
    else:
        assert (err.ename, err.evalue) == ("NotImplementedError", blank["hint"]), (
            f"{name}, blank {stage}: stopped in cell {failed} with {err.ename}: {err.evalue}, not at the "
            f"blank of cell {cell} (NotImplementedError: {blank['hint']})")
