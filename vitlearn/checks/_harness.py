"""The machinery shared by every check: run the learner's code, compare with ours, name the
mistake (see the package docstring)."""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable, Sequence

import torch
from torch import nn


class CheckFailed(AssertionError):
    """The learner's part is wrong; the message names the likely mistake and the fix."""


# -- the machinery shared by every check ----------------------------------------------------

def _check(fn):
    """Run a check with its own seeded RNG (the notebook's random state is left untouched)
    and with autograd on (a check may be called under torch.no_grad())."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with torch.random.fork_rng(devices=[]), torch.enable_grad():
            torch.manual_seed(0)
            fn(*args, **kwargs)
    return wrapper


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


def _call(what: str, fn: Callable, *args, **kwargs):
    """Call the learner's code; its exceptions become one clear CheckFailed (NotImplementedError
    and CheckFailed pass through)."""
    try:
        return fn(*args, **kwargs)
    except (NotImplementedError, CheckFailed):
        raise
    except Exception as err:  # noqa: BLE001 - any learner error is reported, with its cause kept
        first = (str(err).strip().splitlines() or [""])[0]
        raise CheckFailed(f"{what} failed with {type(err).__name__}: {first} (called with "
                          f"{_desc(*args, **kwargs)})") from err


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
            check_dtype: bool = True) -> None:
    """Raise CheckFailed unless ``got`` equals ``want``; name the matching mutant if any."""
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"{what}: expected a tensor of shape {list(want.shape)}, got a "
                          f"{type(got).__name__} (inputs: {on})")
    if got.shape != want.shape:
        found = _diagnose(got, want, mutants, exact=exact)
        hint = f" {found}" if found else (f" {shape_hint}" if shape_hint else "")
        raise CheckFailed(f"{what}: got shape {list(got.shape)}, expected {list(want.shape)} (inputs: "
                          f"{on}).{hint}")
    if check_dtype and got.dtype != want.dtype:
        raise CheckFailed(f"{what}: got dtype {got.dtype}, expected {want.dtype} like the inputs (inputs: "
                          f"{on}); do not convert: compute in the inputs' dtype")
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
    diff = (g - w).abs().nan_to_num(nan=float("inf"))
    idx = tuple(int(i) for i in (diff == diff.max()).nonzero()[0])
    n_bad = int((~torch.isclose(g, w, *_tols(want.dtype), equal_nan=True)).sum()) if not exact else \
        int((g != w).sum())
    raise CheckFailed(f"mismatch in {what} against {ref} (inputs: {on}): {n_bad} of {w.numel()} elements "
                      f"differ; the largest difference is {diff.max().item():.3g} at index {list(idx)} (got "
                      f"{g[idx].item():.6g}, expected {w[idx].item():.6g}). The shape is right, so look at "
                      "the order of the operations and the axes they act on")


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


def _check_int(name: str, got, want: int, *, on: str, mutants: Sequence[tuple[int, str]] = ()) -> None:
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
    raise CheckFailed(f"{name} = {int(got):,} but the right value is {want:,} ({on}); off by "
                      f"{int(got) - want:+,}")


def _randn(*shape, dtype=torch.float32, seed=0, scale=1.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * scale


