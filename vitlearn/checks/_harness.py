"""The machinery shared by every check: run the learner's code, compare with ours, name the
mistake (see the package docstring)."""

from __future__ import annotations

import functools
import inspect
import itertools
import linecache
import math
import numbers
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import einops
import torch
from torch import nn

_NOT_LEARNER = tuple(str(Path(m.__file__).resolve().parent) for m in (torch, einops, os)) + (
    str(Path(__file__).resolve().parent.parent),)  # torch, einops, the standard library, vitlearn


class CheckFailed(AssertionError):
    """The learner's part is wrong; the message names the likely mistake and the fix."""


# -- the machinery shared by every check ----------------------------------------------------

def _check(fn):
    """Run a check with its own seeded RNG (the notebook's random state is left untouched)
    and with autograd on (a check may be called under torch.no_grad()). The name of the check's
    first parameter says what it wants: ``cls`` a module class (or a factory) that the check
    builds, ``fn`` a function, ``model`` a built module; anything else is refused by name."""
    first = next(iter(inspect.signature(fn).parameters), None)
    wants = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if args and first in ("cls", "fn", "model"):
            _wanted_kind(fn.__name__, first, args[0], wants)
        with torch.random.fork_rng(devices=[]), torch.enable_grad():
            torch.manual_seed(0)
            fn(*args, **kwargs)
    return wrapper


def _wanted_kind(check: str, kind: str, arg, wants: str) -> None:
    """A class where an instance or a function is wanted, or the reverse: say which was given."""
    is_module_class = inspect.isclass(arg) and issubclass(arg, nn.Module)
    name = getattr(arg, "__name__", type(arg).__name__)
    if kind == "cls":
        if isinstance(arg, nn.Module):
            raise CheckFailed(f"{check} was given an instance, {type(arg).__name__}(...), already built; it "
                              "wants "
                              f"the class itself: {check}({type(arg).__name__}), without parentheses (the "
                              "check "
                              f"builds it with its own sizes). Wanted: {wants}")
        if not callable(arg):
            raise CheckFailed(f"{check} was given a {type(arg).__name__}; it wants your module class. "
                              "Wanted: "
                              f"{wants}")
    elif kind == "fn":
        if is_module_class:
            raise CheckFailed(f"{check} was given the module class {name}; it wants a plain function (called "
                              f"with tensors, returning tensors), not a class to build. Wanted: {wants}")
        if isinstance(arg, nn.Module):
            raise CheckFailed(f"{check} was given a module instance, {type(arg).__name__}(...); it wants a "
                              "plain "
                              f"function (def ...). Wanted: {wants}")
        if not callable(arg):
            raise CheckFailed(f"{check} was given a {type(arg).__name__}; it wants your function itself, "
                              f"without calling it: {check}(my_function). Wanted: {wants}")
    elif kind == "model" and not isinstance(arg, nn.Module):
        given = f"the class {name}" if inspect.isclass(arg) else f"a {type(arg).__name__}"
        raise CheckFailed(f"{check} was given {given}; it wants the built model (an instance, e.g. "
                          "vitlearn.ViT()) whose parameters the lists hold")


def _ok(name: str, text: str) -> None:
    print(f"{name}: correct — {text}")


def _shape(x) -> str:
    if isinstance(x, torch.Tensor):
        dt = str(x.dtype).replace("torch.", "")
        return f"[{', '.join(map(str, x.shape))}] {dt}" if x.ndim else f"scalar {dt}"
    return repr(x) if isinstance(x, (int, float, str, bool, type(None))) else type(x).__name__


def _desc(*args, **kwargs) -> str:
    parts = [_shape(a) for a in args] + [f"{k}={_shape(v)}" for k, v in kwargs.items()]
    return ", ".join(parts)


def _arg_names(fn, args, kwargs) -> list[str]:
    """The names the learner gave to the arguments of this call (forward's, for a module)."""
    fallback = [f"argument {i}" for i in range(len(args))] + list(kwargs)
    try:
        sig = inspect.signature(fn.forward if isinstance(fn, nn.Module) else fn)
        bound = sig.bind(*args, **kwargs)
    except (TypeError, ValueError):
        return fallback
    names = []
    for name, value in bound.arguments.items():
        kind = sig.parameters[name].kind
        if kind == inspect.Parameter.VAR_POSITIONAL:
            names += [f"{name}[{i}]" for i in range(len(value))]
        elif kind == inspect.Parameter.VAR_KEYWORD:
            names += list(value)
        else:
            names.append(name)
    return names if len(names) == len(fallback) else fallback


