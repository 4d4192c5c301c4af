"""ViT.forward updates only [CLS] in the last block (the head reads nothing else).

The shortcut must give the logits and gradients of the full pass (up to float rounding), work
with every block variant and with a learner's parts that know nothing about it, and leave
forward_features, attention maps and overridden forward_features alone.
"""

import pytest
import torch
import torch.nn.functional as F
from test_parts import HandAttention
from torch import nn

import vitlearn
from vitlearn import EncoderBlock, MultiHeadSelfAttention, NoResidualBlock, PostNormBlock, TransformerEncoder

TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def full_pass(model: vitlearn.ViT, x: torch.Tensor) -> torch.Tensor:
    return model.forward_head(model.forward_features(x))


@pytest.mark.parametrize("fused", [None, True, False])
def test_attention_with_num_queries_is_the_first_rows_of_the_full_attention(fused):
    attn = MultiHeadSelfAttention(embed_dim=32, num_heads=4, fused=fused).eval()
    x = torch.randn(3, 9, 32)
    full, full_w = attn(x, need_weights=True)
    for n in (1, 4, 9):
        out, w = attn(x, need_weights=True, num_queries=n)
        assert out.shape == (3, n, 32) and w.shape == (3, 4, n, 9)
        torch.testing.assert_close(out, full[:, :n], **TOL)
        torch.testing.assert_close(w, full_w[:, :, :n], **TOL)
        torch.testing.assert_close(attn(x, num_queries=n), full[:, :n], **TOL)


@pytest.mark.parametrize("cls", [EncoderBlock, PostNormBlock, NoResidualBlock])
@pytest.mark.parametrize("options", [{}, dict(attn_layer=HandAttention)])
def test_every_block_variant_updates_only_the_first_tokens_when_asked(cls, options):
    block = cls(embed_dim=32, num_heads=4, **options).eval()
    x = torch.randn(2, 9, 32)
    full = block(x)
    for n in (1, 3):
        torch.testing.assert_close(block(x, num_queries=n), full[:, :n], **TOL)
    torch.testing.assert_close(block(x, num_queries=9), full, **TOL)


class LearnersBlock(nn.Module):
    """A block that has never heard of num_queries."""

    def __init__(self, *, embed_dim, num_heads, mlp_ratio):
        super().__init__()
        self.inner = EncoderBlock(embed_dim=embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio)

    def forward(self, x):
        return self.inner(x)


def test_encoder_with_a_learners_block_keeps_the_first_tokens_of_its_full_output():
    enc = TransformerEncoder(embed_dim=32, depth=2, num_heads=4, block_fn=LearnersBlock).eval()
    x = torch.randn(2, 5, 32)
    torch.testing.assert_close(enc(x, num_queries=1), enc(x)[:, :1], **TOL)


@pytest.mark.parametrize("parts", [{}, dict(attn_layer=HandAttention), dict(block_fn=LearnersBlock),
                                   dict(depth=1), dict(pos_embed="sincos"), dict(dropout=0.1)])
def test_forward_gives_the_logits_and_gradients_of_the_full_pass(parts):
    model = vitlearn.ViT(**parts)
    x, y = torch.randn(6, 1, 28, 28), torch.randint(0, 10, (6,))
    model.eval()
    torch.testing.assert_close(model(x), full_pass(model, x), **TOL)
    if parts.get("dropout"):
        return  # in train mode dropout draws differ between the two passes
    model.train()
    F.cross_entropy(model(x), y).backward()
    short = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    F.cross_entropy(full_pass(model, x), y).backward()
    for name, p in model.named_parameters():
        assert short[name] is not None and short[name].abs().sum() > 0, f"no gradient reaches {name}"
        torch.testing.assert_close(short[name], p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_mean_pool_runs_the_full_pass_bit_for_bit():
    model = vitlearn.ViT(pool="mean").eval()
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(model(x), full_pass(model, x))


def test_a_subclass_that_overrides_forward_features_gets_it_called():
    calls = []

    class MyViT(vitlearn.ViT):  # as notebook 00 writes it
        def forward_features(self, images):
            calls.append(images.shape)
            x = self.pos_embed(self.cls_token(self.patch_embed(images)))
            for block in self.encoder.blocks:
                x = block(x)
            return x

    model = MyViT().eval()
    x = torch.randn(2, 1, 28, 28)
    ref = vitlearn.ViT().eval()
    ref.load_state_dict(model.state_dict())
    torch.testing.assert_close(model(x), ref(x), **TOL)
    assert calls == [x.shape]


def test_forward_features_and_attention_maps_still_cover_every_token():
    model = vitlearn.ViT().eval()
    x = torch.randn(2, 1, 28, 28)
    assert model.forward_features(x).shape == (2, 17, 64)
    assert model.attention_maps(x).shape == (2, 4, 4, 17, 17)


@pytest.mark.parametrize("bad", [0, 10, -1, 1.5, True, "1"])
def test_num_queries_outside_the_tokens_is_a_clear_error(bad):
    x = torch.randn(2, 9, 32)
    for part in (MultiHeadSelfAttention(embed_dim=32, num_heads=4), EncoderBlock(embed_dim=32, num_heads=4),
                 TransformerEncoder(embed_dim=32, depth=2, num_heads=4)):
        with pytest.raises(ValueError, match="num_queries must be a whole number from 1 to the 9 tokens"):
            part(x, num_queries=bad)


def test_count_flops_counts_the_whole_architecture_not_the_shortcut():
    from torch.utils.flop_counter import FlopCounterMode

    from vitlearn.paper_models import count_flops

    model, x = vitlearn.ViT(), torch.zeros(1, 1, 28, 28)
    with FlopCounterMode(display=False) as short, torch.no_grad():
        model(x)
    # every token through every block: 4.9 MFLOPs, as notebook 09 prints it
    assert count_flops(model, x) == count_flops(nn.Sequential(LearnersViT()), x) > short.get_total_flops()
    assert round(count_flops(model, x) / 1e5) == 49


class LearnersViT(vitlearn.ViT):
    def forward(self, images):  # the full pass, no shortcut
        return self.forward_head(self.forward_features(images))
