"""Each ViT part against a torch built-in with copied weights, plus shapes and gradients."""

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

import vitlearn
from conftest import ROOT
from vitlearn import (
    MLP,
    ClassificationHead,
    ClassToken,
    EncoderBlock,
    MultiHeadSelfAttention,
    PatchEmbedding,
    PositionEmbedding,
    TransformerEncoder,
    patchify,
    record_attention,
    resample_position_embedding,
    scaled_dot_product_attention,
    sincos_2d_position_embedding,
    unpatchify,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# -- steps 2-4: patches ---------------------------------------------------------------------

@pytest.mark.parametrize("p,c,size", [(7, 1, 28), (4, 3, 32), (14, 2, 28), (1, 1, 5)])
def test_patchify_matches_reshape_permute_and_round_trips(p, c, size):
    x = torch.randn(3, c, size, size)
    g = size // p
    by_hand = x.reshape(3, c, g, p, g, p).permute(0, 2, 4, 3, 5, 1).reshape(3, g * g, p * p * c)
    out = patchify(x, p)
    assert out.shape == (3, g * g, p * p * c)
    torch.testing.assert_close(out, by_hand, rtol=0, atol=0)
    torch.testing.assert_close(unpatchify(out, p, size, c), x, rtol=0, atol=0)


def test_patch_order_is_row_major_and_pixels_p1_p2_c():
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)
    out = patchify(x, 2)
    # patch 1 is the top-right 2x2 block; its first pixel is (row 0, col 2), channel 0 then 1
    assert out[0, 1, :2].tolist() == [x[0, 0, 0, 2].item(), x[0, 1, 0, 2].item()]
    assert out[0, 2, 0].item() == x[0, 0, 2, 0].item()  # patch 2 starts the second patch row


def test_patch_embedding_equals_conv2d_both_ways():
    emb = PatchEmbedding(img_size=28, patch_size=7, in_chans=3, embed_dim=32)
    conv = emb.to_conv()
    x = torch.randn(4, 3, 28, 28)
    ref = rearrange(conv(x), "b d h w -> b (h w) d")
    torch.testing.assert_close(emb(x), ref, rtol=1e-5, atol=1e-5)
    other = nn.Conv2d(3, 32, kernel_size=7, stride=7)
    emb.load_conv(other)
    torch.testing.assert_close(emb(x), rearrange(other(x), "b d h w -> b (h w) d"), rtol=1e-5, atol=1e-5)


# -- steps 5-6: tokens ----------------------------------------------------------------------

def test_class_token_is_prepended_and_shared():
    tok = ClassToken(embed_dim=8)
    x = torch.randn(3, 5, 8)
    out = tok(x)
    assert out.shape == (3, 6, 8)
    torch.testing.assert_close(out[:, 1:], x)
    torch.testing.assert_close(out[:, 0], tok.token[0].expand(3, 8))


def test_sincos_embedding_values():
    pe = sincos_2d_position_embedding(4, 8, num_prefix_tokens=1)
    assert pe.shape == (1, 17, 8)
    assert pe[0, 0].abs().sum() == 0  # [CLS] has no place in the grid
    # position (row 1, col 2) with omega = [1, 1/100]: [sin x, sin x/100, cos x, cos x/100, sin y...]
    x, y = 2.0, 1.0
    expected = torch.tensor([torch.sin(torch.tensor(x)), torch.sin(torch.tensor(x / 100)),
                             torch.cos(torch.tensor(x)), torch.cos(torch.tensor(x / 100)),
                             torch.sin(torch.tensor(y)), torch.sin(torch.tensor(y / 100)),
                             torch.cos(torch.tensor(y)), torch.cos(torch.tensor(y / 100))])
    torch.testing.assert_close(pe[0, 1 + 1 * 4 + 2], expected)


def test_resample_position_embedding_keeps_cls_and_identity():
    pos = torch.randn(1, 17, 8)
    torch.testing.assert_close(resample_position_embedding(pos, 4), pos)
    big = resample_position_embedding(pos, 8)
    assert big.shape == (1, 65, 8)
    torch.testing.assert_close(big[:, 0], pos[:, 0])
    # a constant embedding stays constant after interpolation
    const = torch.ones(1, 17, 8)
    torch.testing.assert_close(resample_position_embedding(const, 6)[:, 1:], torch.ones(1, 36, 8))


def test_model_runs_at_a_new_resolution_after_set_img_size():
    model = vitlearn.ViT().eval()
    model.set_img_size(56)
    assert model(torch.randn(2, 1, 56, 56)).shape == (2, 10)
    assert model.attention_maps(torch.randn(1, 1, 56, 56)).shape == (1, 4, 4, 65, 65)
    sincos = vitlearn.ViT(pos_embed="sincos").set_img_size(56)
    assert sincos(torch.randn(1, 1, 56, 56)).shape == (1, 10)


