"""Step 8: the classification head on the pooled ([CLS]) embedding.

The head returns *logits*. Probabilities are ``softmax(logits)``, computed only when
someone asks (``predict_proba``): ``F.cross_entropy`` takes logits because log-softmax
fused with the loss is exact where softmax-then-log underflows.
"""

from __future__ import annotations

import torch
from torch import nn

from .contract import check_positive_int

__all__ = ["ClassificationHead"]


class ClassificationHead(nn.Module):
    """LayerNorm + Linear: [B, D] -> logits [B, num_classes]."""

    def __init__(self, *, embed_dim: int, num_classes: int, norm_eps: float = 1e-6):
        super().__init__()
        check_positive_int("ClassificationHead", embed_dim=embed_dim, num_classes=num_classes)
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)
        self.fc = nn.Linear(embed_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(x))

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x).softmax(dim=-1)