def _learner_frame(err: BaseException):
    """The innermost frame of the traceback that runs the learner's code (not torch, einops,
    the standard library or vitlearn), with its line number."""
    found, tb = None, err.__traceback__
    while tb is not None:
        path = str(Path(tb.tb_frame.f_code.co_filename).resolve()) \
            if not tb.tb_frame.f_code.co_filename.startswith("<") else tb.tb_frame.f_code.co_filename
        if not path.startswith(_NOT_LEARNER) and "-packages" not in path:  # not an installed library
            found = (tb.tb_frame, tb.tb_lineno)
        tb = tb.tb_next
    return found


def _describe_value(v) -> str | None:
    if isinstance(v, torch.Tensor):
        return _shape(v)
    if isinstance(v, nn.Linear):
        return f"Linear({v.in_features} -> {v.out_features})"
    if isinstance(v, nn.LayerNorm):
        return f"LayerNorm({list(v.normalized_shape)})"
    if isinstance(v, (tuple, list)) and v and all(isinstance(t, torch.Tensor) for t in v) and len(v) <= 4:
        return f"a {type(v).__name__} of {len(v)} tensors " + ", ".join(_shape(t) for t in v)
    return None


def _where(err: BaseException) -> str:
    """'in forward, line 12: `q = ...`; there x is [2, 17, 64] float32, ...' for the learner's
    line that raised, or '' when the error did not come from their code."""
    found = _learner_frame(err)
    if found is None:
        return ""
    frame, lineno = found
    line = linecache.getline(frame.f_code.co_filename, lineno, frame.f_globals).strip()
    seen, values = set(), []
    for name in re.findall(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*", line):
        parts = name.split(".")
        for k in range(len(parts), 0, -1):  # the longest prefix that resolves to something worth showing
            key = ".".join(parts[:k])
            if key in seen or parts[0] not in frame.f_locals:
                continue
            obj = frame.f_locals[parts[0]]
            try:
                for attr in parts[1:k]:
                    obj = getattr(obj, attr)
            except Exception:  # noqa: BLE001 - an attribute that does not resolve is just not shown
                continue
            text = _describe_value(obj)
            if text:
                seen.add(key)
                values.append(f"{key} is {text}")
                break
    there = f"; there {', '.join(values)}" if values else ""
    code = f": `{line}`" if line else ""
    return f" In your {frame.f_code.co_name}, line {lineno}{code}{there}."


def _call(what: str, fn: Callable, *args, **kwargs):
    """Call the learner's code; its exceptions become one clear CheckFailed that names the line of
    their code that raised and the shapes of the tensors on it (NotImplementedError and
    CheckFailed pass through). An input that the call changed in place is a mistake too."""
    before = [(a.detach().clone() if isinstance(a, torch.Tensor) else None)
              for a in (*args, *kwargs.values())]
    try:
        result = fn(*args, **kwargs)
    except (NotImplementedError, CheckFailed):
        raise
    except Exception as err:  # noqa: BLE001 - any learner error is reported, with its cause kept
        first = (str(err).strip().splitlines() or [""])[0].rstrip(".")
        raise CheckFailed(f"{what} failed with {type(err).__name__}: {first}.{_where(err)} (called with "
                          f"{_desc(*args, **kwargs)})") from err
    for name, old, new in zip(_arg_names(fn, args, kwargs), before, (*args, *kwargs.values())):
        if old is not None and not (old.shape == new.shape and torch.equal(old, new.detach())):
            raise CheckFailed(f"{what} changed its input {name} {_shape(new)} in place (an in-place "
                              "operation "
                              "on it, such as x -= mean, x += pos, x.sub_(...), x[...] = ... or an `out=` "
                              "into it): the "
                              "caller still needs the original (a block adds it back as the residual, the "
                              "training loop reuses the batch). Compute into a new tensor: x = x - mean, or "
                              "work on x.clone()")
    return result


def _tols(dtype: torch.dtype) -> tuple[float, float]:
    return (1e-7, 1e-9) if dtype == torch.float64 else (1e-4, 1e-5)


def _close(a: torch.Tensor, b: torch.Tensor, *, exact: bool = False, loose: bool = False) -> bool:
    if a.shape != b.shape:
        return False
    if exact:
        return torch.equal(a, b)
    rtol, atol = _tols(b.dtype)
    if loose:
        rtol, atol = rtol * 10, atol * 10
    return torch.allclose(a.to(b.dtype), b, rtol=rtol, atol=atol, equal_nan=True)


Mutant = tuple[Callable[[], torch.Tensor] | torch.Tensor, str]


def _diagnose(got: torch.Tensor, want: torch.Tensor, mutants: Sequence[Mutant], *,
              exact: bool) -> str | None:
    """The message of the first mutant that the learner's output matches, if any. A mutant
    equal to the right answer on these inputs cannot be told apart and is skipped."""
    for mutant, message in mutants:
        try:
            m = mutant() if callable(mutant) else mutant
        except Exception:  # noqa: BLE001 - a mutant that cannot be computed here does not apply
            continue
        if m.shape == want.shape and _close(m, want, exact=exact):
            continue
        m = m.to(got.dtype) if got.is_floating_point() else m
        if m.shape != got.shape or not _close(got, m, exact=exact, loose=True):
            continue
        if m.shape == want.shape and not exact and got.is_floating_point() and \
                (got - m).abs().max() >= (got - want.to(got.dtype)).abs().max():
            continue  # nearer the right answer than this mistake
        return message
    return None


def _expect(got, want: torch.Tensor, *, what: str, on: str, ref: str = "ours",
            mutants: Sequence[Mutant] = (), exact: bool = False, shape_hint: str = "",
            check_dtype: bool = True, axes: Sequence[str] = (), factors: dict[str, float] | None = None,
            dtype_hint: str = "") -> None:
    """Raise CheckFailed unless ``got`` equals ``want``; name the matching mutant if any, else say
    how the values differ (:func:`_how`: ``axes`` names want's axes, ``factors`` the constants
    that a wrong scaling would multiply by)."""
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"{what}: expected a tensor of shape {list(want.shape)}, got a "
                          f"{type(got).__name__} (inputs: {on})")
    if got.shape != want.shape:
        found = _diagnose(got, want, mutants, exact=exact)
        hint = f" {found}" if found else (f" {shape_hint}" if shape_hint else "")
        raise CheckFailed(f"{what}: got shape {list(got.shape)}, expected {list(want.shape)} (inputs: "
                          f"{on}).{hint}")
    if check_dtype and got.dtype != want.dtype:
        raise CheckFailed(f"{what}: got dtype {got.dtype}, expected {want.dtype} (inputs: {on}); " + (
            dtype_hint or "do not convert: compute in the inputs' dtype"))
    got_d = got.detach()
    if _close(got_d, want, exact=exact):
        return
    found = _diagnose(got_d, want, mutants, exact=exact)
    if found:
        raise CheckFailed(f"{found} (seen in {what}; inputs: {on})")
    g, w = got_d.to(want.dtype), want.detach()
    bad_nan = ~torch.isfinite(g) & torch.isfinite(w)
    if bad_nan.any():
        idx = tuple(int(i) for i in bad_nan.nonzero()[0])
        raise CheckFailed(f"{what}: {int(bad_nan.sum())} inf/nan values where {ref} are finite, e.g. at "
                          f"index {list(idx)}: {g[idx].item()} (inputs: {on}); look for a log(0), a division "
                          "by zero or a softmax over a row that is all -inf")
    how = _how(g, w, axes=axes, factors=factors or {})
    if how:
        raise CheckFailed(f"{what} has the right shape but {how} (inputs: {on})")
    diff = (g - w).abs().nan_to_num(nan=float("inf"))
    idx = tuple(int(i) for i in (diff == diff.max()).nonzero()[0])
    n_bad = int((~torch.isclose(g, w, *_tols(want.dtype), equal_nan=True)).sum()) if not exact else \
        int((g != w).sum())
    raise CheckFailed(f"mismatch in {what} against {ref} (inputs: {on}): {n_bad} of {w.numel()} elements "
                      f"differ; the largest difference is {diff.max().item():.3g} at index {list(idx)} (got "
                      f"{g[idx].item():.6g}, expected {w[idx].item():.6g}). The shape is right, so look at "
                      "the order of the operations and the axes they act on")


