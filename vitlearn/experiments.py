"""Side-by-side training runs: the paper's ablations in miniature.

Each step notebook ends with one question the paper asks (patch size, [CLS] or mean pooling,
which position embedding, how many heads, ...) and answers it by training a few variants of
the same ViT with the same recipe and the same seeds::

    result = compare({"patch 7": lambda: ViT(patch_size=7),
                      "patch 14": lambda: ViT(patch_size=14)}, train, test, epochs=3)
    print(result)          # one row per variant: tokens, parameters, test accuracy, seconds
    result.plot()          # test accuracy after every epoch

A variant is a function that builds a fresh model (called after ``torch.manual_seed(seed)``,
so the first variant with seed 0 is exactly the notebook's usual run), or a :class:`Variant`
that also changes the training settings (08 removes one ingredient of the recipe at a time).
Differences smaller than the spread between seeds are noise: pass ``seeds=(0, 1)`` or more
where the gap is small, and the table shows every seed and their mean.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from .data import ImageDataset
from .training import History, fit

__all__ = ["Variant", "Comparison", "compare"]


class Variant:
    """A model to build and the ``fit`` settings that differ from the comparison's own:
    ``Variant(ViT, label_smoothing=0.0)``."""

    def __init__(self, build: Callable[[], nn.Module], **fit_kwargs):
        if not callable(build) or isinstance(build, nn.Module):
            raise TypeError(f"Variant: build must be a function that returns a fresh model "
                            f"(e.g. `lambda: vitlearn.ViT(patch_size=4)` or `vitlearn.ViT`), "
                            f"got {type(build).__name__}")
        self.build = build
        self.fit_kwargs = fit_kwargs

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.fit_kwargs.items())
        return f"Variant({getattr(self.build, '__name__', 'build')}{', ' if settings else ''}{settings})"


@dataclass
class Comparison:
    """The runs of :func:`compare`: ``histories[name][i]`` is variant ``name`` with
    ``seeds[i]``; ``models[name]`` is its trained model of the first seed."""

    seeds: tuple[int, ...]
    histories: dict[str, list[History]] = field(default_factory=dict)
    models: dict[str, nn.Module] = field(default_factory=dict)
    params: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, int | None] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return list(self.histories)

    def _histories(self, name: str) -> list[History]:
        if name not in self.histories:
            raise KeyError(f"no variant {name!r}; the variants are {self.names}")
        return self.histories[name]

    def accuracies(self, name: str) -> list[float]:
        """Final test accuracy of ``name``, one per seed."""
        return [h.final_test_acc for h in self._histories(name)]

    def accuracy(self, name: str) -> float:
        """Final test accuracy of ``name``, the mean over the seeds."""
        accs = self.accuracies(name)
        return sum(accs) / len(accs)

    def seconds_per_epoch(self, name: str) -> float:
        """Mean seconds per epoch (training and evaluation) of ``name`` over all its epochs."""
        seconds = [s for h in self._histories(name) for s in h.seconds]
        return sum(seconds) / len(seconds)

    def best(self) -> str:
        """The variant with the highest mean final test accuracy."""
        return max(self.names, key=self.accuracy)

    def __str__(self) -> str:
        # Numbers that vary between CPUs (accuracies, seconds) are written as "acc 98.14%" (or
        # "acc  9.80%", the same width) and "9.8 s", the seconds last in the row, so that nbval's
        # sanitizer masks them without changing the layout.
        width = max(len("variant"), *(len(n) for n in self.names))
        show_tokens = any(t is not None for t in self.tokens.values())
        acc_columns = [f"seed {s}" for s in self.seeds] + (["mean"] if len(self.seeds) > 1 else [])
        head = f"{'variant':<{width}}" + (" patches" if show_tokens else "") + "    params"
        head += "".join(f"  {c:<10}" for c in acc_columns) + "  time per epoch"
        rows = [head]
        for name in self.names:
            row = f"{name:<{width}}"
            if show_tokens:
                tokens = self.tokens.get(name)
                row += f"  {tokens if tokens is not None else '-':>6}"
            row += f"  {self.params[name]:8,d}"
            accs = self.accuracies(name) + ([self.accuracy(name)] if len(self.seeds) > 1 else [])
            row += "".join(f"  acc {a:6.2%}" for a in accs)
            row += f"  {self.seconds_per_epoch(name):.1f} s"
            rows.append(row)
        return "\n".join(rows)

    def plot(self, *, title: str | None = None):
        """Test accuracy after every epoch, one line per variant (one faint line per seed,
        the mean bold). Returns the matplotlib Figure."""
        from .viz import plot_comparison
        return plot_comparison(self, title=title)


def _num_tokens(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    return getattr(config, "num_patches", None)


def compare(variants: Mapping[str, Callable[[], nn.Module] | Variant], train: ImageDataset,
            test: ImageDataset, *, seeds: tuple[int, ...] | list[int] = (0,), epochs: int = 3,
            progress: bool = True, **fit_kwargs) -> Comparison:
    """Train every variant with every seed by :func:`vitlearn.fit` (``epochs`` and the other
    keywords, plus a :class:`Variant`'s own settings), each evaluated on ``test``.

    For each seed, ``torch.manual_seed(seed)`` is called before the model is built and
    ``fit(..., seed=seed)`` shuffles and augments with it: two variants that differ only in
    one option start from the same random numbers wherever their shapes agree, and rerunning
    a comparison repeats it bit for bit. One line per finished run is printed.
    """
    if not isinstance(variants, Mapping) or not variants:
        raise ValueError("compare: variants must be a non-empty dict {name: function that builds a "
                         "model}, e.g. {'patch 7': lambda: vitlearn.ViT(patch_size=7)}")
    seeds = tuple(seeds)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise ValueError(f"compare: seeds must be a non-empty list of integers >= 0, got {seeds!r}")
    if "seed" in fit_kwargs:
        raise TypeError("compare: pass seeds=(...) (one run per seed), not seed=")
    plan = {}
    for name, spec in variants.items():
        variant = spec if isinstance(spec, Variant) else Variant(spec)
        if "seed" in variant.fit_kwargs:
            raise TypeError(f"compare: variant {name!r} sets seed=; the comparison's seeds=(...) "
                            f"choose the seeds for every variant")
        plan[str(name)] = variant
    result = Comparison(seeds=seeds)
    for name, variant in plan.items():
        result.histories[name] = []
        for seed in seeds:
            torch.manual_seed(seed)
            model = variant.build()
            if not isinstance(model, nn.Module):
                raise TypeError(f"compare: variant {name!r} built a {type(model).__name__}, not an "
                                f"nn.Module; its function must return a fresh model")
            settings = {**fit_kwargs, "epochs": epochs, **variant.fit_kwargs}
            history = fit(model, train, test, seed=seed, progress=progress, **settings)
            result.histories[name].append(history)
            if seed == seeds[0]:
                result.models[name] = model
                result.params[name] = sum(p.numel() for p in model.parameters() if p.requires_grad)
                result.tokens[name] = _num_tokens(model)
            print(f"{name}, seed {seed}: test acc {history.final_test_acc:.2%}, "
                  f"{sum(history.seconds) / len(history.seconds):.1f} s per epoch", flush=True)
    return result
