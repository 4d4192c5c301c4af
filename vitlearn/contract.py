"""The rules every constructor follows: check its arguments, and call the parts it is given.

Two things live here so that each is written once:

* ``check_positive_int`` / ``check_dropout``: a size, count or probability that makes no sense
  (0 heads, 2.5 layers, dropout 1.5) is refused when the part is built, with a ValueError
  naming the argument, instead of a ZeroDivisionError or a silently empty layer later.
* ``build_part``: the plug-in contract. A part (ours or a learner's) is always called with the
  same keyword arguments. The shape arguments (``embed_dim=``, ``num_heads=``, ...) are always
  passed; options the user left at their defaults (dropout 0, our own attention) are not, so
  a learner's part needs only the shape arguments; an option the user did set is passed to
  every part the same way, and a part that cannot take it is refused before it is built,
  with a message that says what to add.
"""

from __future__ import annotations

import functools
import inspect
import numbers
from collections.abc import Callable
from typing import Any

__all__ = ["check_positive_int", "check_dropout", "accepted_keywords", "build_part", "part_name",
           "takes_keyword"]


def check_positive_int(owner: str, *, minimum: int = 1, **values: Any) -> None:
    """Raise a ValueError naming the argument unless every value is an int >= ``minimum``."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"{owner}: {name} must be a whole number >= {minimum}, got {value!r} "
                             f"({type(value).__name__})")
        if value < minimum:
            raise ValueError(f"{owner}: need {name} >= {minimum}, got {name}={value}")


def check_dropout(owner: str, **values: Any) -> None:
    """Raise a ValueError naming the argument unless every value is a probability in [0, 1)."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
            raise ValueError(f"{owner}: {name} is the probability of zeroing an activation and "
                             f"must be in [0, 1), got {name}={value!r}")


def part_name(factory: Callable) -> str:
    """``module.QualifiedName`` of a class or function: how checkpoints record custom parts
    (a ``functools.partial`` as ``module.Name(option=value)``)."""
    if isinstance(factory, functools.partial):
        options = [repr(a) for a in factory.args] + [f"{k}={v!r}" for k, v in factory.keywords.items()]
        return f"{part_name(factory.func)}({', '.join(options)})"
    return f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', repr(factory))}"


def accepted_keywords(factory: Callable) -> set[str] | None:
    """The keyword arguments ``factory`` accepts; None when it takes ``**kwargs`` (or any)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: let the call decide
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params
            if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)}


def build_part(factory: Callable, role: str, shape: dict[str, Any],
               options: dict[str, tuple[Any, str]] | None = None):
    """``factory(**shape, **options)``, after checking that ``factory`` accepts those keywords.

    ``role`` names the argument the part came from (``"attn_layer"``); ``shape`` holds the
    keywords every part of this role takes; ``options`` maps a keyword to (value, the setting
    the user chose that it comes from, e.g. ``"dropout=0.1"``). TypeErrors raised inside the
    constructor itself are not caught: they are the part's own bugs, with its own traceback.
    """
    options = options or {}
    accepted = accepted_keywords(factory)
    if accepted is not None:
        missing = [k for k in shape if k not in accepted]
        if missing:
            raise TypeError(
                f"{role}={part_name(factory)} does not accept the keyword argument(s) "
                f"{', '.join(missing)}; every {role} is called as {role}("
                f"{', '.join(f'{k}=...' for k in shape)}): add them to its __init__ "
                f"(keyword-only, after a *)")
        for key, (_value, because) in options.items():
            if key not in accepted:
                raise TypeError(
                    f"{role}={part_name(factory)} does not accept {key}=, which vitlearn passes "
                    f"because you set {because}; add a `{key}` keyword to its __init__ and use it, "
                    f"or take **kwargs, or leave {because.split('=')[0]} at its default")
    return factory(**shape, **{k: v for k, (v, _) in options.items()})


def takes_keyword(module: Any, name: str) -> bool:
    """Whether ``module.forward`` (ours, or a learner's) has a parameter called ``name``, so
    that an optional argument (``need_weights``, ``num_queries``) is passed only to a part
    that can take it. Asked during forward passes, so the answer is kept per function."""
    forward = getattr(module, "forward", None)
    function = getattr(forward, "__func__", forward)
    names = _PARAMETER_NAMES.get(function)
    if names is None:
        try:
            names = frozenset(inspect.signature(function).parameters)
        except (TypeError, ValueError):  # no function, or one without a signature
            names = frozenset()
        _PARAMETER_NAMES[function] = names
    return name in names


_PARAMETER_NAMES: dict[Any, frozenset[str]] = {}