class FixedPositions(nn.Module):
    """A learner's position embedding that cannot be resampled (no set_grid_size)."""

    def __init__(self, *, num_patches, embed_dim, num_prefix_tokens=1):
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(1, num_prefix_tokens + num_patches, embed_dim))

    def forward(self, x):
        return x + self.pos


def test_set_img_size_names_the_missing_set_grid_size_and_changes_nothing():
    model = vitlearn.ViT(pos_embed_layer=FixedPositions).eval()
    with pytest.raises(TypeError, match=r"FixedPositions \(pos_embed_layer\) has no set_grid_size method; "
                                        r"add `def set_grid_size\(self, grid_size\)`.*"
                                        r"vitlearn.resample_position_embedding"):
        model.set_img_size(56)
    assert model.config.img_size == 28  # still usable at the old size
    assert model(torch.randn(1, 1, 28, 28)).shape == (1, 10)


# -- step 7: attention ----------------------------------------------------------------------

def test_scaled_dot_product_attention_equals_torch():
    q, k, v = torch.randn(3, 2, 4, 17, 16).unbind(0)
    out, w = scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v))
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 17))


def _mha_from(ours: MultiHeadSelfAttention) -> nn.MultiheadAttention:
    ref = nn.MultiheadAttention(ours.embed_dim, ours.num_heads, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(ours.qkv.weight)
        ref.in_proj_bias.copy_(ours.qkv.bias)
        ref.out_proj.weight.copy_(ours.proj.weight)
        ref.out_proj.bias.copy_(ours.proj.bias)
    return ref


def test_multi_head_attention_equals_nn_multihead_attention_on_both_paths():
    attn = MultiHeadSelfAttention(embed_dim=32, num_heads=4).eval()
    ref = _mha_from(attn).eval()
    x = torch.randn(5, 17, 32)
    expected, expected_w = ref(x, x, x, need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(attn(x), expected, rtol=1e-5, atol=1e-5)
    out, w = attn(x, need_weights=True)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w, expected_w, rtol=1e-5, atol=1e-5)


# -- step 7: encoder ------------------------------------------------------------------------

def _torch_layer_from(block: EncoderBlock) -> nn.TransformerEncoderLayer:
    d = block.norm1.normalized_shape[0]
    ref = nn.TransformerEncoderLayer(d, block.attn.num_heads, block.mlp.fc1.out_features,
                                     dropout=0.0, activation="gelu", batch_first=True,
                                     norm_first=True, layer_norm_eps=1e-6)
    ref.self_attn.load_state_dict(_mha_from(block.attn).state_dict())
    ref.linear1.load_state_dict(block.mlp.fc1.state_dict())
    ref.linear2.load_state_dict(block.mlp.fc2.state_dict())
    ref.norm1.load_state_dict(block.norm1.state_dict())
    ref.norm2.load_state_dict(block.norm2.state_dict())
    return ref


def test_encoder_block_equals_pre_norm_transformer_encoder_layer():
    block = EncoderBlock(embed_dim=32, num_heads=4, mlp_ratio=2.0).eval()
    for p in block.parameters():  # non-trivial LayerNorm gains and biases too
        nn.init.normal_(p, std=0.2)
    ref = _torch_layer_from(block).eval()
    x = torch.randn(3, 17, 32)
    torch.testing.assert_close(block(x), ref(x), rtol=1e-5, atol=1e-5)
    with record_attention(block) as maps:
        out = block(x)
    torch.testing.assert_close(out, ref(x), rtol=1e-5, atol=1e-5)
    assert len(maps) == 1 and maps[0].shape == (3, 4, 17, 17)


def test_transformer_encoder_stacks_blocks_and_returns_all_maps():
    enc = TransformerEncoder(embed_dim=16, depth=3, num_heads=2).eval()
    x = torch.randn(2, 9, 16)
    y = x
    for block in enc.blocks:
        y = block(y)
    torch.testing.assert_close(enc(x), y)
    with record_attention(enc) as maps:
        out = enc(x)
    torch.testing.assert_close(out, y, rtol=1e-5, atol=1e-5)
    assert [m.shape for m in maps] == [(2, 2, 9, 9)] * 3


def test_mlp_shapes():
    assert MLP(embed_dim=8, hidden_dim=32)(torch.randn(2, 3, 8)).shape == (2, 3, 8)


# -- step 8: head ---------------------------------------------------------------------------

def test_head_returns_logits_and_probabilities_on_request():
    head = ClassificationHead(embed_dim=16, num_classes=10)
    x = torch.randn(4, 16)
    logits = head(x)
    torch.testing.assert_close(logits, head.fc(F.layer_norm(x, (16,), head.norm.weight,
                                                            head.norm.bias, 1e-6)))
    torch.testing.assert_close(head.predict_proba(x), logits.softmax(-1))


# -- the whole model --------------------------------------------------------------------------

def test_default_model_shapes_and_documented_parameter_count():
    model = vitlearn.ViT()
    n = sum(p.numel() for p in model.parameters())
    assert f"{n:,} parameters" in vitlearn.model.__doc__
    assert f"{n:,} parameters" in (ROOT / "README.md").read_text()
    x = torch.randn(2, 1, 28, 28)
    assert model.forward_features(x).shape == (2, 17, 64)
    assert model(x).shape == (2, 10)
    maps = model.attention_maps(x)
    assert maps.shape == (2, 4, 4, 17, 17)
    torch.testing.assert_close(maps.sum(-1), torch.ones(2, 4, 4, 17))


def test_forward_equals_hand_written_pipeline():
    model = vitlearn.ViT().eval()
    x = torch.randn(2, 1, 28, 28)
    t = model.patch_embed.proj(patchify(x, 7))
    t = torch.cat([model.cls_token.token.expand(2, 1, 64), t], dim=1) + model.pos_embed.pos
    for block in model.encoder.blocks:
        t = t + block.attn(block.norm1(t))
        t = t + block.mlp(block.norm2(t))
    torch.testing.assert_close(model(x), model.head(t[:, 0]), rtol=1e-5, atol=1e-5)


def test_fused_and_explicit_paths_give_the_same_model_output():
    model = vitlearn.ViT().eval()
    x = torch.randn(3, 1, 28, 28)
    with record_attention(model.encoder):  # every layer on the explicit path
        tokens = model.encoder(model.embed(x))
    for fused in (True, False, None):
        for block in model.encoder.blocks:
            block.attn.fused = fused
        torch.testing.assert_close(model.forward_head(tokens), model(x), rtol=1e-5, atol=1e-5)


def test_attention_paths_agree_in_gradients_and_auto_picks_by_length():
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(embed_dim=32, num_heads=4)
    x = torch.randn(2, 17, 32, requires_grad=True)
    grads = []
    for fused in (True, False):
        attn.fused = fused
        attn.zero_grad()
        out = attn(x)
        (gx,) = torch.autograd.grad((out * torch.arange(32.0)).sum(), x)
        grads.append((out, gx))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-5)
    attn.fused = None
    short = torch.zeros(1, 4, 17, 8)
    long = torch.zeros(1, 4, MultiHeadSelfAttention.CPU_MATH_MAX_TOKENS + 1, 8)
    assert not attn.use_fused(short) and attn.use_fused(long)
    attn.fused = True
    assert attn.use_fused(short)