def _order(perm: list[int]) -> str:
    n = len(perm)
    if perm == list(range(n))[::-1]:
        return "in reverse order"
    for k in range(1, n):
        if perm == [(i + k) % n for i in range(n)]:
            return f"rolled by {n - k} (position i holds our i - {n - k}, wrapping around)"
    moved = [f"{i}<-{j}" for i, j in enumerate(perm) if i != j]
    return "shuffled: position <- our position " + ", ".join(moved[:6]) + (" ..." if len(moved) > 6 else "")


def _how(g: torch.Tensor, w: torch.Tensor, *, axes: Sequence[str] = (), factors: dict[str, float]) -> str:
    """Say how two same-shaped tensors differ, in words, or '' when it is none of: a constant
    factor (named from ``factors`` when it is one of them), the opposite sign, a constant shift,
    the same vector added at every position, a transpose of the last two axes, a reordering
    along one axis, or only some slices along one axis wrong."""
    g, w = g.double(), w.double()
    if not (torch.isfinite(g).all() and torch.isfinite(w).all()) or w.numel() < 2:
        return ""
    rtol, atol = 1e-3, 1e-4 * max(1.0, w.abs().max().item())

    def same(a, b):
        return a.shape == b.shape and torch.allclose(a, b, rtol=rtol, atol=atol)

    names = list(axes) if len(axes) == w.ndim else [f"dim {i}" for i in range(w.ndim)]
    ww = (w * w).sum()
    if ww > 0:
        r = ((g * w).sum() / ww).item()
        if abs(r) > 1e-6 and same(g, r * w):
            if abs(r + 1) < 1e-3:
                return "the opposite sign of ours everywhere: a minus sign is missing or extra"
            label = ""
            for name, f in factors.items():
                for value, text in ((f, f"{name} too large"), (1 / f, f"{name} too small")):
                    if math.isclose(r, value, rel_tol=1e-3):
                        label = f": it is {text}, a factor of {name} is missing or applied the wrong way"
            return f"every value is {r:.4g} times ours{label or ': a constant factor is wrong'}"
    d = g - w
    if same(d, torch.full_like(d, d.mean().item())):
        return (f"every value is ours {d.mean().item():+.4g}: the same constant is added everywhere (a bias "
                "or "
                "an offset term is extra or missing)")
    if w.ndim >= 2:
        row = d.reshape(-1, d.shape[-1])
        if same(row, row[:1].expand_as(row)):
            return (f"the difference is the same vector along {names[-1]} at every position: a term that "
                    "does "
                    "not depend on the input (a bias, a learned token or embedding) is added where it "
                    "should not "
                    "be, or missing where it should be")
    if w.ndim >= 2 and w.shape[-1] == w.shape[-2] and same(g, w.transpose(-2, -1)):
        return f"it is ours transposed ({names[-2]} and {names[-1]} swapped)"
    for a in range(w.ndim):
        n = w.shape[a]
        if n < 2 or n > 512:
            continue
        G, W = g.movedim(a, 0).reshape(n, -1), w.movedim(a, 0).reshape(n, -1)
        match = torch.cdist(G, W) <= atol * math.sqrt(G.shape[1]) + rtol * W.norm(dim=1)[None]
        ok = match.diagonal()
        if bool(ok.all()):
            continue
        if bool(match.any(dim=1).all()):
            perm = [int(match[i].nonzero()[0]) if not ok[i] else i for i in range(n)]
            if sorted(perm) == list(range(n)):
                return (f"the same slices as ours along {names[a]}, {_order(perm)}: the {names[a]} are in a "
                        "different order")
        if bool(ok.any()):
            right = ok.nonzero().flatten().tolist()
            wrong = (~ok).nonzero().flatten().tolist()
            show = lambda ix: ", ".join(map(str, ix[:6])) + (" ..." if len(ix) > 6 else "")  # noqa: E731
            return (f"along {names[a]} only {len(right)} of {n} match ours ({show(right)}); {show(wrong)} "
                    "differ: look at what treats those positions differently")
    return ""


