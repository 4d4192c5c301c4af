"""Training and evaluation: AdamW, warm-up + cosine schedule, label smoothing, gradient
clipping, random-shift augmentation, exact resume, and DistributedDataParallel under torchrun.

Reproducibility: every epoch draws its shuffling, augmentation and dropout from generators
seeded by (seed, epoch), so a rerun on the same machine is bit-identical and a run resumed
from the checkpoint of epoch k continues exactly as the uninterrupted run did.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import checkpoint as ckpt
from .data import ImageDataset, iterate_batches, load_dataset, normalize, random_shift

__all__ = ["fit", "evaluate", "History", "Evaluation", "default_device", "warmup_cosine", "make_optimizer"]


@dataclass
class History:
    """Per-epoch record of a run (plain lists, so it is stored in checkpoints as is)."""

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    @property
    def final_test_acc(self) -> float:
        return self.test_acc[-1] if self.test_acc else float("nan")

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        rows = [f"epoch {e}: loss {loss:.3f}, train acc {tr:.2%}, test acc {te:.2%}, {s:.1f} s"
                for e, loss, tr, te, s in zip(self.epoch, self.train_loss, self.train_acc,
                                              self.test_acc, self.seconds)]
        return "\n".join(rows)


@dataclass
class Evaluation:
    accuracy: float
    loss: float
    predictions: torch.Tensor  # [N] predicted class per image
    labels: torch.Tensor       # [N]

    def __str__(self) -> str:
        return f"accuracy {self.accuracy:.2%} on {len(self.labels)} images (loss {self.loss:.4f})"


def default_device(device: str | torch.device | None = None) -> torch.device:
    """The given device, else $VITLEARN_DEVICE, else cuda, then mps, then cpu."""
    device = device or os.environ.get("VITLEARN_DEVICE")
    if device:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, min_factor: float = 0.0) -> float:
    """Learning-rate factor: linear warm-up from 0 to 1, then a cosine decay to ``min_factor``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _dataset_info(data: ImageDataset) -> dict:
    return {"name": data.name, "classes": list(data.classes), "mean": data.mean, "std": data.std}


@torch.no_grad()
def evaluate(model: nn.Module, data: ImageDataset | None = None, *, dataset: str = "mnist",
             data_dir=None, batch_size: int = 1000, device=None) -> Evaluation:
    """Accuracy and mean cross-entropy of ``model`` on ``data`` (default: the test set)."""
    data = data if data is not None else load_dataset(dataset, train=False, data_dir=data_dir)
    device = default_device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    preds, total_loss = [], 0.0
    try:
        for images, labels in iterate_batches(data.images, data.labels, batch_size):
            x = normalize(images.to(device), data.mean, data.std)
            logits = model(x)
            total_loss += F.cross_entropy(logits, labels.to(device), reduction="sum").item()
            preds.append(logits.argmax(dim=-1).cpu())
    finally:
        model.train(was_training)
    predictions = torch.cat(preds)
    accuracy = (predictions == data.labels).float().mean().item()
    return Evaluation(accuracy, total_loss / len(data), predictions, data.labels)