def test_mean_pool_has_no_class_token_and_sincos_is_fixed():
    model = vitlearn.ViT(pool="mean", pos_embed="sincos")
    assert model.cls_token is None
    x = torch.randn(2, 1, 28, 28)
    assert model.forward_features(x).shape == (2, 16, 64)
    assert model.attention_maps(x).shape == (2, 4, 4, 16, 16)
    assert not any("pos" in name for name, _ in model.named_parameters())


def test_permutation_equivariance_without_position_embeddings():
    enc = TransformerEncoder(embed_dim=32, depth=2, num_heads=4).eval()
    x = torch.randn(2, 16, 32)
    perm = torch.randperm(16)
    torch.testing.assert_close(enc(x[:, perm]), enc(x)[:, perm], rtol=1e-5, atol=1e-5)
    # and the position embedding is what breaks it
    model = vitlearn.ViT(pool="mean").eval()
    tokens = model.patch_embed(torch.randn(1, 1, 28, 28))
    a = model.encoder(model.pos_embed(tokens[:, perm]))
    b = model.encoder(model.pos_embed(tokens))[:, perm]
    assert not torch.allclose(a, b, atol=1e-4)


def test_gradients_reach_every_parameter():
    for kwargs in ({}, {"pool": "mean"}, {"pos_embed": "sincos"}):
        model = vitlearn.ViT(**kwargs)
        F.cross_entropy(model(torch.randn(4, 1, 28, 28)), torch.arange(4)).backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient for {name}"


