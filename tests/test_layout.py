"""The library's layout: no two vitlearn modules import each other (a lazy import inside a
function counts: it hides the circle, it does not remove it), and no module grows past
800 lines. Read from the source with ``ast``, so nothing is imported or run."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vitlearn"
MAX_LINES = 800


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str) -> str | None:
    """The vitlearn module that ``name`` (a module, or a name inside one) refers to."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def vitlearn_imports(module: str) -> set[str]:
    """Every vitlearn module that ``module`` imports, at the top or inside a function."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            # "from . import checkpoint" imports the module vitlearn.checkpoint, "from .model
            # import ViT" a name of vitlearn.model
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for name in names:
            target = _resolve(name) if name.split(".")[0] == "vitlearn" else None
            if target is not None and target != module:
                found.add(target)
    return found


def test_the_modules_are_found():
    assert {"vitlearn", "vitlearn.model", "vitlearn.pretrained", "vitlearn.encoder"} <= set(MODULES)
    assert "vitlearn.model" in vitlearn_imports("vitlearn")  # the parser sees relative imports


def test_no_two_modules_import_each_other():
    graph = {module: vitlearn_imports(module) for module in MODULES}
    circles = sorted(f"{a} <-> {b}" for a in graph for b in graph[a] if a < b and a in graph[b])
    assert not circles, ("these vitlearn modules import each other (lazy imports included); "
                         "move what both need into one of them, or into a third module: "
                         + ", ".join(circles))


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_over_800_lines(module):
    path = MODULES[module]
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, (f"{path.name} has {lines} lines (at most {MAX_LINES}): split it "
                                f"along its concepts, one module each")
