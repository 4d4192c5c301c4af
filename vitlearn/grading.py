"""``python -m vitlearn grade``: grade learners' notebooks with the course's own checks.

Each submission runs in a fresh Jupyter kernel, in its own temporary folder, cell by cell with a
time limit per cell, going on past failing cells; the closing training runs (cells tagged
``training``) are skipped unless ``--train``, and any other ``vitlearn.fit`` steps aside
(``vitlearn.training.skip_training_while_grading``). The grade never comes from what the
notebook printed or stored: where the submission has a part's locked check cell, the grader puts
its own cell, which calls the *original* check function (captured before any learner code ran)
on the learner's object and hands the result back on a channel of its own. So:

* a check cell that was edited or deleted (compared with the fingerprint of the solution's locked
  cell, as nbgrader does with its checksums) gives ``tampered``;
* a check function, ``CheckFailed``, or anything the checks rely on (vitlearn's functions and
  classes, torch's functions, ``torch.Tensor``'s methods, builtins) replaced by learner code,
  before or during the check, gives ``tampered`` (identity with the objects captured at the start,
  and the check functions' code compared with the grader's own copy by hash);
* a part that is the library's own object (``my_attention = vitlearn.scaled_dot_product_attention``)
  or calls a vitlearn function the solution does not call gives ``tampered``;
* learner code that reaches into the interpreter or the kernel (frames, tracing, ``__code__``,
  ``builtins``, IPython hooks, ``importlib``, the grader's own names) gives ``tampered`` for every
  part: one process cannot defend itself against such code, so the grader refuses it by reading
  the source;
* printing "correct" does nothing: printed output is never read.

Which notebook a submission is comes from its metadata (``metadata.vitlearn.notebook``, written
by tools/nbgrader_metadata.py), else from its nbgrader cell ids; the parts, checks and points come
from ``vitlearn/_assignments.py``, generated from the solution notebooks with their nbgrader
metadata, so this grader and nbgrader give the same points.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import re
import secrets
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ._assignments import NOTEBOOKS

__all__ = ["grade_notebook", "grade_files", "PartResult", "NotebookResult", "add_grade_parser", "main"]

MIME = "application/vnd.vitlearn.grade+json"
STATUSES = ("passed", "failed", "not attempted", "error", "tampered")
TRAINING_TAG = "training"

# Learner code that reaches into the interpreter, the kernel or the grader: one process cannot
# defend itself against it, so the grader refuses the notebook (every part: tampered).
_ATTACKS = [
    (r"\bsys\s*\.\s*(settrace|setprofile|_getframe|modules)\b", "touches sys.{0}"),
    (r"\binspect\s*\.\s*(stack|currentframe|getouterframes|getsource)\b", "inspects frames (inspect.{0})"),
    (r"\b(f_back|f_locals|f_globals|tb_frame)\b", "reads interpreter frames ({0})"),
    (r"\b(__code__|__globals__|__closure__|__defaults__|__kwdefaults__)\b",
     "rewrites function internals ({0})"),
    (r"\b(builtins|__builtins__)\b", "touches the builtins ({0})"),
    (r"\b(gc\s*\.\s*get_\w+|ctypes)\b", "reaches into the interpreter ({0})"),
    (r"\b(importlib|reload)\b", "reloads modules ({0})"),
    (r"\bget_ipython\s*\(\s*\)\s*\.\s*(events|input_transformers\w*|ast_transformers|register_\w+|run_cell\w*|"
     r"user_ns\w*|display_pub|displayhook|set_custom_exc|showtraceback|kernel)\b",
     "hooks into the kernel (.{0})"),
    (r"(_vitlearn_grader|vitlearn\s*\.\s*grading|vitlearn\s+import\s+.*\bgrading\b|_assignments)",
     "touches the grader ({0})"),
    (r"\b(checks|vitlearn\s*\.\s*\w+|torch|F|nn|math|einops|torch\s*\.\s*(?:testing|nn|Tensor)"
     r"(?:\s*\.\s*functional)?)\s*\.\s*(\w+)\s*=(?!=)", "replaces {0}.{1}"),
    (r"\bsetattr\s*\(\s*(checks|vitlearn|torch|F|nn|math|einops)\b",
     "replaces an attribute of {0} (setattr)"),
    (r"^\s*(checks|CheckFailed|vitlearn)\s*(?::[^=]*)?=(?!=)", "rebinds the name {0}"),
    (r"\bimport\s+[\w.]+\s+as\s+(checks|vitlearn)\b", "rebinds the name {0}"),
    (r"\bdel\s+(checks|vitlearn)\b", "deletes the name {0}"),
]
_ATTACK_RES = [(re.compile(p, re.MULTILINE), msg) for p, msg in _ATTACKS]


# -- results --------------------------------------------------------------------------------------

@dataclass
class PartResult:
    part: str
    check: str
    status: str
    points: int
    max_points: int
    message: str


@dataclass
class NotebookResult:
    path: str
    notebook: str | None
    score: int = 0
    max_score: int = 0
    error: str | None = None
    parts: list[PartResult] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        out = asdict(self)
        out.pop("seconds")
        return out


# -- what a submission is -------------------------------------------------------------------------

def identify(nb) -> str | None:
    """The course notebook a submission is: its metadata, else its nbgrader cell ids."""
    name = (nb.get("metadata", {}).get("vitlearn") or {}).get("notebook")
    if name in NOTEBOOKS:
        return name
    ids = {(c.get("metadata", {}).get("nbgrader") or {}).get("grade_id") for c in nb.get("cells", [])}
    ids.discard(None)
    best, hits = None, 0
    for key, spec in NOTEBOOKS.items():
        n = sum(p["answer_id"] in ids or p["test_id"] in ids for p in spec["parts"])
        if n > hits:
            best, hits = key, n
    return best


def checksum(source: str) -> str:
    """The locked cell's fingerprint (tools/nbgrader_metadata.py computes the same)."""
    text = "\n".join(line.rstrip() for line in source.strip().split("\n"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _grade_id(cell) -> str | None:
    return (cell.get("metadata", {}).get("nbgrader") or {}).get("grade_id")


def _code_digest(code) -> str:
    """A hash of a code object's behaviour (bytecode, constants, names; nested code included)."""
    h = hashlib.sha256()

    def feed(c):
        h.update(c.co_code)
        h.update(repr(c.co_names).encode())
        for const in c.co_consts:
            if hasattr(const, "co_code"):
                feed(const)
            else:
                h.update(repr(const).encode())
    feed(code)
    return h.hexdigest()


def check_digests() -> dict[str, str]:
    """{"module:function": digest} of every function defined in the vitlearn.checks package (the
    checks of each step and the harness they call), as the grader has them."""
    import importlib
    import pkgutil

    from . import checks

    out = {}
    for info in [None, *pkgutil.iter_modules(checks.__path__)]:
        module = checks if info is None else importlib.import_module(f"{checks.__name__}.{info.name}")
        for name, fn in vars(module).items():
            if getattr(fn, "__module__", None) == module.__name__ and hasattr(fn, "__code__"):
                out[f"{module.__name__}:{name}"] = _code_digest(fn.__code__)
                if hasattr(fn, "__wrapped__"):
                    out[f"{module.__name__}:{name}.__wrapped__"] = _code_digest(fn.__wrapped__.__code__)
    return out


def _vitlearn_names(source: str) -> set[str]:
    """The vitlearn names a cell uses: vitlearn.X, from vitlearn(.mod) import X, and bare names of
    vitlearn's public API (tools/nbgrader_metadata.py has the same function)."""
    import io
    import tokenize

    import vitlearn

    try:   # code only: names inside strings and comments do not count
        tokens = tokenize.generate_tokens(io.StringIO(source).readline)
        source = " ".join(t.string for t in tokens if t.type in (tokenize.NAME, tokenize.OP, tokenize.NEWLINE,
                                                                  tokenize.NL))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        pass
    names = set(re.findall(r"\bvitlearn\s*\.\s*(\w+)", source))
    for _mod, imported in re.findall(r"from\s+vitlearn(\.\w+)?\s+import\s+\(?([\w\s,]+)\)?", source):
        names |= {n.strip().split(" as ")[0].strip() for n in imported.split(",") if n.strip()}
    names |= set(re.findall(r"\b\w+\b", source)) & set(vitlearn.__all__)
    return names - {"checks"}


def library_object(value) -> str | None:
    """'vitlearn's own X (module)' if value is a function or class of vitlearn (a part handed in as
    the library's answer), else None. Instances are fine: a check may take the library's model."""
    import functools
    import types

    if isinstance(value, functools.partial):
        value = value.func
    if not isinstance(value, (types.FunctionType, types.BuiltinFunctionType, types.MethodType, type)):
        return None
    module = getattr(value, "__module__", None)
    if isinstance(module, str) and module.split(".")[0] == "vitlearn":
        return f"vitlearn's own {getattr(value, '__qualname__', value)} ({module})"
    return None


# -- the code that runs inside the learner's kernel -----------------------------------------------

class _KernelGrader:
    """Created by the first cell the grader runs, before any learner code: it captures the check
    functions and everything they rely on, and later runs a check and reports on its own channel."""

    def __init__(self, digests: dict[str, str]):
        import builtins
        import functools
        import math
        import types

        import einops
        import torch
        import torch._dynamo  # noqa: F401 - importing it rewraps torch.manual_seed: do it before the snapshot
        import torch.nn.functional as F
        from IPython import get_ipython
        from IPython.display import display
        from torch import nn

        import vitlearn
        from vitlearn import checks

        self._shell = get_ipython()
        self._display = display
        self._checks_module = checks
        self._CheckFailed = checks.CheckFailed
        self._functions = {n: f for n, f in vars(checks).items() if n.startswith("check_") and callable(f)}
        self._digests = digests
        self._types = types
        refs = {}
        modules = [m for n, m in sorted(sys.modules.items())
                   if (n == "vitlearn" or n.startswith("vitlearn.")) and isinstance(m, types.ModuleType)]
        for m in modules + [torch, F, torch.testing, torch.linalg, torch.nn.init, math, einops, functools]:
            for k, v in list(vars(m).items()):
                if callable(v) or isinstance(v, types.ModuleType):
                    refs[(m.__name__, k)] = v
                if isinstance(v, types.FunctionType):
                    refs[(m.__name__, k + ".__code__")] = v.__code__
                if isinstance(v, type) and getattr(v, "__module__", "").startswith("vitlearn"):
                    for kk, vv in list(vars(v).items()):
                        refs[(f"{m.__name__}.{k}", kk)] = vv
        for k, v in list(vars(builtins).items()):
            if isinstance(v, (types.BuiltinFunctionType, type)):
                refs[("builtins", k)] = v
        classes = [torch.Tensor, torch._C.TensorBase, nn.Module, nn.Parameter, nn.Linear, nn.LayerNorm,
                   nn.Conv2d, nn.Dropout, nn.GELU, nn.Sequential, nn.ModuleList, nn.Identity,
                   nn.MultiheadAttention]
        for cls in classes:
            for k, v in list(vars(cls).items()):
                refs[(f"{cls.__module__}.{cls.__qualname__}", k)] = v
        self._refs = refs
        self._modules = {m.__name__: m for m in modules + [torch, F, torch.testing, torch.linalg,
                                                           torch.nn.init, math, einops, functools, builtins]}
        self._classes = {f"{c.__module__}.{c.__qualname__}": c for c in classes}
        self._vitlearn = vitlearn
        self._start = self.tampered()

    def tampered(self) -> str | None:
        """What the learner's code replaced, or None."""
        checks = self._checks_module
        if self._shell.user_ns.get("checks", checks) is not checks:
            return "the name `checks` no longer refers to vitlearn.checks"
        if checks.CheckFailed is not self._CheckFailed:
            return "vitlearn.checks.CheckFailed was replaced"
        for name, fn in self._functions.items():
            if getattr(checks, name, None) is not fn:
                return f"vitlearn.checks.{name} was replaced"
        for name, digest in self._digests.items():
            module, _, qualified = name.partition(":")
            base, _, wrapped = qualified.partition(".")
            fn = vars(self._modules.get(module, checks)).get(base)
            fn = getattr(fn, "__wrapped__", None) if wrapped else fn
            if fn is None or _code_digest(fn.__code__) != digest:
                return f"the code of {module}.{qualified} differs from the grader's copy"
        for (owner, key), obj in self._refs.items():
            base, _, extra = key.partition(".__")
            holder = self._modules.get(owner) or self._classes.get(owner)
            if holder is None:   # a vitlearn class: owner is "module.Class"
                mod, _, cls = owner.rpartition(".")
                holder = getattr(self._modules.get(mod), cls, None)
                if holder is None:
                    return f"{owner} was removed"
                current = vars(holder).get(key, None)
            elif extra:
                current = getattr(vars(holder).get(base), "__code__", None)
            else:
                current = vars(holder).get(key, None)
            if current is not obj:
                return f"{owner}.{key} was replaced"
        return None

    def run(self, spec: dict) -> None:
        result = self._run(spec)
        result["nonce"] = spec["nonce"]
        self._display({MIME: result}, raw=True)

    def _run(self, spec: dict) -> dict:
        import contextlib
        import io

        if self._start:
            return {"status": "tampered", "message": f"before the notebook ran: {self._start}"}
        bad = self.tampered()
        if bad:
            return {"status": "tampered", "message": bad}
        ns = self._shell.user_ns
        try:
            args, kwargs = eval("(lambda *a, **k: (a, k))" + spec["args"], ns)  # noqa: S307 - our source
        except NameError as err:
            return {"status": "missing", "message": str(err)}
        except Exception as err:  # noqa: BLE001 - a learner's value that cannot even be read
            return {"status": "error", "message": f"{type(err).__name__}: {err}"}
        for value in list(args) + list(kwargs.values()):
            own = library_object(value)
            if own:
                return {"status": "tampered", "message": f"the part is {own}, not the learner's code"}
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                self._functions[spec["check"]](*args, **kwargs)
        except NotImplementedError as err:
            result = {"status": "not attempted", "message": f"NotImplementedError: {err}"}
        except self._CheckFailed as err:
            cause = err.__cause__ or err.__context__
            if isinstance(cause, NotImplementedError):
                result = {"status": "not attempted", "message": f"NotImplementedError: {cause}"}
            else:
                result = {"status": "failed", "message": str(err)}
        except Exception as err:  # noqa: BLE001 - the learner's code made the check itself stop
            result = {"status": "error",
                      "message": f"the check stopped on {type(err).__name__}: {err}".strip()}
        else:
            lines = [line for line in out.getvalue().splitlines() if line.strip()]
            result = {"status": "passed", "message": lines[-1] if lines else "passed"}
        bad = self.tampered()   # the learner's code ran during the check
        if bad:
            return {"status": "tampered", "message": f"during the check: {bad}"}
        return result


# -- building and running the graded copy ---------------------------------------------------------

def _without_call(source: str, call: str) -> str:
    """The locked cell's source without the statement of its check call (the rest still runs:
    later cells may use what it defines)."""
    tree = ast.parse(source)
    lines = source.split("\n")
    for node in tree.body:
        if isinstance(node, ast.Expr) and ast.get_source_segment(source, node.value) == call:
            del lines[node.lineno - 1:node.end_lineno]
            break
    return "\n".join(lines)


def _attacks(source: str) -> str | None:
    for rx, msg in _ATTACK_RES:
        m = rx.search(source)
        if m:
            return msg.format(*[re.sub(r"\s+", "", g or "") for g in m.groups()])
    return None


def _plan(nb, name: str, *, train: bool, nonce: str):
    """The cells to run (learner's code, then our check cells where the locked cells were) and,
    per part, where its answer and check cells are and what was tampered with."""
    import nbformat

    spec = NOTEBOOKS[name]
    cells = nb["cells"]
    by_id = {_grade_id(c): i for i, c in enumerate(cells) if c.get("cell_type") == "code" and _grade_id(c)}
    by_sum = {checksum(c["source"]): i for i, c in enumerate(cells) if c.get("cell_type") == "code"}
    test_at, notes, answer_at = {}, {}, {}
    for p in spec["parts"]:
        i = by_id.get(p["test_id"])
        if i is not None and checksum(cells[i]["source"]) != p["test_sha256"]:
            notes[p["part"]] = f"its check cell ({p['test_id']}, cell {i + 1}) was edited"
        elif i is None:
            i = by_sum.get(p["test_sha256"])
            if i is None:
                notes[p["part"]] = f"its check cell ({p['test_id']}) was deleted"
        test_at[p["part"]] = i
        a = by_id.get(p["answer_id"])
        if a is None:
            name_re = re.escape(p["part"])
            defines = re.compile(rf"^(def|class)\s+{name_re}\b|^{name_re}\s*=", re.M)
            before = [j for j, c in enumerate(cells) if c.get("cell_type") == "code"
                      and defines.search(c["source"]) and (i is None or j < i)]
            a = before[-1] if before else None
        answer_at[p["part"]] = a
        if a is not None and p["part"] not in notes:
            extra = sorted(_vitlearn_names(cells[a]["source"]) - set(p["answer_vitlearn"]))
            if extra:
                notes[p["part"]] = (f"cell {a + 1} uses vitlearn's {', '.join(extra)}, which the part must "
                                    "not call: the part has to be the learner's own code")
    locked = {i for i in test_at.values() if i is not None}
    attack = None
    for i, c in enumerate(cells):
        if c.get("cell_type") == "code" and i not in locked:
            found = _attacks(c["source"])
            if found:
                attack = f"cell {i + 1} {found}: the grader does not run code that reaches into it"
                break
    runners = {}
    for p in spec["parts"]:
        where = test_at[p["part"]]
        if where is None:
            where = answer_at[p["part"]] if answer_at[p["part"]] is not None else len(cells) - 1
        runners.setdefault(where, []).append(p)
    digests = check_digests()
    out, origin = [], []   # origin[k]: ("setup"|"learner"|"check", submission index, part)
    out.append(nbformat.v4.new_code_cell(
        f"from vitlearn.grading import _KernelGrader\n_vitlearn_grader = _KernelGrader({digests!r})\n"
        "del _KernelGrader"))
    origin.append(("setup", None, None))
    for i, c in enumerate(cells):
        if c.get("cell_type") != "code":
            continue
        tags = c.get("metadata", {}).get("tags", [])
        training = TRAINING_TAG in tags or c.get("id") in spec["training_cells"]
        if i not in locked and not (training and not train):
            out.append(nbformat.v4.new_code_cell(c["source"]))
            origin.append(("learner", i, None))
        for p in runners.get(i, []):
            call = p["call"]
            run = {"check": p["check"], "args": call[call.index("("):], "nonce": nonce}
            out.append(nbformat.v4.new_code_cell(f"_vitlearn_grader.run({run!r})\n"
                                                 + _without_call(p["test_source"], call)))
            origin.append(("check", i, p["part"]))
    graded = nbformat.v4.new_notebook(cells=out, metadata={"kernelspec": nb.get("metadata", {}).get(
        "kernelspec", {"name": "python3", "display_name": "Python 3", "language": "python"})})
    return graded, origin, answer_at, notes, attack


def _error_of(cell) -> tuple[str, str] | None:
    """(exception name, first line of its message) of a cell that raised, else None."""
    for o in cell.get("outputs", []):
        if o.get("output_type") == "error":
            lines = (o.get("evalue") or "").strip().splitlines()
            return o.get("ename", "Error"), lines[0] if lines else ""
    return None


def grade_notebook(path: str | os.PathLike, *, train: bool = False, timeout: int = 60,
                   kernel_name: str = "python3") -> NotebookResult:
    """Grade one submission (never raises for a bad file: the result's ``error`` says why)."""
    import nbformat

    path = Path(path)
    start = time.perf_counter()
    result = NotebookResult(path=str(path), notebook=None)
    try:
        text = path.read_text(encoding="utf-8")
        if not text.strip():
            raise ValueError("the file is empty")
        nb = nbformat.reads(text, as_version=4)
    except (OSError, UnicodeDecodeError) as err:
        result.error = f"cannot read the file: {err}"
        return result
    except Exception as err:  # noqa: BLE001 - invalid JSON, not a notebook: one error entry
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        result.error = f"not a Jupyter notebook: {first[:200]}"
        return result
    name = identify(nb)
    if name is None:
        result.error = ("not one of the course's notebooks (no metadata.vitlearn.notebook and no nbgrader "
                        "cell of ours): grade the exercise notebooks of notebooks/exercises/")
        return result
    result.notebook = name
    spec = NOTEBOOKS[name]
    result.max_score = sum(p["points"] for p in spec["parts"])
    nonce = secrets.token_hex(16)
    graded, origin, answer_at, notes, attack = _plan(nb, name, train=train, nonce=nonce)
    # code that reaches into the grader is not run at all: every part is tampered
    died = None if attack else _execute(graded, timeout=timeout, train=train, kernel_name=kernel_name)

    reports, first_error, interrupted = {}, None, set()
    for cell, (kind, i, part) in zip(graded.cells, origin):
        if kind == "learner" and first_error is None and _error_of(cell):
            if _error_of(cell)[0] != "TrainingSkipped":
                first_error = (i, *_error_of(cell))
        if kind == "check":
            if (_error_of(cell) or ("",))[0] == "KeyboardInterrupt":
                interrupted.add(part)
            for o in cell.get("outputs", []):
                data = o.get("data", {}).get(MIME) if o.get("output_type") == "display_data" else None
                if isinstance(data, dict) and data.get("nonce") == nonce:
                    reports[part] = data
    learner_errors = {i: _error_of(c) for c, (kind, i, _) in zip(graded.cells, origin) if kind == "learner"}
    for p in spec["parts"]:
        part = p["part"]
        report = reports.get(part)
        a = answer_at.get(part)
        err = learner_errors.get(a) if a is not None else None
        where = f"cell {a + 1}" if a is not None else "its cell"
        if attack:
            status, message = "tampered", attack
        elif part in notes:
            status, message = "tampered", notes[part]
        elif report is None:
            status = "error"
            if died:
                message = f"the check did not run: the kernel died ({died})"
            elif part in interrupted:
                message = f"the check ran past the time limit ({timeout} s per cell) and was interrupted"
            else:
                message = "the check did not finish (the learner's code stopped it or an earlier cell)"
        elif report["status"] == "passed":
            status, message = "passed", report["message"]
        elif report["status"] == "tampered":
            status, message = "tampered", report["message"]
        elif err is not None and err[0] == "NotImplementedError":
            status, message = "not attempted", f"{where} still raises NotImplementedError: {err[1]}"
        elif err is not None:
            status, message = "error", f"{where} raised {err[0]}: {err[1]}"
        elif report["status"] == "missing":
            status, message = "error", report["message"]
            if first_error is not None:
                message += f" (cell {first_error[0] + 1} raised {first_error[1]}: {first_error[2]})"
        else:
            status, message = report["status"], report["message"]
        points = p["points"] if status == "passed" else 0
        result.parts.append(PartResult(part=part, check=p["check"], status=status, points=points,
                                       max_points=p["points"], message=message))
    result.score = sum(r.points for r in result.parts)
    result.seconds = time.perf_counter() - start
    return result


def _execute(nb, *, timeout: int, train: bool, kernel_name: str) -> str | None:
    """Run the graded copy in a fresh kernel in a temporary folder; errors stay in the cells.
    Returns why the kernel died, or None."""
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    env = {"VITLEARN_SKIP_TRAINING": None if train else "1", "MPLBACKEND": "Agg",
           "PYTHONDONTWRITEBYTECODE": "1"}
    if os.environ.get("VITLEARN_DATA_DIR"):   # the kernel runs elsewhere: a relative folder must not break
        env["VITLEARN_DATA_DIR"] = str(Path(os.environ["VITLEARN_DATA_DIR"]).resolve())
    saved = {k: os.environ.get(k) for k in env}
    try:
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        with tempfile.TemporaryDirectory(prefix="vitlearn-grade-") as tmp:
            client = NotebookClient(nb, timeout=timeout, kernel_name=kernel_name, allow_errors=True,
                                    interrupt_on_timeout=True, resources={"metadata": {"path": tmp}})
            try:
                client.execute()
            except DeadKernelError as err:
                return str(err).strip().splitlines()[0] if str(err).strip() else "DeadKernelError"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return None


def grade_files(paths, *, train: bool = False, timeout: int = 60) -> list[NotebookResult]:
    return [grade_notebook(p, train=train, timeout=timeout) for p in paths]


# -- reporting ------------------------------------------------------------------------------------

def format_table(r: NotebookResult) -> str:
    if r.error:
        return f"{r.path}: cannot be graded: {r.error}"
    head = f"{r.path}  ({r.notebook}): {r.score}/{r.max_score} points"
    rows = [("part", "check", "status", "points", "message")]
    rows += [(p.part, p.check, p.status, f"{p.points}/{p.max_points}",
              p.message.splitlines()[0] if p.message else "") for p in r.parts]
    widths = [max(len(row[k]) for row in rows) for k in range(4)]
    lines = [head] + ["  " + "  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4]
                      for row in rows]
    return "\n".join(lines)


def summary_line(r: NotebookResult) -> str:
    if r.error:
        return f"{r.path}: not graded ({r.error})"
    counts = {s: sum(p.status == s for p in r.parts) for s in STATUSES}
    detail = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    return f"{r.path}: {r.notebook} {r.score}/{r.max_score} ({detail})"


def add_grade_parser(sub) -> None:
    g = sub.add_parser("grade", help="grade learners' exercise notebooks with the course's checks",
                       description="Run each submission in a fresh kernel and grade every part with the "
                                   "course's checks (passed / failed / not attempted / error / tampered).")
    g.add_argument("submissions", nargs="+", help="the learners' .ipynb files (any names)")
    g.add_argument("--json", dest="json_out", default=None, metavar="OUT",
                   help="also write the results as JSON to OUT (for a spreadsheet or an LMS)")
    g.add_argument("--train", action="store_true",
                   help="also run the closing training runs (minutes per notebook)")
    g.add_argument("--timeout", type=int, default=60,
                   help="time limit per cell, in seconds (default: %(default)s; raise it with --train)")
    g.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        raise ValueError(f"--timeout must be > 0 seconds, got {args.timeout}")
    try:
        import ipykernel  # noqa: F401 - the kernel each submission runs in
        import nbclient  # noqa: F401
    except ImportError as err:
        print(f"error: python -m vitlearn grade runs notebooks: it needs nbclient and ipykernel "
              f"({err}); pip install 'vitlearn[dev]'", file=sys.stderr)
        return 2
    results = []
    for path in args.submissions:
        r = grade_notebook(path, train=args.train, timeout=args.timeout)
        print(format_table(r), flush=True)
        print(flush=True)
        results.append(r)
    print("summary:")
    for r in results:
        print("  " + summary_line(r))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"notebooks": [r.as_dict() for r in results]}, indent=1,
                                                  ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {args.json_out}")
    return 0 if all(r.error is None for r in results) else 1