def _build(cls, what: str, *args, **kwargs) -> nn.Module:
    module = _call(what, cls, *args, **kwargs)
    if not isinstance(module, nn.Module):
        raise CheckFailed(f"{what} returned a {type(module).__name__}, not an nn.Module: subclass nn.Module "
                          "and call super().__init__() first")
    return module


def _load(mine: nn.Module, ours: nn.Module, what: str, *, by_order: bool = False) -> dict[str, str]:
    """Copy our weights into the learner's module by name (or, with ``by_order``, by position
    when every shape lines up, e.g. an nn.Sequential MLP). Returns {their name: our name}."""
    theirs_sd, ours_sd = mine.state_dict(), ours.state_dict()
    if list(theirs_sd) and {k: tuple(v.shape) for k, v in theirs_sd.items()} == \
            {k: tuple(v.shape) for k, v in ours_sd.items()}:
        mine.load_state_dict(ours_sd)
        return {k: k for k in ours_sd}
    if by_order and [tuple(v.shape) for v in theirs_sd.values()] == \
            [tuple(v.shape) for v in ours_sd.values()]:
        mine.load_state_dict(dict(zip(theirs_sd, ours_sd.values())))
        return dict(zip(theirs_sd, ours_sd))
    missing = [f"{k} {list(v.shape)}" for k, v in ours_sd.items() if k not in theirs_sd]
    unexpected = [f"{k} {list(v.shape)}" for k, v in theirs_sd.items() if k not in ours_sd]
    mismatched = [f"{k}: yours {list(theirs_sd[k].shape)}, ours {list(v.shape)}"
                  for k, v in ours_sd.items() if k in theirs_sd and theirs_sd[k].shape != v.shape]
    lines = [f"{what}: its parameters do not line up with {type(ours).__name__}'s, so our weights cannot be "
             "copied in by name."]
    if missing:
        lines.append("missing (ours has them): " + ", ".join(missing))
    if unexpected:
        lines.append("unexpected (yours only): " + ", ".join(unexpected))
    if mismatched:
        lines.append("different shapes: " + ", ".join(mismatched))
    lines.append("Use the same attribute names and layer sizes as ours: "
                 + ", ".join(f"{k} {list(v.shape)}" for k, v in ours_sd.items()))
    raise CheckFailed("\n".join(lines))