def test_tiny_model_overfits_one_batch():
    model = vitlearn.ViT(embed_dim=32, depth=2, num_heads=2)
    x, y = torch.randn(16, 1, 28, 28), torch.arange(16) % 10
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
    assert (model(x).argmax(-1) == y).all()


class HandAttention(nn.Module):
    """A learner's attention: explicit math only, same parameter names as ours."""

    def __init__(self, *, embed_dim, num_heads):
        super().__init__()
        self.h = num_heads
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim)
        self.proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, x, need_weights=False):
        q, k, v = rearrange(self.qkv(x), "b n (t h d) -> t b h n d", t=3, h=self.h)
        out, w = scaled_dot_product_attention(q, k, v)
        out = self.proj(rearrange(out, "b h n d -> b n (h d)"))
        return (out, w) if need_weights else out


def test_swapped_parts_plug_into_the_real_model():
    torch.manual_seed(1)
    ours = vitlearn.ViT().eval()
    theirs = vitlearn.ViT(attn_layer=HandAttention, embed_layer=PatchEmbedding,
                          cls_token_layer=ClassToken, pos_embed_layer=PositionEmbedding,
                          block_fn=EncoderBlock, head_layer=ClassificationHead).eval()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(theirs(x), ours(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(theirs.attention_maps(x), ours.attention_maps(x), rtol=1e-5, atol=1e-5)
    assert "attn_layer" in theirs.custom_layers


def test_attention_dropout_drops_weights_once_and_returns_them_undropped():
    q, k, v = torch.randn(3, 2, 4, 17, 8).unbind(0)
    torch.manual_seed(0)
    out, weights = scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    torch.manual_seed(0)
    torch.testing.assert_close(out, F.dropout(weights, 0.5) @ v)
    assert not torch.allclose(out, weights @ v)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 17))
    # the module's explicit path uses it in training only
    attn = MultiHeadSelfAttention(embed_dim=32, num_heads=4, attn_dropout=0.5, fused=False)
    x = torch.randn(2, 17, 32)
    assert not torch.allclose(attn(x), attn(x))
    attn.eval()
    torch.testing.assert_close(attn(x), attn(x))


# -- the plug-in contract: every part gets the same keywords, whoever wrote it ----------------

class DropoutAttention(HandAttention):
    """A learner's attention that takes attention dropout (and records what it was given)."""

    def __init__(self, *, embed_dim, num_heads, attn_dropout=0.0):
        super().__init__(embed_dim=embed_dim, num_heads=num_heads)
        self.given_attn_dropout = attn_dropout


def test_a_set_option_a_part_cannot_take_is_a_clear_error():
    with pytest.raises(TypeError, match=r"attn_layer=test_parts.HandAttention does not accept proj_dropout=.*"
                                        r"because you set dropout=0.1.*add a `proj_dropout` keyword"):
        vitlearn.ViT(attn_layer=HandAttention, dropout=0.1)
    works = vitlearn.ViT(attn_layer=HandAttention, dropout=0.0)
    assert isinstance(works.encoder.blocks[0].attn, HandAttention)


def test_a_part_that_takes_the_option_receives_it():
    model = vitlearn.ViT(attn_layer=DropoutAttention, attn_dropout=0.2)
    assert all(b.attn.given_attn_dropout == 0.2 for b in model.encoder.blocks)
    # and ours gets the same keywords: no identity check decides who receives dropout
    ours = vitlearn.ViT(dropout=0.1, attn_dropout=0.2).encoder.blocks[0]
    assert ours.attn.attn_dropout == 0.2 and ours.attn.proj_drop.p == 0.1 and ours.mlp.drop.p == 0.1


def test_a_block_without_attn_layer_cannot_silently_drop_a_given_attention():
    class Block(nn.Module):
        def __init__(self, *, embed_dim, num_heads, mlp_ratio=2.0, dropout=0.0, attn_dropout=0.0):
            super().__init__()
            self.attn = MultiHeadSelfAttention(embed_dim=embed_dim, num_heads=num_heads)

        def forward(self, x):
            return x + self.attn(x)

    assert len(vitlearn.ViT(block_fn=Block).encoder.blocks) == 4
    with pytest.raises(TypeError, match=r"block_fn=.*Block does not accept attn_layer="):
        vitlearn.ViT(block_fn=Block, attn_layer=HandAttention)


