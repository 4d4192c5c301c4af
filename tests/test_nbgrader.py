# ruff: noqa: E501 - the submissions' code is written out in full
"""nbgrader end to end on notebook 05, offline: generate_assignment gives the exercise edition's
blanks (with the course's hints, vitlearn.nbgrader_hints), and autograde gives full points to a
solved submission, zero to a blank one, and loses exactly the wrong part's point on a third, whose
feedback names the mistake. The training runs step aside under NBGRADER_EXECUTION."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

pytest.importorskip("nbgrader", reason="nbgrader is in the dev extra: pip install -e '.[dev]'")

ROOT = Path(__file__).resolve().parents[1]
NAME = "05_attention.ipynb"


def _have_mnist() -> bool:
    from vitlearn.data import resolve_data_dir

    return (resolve_data_dir() / "MNIST" / "raw" / "train-images-idx3-ubyte").exists()


def _nbgrader(course: Path, *args: str) -> str:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")   # nbgrader runs alembic
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if env.get("VITLEARN_DATA_DIR"):
        env["VITLEARN_DATA_DIR"] = str(Path(env["VITLEARN_DATA_DIR"]).resolve())
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    course = tmp_path_factory.mktemp("course")
    (course / "source" / "ps1").mkdir(parents=True)
    (course / "source" / "ps1" / NAME).write_bytes((ROOT / "notebooks" / NAME).read_bytes())
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        "from vitlearn.nbgrader_hints import use_course_hints\n"
        "use_course_hints(c)\n"
        f"c.CourseDirectory.root = {str(course)!r}\n", encoding="utf-8")
    _nbgrader(course, "generate_assignment", "ps1", "--force")
    return course


def _code(nb) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code"]


def test_generate_assignment_makes_the_exercise_edition(course):
    release = nbformat.read(course / "release" / "ps1" / NAME, as_version=4)
    exercise = nbformat.read(ROOT / "notebooks" / "exercises" / NAME, as_version=4)
    assert _code(release) == _code(exercise)
    locked = [c for c in release.cells if (c.metadata.get("nbgrader") or {}).get("locked")]
    assert [c.metadata.nbgrader["grade_id"] for c in locked if c.metadata.nbgrader.get("grade")] == [
        "test_my_attention", "test_my_causal_attention", "test_MyMultiHeadSelfAttention"]
    assert release.metadata.vitlearn["notebook"] == "05_attention"   # beside the version stamp


def test_plain_nbgrader_blanks_the_same_regions():
    """Without the hint preprocessor, nbgrader's stub has no hint but sits in the same places."""
    from nbgrader.preprocessors import ClearSolutions

    source = nbformat.read(ROOT / "notebooks" / NAME, as_version=4)
    exercise = nbformat.read(ROOT / "notebooks" / "exercises" / NAME, as_version=4)
    clear = ClearSolutions()
    for cell, blank in zip(source.cells, exercise.cells):
        if cell.cell_type == "code" and (cell.metadata.get("nbgrader") or {}).get("solution"):
            plain = nbformat.from_dict(cell)
            clear._replace_solution_region(plain, "python")
            ours = [line.split("raise NotImplementedError(")[0] for line in blank.source.split("\n")]
            assert [line.split("raise NotImplementedError(")[0] for line in plain.source.split("\n")] == ours


@pytest.mark.skipif(not _have_mnist(), reason="notebook 05 loads MNIST: set VITLEARN_DATA_DIR")
def test_autograde_solved_blank_and_wrong(course):
    from nbgrader.api import Gradebook

    release = nbformat.read(course / "release" / "ps1" / NAME, as_version=4)
    solution = {(c.metadata.get("nbgrader") or {}).get("grade_id"): c.source
                for c in nbformat.read(ROOT / "notebooks" / NAME, as_version=4).cells}

    def submission(student: str, answers: dict[str, str]) -> None:
        nb = nbformat.from_dict(release)
        for cell in nb.cells:
            gid = (cell.metadata.get("nbgrader") or {}).get("grade_id")
            if gid in answers:
                cell.source = answers[gid]
        folder = course / "submitted" / student / "ps1"
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, folder / NAME)

    parts = ["my_attention", "my_causal_attention", "MyMultiHeadSelfAttention"]
    submission("solved", {p: solution[p] for p in parts})
    submission("blank", {})
    wrong = {p: solution[p] for p in parts}
    # causal attention without the 1/sqrt(d) (my_attention would take the multi-head part down too)
    wrong["my_causal_attention"] = wrong["my_causal_attention"].replace(" / math.sqrt(d)", "")
    assert wrong["my_causal_attention"] != solution["my_causal_attention"]
    submission("wrong", wrong)
    _nbgrader(course, "autograde", "ps1", "--force")
    _nbgrader(course, "generate_feedback", "ps1", "--force")

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        scores = {s: gb.find_submission("ps1", s).score for s in ("solved", "blank", "wrong")}
        lost = {p: gb.find_grade(f"test_{p}", "05_attention", "ps1", "wrong").score for p in parts}
        max_score = gb.find_assignment("ps1").max_score
    assert max_score == 4
    assert scores == {"solved": 4, "blank": 0, "wrong": 3}
    assert lost == {"my_attention": 1, "my_causal_attention": 0, "MyMultiHeadSelfAttention": 2}

    graded = nbformat.read(course / "autograded" / "wrong" / "ps1" / NAME, as_version=4)
    test_cell = next(c for c in graded.cells if (c.metadata.get("nbgrader") or {}).get("grade_id")
                     == "test_my_causal_attention")
    error = next(o for o in test_cell.outputs if o.output_type == "error")
    assert error.ename == "CheckFailed" and "sqrt" in error.evalue      # the diagnosis
    feedback = (course / "feedback" / "wrong" / "ps1" / NAME.replace(".ipynb", ".html")).read_text()
    assert "CheckFailed" in feedback and "sqrt" in feedback
    training = [c for c in graded.cells if "training" in c.metadata.get("tags", [])]
    assert training and all(o.get("ename") == "TrainingSkipped" for c in training for o in c.outputs
                            if o.output_type == "error")
