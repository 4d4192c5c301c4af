"""The paper's models (Table 1: ViT-B/16, L/16, H/14) as vitlearn ViTs, and their cost.

Notebook 09 builds them on the ``meta`` device (shapes, no memory) to count parameters
and forward-pass FLOPs next to the numbers printed in the paper.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .model import ViT

__all__ = ["PAPER_MODELS", "paper_vit", "count_flops"]

#: Table 1 of the paper (layers, hidden size D, MLP size, heads; "Params" as printed there),
#: with the patch size of the name (ViT-L/16: Large, 16x16 patches).
PAPER_MODELS = {
    "ViT-B/16": dict(depth=12, embed_dim=768, mlp_dim=3072, num_heads=12, patch_size=16, paper="86M"),
    "ViT-L/16": dict(depth=24, embed_dim=1024, mlp_dim=4096, num_heads=16, patch_size=16, paper="307M"),
    "ViT-H/14": dict(depth=32, embed_dim=1280, mlp_dim=5120, num_heads=16, patch_size=14, paper="632M"),
}


def paper_vit(name: str, *, img_size: int = 224, num_classes: int = 1000, device="meta") -> ViT:
    """One of the paper's models as a :class:`vitlearn.ViT` (3 channels, 224 px, 1000 classes),
    on the ``meta`` device by default: every shape, no memory, no weights (ViT-H/14 would need
    2.5 GB), enough to count parameters and FLOPs."""
    if name not in PAPER_MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {list(PAPER_MODELS)}")
    m = PAPER_MODELS[name]
    with torch.device(device):
        return ViT(img_size=img_size, patch_size=m["patch_size"], in_chans=3, num_classes=num_classes,
                   embed_dim=m["embed_dim"], depth=m["depth"], num_heads=m["num_heads"],
                   mlp_ratio=m["mlp_dim"] / m["embed_dim"])


def count_flops(model: nn.Module, images: torch.Tensor) -> int:
    """Floating-point operations of the architecture on ``images``: every token through every
    block, as the paper and timm count them, counted by PyTorch's
    ``torch.utils.flop_counter.FlopCounterMode`` (matrix products only: a multiply-add counts 2;
    the ``GMACs`` timm and fvcore print are half this). A model with ``forward_features`` and
    ``forward_head`` (vitlearn's, timm's) is counted through those: ``vitlearn.ViT.forward``
    itself skips the last block's updates of the tokens the head never reads, so it runs a
    little less than this. Works on ``meta`` tensors, so the paper's largest models are counted
    without running them."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        if hasattr(model, "forward_features") and hasattr(model, "forward_head"):
            model.forward_head(model.forward_features(images))
        else:
            model(images)
    return int(counter.get_total_flops())
