"""Step 8: the classification head on the pooled ([CLS]) embedding.

The head returns *logits*. Probabilities are ``softmax(logits)``, computed only when
someone asks (``predict_proba``): ``F.cross_entropy`` takes logits because log-softmax
fused with the loss is exact where softmax-then-log underflows.

Two heads, as in the paper (section 3.1, "Model overview"): the classification head is
"implemented by a MLP with one hidden layer at pre-training time and by a single linear
layer at fine-tuning time".

* :class:`ClassificationHead`: LayerNorm + Linear, the fine-tuning head (and the default);
* :class:`MLPHead`: LayerNorm + Linear + tanh + Linear, the pre-training head (the hidden
  layer is what the paper's code calls the "pre-logits", timm's ``representation_size``).

Both take the same keywords (``embed_dim=``, ``num_classes=``), so either plugs into
``ViT(head_layer=...)``; ``ViT.reset_classifier`` swaps a trained model's head for a new one.
"""

from __future__ import annotations

import torch
from torch import nn

from .contract import check_positive_int

__all__ = ["ClassificationHead", "MLPHead"]


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


class MLPHead(nn.Module):
    """The paper's pre-training head: LayerNorm + Linear(D, hidden) + tanh + Linear(hidden,
    classes): [B, D] -> logits [B, num_classes]. ``hidden_dim`` defaults to ``embed_dim``
    (the paper's ViT-B/L/H pre-train with a hidden layer as wide as D)."""

    def __init__(self, *, embed_dim: int, num_classes: int, hidden_dim: int | None = None,
                 norm_eps: float = 1e-6):
        super().__init__()
        hidden_dim = embed_dim if hidden_dim is None else hidden_dim
        check_positive_int("MLPHead", embed_dim=embed_dim, num_classes=num_classes,
                           hidden_dim=hidden_dim)
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)
        self.pre_logits = nn.Linear(embed_dim, hidden_dim)
        self.act = nn.Tanh()
        self.fc = nn.Linear(hidden_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(self.pre_logits(self.norm(x))))

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x).softmax(dim=-1)
