"""What the known eager-mode levers would buy: whole train steps, vitlearn with and without them.

    flock /tmp/vitlearn-cpu.lock .venv/bin/python benchmarks/eager_candidates.py

``benchmarks/step_breakdown.py`` shows that vitlearn's train step would have to lose a quarter of
all its non-matmul work to reach 1.3x vit-pytorch without ``torch.compile``. The candidates found
for that are kept here, outside the library, so that their effect can be measured again:

* ``core``: one autograd Function for the attention core (qkv [B, N, 3D] -> heads merged
  [B, n, D]) with a hand-written backward: one copy for the head split instead of three, the
  scores kept transposed ([keys, queries]) so the softmax runs over dim 1, which the CPU kernel
  does about twice as fast as over a last dim of 17, and the q, k, v gradients written into one
  buffer (no stack plus copy).
* ``core+outer``: the same, and in the [CLS]-only last block (one query) the two products of the
  backward whose inner dimension is 1 (outer products, where MKL is slowest) done as
  elementwise broadcasts.
* ``lean-adamw``: the fused AdamW kernel called directly on cached lists of tensors, without
  ``torch.optim``'s per-step bookkeeping (the same kernel and state as ``make_optimizer``'s).
* ``all``: the three together.

Before timing, every variant is checked against vitlearn (logits and every parameter gradient,
largest absolute difference printed). Then models take short turns (5 steps) in a shuffled order;
the ratios are medians of per-repeat ratios to vit-pytorch, as in ``throughput.py``.
"""

from __future__ import annotations

import argparse
import math
import platform
import random
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from einops import rearrange
from throughput import cpu_flags, interleaved_images_per_s  # benchmarks/ is on sys.path when run as a script
from torch import nn
from torch.autograd.function import once_differentiable

import vitlearn
from vitlearn.attention import MultiHeadSelfAttention, check_num_queries
from vitlearn.training import make_optimizer


class AttentionCore(torch.autograd.Function):
    """softmax(q k^T / sqrt(d)) v for all heads: qkv [B, N, 3D] -> [B, n, D] (first n ask)."""

    @staticmethod
    def forward(ctx, qkv, num_heads: int, n: int, outer_as_broadcast: bool):
        b, tokens, three_d = qkv.shape
        d = three_d // 3 // num_heads
        # one copy: [B, N, 3, h, d] -> [3, B*h, N, d]
        t = qkv.view(b, tokens, 3, num_heads, d).permute(2, 0, 3, 1, 4).reshape(3, b * num_heads, tokens, d)
        q, k, v = t[0][:, :n], t[1], t[2]
        scale = 1 / math.sqrt(d)
        scores_t = torch.baddbmm(qkv.new_empty(b * num_heads, tokens, n), k, q.transpose(1, 2),
                                 beta=0, alpha=scale)          # [B*h, keys, queries]
        weights_t = torch.softmax(scores_t, dim=1)           # over the keys
        out = torch.bmm(weights_t.transpose(1, 2), v)        # [B*h, n, d]
        ctx.save_for_backward(t, weights_t)
        ctx.dims = (b, tokens, num_heads, d, n, scale, outer_as_broadcast)
        return out.view(b, num_heads, n, d).transpose(1, 2).reshape(b, n, num_heads * d)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        t, weights_t = ctx.saved_tensors
        b, tokens, num_heads, d, n, scale, outer_as_broadcast = ctx.dims
        q, k, v = t[0][:, :n], t[1], t[2]
        go = grad_out.reshape(b, n, num_heads, d).transpose(1, 2).reshape(b * num_heads, n, d)
        grad = t.new_empty(3, b * num_heads, tokens, d)      # dq, dk, dv in one buffer
        outer = n == 1 and outer_as_broadcast
        if outer:
            torch.mul(weights_t, go, out=grad[2])            # [BH, N, 1] * [BH, 1, d]
        else:
            torch.bmm(weights_t, go, out=grad[2])
        dweights_t = torch.bmm(v, go.transpose(1, 2))        # [B*h, keys, queries]
        dscores_t = torch._softmax_backward_data(dweights_t, weights_t, 1, weights_t.dtype).mul_(scale)
        if n == tokens:
            torch.bmm(dscores_t.transpose(1, 2), k, out=grad[0])
        else:
            grad[0].zero_()
            grad[0][:, :n] = torch.bmm(dscores_t.transpose(1, 2), k)
        if outer:
            torch.mul(dscores_t, q, out=grad[1])
        else:
            torch.bmm(dscores_t, q, out=grad[1])
        merged = grad.view(3, b, num_heads, tokens, d).permute(1, 3, 0, 2, 4)
        return merged.reshape(b, tokens, 3 * num_heads * d), None, None, None


def attention_with_core(outer_as_broadcast: bool) -> type[MultiHeadSelfAttention]:
    class CoreAttention(MultiHeadSelfAttention):
        def forward(self, x, need_weights=False, *, num_queries=None):
            if need_weights:
                return super().forward(x, need_weights, num_queries=num_queries)
            n = check_num_queries(num_queries, x.shape[1])
            out = AttentionCore.apply(self.qkv(x), self.num_heads, n, outer_as_broadcast)
            return self.proj_drop(self.proj(out))

    return CoreAttention


