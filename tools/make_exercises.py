"""Generate the exercise edition of the notebooks from the solution notebooks.

    python tools/make_exercises.py            # write notebooks/exercises/NN_*.ipynb
    python tools/make_exercises.py --check    # exit 1 (naming the files) if they are out of date

The solution notebooks (notebooks/NN_*.ipynb) are the source of truth: they run, solved, under
nbval in CI. Inside them every part the learner writes is fenced by comment markers, the
convention of nbgrader, with the hint carried on the opening line:

    def my_patchify(images, patch_size):
        \"\"\"[B, C, H, W] -> [B, N, P*P*C] ...\"\"\"
        ### BEGIN SOLUTION — hint: reshape to [B, C, h, P, w, P], permute, reshape to [B, N, P*P*C]
        B, C, H, W = images.shape
        ...
        ### END SOLUTION

Being plain comments, the markers change nothing when the solution runs. In the exercise
edition everything from `### BEGIN SOLUTION` to `### END SOLUTION` (both lines included) is
replaced by a stub at the indentation of the opening marker:

        # YOUR CODE HERE
        raise NotImplementedError("reshape to [B, C, h, P, w, P], permute, reshape to [B, N, P*P*C]")

so a function or method keeps its signature (and a class stays importable: only the body that
runs when it is called raises), and a fenced top-level assignment raises as soon as its cell
runs. The hint is required, is one line, and is exactly the text after `— hint: ` (an em dash,
U+2014). Everything else is copied unchanged: prose, the other code, cell ids, tags. Outputs and
execution counts are cleared. One thing in the prose is rewritten: the exercise notebooks sit one
folder deeper, so a relative link or image to anything but another notebook of the series
(e.g. `bug_zoo.md`, `../ViT.png`) gets a `../` in front.

The output is deterministic (same input, same bytes); tests/test_exercises.py checks that the
committed edition is what this script generates, that no solution line survives in it, and that
each exercise notebook stops at its first blank when run.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIR = ROOT / "notebooks"
EXERCISE_DIR = SOURCE_DIR / "exercises"

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
HINT_SEP = " — hint: "
_BEGIN_RE = re.compile(r"^(?P<indent>[ \t]*)### BEGIN SOLUTION(?P<rest>.*)$")
_END_RE = re.compile(r"^[ \t]*### END SOLUTION[ \t]*$")
_NOTEBOOK_RE = re.compile(r"^\d\d_[\w-]+\.ipynb$")
# a Markdown link or image target: [text](target) / ![alt](target), target without spaces
_LINK_RE = re.compile(r"(\]\()([^)\s]+)(\))")


class MarkerError(ValueError):
    """A solution notebook's markers are malformed (the message names notebook, cell and line)."""


def source_notebooks() -> list[Path]:
    return sorted(p for p in SOURCE_DIR.glob("*.ipynb") if _NOTEBOOK_RE.match(p.name))


def find_blanks(source: str, where: str = "cell") -> list[dict]:
    """The fenced parts of one cell's source: [{indent, hint, begin, end, body}] with line numbers
    (0-based, begin/end are the marker lines) and the body lines between them."""
    blanks, current = [], None
    lines = source.split("\n")
    for i, line in enumerate(lines):
        m = _BEGIN_RE.match(line)
        if m:
            if current is not None:
                raise MarkerError(f"{where}, line {i + 1}: {BEGIN} inside another "
                                  f"(line {current['begin'] + 1})")
            rest = m.group("rest")
            if not rest.startswith(HINT_SEP) or not rest[len(HINT_SEP):].strip():
                raise MarkerError(f"{where}, line {i + 1}: write the hint on the marker line: "
                                  f"'{BEGIN}{HINT_SEP}<one line for the learner>'")
            current = {"indent": m.group("indent"), "hint": rest[len(HINT_SEP):].strip(), "begin": i}
        elif _END_RE.match(line):
            if current is None:
                raise MarkerError(f"{where}, line {i + 1}: {END} without a {BEGIN} before it")
            current["end"] = i
            current["body"] = lines[current["begin"] + 1:i]
            if not any(b.strip() for b in current["body"]):
                raise MarkerError(f"{where}, line {i + 1}: the fenced part is empty")
            blanks.append(current)
            current = None
        elif BEGIN in line or END in line:
            raise MarkerError(f"{where}, line {i + 1}: a marker stands alone on its line: {line.strip()!r}")
    if current is not None:
        raise MarkerError(f"{where}, line {current['begin'] + 1}: {BEGIN} without an {END}")
    return blanks