def _check_grads(mine: nn.Module, ours: nn.Module, names: dict[str, str], run_mine, run_ours,
                 what: str) -> None:
    """Backpropagate the same random upstream gradient through both; every parameter of the
    learner's module must get a gradient, equal to ours."""
    mine.zero_grad(set_to_none=True)
    ours.zero_grad(set_to_none=True)
    out_m, out_o = run_mine(), run_ours()
    if isinstance(out_m, torch.Tensor) and not out_m.requires_grad:
        raise CheckFailed(f"{what}: the output does not depend on any parameter (no gradient reaches "
                          f"{', '.join(n for n, _ in mine.named_parameters())}): these parameters are never "
                          "used in forward (or only through .data, .detach() or torch.no_grad()), so they "
                          "would never learn")
    upstream = torch.randn(out_o.shape, generator=torch.Generator().manual_seed(1), dtype=out_o.dtype)
    _call(f"backward through {what}", lambda: (out_m * upstream).sum().backward())
    (out_o * upstream).sum().backward()
    theirs = dict(mine.named_parameters())
    ours_p = dict(ours.named_parameters())
    unused = [n for n, p in theirs.items() if p.requires_grad and p.grad is None]
    if unused:
        raise CheckFailed(f"{what}: no gradient reaches {', '.join(unused)}: this parameter is never used in "
                          "forward (or is used through .data, .detach() or torch.no_grad()), so it would "
                          "never learn")
    for n, p in theirs.items():
        o = ours_p.get(names.get(n, n))
        if o is not None and o.grad is not None and not _close(p.grad, o.grad, loose=True):
            raise CheckFailed(f"{what}: the output is right but the gradient of {n} differs from ours "
                              f"(largest difference {(p.grad - o.grad).abs().max().item():.3g}): part of the "
                              "computation is detached or done in place on a saved tensor")


def _terms_off(diff: int, terms: dict[str, int]) -> str:
    """Which one or two terms of the count are missing or counted twice, in words."""
    grouped: dict[int, list[str]] = {}
    for k, v in terms.items():
        if v:
            grouped.setdefault(v, []).append(k)
    items = [(" or ".join(ks), v) for v, ks in grouped.items()]  # terms of equal size cannot be told apart
    for r in (1, 2):
        for combo in itertools.combinations(items, r):
            for signs in itertools.product((-1, 1), repeat=r):
                if sum(s * v for s, (_, v) in zip(signs, combo)) == diff:
                    parts = [f"{k} is {'missing' if sg < 0 else 'counted twice'} ({v:,})"
                             for sg, (k, v) in zip(signs, combo)]
                    return " and ".join(parts)
    return ""


def _check_int(name: str, got, want: int, *, on: str, mutants: Sequence[tuple[int, str]] = (),
               terms: dict[str, int] | None = None) -> None:
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    if isinstance(got, bool) or not isinstance(got, numbers.Real):
        raise CheckFailed(f"{name} should be a number, got a {type(got).__name__} ({on})")
    if isinstance(got, float) and not got.is_integer():
        raise CheckFailed(f"{name} = {got} is not a whole number ({on}): a count of things is an int; use // "
                          "for integer division and int() for products with a float ratio")
    if int(got) == want:
        return
    for value, message in mutants:
        if value != want and int(got) == value:
            raise CheckFailed(f"{name} = {int(got):,} but the right value is {want:,} ({on}): {message}")
    which = _terms_off(int(got) - want, terms or {})
    raise CheckFailed(f"{name} = {int(got):,} but the right value is {want:,} ({on}); off by "
                      f"{int(got) - want:+,}" + (f": {which}" if which else ""))


def _randn(*shape, dtype=torch.float32, seed=0, scale=1.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * scale


