"""Step 8 (notebook 07): the classification head and the losses."""

# ruff: noqa: B023  (each mutant lambda is evaluated in the loop iteration that creates it)
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..head import ClassificationHead
from ._harness import (
    CheckFailed,
    _build,
    _call,
    _check,
    _check_grads,
    _expect,
    _load,
    _ok,
    _randn,
    _shape,
)


@_check
def check_classification_head(cls) -> None:
    """cls(*, embed_dim, num_classes) with norm (LayerNorm) and fc (Linear): [B, D] -> logits [B, K]."""
    configs = [(64, 10, 8), (32, 5, 1)]
    for i, (d, k, b) in enumerate(configs):
        what = f"{getattr(cls, '__name__', 'cls')}(embed_dim={d}, num_classes={k})"
        mine = _build(cls, what, embed_dim=d, num_classes=k)
        ours = ClassificationHead(embed_dim=d, num_classes=k)
        with torch.no_grad():
            ours.norm.weight.copy_(1 + 0.5 * _randn(d, seed=150 + i))
            ours.norm.bias.copy_(0.5 * _randn(d, seed=155 + i))
        names = _load(mine, ours, what)
        x = _randn(b, d, seed=160 + i) * 3 + 1
        on = f"{what}, pooled {_shape(x)}"
        logits = ours(x).detach()
        mutants = [(lambda: logits.softmax(-1), "the head returns probabilities (softmax inside the head); "
                                                "return the logits: F.cross_entropy applies log-softmax "
                                                "itself, and a softmax before it squashes the gradients"),
                   (lambda: logits.log_softmax(-1), "the head returns log-probabilities; return the raw "
                                                    "logits (F.cross_entropy does the log-softmax)"),
                   (lambda: ours.fc(x), "the LayerNorm is skipped: self.fc(self.norm(x))"),
                   (lambda: torch.sigmoid(logits), "a sigmoid is applied; return the raw logits")]
        got = _call(f"{what}.forward", mine, x)
        _expect(got, logits, what="the logits", on=on, mutants=mutants,
                shape_hint=f"logits are [B, num_classes] = [{b}, {k}]")
        _check_grads(mine, ours, names, lambda: mine(x), lambda: ours(x), what)
    _ok("check_classification_head", "equal to vitlearn.ClassificationHead (LayerNorm + Linear, logits) "
                                     f"with copied weights on {len(configs)} sizes, gradients reach every "
                                     "parameter")


def _loss_cases():
    g = torch.Generator().manual_seed(170)
    base = [(torch.randn(32, 10, generator=g) * 3, torch.randint(0, 10, (32,), generator=g)),
            (torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randint(0, 3, (5,), generator=g))]
    lacking = (torch.randn(8, 10, generator=g), torch.randint(0, 9, (8,), generator=g))  # no label is 9
    return base + [(base[0][0] * 1000, base[0][1]), lacking]


def _on(logits, labels, extra=""):
    big = logits.abs().max() > 100
    lacks = int(labels.max()) < logits.shape[-1] - 1
    return (f"logits {_shape(logits)}" + (" (large values, x1000)" if big else "") + f", labels "
                                                                                     f"{_shape(labels)}"
            + (f" (no label is {logits.shape[-1] - 1}, the last class)" if lacks else "") + extra)


def _loss_call(what, fn, logits, labels, *args):
    """Call a loss; an error on a batch that lacks the last class (after the batches that have every
    class worked) comes from sizing something by the labels instead of the logits."""
    try:
        return _call(what, fn, logits, labels, *args)
    except CheckFailed as err:
        if int(labels.max()) < logits.shape[-1] - 1 and not isinstance(err.__cause__, CheckFailed):
            raise CheckFailed(f"{what} fails on a batch in which no label is {logits.shape[-1] - 1} (the "
                              "last "
                              "class), after working on batches that have every class: something is sized by "
                              "the labels instead of the logits. F.one_hot(labels) makes labels.max() + 1 "
                              "columns; pass num_classes=logits.shape[-1]. (" + str(err) + ")") from err
        raise


def _check_scalar(got, what, on):
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"{what}: expected a scalar tensor, got a {type(got).__name__} ({on}): keep it a "
                          "tensor (no .item()), so that loss.backward() works")
    if got.shape != ():
        raise CheckFailed(f"{what}: got shape {list(got.shape)}, expected a single number (shape []) ({on}): "
                          "take the mean over the batch")


