"""Checkpoints: weights, configuration and training state in one file that loads without
unpickling code (``torch.load(..., weights_only=True)``), so opening a checkpoint someone
sent you cannot run their code."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .model import ViT

__all__ = ["save", "load", "load_checkpoint", "check_writable", "checkpoint_path", "CheckpointError",
           "FORMAT", "shipped_checkpoint", "SHIPPED"]

FORMAT = "vitlearn.checkpoint"
VERSION = 1

# Checkpoints that ship inside the package (vitlearn/weights/), each with the command that
# trained it; its file's sha256 is recorded in BENCHMARKS.md.
SHIPPED = {
    # the lessons' ViT on a 7x7 grid of 4x4-pixel patches, trained for the paper's figure 7
    # (04, 05, 08): python benchmarks/figure7.py --train
    "mnist-7x7": "mnist-7x7.pt",
}


def shipped_checkpoint(name: str) -> Path:
    """The path of a checkpoint that ships with vitlearn: ``vitlearn.load(shipped_checkpoint(
    "mnist-7x7"))``."""
    if name not in SHIPPED:
        raise KeyError(f"no shipped checkpoint {name!r}; the shipped ones are {sorted(SHIPPED)}")
    path = Path(__file__).parent / "weights" / SHIPPED[name]
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from this installation of vitlearn; reinstall it "
                                f"(pip install --force-reinstall vitlearn)")
    return path


class CheckpointError(ValueError):
    """The file is not a readable vitlearn checkpoint."""


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)  # DistributedDataParallel keeps the model in .module


def _digest(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over the weights: the zip container checks no CRCs on read, so a flipped byte
    inside a tensor would otherwise load silently as a different model."""
    h = hashlib.sha256()
    for name, tensor in state_dict.items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def checkpoint_path(pattern: str | os.PathLike, epoch: int) -> Path:
    """The file for ``epoch``: ``"run-{epoch}.pt"`` -> run-3.pt; a plain path is used as is."""
    try:
        return Path(str(pattern).format(epoch=epoch))
    except (KeyError, IndexError, ValueError) as err:
        raise ValueError(f"checkpoint={str(pattern)!r}: the only placeholder a checkpoint path may "
                         f"hold is {{epoch}} (e.g. 'run-{{epoch}}.pt'); got {type(err).__name__}: "
                         f"{err}") from None


def check_writable(pattern: str | os.PathLike) -> Path:
    """Make sure a checkpoint can be written at ``pattern`` *before* training: create its folder
    and a scratch file in it, so a typo or a read-only folder fails now, not after an epoch."""
    path = checkpoint_path(pattern, epoch=1)
    if path.is_dir():
        raise IsADirectoryError(f"checkpoint={str(pattern)!r} is a folder; give a file name such "
                                f"as {str(path / 'vit.pt')!r}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".test"):
            pass
    except OSError as err:
        raise PermissionError(f"cannot write the checkpoint {str(path)!r} ({type(err).__name__}: "
                              f"{err.strerror or err}); choose a path in a folder you can write to"
                              ) from None
    return path


def save(model: nn.Module, path: str | os.PathLike, *, optimizer=None, scheduler=None,
         epoch: int | None = None, history: dict | None = None, train_config: dict | None = None,
         dataset: dict | None = None) -> Path:
    """Write a checkpoint atomically (a crash mid-write never leaves a half file at ``path``)."""
    model = _unwrap(model)
    if not hasattr(model, "config"):
        raise TypeError("save() stores a vitlearn.ViT (it needs model.config to rebuild the "
                        f"model); got {type(model).__name__}")
    state = {
        "format": FORMAT, "version": VERSION,
        "config": _config_dict(model.config),
        "custom_layers": dict(getattr(model, "custom_layers", {})),
        "model": model.state_dict(),
        "sha256": _digest(model.state_dict()),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "epoch": epoch, "history": history, "train_config": train_config, "dataset": dataset,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def _config_dict(config) -> dict:
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                    ) -> dict[str, Any]:
    """The checkpoint's contents as a dict, checked to be a vitlearn checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train one with `python -m vitlearn "
                                f"train --output {path}`")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError,
            OSError, KeyError, IndexError) as err:
        raise CheckpointError(f"{path} is not a readable vitlearn checkpoint (corrupt, truncated "
                              f"or another format): {type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''}. Re-save it "
                              f"with vitlearn.save() or retrain.") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a PyTorch file but not a vitlearn checkpoint (no "
                              f"'format': {FORMAT!r} entry); save models with vitlearn.save()")
    if "sha256" in state and _digest(state.get("model", {})) != state["sha256"]:
        raise CheckpointError(f"{path} is not a readable vitlearn checkpoint: its weights do not "
                              f"match their stored checksum (the file is corrupt); retrain or "
                              f"restore it from a good copy")
    if state.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} was written by a newer vitlearn (checkpoint version "
                              f"{state['version']}); upgrade vitlearn to load it")
    return state


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu",
         **layers) -> nn.Module:
    """Rebuild the ViT stored in ``path`` and load its weights (in eval mode).

    A model built with a custom part (``attn_layer=MyAttention``) is rebuilt only when the
    same part is passed again: ``load(path, attn_layer=MyAttention)``; code is never
    unpickled from the file.
    """
    state = load_checkpoint(path, map_location)
    missing = sorted(set(state.get("custom_layers") or {}) - set(layers))
    if missing:
        names = ", ".join(f"{k}={state['custom_layers'][k]}" for k in missing)
        raise CheckpointError(f"{path} was saved from a model with custom parts ({names}); pass "
                              f"them again: vitlearn.load(path, {', '.join(f'{k}=...' for k in missing)})")
    model = ViT.from_config(state["config"], **layers)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise CheckpointError(f"the weights in {path} do not fit its configuration: "
                              f"{str(err).splitlines()[0]}") from None
    return model.to(map_location).eval()