def test_a_part_missing_a_shape_keyword_is_named_and_inner_errors_pass_through():
    class NoHeads(nn.Module):
        def __init__(self, *, embed_dim):
            super().__init__()

    with pytest.raises(TypeError, match=r"attn_layer=.*NoHeads does not accept the keyword argument\(s\) "
                                        r"num_heads.*attn_layer\(embed_dim=..., num_heads=...\)"):
        vitlearn.ViT(attn_layer=NoHeads)

    class Buggy(nn.Module):
        def __init__(self, *, embed_dim, num_heads):
            super().__init__()
            len(5)  # the learner's own bug: its own TypeError, not ours

    with pytest.raises(TypeError, match="has no len"):
        vitlearn.ViT(attn_layer=Buggy)

    class Flexible(HandAttention):
        def __init__(self, **kwargs):
            super().__init__(embed_dim=kwargs["embed_dim"], num_heads=kwargs["num_heads"])
            self.kwargs = kwargs

    got = vitlearn.ViT(attn_layer=Flexible, dropout=0.1).encoder.blocks[0].attn.kwargs
    assert got == dict(embed_dim=64, num_heads=4, proj_dropout=0.1)


def test_custom_layers_lists_exactly_the_parts_given():
    assert vitlearn.ViT().custom_layers == {}
    model = vitlearn.ViT(attn_layer=HandAttention, head_layer=ClassificationHead)
    assert model.custom_layers == {"attn_layer": "test_parts.HandAttention",
                                   "head_layer": "vitlearn.head.ClassificationHead"}
    with pytest.raises(ValueError, match="cls_token_layer is only used with pool='cls'"):
        vitlearn.ViT(pool="mean", cls_token_layer=ClassToken)


# -- attention maps without need_weights in the blocks ----------------------------------------

def test_record_attention_equals_the_explicit_weights_and_removes_its_hooks():
    model = vitlearn.ViT().eval()
    x = torch.randn(2, 1, 28, 28)
    tokens = model.embed(x)
    expected, t = [], tokens
    for block in model.encoder.blocks:  # by hand: each block's attention, asked for its weights
        _, w = block.attn(block.norm1(t), need_weights=True)
        expected.append(w)
        t = block(t)
    with record_attention(model.encoder) as maps:
        out = model.encoder(tokens)
    torch.testing.assert_close(out, t)  # the blocks still get only the output
    assert len(maps) == 4
    for got, want in zip(maps, expected):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(model.attention_maps(x), torch.stack(expected, dim=1))
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks, type(m).__name__
    # on error too
    with pytest.raises(RuntimeError), record_attention(model.encoder):
        model.encoder(torch.randn(2, 17, 3))
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_record_attention_on_a_learners_attention_and_clear_errors():
    attn = HandAttention(embed_dim=32, num_heads=4)
    x = torch.randn(2, 9, 32)
    with record_attention(attn) as maps:
        out = attn(x)
    ref_out, ref_w = attn(x, need_weights=True)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(maps[0], ref_w)
    with pytest.raises(ValueError, match="no attention layer to record"):
        with record_attention(MLP(embed_dim=8, hidden_dim=8)):
            pass

    class NoWeights(nn.Module):
        def __init__(self, *, embed_dim, num_heads):
            super().__init__()

        def forward(self, x, need_weights=False):
            return x

    model = vitlearn.ViT(attn_layer=NoWeights, embed_dim=16, num_heads=2)
    with pytest.raises(TypeError, match=r"NoWeights.forward\(x, need_weights=True\) must return "
                                        r"\(out, weights"):
        model.attention_maps(torch.randn(1, 1, 28, 28))


# -- weight decay: named, not guessed from shapes ---------------------------------------------

def test_weight_decay_split_is_exactly_the_linear_weights_whoever_wrote_the_parts():
    from vitlearn.training import make_optimizer

    model = vitlearn.ViT()
    assert model.no_weight_decay() == {"cls_token.token", "pos_embed.pos"}
    decay, no_decay = make_optimizer(model, lr=1e-3, weight_decay=0.05).param_groups
    linear = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    assert [id(p) for p in decay["params"]] == [id(p) for p in linear]
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0

    class MyToken(nn.Module):  # a learner's [CLS] token, with a matrix-shaped parameter
        def __init__(self, *, embed_dim):
            super().__init__()
            self.cls = nn.Parameter(torch.zeros(1, embed_dim))

        def forward(self, x):
            return torch.cat([self.cls.expand(x.shape[0], 1, -1), x], dim=1)

    mine = vitlearn.ViT(cls_token_layer=MyToken)
    assert "cls_token.cls" in mine.no_weight_decay()
    decay, no_decay = make_optimizer(mine, lr=1e-3, weight_decay=0.05).param_groups
    assert id(mine.cls_token.cls) in {id(p) for p in no_decay["params"]}
    linear = [m.weight for m in mine.modules() if isinstance(m, nn.Linear)]
    assert [id(p) for p in decay["params"]] == [id(p) for p in linear]
