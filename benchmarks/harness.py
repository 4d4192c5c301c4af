"""What every benchmark script shares: the machine it ran on, and the timed train step.

One reader of /proc/cpuinfo (the CPU model and its SIMD flags, which decide the kernels MKL and
oneDNN pick), one train step as ``fit`` runs it, and the interleaved timing that the
throughput tables are made of. Imported by the scripts in benchmarks/ (on ``sys.path`` when
they run as scripts); not part of the library.
"""

from __future__ import annotations

import platform
import random
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from vitlearn.training import make_optimizer

SIMD_PREFIXES = ("avx", "fma", "amx")


def _cpuinfo(key: str) -> str | None:
    """The first ``key : value`` line of /proc/cpuinfo (None where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags() -> str:
    """The CPU's SIMD flags (avx*, fma, amx*), sorted; "n/a" where /proc/cpuinfo is missing."""
    flags = (_cpuinfo("flags") or "").split()
    return " ".join(sorted(f for f in flags if f.startswith(SIMD_PREFIXES))) or "n/a"


def machine() -> str:
    """CPU model, threads, torch version and SIMD flags: the line every result is stamped with."""
    cpu = _cpuinfo("model name") or platform.processor() or platform.machine()
    return (f"{cpu} ({platform.machine()}), {torch.get_num_threads()} threads, torch {torch.__version__}, "
            f"flags: {cpu_flags()}")


def header() -> str:
    """The first line of a benchmark's output: when, and on what."""
    return f"# {time.strftime('%Y-%m-%d %H:%M')}  {machine()}"


def timed(fn: Callable[[], None], iters: int) -> float:
    """Seconds for ``iters`` calls of ``fn``."""
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    return time.perf_counter() - t


def train_step_fn(name: str, model: nn.Module, batch: int) -> Callable[[], None]:
    """One optimizer step on a fixed random batch of 28x28 digits. vitlearn models get fit's
    optimizer (``make_optimizer``: fused AdamW) unless ``name`` says ``torch-AdamW``; the
    others get torch's default AdamW."""
    if name.startswith("vitlearn") and "torch-AdamW" not in name:
        opt = make_optimizer(model, lr=1e-3, weight_decay=0.05)  # what vitlearn.fit uses (fused)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)
    model.train()

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def interleaved_images_per_s(steps: dict, *, repeats: int, steps_per_turn: int, batch: int,
                             order: random.Random) -> dict:
    """images/s of each train step, ``repeats`` times: short turns of ``steps_per_turn`` steps
    in an order shuffled by ``order`` on every repeat.

    The shared machine drifts between fast and slow phases (+-30% over seconds), so each repeat
    must give every model the same conditions; ratios are then taken per repeat.
    """
    ips: dict = {name: [] for name in steps}
    for _ in range(repeats):
        names = list(steps)
        order.shuffle(names)
        for name in names:
            ips[name].append(steps_per_turn * batch / timed(steps[name], steps_per_turn))
    return ips


def train_step_flops(model: nn.Module, batch: int) -> int:
    """FLOPs of one training step (forward and backward of the cross-entropy loss, as
    ``model(x)`` runs: vitlearn's [CLS]-only last block included) on a batch of 28x28 digits,
    counted by ``FlopCounterMode``. Not the forward-pass count of the paper's models: that is
    :func:`vitlearn.paper_models.count_flops`."""
    x = torch.randn(batch, 1, 28, 28)
    with FlopCounterMode(display=False) as fc:
        F.cross_entropy(model(x), torch.zeros(batch, dtype=torch.long)).backward()
    model.zero_grad(set_to_none=True)
    return fc.get_total_flops()


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of the best of ``repeats`` timings of an n x n fp32 matmul: this CPU's ceiling."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = min(timed(lambda: torch.mm(a, b), 3) / 3 for _ in range(repeats))
    return 2 * n**3 / best / 1e9