@_check
def check_cross_entropy(fn) -> None:
    """fn(logits [B, K], labels [B]) -> the mean cross-entropy, exact even for huge logits."""
    for logits, labels in _loss_cases():
        on = _on(logits, labels)
        got = _loss_call("cross_entropy", fn, logits, labels)
        _check_scalar(got, "the loss", on)
        idx = torch.arange(len(labels))
        lp = logits.log_softmax(-1)
        mutants = [(lambda: -torch.log(logits.softmax(-1))[idx, labels].mean(),
                    "the loss is computed as log(softmax(logits)), which underflows to log(0) = -inf for "
                    "large logits: use F.log_softmax (log-sum-exp), exact for any logits"),
                   (lambda: -lp[idx, labels].sum(), "this is the sum over the batch; F.cross_entropy takes "
                                                    "the mean"),
                   (lambda: lp[idx, labels].mean(), "the sign is wrong: the loss is MINUS the "
                                                    "log-probability"),
                   (lambda: -logits.log_softmax(0)[idx, labels].mean(),
                    "the log-softmax runs over the batch (dim=0); it runs over the classes: dim=-1"),
                   (lambda: -logits[idx, labels].mean(), "the logits are used as log-probabilities: apply "
                                                         "F.log_softmax(logits, dim=-1) first")]
        _expect(got, F.cross_entropy(logits, labels), what="the loss", on=on, ref="F.cross_entropy",
                mutants=mutants)
    _ok("check_cross_entropy", "equal to F.cross_entropy on ordinary, float64 and huge (x1000) logits")


@_check
def check_smoothed_cross_entropy(fn) -> None:
    """fn(logits, labels, eps) -> F.cross_entropy(logits, labels, label_smoothing=eps)."""
    cases = [(lg, lb, eps) for lg, lb in _loss_cases() for eps in (0.1, 0.3)]
    cases.append((_loss_cases()[0][0], _loss_cases()[0][1], 0.0))
    for logits, labels, eps in cases:
        on = _on(logits, labels, f", eps={eps}")
        got = _loss_call("smoothed_cross_entropy", fn, logits, labels, eps)
        _check_scalar(got, "the loss", on)
        k = logits.shape[-1]
        idx = torch.arange(len(labels))
        lp = logits.log_softmax(-1)
        nll = -lp[idx, labels]
        onehot = F.one_hot(labels, k).to(logits.dtype)
        mutants = [(lambda: -(((1 - eps) * onehot + eps / (k - 1) * (1 - onehot)) * lp).sum(-1).mean(),
                    "eps is spread over the K-1 wrong classes; label smoothing (PyTorch's and the ViT "
                    "recipe's) spreads eps/K over ALL K classes, the true one included: (1-eps)*nll + "
                    "eps*mean(-log p)"),
                   (lambda: ((1 - eps) * nll - eps * lp.sum(-1)).mean(),
                    "eps multiplies the SUM of -log p over the classes; each class gets eps/K: use the mean "
                    "over the classes"),
                   (lambda: ((1 - eps) * nll).mean(), "the uniform part is missing: add eps * mean(-log p) "
                                                      "over the classes"),
                   (lambda: nll.mean(), "eps is ignored: this is the plain cross-entropy"),
                   (lambda: ((1 - eps) * -torch.log(logits.softmax(-1))[idx, labels]
                             - eps * torch.log(logits.softmax(-1)).mean(-1)).mean(),
                    "the log-probabilities come from log(softmax(logits)), which gives -inf for large "
                    "logits: use F.log_softmax"),
                   (lambda: (nll - eps * lp.mean(-1)).mean(),
                    "the true class keeps its full weight: scale it by (1 - eps), (1 - eps) * nll + eps * "
                    "mean(-log p)"),
                   (lambda: ((1 - eps) * nll + eps * lp.mean(-1)).mean(),
                    "the uniform term has the wrong sign: it is + eps * mean(-log p) over the classes, a "
                    "cross-entropy too, so it adds to the loss"),
                   (lambda: (eps * nll - (1 - eps) * lp.mean(-1)).mean(),
                    "eps and 1 - eps are swapped: the true class gets 1 - eps, the uniform part eps"),
                   (lambda: ((1 - eps) * nll - eps * logits.mean(-1)).mean(),
                    "the uniform term averages the raw logits; average the log-probabilities: eps * "
                    "mean(-F.log_softmax(logits, dim=-1))"),
                   (lambda: -(((1 - eps) * onehot + eps / k * (1 - onehot)) * lp).sum(-1).mean(),
                    "the true class gets 1 - eps only; in label smoothing the true class gets eps/K too, "
                    "(1 - eps) + eps/K, so the target sums to 1"),
                   (lambda: -lp[idx, labels].sum() * (1 - eps) + eps * -lp.mean(-1).sum(),
                    "this is the sum over the batch; take the mean")]
        _expect(got, F.cross_entropy(logits, labels, label_smoothing=eps), what="the smoothed loss", on=on,
                ref="F.cross_entropy(label_smoothing=eps)", mutants=mutants)
    _ok("check_smoothed_cross_entropy", f"equal to F.cross_entropy(label_smoothing=eps) on {len(cases)} "
                                        "cases (eps 0, 0.1, 0.3; float64; huge logits)")