class OneQueryElementwise(MultiHeadSelfAttention):
    """With one query (the [CLS]-only last block), attention as elementwise products and sums."""

    def forward(self, x, need_weights=False, *, num_queries=None):
        if need_weights or num_queries != 1:
            return super().forward(x, need_weights, num_queries=num_queries)
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3,
                            h=self.num_heads).unbind(0)
        q = q[:, :, :1]                                                        # [B, h, 1, d]
        scores = (q * k).sum(-1) / math.sqrt(self.head_dim)                    # [B, h, N]
        out = (scores.softmax(dim=-1).unsqueeze(-1) * v).sum(-2)               # [B, h, d]
        return self.proj_drop(self.proj(rearrange(out, "b h d -> b 1 (h d)")))


def lean_adamw_step(opt: torch.optim.AdamW) -> Callable[[], None]:
    """The fused AdamW kernel on cached lists (after one ordinary step created the state)."""
    groups = []
    for group in opt.param_groups:
        state = [opt.state[p] for p in group["params"]]
        groups.append((group, group["params"], [s["exp_avg"] for s in state],
                       [s["exp_avg_sq"] for s in state], [s["step"] for s in state]))

    def step() -> None:
        for group, params, exp_avgs, exp_avg_sqs, steps in groups:
            torch._foreach_add_(steps, 1)
            beta1, beta2 = group["betas"]
            torch._fused_adamw_(params, [p.grad for p in params], exp_avgs, exp_avg_sqs, [], steps,
                                amsgrad=False, lr=group["lr"], beta1=beta1, beta2=beta2,
                                weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)

    return step


VARIANTS = {  # name -> (attention layer or None, lean optimizer)
    "vitlearn": (None, False),
    "core": (attention_with_core(False), False),
    "core+outer": (attention_with_core(True), False),
    "cls-elementwise": (OneQueryElementwise, False),
    "lean-adamw": (None, True),
    "all": (attention_with_core(True), True),
}


def train_step(model: nn.Module, lean: bool | None, batch: int) -> Callable[[], None]:
    """lean None: vit-pytorch's plain torch.optim.AdamW."""
    opt = (torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05) if lean is None
           else make_optimizer(model, lr=1e-3, weight_decay=0.05))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)
    model.train()
    update = opt.step

    def step() -> None:
        nonlocal update
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        update()
        if lean and update == opt.step:  # the first step made the state; then the lean one
            update = lean_adamw_step(opt)

    return step


def softmax_layouts(repeats: int = 30) -> None:
    """The softmax of one block's scores [B*h, 17, 17] over the last dim (as the explicit math
    computes it) and over dim 1 (the transposed layout of ``core``): microseconds per call."""
    scores = torch.randn(128 * 4, 17, 17)
    for dim in (-1, 1):
        torch.softmax(scores, dim=dim)
        runs = []
        for _ in range(repeats):
            t = time.perf_counter()
            for _ in range(20):
                torch.softmax(scores, dim=dim)
            runs.append((time.perf_counter() - t) / 20 * 1e6)
        print(f"  softmax of [512, 17, 17] over dim {dim:2d}: {statistics.median(runs):6.1f} us")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--steps", type=int, default=5, help="train steps per model per repeat")
    args = ap.parse_args(argv)
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}  {platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}\n# cpu flags: {cpu_flags()}")
    try:
        from vit_pytorch import ViT as LucidViT
    except ImportError as err:
        raise SystemExit("vit-pytorch is not installed: .venv/bin/pip install -e '.[bench]'") from err

    print("\nkernel:")
    softmax_layouts()

    torch.manual_seed(0)
    base = vitlearn.ViT()
    models = {}
    for name, (attn, _) in VARIANTS.items():
        models[name] = vitlearn.ViT(attn_layer=attn) if attn else vitlearn.ViT()
        models[name].load_state_dict(base.state_dict())

    x = torch.randn(64, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    y = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(3))
    reference = None
    print("\nagreement with vitlearn (largest absolute difference):")
    for name, model in models.items():
        logits = model(x)
        F.cross_entropy(logits, y).backward()
        grads = [p.grad.clone() for p in model.parameters()]
        model.zero_grad(set_to_none=True)
        if reference is None:
            reference = (logits.detach(), grads)
            continue
        dl = (logits - reference[0]).abs().max().item()
        dg = max((a - b).abs().max().item() for a, b in zip(grads, reference[1]))
        print(f"  {name:15s} logits {dl:.1e}, gradients {dg:.1e}")

    steps = {name: train_step(m, VARIANTS[name][1], args.batch) for name, m in models.items()}
    lucid = LucidViT(image_size=28, patch_size=7, num_classes=10, dim=64, depth=4, heads=4, mlp_dim=128,
                     channels=1, dim_head=16)
    steps["vit-pytorch"] = train_step(lucid, None, args.batch)
    for step in steps.values():
        for _ in range(3):
            step()
    ips = interleaved_images_per_s(steps, repeats=args.repeats, steps_per_turn=args.steps,
                                   batch=args.batch, order=random.Random(0))
    print(f"\ntraining, batch {args.batch}, {args.steps} steps x {args.repeats} repeats")
    print(f"{'variant':15s} {'images/s':>9s} {'vs vit-pytorch':>15s} {'vs vitlearn':>12s}")
    for name in steps:
        to_ref = statistics.median(a / b for a, b in zip(ips[name], ips["vit-pytorch"]))
        to_base = statistics.median(a / b for a, b in zip(ips[name], ips["vitlearn"]))
        print(f"{name:15s} {statistics.median(ips[name]):9.0f} {to_ref:14.3f}x {to_base:11.3f}x")


if __name__ == "__main__":
    main()