def _distributed() -> tuple[int, int]:
    """(rank, world size); starts the process group when launched by torchrun."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def make_optimizer(model: nn.Module, *, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """The AdamW that ``fit`` uses.

    Weight decay on matrices only: decaying LayerNorm gains, biases and the [CLS]/position
    vectors towards zero only hurts. ``fused=True`` updates every parameter in one kernel
    instead of a dozen small ops per tensor (a 4-7% faster train step for the default ViT on
    2 CPU cores: rows vitlearn vs vitlearn/torch-AdamW of ``python benchmarks/throughput.py``).
    """
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2
             and p.shape[:2] != (1, 1) and not (p.ndim == 3 and p.shape[0] == 1)]
    decay_ids = {id(p) for p in decay}
    no_decay = [p for p in model.parameters() if p.requires_grad and id(p) not in decay_ids]
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    try:
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
        return torch.optim.AdamW(groups, lr=lr)


def fit(model: nn.Module, train: ImageDataset | None = None, test: ImageDataset | None = None, *,
        dataset: str = "mnist", data_dir=None, epochs: int = 3, batch_size: int = 128,
        lr: float = 2e-3, weight_decay: float = 0.05, warmup_epochs: float = 0.5,
        min_lr_factor: float = 0.01, label_smoothing: float = 0.1, clip_grad: float | None = 1.0,
        max_shift: int = 2, seed: int = 0, progress: bool = True, device=None,
        checkpoint: str | os.PathLike | None = None, resume: str | os.PathLike | None = None,
        lr_schedule: Callable[[int, int, int], float] | None = None,
        compile: bool = False) -> History:
    """Train ``model`` on ``train`` (default: the full training set of ``dataset``) and
    evaluate on ``test`` (default: its test set) after every epoch.

    ``checkpoint``: path written after every epoch (``"run-{epoch}.pt"`` keeps one per epoch).
    ``resume``: a checkpoint of this same run to continue from; the result equals the
    uninterrupted run. ``lr_schedule(step, total_steps, warmup_steps) -> factor`` replaces
    the warm-up + cosine schedule (a learner's own, say). Under ``torchrun`` the model is
    wrapped in DistributedDataParallel and each rank trains on its own shard of every batch
    (``batch_size`` is the global batch). ``compile=True`` trains through
    ``torch.compile(model)``: the first step compiles (tens of seconds; on a CPU it needs a C++
    compiler), later steps fuse the small ops; it pays off in long runs
    (``python benchmarks/throughput.py --compile``). Evaluation runs the model uncompiled.
    """
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"need epochs >= 1, batch_size >= 1 and lr > 0; got epochs={epochs}, "
                         f"batch_size={batch_size}, lr={lr}")
    train = train if train is not None else load_dataset(dataset, train=True, data_dir=data_dir)
    test = test if test is not None else load_dataset(train.name, train=False, data_dir=data_dir)
    rank, world = _distributed()
    if batch_size % world:
        raise ValueError(f"batch_size={batch_size} must be divisible by the {world} processes")
    device = default_device(device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
    model.to(device)
    train_config = dict(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                        warmup_epochs=warmup_epochs, min_lr_factor=min_lr_factor,
                        label_smoothing=label_smoothing, clip_grad=clip_grad,
                        max_shift=max_shift, seed=seed, dataset=train.name, train_size=len(train))

    optimizer = make_optimizer(model, lr=lr, weight_decay=weight_decay)
    steps_per_epoch = len(train) // batch_size  # drop_last: every step sees a full batch
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size={batch_size} is larger than the {len(train)} training images")
    total, warmup = epochs * steps_per_epoch, max(1, round(warmup_epochs * steps_per_epoch))
    if lr_schedule is None:
        def lr_schedule(step, total_steps, warmup_steps):
            return warmup_cosine(step, total_steps, warmup_steps, min_lr_factor)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_schedule(s, total, warmup))

    history, start_epoch = History(), 1
    if resume is not None:
        state = ckpt.load_checkpoint(resume, map_location=device)
        saved = {k: v for k, v in (state.get("train_config") or {}).items()}
        diff = {k: (saved.get(k), v) for k, v in train_config.items() if saved.get(k) != v}
        if diff:
            raise ValueError(f"cannot resume from {resume}: it was trained with different "
                             f"settings (saved, now): {diff}; pass the same arguments as that run")
        ckpt._unwrap(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history = History(**state["history"])
        start_epoch = state["epoch"] + 1

    net = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if compile:
        net = torch.compile(net)
    images, labels = train.images, train.labels
    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm
        # At most one redraw a second: in Jupyter every redraw is two widget messages, and a
        # runner that reads them only after the cell ends (nbval) loses the cell's output once
        # a long run overflows the kernel's message buffers (8,000-9,500 messages on the
        # development machine: python tools/iopub_capacity.py).
        bar = tqdm(total=total, initial=(start_epoch - 1) * steps_per_epoch, unit="step",
                   desc=f"epoch {start_epoch}/{epochs}", mininterval=1.0)
    try:
        for epoch in range(start_epoch, epochs + 1):
            t0 = time.perf_counter()
            # Same shuffle on every rank (seeded by epoch); each rank keeps its slice of a batch.
            shuffle_gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
            aug_gen = torch.Generator().manual_seed(seed * 100_003 + epoch + 7919 * (rank + 1))
            torch.manual_seed(seed * 100_003 + epoch + 104_729 * (rank + 1))  # dropout
            net.train()
            sums = torch.zeros(3, dtype=torch.float64)  # loss, correct, count
            if bar is not None:
                bar.set_description(f"epoch {epoch}/{epochs}")
            for xb, yb in iterate_batches(images, labels, batch_size, shuffle=True,
                                          generator=shuffle_gen, drop_last=True):
                xb, yb = xb[rank::world], yb[rank::world]
                x = normalize(xb, train.mean, train.std)
                x = random_shift(x, max_shift, aug_gen).to(device, non_blocking=True)
                y = yb.to(device, non_blocking=True)
                logits = net(x)
                loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if clip_grad:
                    nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
                optimizer.step()
                scheduler.step()
                with torch.no_grad():
                    sums += torch.tensor([loss.item() * len(y),
                                          (logits.argmax(-1) == y).sum().item(), len(y)],
                                         dtype=torch.float64)
                if bar is not None:
                    bar.update(1)
            if world > 1:
                import torch.distributed as dist
                dist.all_reduce(sums)
            result = evaluate(model, test, device=device)
            history.epoch.append(epoch)
            history.train_loss.append(sums[0].item() / sums[2].item())
            history.train_acc.append(sums[1].item() / sums[2].item())
            history.test_acc.append(result.accuracy)
            history.lr.append(optimizer.param_groups[0]["lr"])
            history.seconds.append(time.perf_counter() - t0)
            if bar is not None:
                bar.set_postfix(loss=f"{history.train_loss[-1]:.3f}",
                                test_acc=f"{result.accuracy:.2%}")
            if checkpoint is not None and rank == 0:
                ckpt.save(model, Path(str(checkpoint).format(epoch=epoch)), optimizer=optimizer,
                          scheduler=scheduler, epoch=epoch, history=history.to_dict(),
                          train_config=train_config, dataset=_dataset_info(train))
    finally:
        if bar is not None:
            bar.close()
    return history
