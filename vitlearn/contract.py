"""The rules every constructor follows: check its arguments, and call the parts it is given.

The plug-in rules live here, each once:

* :data:`PARTS`: one row per part a ViT is built from (the role, the keywords it is built
  with, what its forward takes and must return, the optional hooks the model probes);
* ``build_part``: builds a part by those rules, refusing an instance where a class is wanted,
  a function that computes where a module class is wanted, and keywords it cannot take;
* ``call_with_queries`` / ``asks_for_weights``: the two negotiations of optional forward
  arguments (``num_queries``, ``need_weights``) with a part that may or may not take them;
* ``check_part_output`` / ``checking_part_outputs``: a part's output shape checked where it
  plugs in, once per input shape, with a message naming the part and both shapes;

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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["check_positive_int", "check_dropout", "accepted_keywords", "build_part", "part_name",
           "takes_keyword", "PartRule", "PARTS", "call_with_queries", "asks_for_weights",
           "check_part_output", "checking_part_outputs"]


@dataclass(frozen=True)
class PartRule:
    """How one kind of part plugs into a ViT."""

    role: str                    # the ViT argument that gives it
    keywords: tuple[str, ...]    # always passed to its constructor
    options: dict[str, str]      # passed only when set: keyword -> the user's setting it comes from
    forward: str                 # how it is called
    returns: str                 # the shape it must return
    why: str                     # what that shape means, for the message of a wrong one
    hooks: tuple[str, ...] = ()  # optional methods / attributes / arguments the model probes


PARTS: dict[str, PartRule] = {rule.role: rule for rule in (
    PartRule("embed_layer", ("img_size", "patch_size", "in_chans", "embed_dim"), {},
             "forward(images [B, C, H, W])", "[B, N, D]",
             "a patch embedding returns one D-wide token per patch",
             ("check_input = False (set by ViT: it checks the images once)",
              "check_img_size(img_size) (set_img_size asks before changing)",
              "img_size / grid_size / num_patches attributes (set_img_size updates them)")),
    PartRule("cls_token_layer", ("embed_dim",), {}, "forward(tokens [B, N, D])", "[B, 1+N, D]",
             "prepending [CLS] adds one token in front"),
    PartRule("pos_embed_layer", ("num_patches", "embed_dim", "num_prefix_tokens"), {},
             "forward(tokens [B, T, D])", "[B, T, D]",
             "adding position embeddings keeps the shape", ("set_grid_size(grid_size)",)),
    PartRule("attn_layer", ("embed_dim", "num_heads"),
             {"attn_dropout": "attn_dropout", "proj_dropout": "dropout"},
             "forward(x [B, N, D], need_weights=False, *, num_queries=None)", "[B, N, D]",
             "an attention returns one vector per token (the first n with num_queries=n)",
             ("need_weights: return (out, weights [B, heads, N, N]) (record_attention)",
              "num_queries=n: only the first n tokens ask (ViT.forward's last block)")),
    PartRule("block_fn", ("embed_dim", "num_heads", "mlp_ratio"),
             {"dropout": "dropout", "attn_dropout": "attn_dropout", "attn_layer": "attn_layer"},
             "forward(x [B, N, D], *, num_queries=None)", "[B, N, D]",
             "a block returns one vector per token (the first n with num_queries=n)",
             ("num_queries=n (the last block)", "attn attribute (record_attention finds it)")),
    PartRule("head_layer", ("embed_dim", "num_classes"), {}, "forward(pooled [B, D])",
             "[B, num_classes]", "a head returns one logit per class for each image"),
)}


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


def _check_factory(factory: Any, role: str, keywords: dict[str, Any]) -> None:
    """An instance where a class is wanted, or a function that computes where a module class
    is wanted: say which was given and which is wanted."""
    call = f"{role}({', '.join(f'{k}=...' for k in keywords)})"
    if isinstance(factory, nn.Module):
        name = type(factory).__name__
        raise TypeError(f"{role} was given an instance, {name}(...), a module already built; it "
                        f"wants the class {name} itself (or a function that returns a new module): "
                        f"vitlearn builds one for every place it goes, as {call}. Pass {role}={name}, "
                        f"with options through functools.partial({name}, option=...)")
    if not callable(factory):
        raise TypeError(f"{role} was given {factory!r} ({type(factory).__name__}); it wants a module "
                        f"class (or a function that returns a module), called as {call}")


def build_part(factory: Callable, role: str, shape: dict[str, Any],
               options: dict[str, Any] | None = None):
    """``factory(**shape, **options)``, after checking that ``factory`` is a class (or a
    function that returns a module) and accepts those keywords.

    ``role`` names the argument the part came from (``"attn_layer"``); ``shape`` holds the
    keywords every part of this role takes; ``options`` the settings the user changed from
    their defaults (plain values; :data:`PARTS` says which setting each comes from).
    TypeErrors raised inside the constructor itself are not caught: they are the part's own
    bugs, with its own traceback.
    """
    options = options or {}
    _check_factory(factory, role, shape)
    rule = PARTS.get(role)
    accepted = accepted_keywords(factory)
    if accepted is not None:
        missing = [k for k in shape if k not in accepted]
        if missing and not inspect.isclass(factory) and not isinstance(factory, functools.partial):
            raise TypeError(
                f"{role}={part_name(factory)} is a function of ({', '.join(sorted(accepted))}), which "
                f"computes; {role} wants a module class (or a function that builds a module) that is "
                f"called as {role}({', '.join(f'{k}=...' for k in shape)}) and whose forward does the "
                f"computing")
        if missing:
            raise TypeError(
                f"{role}={part_name(factory)} does not accept the keyword argument(s) "
                f"{', '.join(missing)}; every {role} is called as {role}("
                f"{', '.join(f'{k}=...' for k in shape)}): add them to its __init__ "
                f"(keyword-only, after a *)")
        for key, value in options.items():
            if key not in accepted:
                setting = rule.options.get(key, key) if rule is not None else key
                because = f"{setting}={getattr(value, '__name__', value)}"
                raise TypeError(
                    f"{role}={part_name(factory)} does not accept {key}=, which vitlearn passes "
                    f"because you set {because}; add a `{key}` keyword to its __init__ and use it, "
                    f"or take **kwargs, or leave {setting} at its default")
    part = factory(**shape, **options)
    if not isinstance(part, nn.Module):
        raise TypeError(f"{role}={part_name(factory)} returned {type(part).__name__}, not an nn.Module; "
                        f"{role} wants a module class (or a function that returns a module)")
    return part


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


# -- negotiations of optional forward arguments ---------------------------------------------

def call_with_queries(module: nn.Module, x: torch.Tensor, num_queries: int, *,
                      takes_it: bool | None = None) -> torch.Tensor:
    """``module(x)`` for the first ``num_queries`` tokens only: ``module(x, num_queries=n)``
    when its forward takes ``num_queries`` (it then computes only those), else all N and the
    first n kept. ``takes_it``: known by the caller (ours, without a signature lookup that
    torch.compile would trace)."""
    if num_queries == x.shape[1]:
        return module(x)
    if takes_it or (takes_it is None and takes_keyword(module, "num_queries")):
        return module(x, num_queries=num_queries)
    return module(x)[:, :num_queries]


def asks_for_weights(args: tuple, kwargs: dict) -> bool:
    """Whether a call ``attn(x, need_weights=...)`` (keyword, or the second positional
    argument) asked for the attention weights."""
    return bool(args[1]) if len(args) > 1 else bool(kwargs.get("need_weights", False))


# -- output shapes checked where a part plugs in ----------------------------------------------

def _shape(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def check_part_output(role: str, part: nn.Module, output: Any, expected: tuple[int, ...]) -> None:
    """Raise a ValueError naming the part, the shape it returned and the shape it must return
    (:data:`PARTS`), unless ``output`` is a tensor of shape ``expected``."""
    rule = PARTS[role]
    who = f"your {role} ({type(part).__name__})"
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"{who} returned {type(output).__name__}, not a tensor; {rule.why}: "
                        f"{rule.returns} = {_shape(expected)}")
    if tuple(output.shape) != tuple(expected):
        raise ValueError(f"{who} returned {_shape(output.shape)}; {rule.why}: {rule.returns} = "
                         f"{_shape(expected)}")


@contextmanager
def checking_part_outputs(parts: list[tuple[str, nn.Module, Callable[[tuple, dict], tuple]]],
                          ) -> Iterator[None]:
    """While inside, every call of each ``(role, module, expected)`` has its output checked
    against ``expected(args, kwargs)`` (a tensor's shape; an attention's ``(out, weights)``
    is checked on ``out``). The hooks are removed on exit, so a model checks a shape once and
    then runs without them."""
    def hook_for(role, expected):
        def check(module, args, kwargs, output):
            out = output[0] if isinstance(output, tuple) and role == "attn_layer" else output
            check_part_output(role, module, out, expected(args, kwargs))
        return check

    handles = []
    try:
        for role, module, expected in parts:
            handles.append(module.register_forward_hook(hook_for(role, expected), with_kwargs=True))
        yield
    finally:
        for handle in handles:
            handle.remove()
