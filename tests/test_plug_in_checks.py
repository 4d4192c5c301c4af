"""A learner's part is checked where it plugs in (issue 19, part 2) and the plug-in rules
are one table (issue 22, item 2): output shapes, instance vs class, function vs class, the
image axis advice, record_attention with a block that asks for weights itself."""

import functools
import inspect

import pytest
import torch
from torch import nn

import vitlearn
from vitlearn import MultiHeadSelfAttention, ViT, record_attention, scaled_dot_product_attention
from vitlearn.contract import PARTS
from vitlearn.encoder import EncoderBlock
from vitlearn.head import ClassificationHead
from vitlearn.patches import PatchEmbedding
from vitlearn.tokens import ClassToken, PositionEmbedding

SMALL = dict(embed_dim=32, depth=2, num_heads=2)
X = torch.randn(3, 1, 28, 28)


class FirstTokenAttention(MultiHeadSelfAttention):
    """Returns [B, 1, D]: the residual add would broadcast it over every token."""

    def forward(self, x, need_weights=False, *, num_queries=None):
        return super().forward(x)[:, :1]


class TallHead(ClassificationHead):
    def forward(self, x):
        return super().forward(x)[:, None]  # [B, 1, K]


class PooledEmbedding(PatchEmbedding):
    def forward(self, images):
        return super().forward(images).mean(1)  # [B, D]


