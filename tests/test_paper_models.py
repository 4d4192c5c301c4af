"""vitlearn.paper_models: the paper's Table 1 as vitlearn ViTs on the meta device, and the
forward-pass FLOPs of notebook 09."""

import pytest
import torch

import vitlearn
from vitlearn.paper_models import PAPER_MODELS, count_flops, paper_vit


def test_the_paper_models_have_timms_parameter_counts_without_memory():
    model = paper_vit("ViT-B/16")
    assert isinstance(model, vitlearn.ViT) and next(model.parameters()).is_meta
    assert sum(p.numel() for p in model.parameters()) == 86_567_656  # timm's vit_base_patch16_224
    assert [paper_vit(name).config.depth for name in PAPER_MODELS] == [12, 24, 32]


def test_forward_flops_are_twice_the_multiply_adds_of_the_matrix_products():
    model = vitlearn.ViT(depth=1, embed_dim=8, num_heads=2, mlp_ratio=2.0, num_classes=3)
    x = torch.zeros(1, 1, 28, 28)
    n, d, p = 17, 8, 49                                   # tokens (1 + 16 patches), width, pixels per patch
    by_hand = 2 * (16 * p * d                             # patch projection
                   + n * d * 3 * d + 2 * n * n * d        # qkv, scores, weighted values
                   + n * d * d                            # attention output projection
                   + 2 * n * d * 2 * d                    # MLP
                   + d * 3)                               # head
    assert count_flops(model, x) == by_hand


def test_unknown_model_names_the_choices():
    with pytest.raises(ValueError, match="ViT-B/16"):
        paper_vit("ViT-S/16")
