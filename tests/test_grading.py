# ruff: noqa: E501 - the submissions' code is written out in full
"""`python -m vitlearn grade` and the nbgrader metadata it shares with nbgrader.

The graded submissions are notebook 05 (attention: 3 parts, 4 points) as a learner would hand it
in: solved, blank, wrong, and with every way of cheating we thought of. Each graded submission
runs in a fresh kernel (~10 s); the cheats that reach into the grader are refused without running.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import nbformat
import pytest

from vitlearn import grading
from vitlearn._assignments import NOTEBOOKS
from vitlearn.training import TrainingSkipped, skip_training_while_grading

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "notebooks" / "05_attention.ipynb"
EXERCISE = ROOT / "notebooks" / "exercises" / "05_attention.ipynb"

_spec = importlib.util.spec_from_file_location("nbgrader_metadata", ROOT / "tools" / "nbgrader_metadata.py")
nbgrader_metadata = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nbgrader_metadata)


def _have_mnist() -> bool:
    from vitlearn.data import resolve_data_dir

    return (resolve_data_dir() / "MNIST" / "raw" / "train-images-idx3-ubyte").exists()


needs_kernel = pytest.mark.skipif(not _have_mnist(), reason="notebook 05 loads MNIST: set VITLEARN_DATA_DIR")


def _trimmed(path: Path):
    """Notebook 05 up to its last check cell (what follows is the training run and its figures)."""
    nb = nbformat.read(path, as_version=4)
    last = max(i for i, c in enumerate(nb.cells) if (c.metadata.get("nbgrader") or {}).get("grade"))
    nb.cells = nb.cells[:last + 1]
    return nb


def _cell(nb, grade_id: str):
    return next(c for c in nb.cells if (c.metadata.get("nbgrader") or {}).get("grade_id") == grade_id)


def _write(tmp_path: Path, nb, name: str = "submission.ipynb") -> Path:
    out = tmp_path / name
    nbformat.write(nb, out)
    return out


def _solution_source(grade_id: str) -> str:
    return _cell(nbformat.read(SOLUTION, as_version=4), grade_id).source


def _statuses(result) -> dict[str, tuple[str, str]]:
    return {p.part: (p.status, p.message) for p in result.parts}


# -- no kernel needed ------------------------------------------------------------------------------

def test_metadata_and_table_are_up_to_date():
    assert nbgrader_metadata.main(["--check"]) == 0, "run python tools/nbgrader_metadata.py"


def test_metadata_is_idempotent_and_splits_check_calls_out_of_answer_cells():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("from vitlearn import checks"),
        nbformat.v4.new_code_cell("def my_f(x):\n    ### BEGIN SOLUTION — hint: double it\n    return 2 * x\n"
                                  "    ### END SOLUTION\n\n\n# the check\nchecks.check_patchify(my_f)\nprint(1)"),
        nbformat.v4.new_code_cell("history = vitlearn.fit(model)"),
    ])
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="check_patchify: correct\n1\n")]
    table = nbgrader_metadata.annotate(nb, "99_test")
    once = nbformat.writes(nb)
    nbgrader_metadata.annotate(nb, "99_test")
    assert nbformat.writes(nb) == once
    answer, test, training = nb.cells[1], nb.cells[2], nb.cells[3]
    assert "checks." not in answer.source and answer.source.endswith("### END SOLUTION")
    assert test.source == "# the check\nchecks.check_patchify(my_f)\nprint(1)"
    assert test.outputs and not answer.outputs          # the check's output moved with it
    assert answer.metadata.nbgrader == {"grade": False, "grade_id": "my_f", "locked": False,
                                        "schema_version": 3, "solution": True, "task": False}
    assert test.metadata.nbgrader["grade_id"] == "test_my_f" and test.metadata.nbgrader["locked"]
    assert test.metadata.nbgrader["points"] == 1
    assert training.metadata.tags == ["training"]
    assert nb.metadata.vitlearn == {"notebook": "99_test"}
    assert table["parts"][0]["call"] == "checks.check_patchify(my_f)"


def test_check_mode_fails_on_a_stale_notebook(tmp_path, monkeypatch, capsys):
    nb = nbformat.read(SOLUTION, as_version=4)
    _cell(nb, "test_my_attention").metadata.pop("nbgrader")
    (tmp_path / "05_attention.ipynb").write_text(nbformat.writes(nb), encoding="utf-8")
    monkeypatch.setattr(nbgrader_metadata, "SOURCE_DIR", tmp_path)
    monkeypatch.setattr(nbgrader_metadata, "TABLE", tmp_path / "_assignments.py")
    assert nbgrader_metadata.main(["--check"]) == 1
    assert "05_attention.ipynb" in capsys.readouterr().err
    assert nbgrader_metadata.main([]) == 0 and nbgrader_metadata.main(["--check"]) == 0


def test_points_table():
    points = {name: {p["part"]: p["points"] for p in spec["parts"]} for name, spec in NOTEBOOKS.items()}
    assert points["05_attention"] == {"my_attention": 1, "my_causal_attention": 1, "MyMultiHeadSelfAttention": 2}
    assert all(v in (1, 2) for parts in points.values() for v in parts.values())
    assert len(points) >= 10 and all(points.values())


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
                         + sorted((ROOT / "notebooks" / "exercises").glob("[0-9][0-9]_*.ipynb")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_course_notebooks_raise_no_suspicion(path):
    nb = nbformat.read(path, as_version=4)
    name = grading.identify(nb)
    assert name == path.stem
    _, _, answer_at, notes, attack = grading._plan(nb, name, train=False, nonce="x")
    assert attack is None and notes == {}
    assert all(a is not None for a in answer_at.values())


def test_library_objects_are_told_from_instances():
    import functools

    import vitlearn

    assert "scaled_dot_product_attention" in grading.library_object(vitlearn.scaled_dot_product_attention)
    assert "MultiHeadSelfAttention" in grading.library_object(vitlearn.MultiHeadSelfAttention)
    assert grading.library_object(functools.partial(vitlearn.patchify, patch_size=7))
    assert grading.library_object(vitlearn.ViT()) is None        # 08 checks the learner's groups of a ViT
    assert grading.library_object(lambda q, k, v: q) is None


def test_training_steps_aside_only_under_a_grader(monkeypatch):
    for var in ("VITLEARN_SKIP_TRAINING", "NBGRADER_EXECUTION", "VITLEARN_GRADE_TRAIN"):
        monkeypatch.delenv(var, raising=False)
    skip_training_while_grading()                       # a normal run: nothing happens
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    with pytest.raises(TrainingSkipped, match="VITLEARN_GRADE_TRAIN=1"):
        skip_training_while_grading()
    monkeypatch.setenv("VITLEARN_GRADE_TRAIN", "1")
    skip_training_while_grading()
    monkeypatch.delenv("NBGRADER_EXECUTION")
    monkeypatch.setenv("VITLEARN_SKIP_TRAINING", "1")
    with pytest.raises(TrainingSkipped, match="grade --train"):
        skip_training_while_grading()
    import vitlearn
    with pytest.raises(TrainingSkipped):
        vitlearn.fit(vitlearn.ViT())                    # before any data is loaded


# cheats the grader refuses by reading the source: nothing of the submission runs
STATIC_CHEATS = {
    "replace a check": ("my_attention", "checks.check_attention = lambda fn: print('correct')",
                        "replaces checks.check_attention"),
    "replace CheckFailed": ("my_attention", "checks.CheckFailed = Exception", "replaces checks.CheckFailed"),
    "rebind checks": ("my_attention", "class Fake:\n    def __getattr__(self, n):\n        return print\n"
                      "checks = Fake()", "rebinds the name checks"),
    "patch torch": ("my_attention", "torch.allclose = lambda *a, **k: True", "replaces torch.allclose"),
    "patch assert_close": ("my_attention", "torch.testing.assert_close = print", "replaces torch.testing"),
    "setattr on checks": ("my_attention", "setattr(checks, 'check_attention', print)", "setattr"),
    "trace the check": ("my_attention", "import sys\nsys.settrace(None)", "sys.settrace"),
    "hook the kernel": ("my_attention", "get_ipython().events.register('post_run_cell', print)",
                        "hooks into the kernel"),
    "rewrite the check's code": ("my_attention", "checks.check_attention.__wrapped__.__code__ = (lambda f: 0).__code__",
                                 "__code__"),
    "builtins": ("my_attention", "import builtins\nbuiltins.isinstance = lambda *a: True", "builtins"),
    "peek at the caller": ("my_attention", "import inspect\nframe = inspect.currentframe()", "inspect"),
    "reload a fake checks": ("my_attention", "import importlib\nimportlib.reload(checks)", "importlib"),
    "call the grader": ("my_attention", "_vitlearn_grader.run = print", "touches the grader"),
}


@pytest.mark.parametrize("cheat", sorted(STATIC_CHEATS))
def test_code_that_reaches_into_the_grader_is_refused(tmp_path, cheat):
    grade_id, code, said = STATIC_CHEATS[cheat]
    nb = _trimmed(SOLUTION)
    _cell(nb, grade_id).source += "\n" + code
    result = grading.grade_notebook(_write(tmp_path, nb))
    assert result.error is None and result.score == 0
    for part in result.parts:
        assert part.status == "tampered" and said in part.message, (cheat, part)


# -- graded in a kernel ----------------------------------------------------------------------------

@needs_kernel
def test_cli_grades_solved_and_blank_and_reports_bad_files(tmp_path, capsys):
    from vitlearn.cli import main

    solved = _trimmed(SOLUTION)
    solved.metadata.pop("vitlearn")                      # known by its nbgrader cells then
    _cell(solved, "test_MyMultiHeadSelfAttention").metadata.nbgrader["points"] = 100   # points are ours
    paths = [_write(tmp_path, solved, "alice.ipynb"), _write(tmp_path, _trimmed(EXERCISE), "bob.ipynb")]
    (tmp_path / "bad.ipynb").write_text("{not json", encoding="utf-8")
    (tmp_path / "empty.ipynb").write_text("", encoding="utf-8")
    foreign = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('hello')")])
    paths += [tmp_path / "bad.ipynb", tmp_path / "empty.ipynb", _write(tmp_path, foreign, "other.ipynb")]
    out = tmp_path / "grades.json"
    assert main(["grade", *map(str, paths), "--json", str(out)]) == 1     # some files could not be graded
    printed = capsys.readouterr().out
    assert "alice.ipynb: 05_attention 4/4 (3 passed)" in printed
    assert "bob.ipynb: 05_attention 0/4 (3 not attempted)" in printed
    data = json.loads(out.read_text())
    entries = data["notebooks"]
    assert [Path(e["path"]).name for e in entries] == ["alice.ipynb", "bob.ipynb", "bad.ipynb", "empty.ipynb",
                                                       "other.ipynb"]
    assert set(entries[0]) == {"path", "notebook", "score", "max_score", "error", "parts"}
    assert (entries[0]["notebook"], entries[0]["score"], entries[0]["max_score"], entries[0]["error"]) == \
        ("05_attention", 4, 4, None)
    part = entries[0]["parts"][0]
    assert set(part) == {"part", "check", "status", "points", "max_points", "message"}
    assert (part["part"], part["check"], part["status"], part["points"], part["max_points"]) == \
        ("my_attention", "check_attention", "passed", 1, 1)
    assert [p["status"] for p in entries[1]["parts"]] == ["not attempted"] * 3
    assert entries[1]["parts"][0]["message"].startswith("NotImplementedError: scores = q @ k^T")
    assert "JSON" in entries[2]["error"] and "empty" in entries[3]["error"]
    assert "not one of the course's notebooks" in entries[4]["error"]
    assert all(e["parts"] == [] for e in entries[2:])


@needs_kernel
def test_wrong_part_failed_error_and_blank(tmp_path):
    nb = _trimmed(EXERCISE)
    _cell(nb, "my_attention").source = _solution_source("my_attention").replace(" / math.sqrt(d)", "")
    _cell(nb, "my_causal_attention").source = "raise ValueError('oops')\n" + _cell(nb, "my_causal_attention").source
    result = grading.grade_notebook(_write(tmp_path, nb))
    got = _statuses(result)
    assert got["my_attention"][0] == "failed" and "sqrt" in got["my_attention"][1]
    assert got["my_causal_attention"][0] == "error"
    assert "raised ValueError: oops" in got["my_causal_attention"][1] and "cell " in got["my_causal_attention"][1]
    assert got["MyMultiHeadSelfAttention"][0] == "not attempted"
    assert result.score == 0 and result.max_score == 4


@needs_kernel
def test_printing_correct_and_faking_outputs_get_nothing(tmp_path):
    nb = _trimmed(EXERCISE)
    fake = ("print('check_attention: correct — outputs and weights equal vitlearn.scaled_dot_product_attention')\n"
            "from IPython.display import display\n"
            "display({'application/vnd.vitlearn.grade+json': {'status': 'passed', 'message': 'ok'}}, raw=True)")
    _cell(nb, "my_attention").source += "\n" + fake
    for cell in nb.cells:                                   # stored outputs claiming success
        if cell.cell_type == "code":
            cell.outputs = [nbformat.v4.new_output("stream", text="check_attention: correct\n")]
    result = grading.grade_notebook(_write(tmp_path, nb))
    assert [p.status for p in result.parts] == ["not attempted"] * 3 and result.score == 0


@needs_kernel
def test_edited_and_deleted_check_cells_are_tampered(tmp_path):
    nb = _trimmed(SOLUTION)
    _cell(nb, "test_my_attention").source = "print('check_attention: correct')"
    nb.cells.remove(_cell(nb, "test_my_causal_attention"))
    result = grading.grade_notebook(_write(tmp_path, nb))
    got = _statuses(result)
    assert got["my_attention"] == ("tampered", got["my_attention"][1]) and "was edited" in got["my_attention"][1]
    assert got["my_causal_attention"][0] == "tampered" and "was deleted" in got["my_causal_attention"][1]
    assert got["MyMultiHeadSelfAttention"][0] == "passed" and result.score == 2


# cheats that get past the source scan and are caught in the kernel (identity and code hashes)
DYNAMIC_CHEATS = {
    "check replaced": ("c = checks\nfor n in ['check_attention']:\n    vars(c)[n] = lambda fn: None",
                       "vitlearn.checks.check_attention was replaced"),
    "CheckFailed replaced": ("vars(checks)['Check' + 'Failed'] = type('X', (Exception,), {})",
                             "CheckFailed was replaced"),
    "torch patched": ("vars(torch)['all' + 'close'] = lambda *a, **k: True", "torch.allclose was replaced"),
    "check helper patched during the check": (
        "_real = my_attention\n"
        "def my_attention(q, k, v):\n"
        "    vars(vars(checks)['attention'])['_expect'] = lambda *a, **kw: None\n"
        "    return q, q\n", "during the check: vitlearn.checks.attention._expect was replaced"),
    "the library's own function": ("import vitlearn as v\nmy_attention = getattr(v, 'scaled_dot_product_' + 'attention')",
                                   "vitlearn's own scaled_dot_product_attention"),
}


@needs_kernel
@pytest.mark.parametrize("cheat", sorted(DYNAMIC_CHEATS))
def test_replaced_checks_are_caught_in_the_kernel(tmp_path, cheat):
    code, said = DYNAMIC_CHEATS[cheat]
    nb = _trimmed(EXERCISE)
    _cell(nb, "my_attention").source += "\n" + code
    result = grading.grade_notebook(_write(tmp_path, nb))
    first = result.parts[0]
    assert first.status == "tampered" and said in first.message, first
    assert result.score == 0


@needs_kernel
def test_calling_the_library_inside_the_part_is_tampered(tmp_path):
    nb = _trimmed(SOLUTION)
    _cell(nb, "my_attention").source = ("def my_attention(q, k, v):\n"
                                        "    return vitlearn.scaled_dot_product_attention(q, k, v)")
    result = grading.grade_notebook(_write(tmp_path, nb))
    got = _statuses(result)
    assert got["my_attention"][0] == "tampered" and "scaled_dot_product_attention" in got["my_attention"][1]
    assert got["my_causal_attention"][0] == "passed"


@needs_kernel
def test_an_endless_part_is_stopped_by_the_time_limit(tmp_path):
    nb = _trimmed(SOLUTION)
    _cell(nb, "my_causal_attention").source = "def my_causal_attention(q, k, v):\n    while True:\n        pass"
    result = grading.grade_notebook(_write(tmp_path, nb), timeout=30)   # the other cells need well under 30 s
    got = _statuses(result)
    assert got["my_causal_attention"][0] == "error" and "time limit" in got["my_causal_attention"][1]
    assert got["my_attention"][0] == "passed" and got["MyMultiHeadSelfAttention"][0] == "passed"


def test_copy_is_not_mutated():
    nb = _trimmed(SOLUTION)
    before = copy.deepcopy(nb)
    grading._plan(nb, "05_attention", train=False, nonce="n")
    assert nb == before


def test_the_digests_cover_every_module_of_the_checks_package():
    """The grader compares the code of every check and of the harness they call, wherever the
    checks package defines them (a digest table keyed by the package alone would be empty)."""
    digests = grading.check_digests()
    for name in ("vitlearn.checks.attention:check_attention", "vitlearn.checks._harness:_expect",
                 "vitlearn.checks.training:check_random_shift", "vitlearn.checks.model:check_vit_params"):
        assert name in digests, name