class NarrowEmbedding(nn.Module):
    def __init__(self, *, img_size, patch_size, in_chans, embed_dim):
        super().__init__()
        self.inner = PatchEmbedding(img_size=img_size, patch_size=patch_size, in_chans=in_chans,
                                    embed_dim=embed_dim // 2)

    def forward(self, images):
        return self.inner(images)  # [B, N, D/2]


class ForgetfulToken(ClassToken):
    def forward(self, x):
        return x  # no token prepended


class TruncatingPositions(PositionEmbedding):
    def forward(self, x):
        return super().forward(x)[:, 1:]


class ShortBlock(EncoderBlock):
    def forward(self, x, *, num_queries=None):
        return super().forward(x)[:, :2]


@pytest.mark.parametrize("part, match", [
    (dict(attn_layer=FirstTokenAttention),
     r"your attn_layer \(FirstTokenAttention\) returned \[3, 1, 32\]; an attention returns one vector "
     r"per token .*: \[B, N, D\] = \[3, 17, 32\]"),
    (dict(head_layer=TallHead),
     r"your head_layer \(TallHead\) returned \[3, 1, 10\]; .* \[B, num_classes\] = \[3, 10\]"),
    (dict(embed_layer=PooledEmbedding),
     r"your embed_layer \(PooledEmbedding\) returned \[3, 32\]; .*\[B, N, D\] = \[3, 16, 32\]"),
    (dict(embed_layer=NarrowEmbedding), r"returned \[3, 16, 16\]; .*\[B, N, D\] = \[3, 16, 32\]"),
    (dict(cls_token_layer=ForgetfulToken),
     r"cls_token_layer \(ForgetfulToken\) returned \[3, 16, 32\]; .*\[B, 1\+N, D\] = \[3, 17, 32\]"),
    (dict(pos_embed_layer=TruncatingPositions),
     r"pos_embed_layer .* returned \[3, 16, 32\]; .*\[B, T, D\] = \[3, 17, 32\]"),
    (dict(block_fn=ShortBlock),
     r"your block_fn \(ShortBlock\) returned \[3, 2, 32\]; a block .*= \[3, 17, 32\]"),
])
def test_a_part_with_the_wrong_output_shape_is_named_with_both_shapes(part, match):
    model = ViT(**SMALL, **part)
    with pytest.raises(ValueError, match=match):
        model(X)
    with pytest.raises(ValueError, match=match):  # not marked as checked after a failure
        model(X)


def test_shapes_are_checked_once_per_image_shape(monkeypatch):
    import vitlearn.model as model_module

    calls = []
    real = model_module.checking_part_outputs
    monkeypatch.setattr(model_module, "checking_part_outputs",
                        lambda parts: calls.append(1) or real(parts))
    model = ViT(**SMALL)
    for batch in (3, 5, 3):  # the batch size does not matter
        model(torch.randn(batch, 1, 28, 28))
    assert len(calls) == 1
    model.set_img_size(42)
    model(torch.randn(2, 1, 42, 42))
    model(torch.randn(2, 1, 42, 42))
    assert len(calls) == 2
    model.reset_classifier(4)
    assert model(torch.randn(2, 1, 42, 42)).shape == (2, 4) and len(calls) == 3
    assert not any(m._forward_hooks for m in model.modules())  # the hooks are gone


def test_checks_leave_the_outputs_alone():
    model = ViT(**SMALL).eval()
    first = model(X)  # checked
    assert torch.equal(first, model(X))  # unchecked


def test_an_instance_where_a_class_is_wanted():
    with pytest.raises(TypeError, match=r"attn_layer was given an instance, "
                                        r"MultiHeadSelfAttention\(\.\.\.\).*"
                                        r"wants the class MultiHeadSelfAttention itself"):
        ViT(attn_layer=MultiHeadSelfAttention(embed_dim=64, num_heads=4))
    with pytest.raises(TypeError, match=r"head_layer was given an instance, Linear"):
        ViT(head_layer=nn.Linear(64, 10))
    with pytest.raises(TypeError, match=r"block_fn was given 'pre' \(str\); it wants a module class"):
        ViT(block_fn="pre")


def test_a_function_where_a_module_class_is_wanted():
    with pytest.raises(TypeError, match=r"attn_layer=.*scaled_dot_product_attention is a function of "
                                        r"\(dropout_p, k, q, v\), which computes; "
                                        r"attn_layer wants a module class"):
        ViT(attn_layer=scaled_dot_product_attention)

    def not_a_module(*, embed_dim, num_classes):
        return torch.zeros(embed_dim, num_classes)

    with pytest.raises(TypeError, match=r"head_layer=.*not_a_module returned Tensor, not an nn.Module"):
        ViT(head_layer=not_a_module)
    # a function that builds a module, and a partial of a class, are fine
    ViT(head_layer=lambda *, embed_dim, num_classes: nn.Linear(embed_dim, num_classes))
    ViT(attn_layer=functools.partial(MultiHeadSelfAttention, qkv_bias=False), **SMALL)


@pytest.mark.parametrize("shape, in_chans, match", [
    ((8, 28, 28), 1, r"\[B, H, W\] = \[8, 28, 28\]: add the channel axis with images.unsqueeze\(1\)"),
    ((1, 28, 28), 1, r"one image \[C, H, W\].*images.unsqueeze\(0\)"),
    ((3, 28, 28), 3, r"one image \[C, H, W\] = \[3, 28, 28\]: add the batch axis with images.unsqueeze\(0\)"),
])
def test_the_image_advice_names_the_missing_axis(shape, in_chans, match):
    with pytest.raises(ValueError, match=match):
        ViT(in_chans=in_chans, **SMALL)(torch.randn(*shape))


class WeightAwareBlock(EncoderBlock):
    """A learner's block that asks its attention for the weights itself."""

    def forward(self, x, *, num_queries=None):
        out, weights = self.attn(self.norm1(x), need_weights=True)
        self.seen = weights
        x = x + out
        return x + self.mlp(self.norm2(x))


def test_record_attention_returns_what_the_part_itself_asked_for():
    torch.manual_seed(0)
    model = ViT(block_fn=WeightAwareBlock, **SMALL).eval()
    plain = model.forward_features(X)
    with record_attention(model.encoder) as maps:
        recorded = model.forward_features(X)
    assert torch.equal(plain, recorded)
    assert len(maps) == 2 and torch.equal(maps[-1], model.encoder.blocks[-1].seen)
    # positional need_weights too, and ours as usual
    attn = MultiHeadSelfAttention(embed_dim=32, num_heads=2)
    tokens = torch.randn(2, 5, 32)
    with record_attention(attn) as maps:
        out, w = attn(tokens, True)
        alone = attn(tokens)
    assert torch.equal(out, alone) and len(maps) == 2 and w.shape == (2, 2, 5, 5)


@pytest.mark.parametrize("role", list(PARTS))
def test_the_table_names_the_keywords_each_part_is_built_with(role):
    seen = {}

    def spy(factory):
        def build(**kwargs):
            seen.update(kwargs)
            return factory(**kwargs)
        return build

    default = {"embed_layer": PatchEmbedding, "cls_token_layer": ClassToken,
               "pos_embed_layer": PositionEmbedding, "attn_layer": MultiHeadSelfAttention,
               "block_fn": EncoderBlock, "head_layer": ClassificationHead}[role]
    ViT(**{role: spy(default)}, **SMALL)
    assert set(seen) == set(PARTS[role].keywords)  # options only when set
    seen.clear()
    ViT(**{role: spy(default)}, dropout=0.1, attn_dropout=0.1, **SMALL)
    if role in ("attn_layer", "block_fn"):  # (block_fn also gets attn_layer= when one is given)
        assert set(seen) == set(PARTS[role].keywords) | set(PARTS[role].options) - {"attn_layer"}


def test_vit_and_fit_name_exactly_their_dataclass_fields():
    import dataclasses

    from vitlearn.training import TrainConfig

    vit = [p for p in inspect.signature(ViT.__init__).parameters if p != "self"]
    assert vit == [f.name for f in dataclasses.fields(vitlearn.ViTConfig)] + list(PARTS)
    fit = inspect.signature(vitlearn.fit).parameters
    settings = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in ("dataset", "train_size")]
    not_settings = {"model", "train", "test", "dataset", "data_dir", "progress", "device",
                    "checkpoint", "resume", "lr_schedule", "compile"}
    assert [p for p in fit if p not in not_settings] == settings
    for name in settings:
        assert fit[name].default == getattr(TrainConfig, name), name


def test_the_cli_defaults_are_train_configs():
    from vitlearn.cli import build_parser
    from vitlearn.training import TrainConfig

    args = build_parser().parse_args(["train"])
    for name in ("epochs", "batch_size", "lr", "optimizer", "seed"):
        assert getattr(args, name) == getattr(TrainConfig, name), name
