"""Version agreement between a notebook and the installed library.

The notebooks are executed with one version of vitlearn and their stored outputs, prose and
checks describe that version. A learner who pulls new notebooks but keeps an old install (or the
reverse) would otherwise meet confusing errors deep inside a lesson; the first code cell of each
notebook calls :func:`require_version` so the mismatch is named at once, with the fix.
"""

from __future__ import annotations

import re

__all__ = ["VersionMismatchError", "require_version", "__version__"]

# The release: pyproject.toml says the same (tests/test_packaging.py), and every notebook's first
# cell names it (require_version).
__version__ = "0.3.0"

_VERSION_RE = re.compile(r"^\s*(\d+(?:\.\d+)*)\s*$")


class VersionMismatchError(RuntimeError):
    """The installed vitlearn is not the version a notebook was written for."""


def _parse(version: str, what: str) -> tuple[int, ...]:
    m = _VERSION_RE.match(version) if isinstance(version, str) else None
    if not m:  # a float such as 0.1 would lose a patch number: versions are strings
        raise ValueError(f"{what} {version!r} is not a release number like '0.1.0'")
    parts = [int(p) for p in m.group(1).split(".")]
    while len(parts) > 1 and parts[-1] == 0:  # "0.1" and "0.1.0" are the same release
        parts.pop()
    return tuple(parts)


def require_version(expected: str, *, installed: str | None = None) -> None:
    """Stop with a clear message unless the installed vitlearn is exactly ``expected``.

    Older and newer both stop: a newer library may have renamed what the notebook uses, and an
    older one lacks what it needs; either way the stored outputs would not be reproduced.
    ``installed`` defaults to ``__version__`` (this release) (given only by tests).
    """
    if installed is None:
        installed = __version__
    want, have = _parse(expected, "the expected version"), _parse(installed, "the installed version")
    if want == have:
        return
    relation = "older" if have < want else "newer"
    raise VersionMismatchError(
        f"this notebook was written for vitlearn {expected}, but vitlearn {installed} is installed "
        f"({relation}). The notebooks and the library of one commit of the repository always agree: "
        f"in your clone run git pull, then pip install -e \".[dev,pretrained]\" (a notebook downloaded "
        f"from the course site: install vitlearn from the same repository, or download the notebook "
        f"again). "
        f"Then restart the kernel.")
