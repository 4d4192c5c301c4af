"""Give the solution notebooks their nbgrader metadata, derived from the source convention, and
write the grader's table of parts (vitlearn/_assignments.py).

    python tools/nbgrader_metadata.py            # rewrite notebooks/NN_*.ipynb and vitlearn/_assignments.py
    python tools/nbgrader_metadata.py --check    # write nothing; exit 1 if either is out of date

Idempotent: it derives everything from what the notebooks already say, so it can be re-run after
any edit (or merge) of a solution notebook, and a second run changes nothing. Then run
`python tools/make_exercises.py` so the exercise edition inherits the metadata.

What it derives, notebook by notebook:

* **answer cells**: every code cell holding a `### BEGIN SOLUTION — hint:` fence is an
  nbgrader autograded answer cell (`solution: true`, `grade_id` = the part: the first function or
  class the cell defines, else the check's name without `check_`).
* **test cells**: the `checks.check_...(...)` call that checks a part gets its own locked cell
  (`grade: true`, `locked: true`, `grade_id` = `test_<part>`, `points`). Where a check call shares
  a cell with the learner's code, the cell is split just before the call (comment lines right above
  the call go with it; the outputs go with it too, since definitions print nothing), so that the
  learner's code and our check never share a cell. The new cell's id is `<old id>-check`.
* **points**: 2 for a part that is a class (a whole layer: parameters and forward), 1 for a
  function or a number (README, "For teachers").
* **training runs**: a cell that calls `vitlearn.fit`, `vitlearn.compare` or
  `vitlearn.data_scale_experiment` gets the tag
  `training` (`python -m vitlearn grade` skips it unless `--train`).
* **notebook identity**: `metadata.vitlearn.notebook` = the file's stem, so a renamed submission
  still grades as the right notebook.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))   # the grader's vitlearn_names reads vitlearn.__all__ of this checkout
from vitlearn.grading import _vitlearn_names as vitlearn_names  # noqa: E402 (the grader's own scanner)

SOURCE_DIR = ROOT / "notebooks"
TABLE = ROOT / "vitlearn" / "_assignments.py"
_NOTEBOOK_RE = re.compile(r"^\d\d_[\w-]+\.ipynb$")
_FENCE = "### BEGIN SOLUTION"
_CHECK_LINE = re.compile(r"^checks\.(check_\w+)\(")
_TRAINING = re.compile(r"(?:^|[^\w.])(?:vitlearn\.)?(?:fit|compare|data_scale_experiment)\(", re.MULTILINE)
_DEFINES = re.compile(r"^(def|class)\s+(\w+)", re.MULTILINE)
TRAINING_TAG = "training"
POINTS = {"class": 2, "other": 1}


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def source_notebooks() -> list[Path]:
    return sorted(p for p in SOURCE_DIR.glob("*.ipynb") if _NOTEBOOK_RE.match(p.name))


def _is_answer(cell) -> bool:
    return cell.cell_type == "code" and _FENCE in cell.source


def _check_line(source: str) -> int | None:
    """Index of the first top-level `checks.check_...(` line, or None."""
    for i, line in enumerate(source.split("\n")):
        if _CHECK_LINE.match(line):
            return i
    return None


def split_checks(nb) -> bool:
    """Split every answer cell that also calls a check, just before the call. True if changed."""
    changed, out = False, []
    for cell in nb.cells:
        k = _check_line(cell.source) if _is_answer(cell) else None
        end = cell.source.rfind("### END SOLUTION")
        if k is None or end > sum(len(x) + 1 for x in cell.source.split("\n")[:k]):
            out.append(cell)
            continue
        lines = cell.source.split("\n")
        while k > 0 and lines[k - 1].lstrip().startswith("#") and "SOLUTION" not in lines[k - 1]:
            k -= 1                                            # comments about the check go with it
        head = lines[:k]
        while head and not head[-1].strip():
            head.pop()
        test = nbformat.v4.new_code_cell("\n".join(lines[k:]))
        test.id = f"{cell.get('id', 'cell')}-check"[:64]
        test.outputs, test.execution_count = cell.outputs, cell.execution_count
        if "execution" in cell.metadata:
            test.metadata["execution"] = dict(cell.metadata["execution"])
        cell.source, cell.outputs = "\n".join(head), []
        out += [cell, test]
        changed = True
    nb.cells = out
    return changed


def _part_name(answer_source: str, check: str) -> str:
    m = _DEFINES.search(answer_source)
    return m.group(2) if m else check.removeprefix("check_")


def _call_source(source: str) -> str:
    """The source of the first top-level `checks.check_...(...)` call of a test cell."""
    tree = ast.parse(source)
    for node in tree.body:
        if (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
                and isinstance(node.value.func, ast.Attribute)
                and isinstance(node.value.func.value, ast.Name) and node.value.func.value.id == "checks"):
            return ast.get_source_segment(source, node.value)
    raise ValueError(f"no top-level checks.check_...(...) call in:\n{source}")


def checksum(source: str) -> str:
    """The locked cell's fingerprint: its source, trailing whitespace of lines ignored."""
    text = "\n".join(line.rstrip() for line in source.strip().split("\n"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def annotate(nb, stem: str) -> dict:
    """Set the nbgrader metadata, tags and notebook identity in place; return the grader's table
    entry for this notebook."""
    split_checks(nb)
    nb.metadata.setdefault("vitlearn", {})["notebook"] = stem  # beside the version stamp of execute_notebooks
    code = [c for c in nb.cells if c.cell_type == "code"]
    roles: dict[int, dict] = {}
    parts = []
    for i, cell in enumerate(code):
        if not _is_answer(cell):
            continue
        test = None
        for later in code[i + 1:]:
            if _is_answer(later):
                break
            if _check_line(later.source) is not None:
                test = later
                break
        if test is None:
            raise ValueError(f"{stem}: the part in cell {cell.get('id')} has no check cell after it")
        check = _CHECK_LINE.match(test.source.split("\n")[_check_line(test.source)]).group(1)
        part = _part_name(cell.source, check)
        kind = "class" if re.search(rf"^class\s+{re.escape(part)}\b", cell.source, re.M) else "other"
        points = POINTS[kind]
        if any(p["part"] == part for p in parts):
            raise ValueError(f"{stem}: two parts named {part}")
        roles[id(cell)] = {"grade": False, "grade_id": part, "locked": False, "schema_version": 3,
                           "solution": True, "task": False}
        roles[id(test)] = {"grade": True, "grade_id": f"test_{part}", "locked": True, "points": points,
                           "schema_version": 3, "solution": False, "task": False}
        parts.append({"part": part, "check": check, "points": points, "answer_id": part,
                      "test_id": f"test_{part}", "call": _call_source(test.source),
                      "test_source": test.source, "test_sha256": checksum(test.source),
                      "answer_vitlearn": sorted(vitlearn_names(cell.source))})
    training = []
    for cell in code:
        role = roles.get(id(cell))
        if role is None:
            cell.metadata.pop("nbgrader", None)
        else:
            cell.metadata["nbgrader"] = role
        tags = [t for t in cell.metadata.get("tags", []) if t != TRAINING_TAG]
        if role is None and _TRAINING.search(cell.source):
            tags.append(TRAINING_TAG)
            training.append(cell.get("id"))
        if tags:
            cell.metadata["tags"] = tags
        else:
            cell.metadata.pop("tags", None)
    for cell in nb.cells:
        if cell.cell_type != "code":
            cell.metadata.pop("nbgrader", None)
    return {"parts": parts, "training_cells": training}


def render_table(table: dict) -> str:
    body = json.dumps(table, indent=1, ensure_ascii=False, sort_keys=True)
    return ("# ruff: noqa: E501\n"
            '"""The course\'s graded parts, notebook by notebook (generated by tools/nbgrader_metadata.py\n'
            'from the solution notebooks: do not edit; re-run the tool)."""\n\n'
            "import json\n\n"
            f"NOTEBOOKS = json.loads(r'''{body}''')\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a notebook or vitlearn/_assignments.py is out of date")
    args = parser.parse_args(argv)
    stale, table = [], {}
    for path in source_notebooks():
        text = path.read_text(encoding="utf-8")
        nb = nbformat.reads(text, as_version=4)
        try:
            table[path.stem] = annotate(nb, path.stem)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        new = nbformat.writes(nb)
        new = new if new.endswith("\n") else new + "\n"
        if new != text:
            stale.append(path.name)
            if not args.check:
                path.write_text(new, encoding="utf-8")
                print(f"wrote {_rel(path)}")
    rendered = render_table(table)
    if not TABLE.exists() or TABLE.read_text(encoding="utf-8") != rendered:
        stale.append(_rel(TABLE))
        if not args.check:
            TABLE.write_text(rendered, encoding="utf-8")
            print(f"wrote {_rel(TABLE)}")
    if args.check and stale:
        print("out of date (run python tools/nbgrader_metadata.py, then tools/make_exercises.py): "
              + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
