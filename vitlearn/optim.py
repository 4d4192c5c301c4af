"""The optimizers ``fit`` can train with: AdamW (the paper's Adam with decoupled weight decay),
and Muon for the encoder's weight matrices with AdamW for everything else.

Muon (Jordan et al. 2024, "Muon: An optimizer for hidden layers in neural networks") takes
SGD's momentum for a weight matrix and replaces it by the nearest semi-orthogonal matrix (all
singular values 1, computed by five Newton-Schulz iterations), so that every direction of the
update moves the weights by the same amount instead of letting a few large directions dominate.
It is meant for the hidden matrices only: the patch projection (the input layer), the head (the
output layer), biases, LayerNorm gains and the [CLS] / position vectors keep AdamW. The update is
scaled to AdamW's typical size (0.2 * sqrt(max(rows, cols)), Liu et al. 2025, "Muon is
Scalable for LLM Training"), so one learning rate and one weight decay serve both kinds.
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch
from torch.optim.adamw import adamw

__all__ = ["MuonAdamW", "newton_schulz"]

# The quintic iteration's coefficients (Jordan et al.): chosen to bring the singular values of a
# matrix with norm <= 1 into about [0.7, 1.2] in five steps, fast rather than exactly to 1 (a
# value under ~1e-3 of the norm grows only ~3.4x per step and ends below that band).
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def newton_schulz(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """An approximately semi-orthogonal matrix with g's singular vectors: ~ U V^T for g = U S V^T.

    g: [..., rows, cols] (a stack of matrices of one shape is orthogonalised in one go).
    """
    a, b, c = NS_COEFFICIENTS
    tall = g.shape[-2] > g.shape[-1]
    x = g.mT if tall else g  # work on the wide side: x x^T is the smaller square
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)  # singular values <= 1
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.mT if tall else x


def _check_group(group: dict) -> None:
    def bad(name, value, rule):
        raise ValueError(f"MuonAdamW: {name} must be {rule}, got {name}={value!r}")

    def number(x) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

    if not (number(group["lr"]) and group["lr"] >= 0):
        bad("lr", group["lr"], "a number >= 0")
    if not (number(group["weight_decay"]) and group["weight_decay"] >= 0):
        bad("weight_decay", group["weight_decay"], "a number >= 0")
    if not (number(group["momentum"]) and 0 <= group["momentum"] < 1):
        bad("momentum", group["momentum"], "a number in [0, 1)")
    if isinstance(group["ns_steps"], bool) or not isinstance(group["ns_steps"], int) or group["ns_steps"] < 1:
        bad("ns_steps", group["ns_steps"], "a whole number >= 1")
    betas = group["betas"]
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2
            and all(number(b) and 0 <= b < 1 for b in betas)):
        bad("betas", betas, "two numbers in [0, 1)")
    if not (number(group["eps"]) and group["eps"] >= 0):
        bad("eps", group["eps"], "a number >= 0")
    if not isinstance(group["muon"], bool):
        bad("muon", group["muon"], "True or False")


class MuonAdamW(torch.optim.Optimizer):
    """Muon for the param groups marked ``muon=True`` (2-D weight matrices), AdamW for the rest.

    One optimizer (one ``state_dict``, one learning-rate schedule over all groups). Group keys:
    ``lr``, ``weight_decay`` (decoupled, as AdamW), ``muon``; Muon groups use ``momentum``
    (Nesterov) and ``ns_steps``, AdamW groups ``betas`` and ``eps``.
    """

    def __init__(self, params, *, lr: float = 1e-3, weight_decay: float = 0.0, momentum: float = 0.95,
                 ns_steps: int = 5, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, ns_steps=ns_steps,
                        betas=betas, eps=eps, muon=False)
        super().__init__(params, defaults)
        self._fused: bool | None = None  # AdamW's fused kernel: untried / works / not available

    def add_param_group(self, param_group: dict) -> None:
        """Every group is checked as it is added (also by ``__init__``): a bad setting would
        otherwise only show as a silently wrong update."""
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        _check_group(group)
        if group["muon"]:
            bad = [tuple(p.shape) for p in group["params"] if p.dim() != 2]
            if bad:
                raise ValueError(f"MuonAdamW: a muon=True group takes 2-D weight matrices only, got "
                                 f"shapes {bad}; put them in a group with muon=False (AdamW)")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                (self._muon if group["muon"] else self._adamw)(group, params)
        return loss

    def _muon(self, group: dict, params: list[torch.Tensor]) -> None:
        lr, wd, beta = group["lr"], group["weight_decay"], group["momentum"]
        by_shape: dict[tuple, list[torch.Tensor]] = defaultdict(list)
        for p in params:
            by_shape[(tuple(p.shape), p.dtype, p.device)].append(p)
        for (shape, _, _), ps in by_shape.items():  # matrices of one shape: one batched iteration
            for p in ps:
                if "momentum" not in self.state[p]:
                    self.state[p]["momentum"] = torch.zeros_like(p)
            grads, bufs = [p.grad for p in ps], [self.state[p]["momentum"] for p in ps]
            torch._foreach_lerp_(bufs, grads, 1 - beta)                     # momentum
            nesterov = torch.stack(grads).lerp_(torch.stack(bufs), beta)   # [k, rows, cols]
            update = newton_schulz(nesterov, group["ns_steps"])
            torch._foreach_mul_(ps, 1 - lr * wd)                            # decoupled decay
            # scaled to AdamW's update size, so that both kinds share lr and weight_decay
            torch._foreach_add_(ps, list(update.unbind(0)), alpha=-lr * 0.2 * math.sqrt(max(shape)))

    def _adamw(self, group: dict, params: list[torch.Tensor]) -> None:
        """torch's own AdamW update (its fused kernel where the device has one)."""
        for p in params:
            state = self.state[p]
            if not state:  # the same state as torch.optim.AdamW keeps
                state["step"] = torch.tensor(0.0)
                state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
        states = [self.state[p] for p in params]
        beta1, beta2 = group["betas"]
        kwargs = dict(amsgrad=False, beta1=beta1, beta2=beta2, lr=group["lr"],
                      weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)
        lists = (params, [p.grad for p in params], [s["exp_avg"] for s in states],
                 [s["exp_avg_sq"] for s in states], [], [s["step"] for s in states])
        if self._fused is not False:
            try:
                adamw(*lists, fused=True, **kwargs)
                self._fused = True
                return
            except RuntimeError:  # no fused kernel for this device or dtype
                if self._fused:
                    raise
                self._fused = False
        adamw(*lists, **kwargs)
