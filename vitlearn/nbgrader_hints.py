"""nbgrader's blanks with the course's hints, so ``nbgrader generate_assignment`` writes the same
student version as ``tools/make_exercises.py`` (tests/test_nbgrader.py compares them).

nbgrader replaces each ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` region by one fixed stub,
``raise NotImplementedError()``; the course's solution notebooks carry a hint on the opening line
(``### BEGIN SOLUTION — hint: <hint>``), which the exercise edition puts in the stub. In the
course's ``nbgrader_config.py``::

    from vitlearn.nbgrader_hints import use_course_hints
    use_course_hints(c)

Without it nbgrader still blanks the same regions, with its own hint-less stub.
"""

from __future__ import annotations

import re

from nbgrader.converters.generate_assignment import GenerateAssignment
from nbgrader.preprocessors import ClearSolutions

__all__ = ["ClearSolutionsWithHints", "use_course_hints"]

_BEGIN = re.compile(r"^(?P<indent>[ \t]*)### BEGIN SOLUTION(?: — hint: (?P<hint>.+?))?[ \t]*$")
_END = re.compile(r"^[ \t]*### END SOLUTION[ \t]*$")


class ClearSolutionsWithHints(ClearSolutions):
    """ClearSolutions whose stub is the exercise edition's: ``# YOUR CODE HERE`` and
    ``raise NotImplementedError(<the hint>)`` at the indentation of the opening marker."""

    def _replace_solution_region(self, cell, language):
        if cell.cell_type != "code" or "### BEGIN SOLUTION" not in cell.source:
            return super()._replace_solution_region(cell, language)
        out, inside, replaced = [], False, False
        for line in cell.source.split("\n"):
            m = _BEGIN.match(line)
            if m:
                if inside:
                    raise RuntimeError("encountered nested begin solution statements")
                inside = replaced = True
                hint = m.group("hint")
                raise_line = (f"raise NotImplementedError({hint.strip()!r})" if hint
                              else "raise NotImplementedError()")
                out += [m.group("indent") + "# YOUR CODE HERE", m.group("indent") + raise_line]
            elif _END.match(line):
                inside = False
            elif not inside:
                out.append(line)
        if inside:
            raise RuntimeError("no end solution statement found")
        cell.source = "\n".join(out)
        return replaced


def use_course_hints(c) -> None:
    """Put ClearSolutionsWithHints in place of ClearSolutions in nbgrader's GenerateAssignment."""
    default = GenerateAssignment.class_traits()["preprocessors"].default()
    c.GenerateAssignment.preprocessors = [ClearSolutionsWithHints if p is ClearSolutions else p
                                          for p in default]