def stub(indent: str, hint: str) -> list[str]:
    return [f"{indent}# YOUR CODE HERE", f"{indent}raise NotImplementedError({hint!r})"]


def blank_source(source: str, where: str = "cell", keep: int = 0) -> str:
    """The cell's source with every fenced part replaced by its stub (but the first `keep` ones,
    which are left solved, markers and all)."""
    blanks = find_blanks(source, where)[keep:]
    lines = source.split("\n")
    out, pos = [], 0
    for b in blanks:
        out += lines[pos:b["begin"]] + stub(b["indent"], b["hint"])
        pos = b["end"] + 1
    out += lines[pos:]
    return "\n".join(out)


def _relink(target: str) -> str:
    if re.match(r"^([a-z][a-z0-9+.-]*:|#|/)", target, re.IGNORECASE):   # URL, anchor, absolute
        return target
    if _NOTEBOOK_RE.match(target.split("#")[0]):     # another notebook of the series: a sibling there too
        return target
    return "../" + target


def relink_markdown(source: str) -> str:
    return _LINK_RE.sub(lambda m: m.group(1) + _relink(m.group(2)) + m.group(3), source)


def make_exercise(nb: nbformat.NotebookNode, name: str = "notebook",
                  solved: int = 0) -> nbformat.NotebookNode:
    """A copy of a solution notebook as the exercise edition. With `solved` = k, the first k blanks
    (in notebook order) keep their solutions: the notebook as a learner has it after writing k
    parts (tests/test_exercises.py runs every such stage)."""
    nb = nbformat.from_dict(nb)  # deep copy
    nb.metadata.pop("widgets", None)  # saved widget views are outputs of the solution run
    for index, cell in enumerate(nb.cells):
        where = f"{name}, cell {index}"
        if cell.cell_type == "code":
            count = len(find_blanks(cell.source, where))
            cell.source = blank_source(cell.source, where, keep=min(solved, count))
            solved = max(0, solved - count)
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)
        else:
            if BEGIN in cell.source or END in cell.source:
                raise MarkerError(f"{where}: solution markers belong in code cells only")
            if cell.cell_type == "markdown":
                cell.source = relink_markdown(cell.source)
    return nb


def render(path: Path) -> str:
    """The exercise edition of one solution notebook, as the text written to disk."""
    nb = nbformat.read(path, as_version=4)
    text = nbformat.writes(make_exercise(nb, path.name))
    return text if text.endswith("\n") else text + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if notebooks/exercises/ is out of date")
    args = parser.parse_args(argv)
    stale = []
    EXERCISE_DIR.mkdir(exist_ok=True)
    expected = {}
    for path in source_notebooks():
        try:
            expected[path.name] = render(path)
        except MarkerError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    for old in sorted(EXERCISE_DIR.glob("*.ipynb")):
        if old.name not in expected:
            stale.append(old.name)
            if not args.check:
                old.unlink()
                print(f"removed {old.relative_to(ROOT)} (no solution notebook of that name)")
    for name, text in expected.items():
        target = EXERCISE_DIR / name
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current == text:
            continue
        stale.append(name)
        if not args.check:
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target.relative_to(ROOT)}")
    if args.check and stale:
        print("out of date (run python tools/make_exercises.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
