"""EncoderBlock (the paper's block) and the blocks notebook 06 compares it with,
PostNormBlock and NoResidualBlock: each equals the computation written out by hand and
PyTorch's nn.TransformerEncoderLayer, they share parameters and initialisation, gradients
flow, ViT takes them through block_fn=, and checkpoints of them load again."""

import pytest
import torch
from torch import nn

import vitlearn
from vitlearn import EncoderBlock, NoResidualBlock, PostNormBlock, record_attention

D, H, RATIO = 32, 4, 2.0


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _randomise_norms(block):
    """LayerNorm gains and biases away from 1 and 0, so a misplaced norm cannot hide."""
    with torch.no_grad():
        for norm in (block.norm1, block.norm2):
            norm.weight.normal_(1.0, 0.5)
            norm.bias.normal_(0.0, 0.5)
    return block


BLOCKS = {("pre", True): EncoderBlock, ("post", True): PostNormBlock, ("pre", False): NoResidualBlock}


def _block(cls=EncoderBlock):
    return _randomise_norms(cls(embed_dim=D, num_heads=H, mlp_ratio=RATIO))


def _torch_layer(block, *, norm_first):
    layer = nn.TransformerEncoderLayer(D, H, dim_feedforward=int(D * RATIO), dropout=0.0,
                                       activation="gelu", batch_first=True, norm_first=norm_first,
                                       layer_norm_eps=1e-6)
    sd = block.state_dict()
    layer.load_state_dict({
        "self_attn.in_proj_weight": sd["attn.qkv.weight"], "self_attn.in_proj_bias": sd["attn.qkv.bias"],
        "self_attn.out_proj.weight": sd["attn.proj.weight"], "self_attn.out_proj.bias": sd["attn.proj.bias"],
        "linear1.weight": sd["mlp.fc1.weight"], "linear1.bias": sd["mlp.fc1.bias"],
        "linear2.weight": sd["mlp.fc2.weight"], "linear2.bias": sd["mlp.fc2.bias"],
        "norm1.weight": sd["norm1.weight"], "norm1.bias": sd["norm1.bias"],
        "norm2.weight": sd["norm2.weight"], "norm2.bias": sd["norm2.bias"]})
    return layer.eval()


def _by_hand(block, x, *, norm, residual):
    ln1, ln2 = block.norm1, block.norm2
    attn, mlp = block.attn, block.mlp
    if norm == "pre" and residual:
        x = x + attn(ln1(x))
        return x + mlp(ln2(x))
    if norm == "post" and residual:
        x = ln1(x + attn(x))
        return ln2(x + mlp(x))
    assert norm == "pre"
    return mlp(ln2(attn(ln1(x))))


@pytest.mark.parametrize("norm,residual", list(BLOCKS))
def test_block_equals_the_computation_by_hand(norm, residual):
    block = _block(BLOCKS[norm, residual])
    x = torch.randn(3, 9, D)
    torch.testing.assert_close(block(x), _by_hand(block, x, norm=norm, residual=residual))


@pytest.mark.parametrize("cls,norm_first", [(EncoderBlock, True), (PostNormBlock, False)])
def test_block_equals_torch_transformer_encoder_layer(cls, norm_first):
    block = _block(cls)
    x = torch.randn(3, 9, D)
    layer = _torch_layer(block, norm_first=norm_first)
    torch.testing.assert_close(block(x), layer(x))
    with torch.no_grad():  # PyTorch's inference fast path computes the same function
        torch.testing.assert_close(block(x), layer(x))


def test_post_norm_outputs_are_normalised_tokens():
    block = PostNormBlock(embed_dim=D, num_heads=H)  # gains 1, biases 0 at init
    out = block(torch.randn(2, 5, D) * 10)
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(-1, unbiased=False), torch.ones(2, 5), atol=1e-3, rtol=0)


def test_the_paper_block_is_written_out_bit_for_bit():
    block = _block()
    x = torch.randn(2, 7, D)
    expected = block.norm1(x)
    expected = x + block.attn(expected)
    expected = expected + block.mlp(block.norm2(expected))
    assert torch.equal(block(x), expected)
    assert type(block).extra_repr is nn.Module.extra_repr  # no options left to show


def test_same_parameters_and_initialisation_in_every_variant():
    blocks = []
    for cls in BLOCKS.values():
        torch.manual_seed(0)
        blocks.append(cls(embed_dim=D, num_heads=H))
    for other in blocks[1:]:
        assert other.state_dict().keys() == blocks[0].state_dict().keys()
        for key, value in blocks[0].state_dict().items():
            assert torch.equal(other.state_dict()[key], value), key


@pytest.mark.parametrize("option", ["norm", "residual"])
def test_the_old_options_are_gone(option):
    # the variants are classes now (block_fn=PostNormBlock), not options of EncoderBlock
    with pytest.raises(TypeError, match=option):
        EncoderBlock(embed_dim=D, num_heads=H, **{option: "post"})


@pytest.mark.parametrize("cls", [PostNormBlock, NoResidualBlock])
def test_gradients_reach_every_parameter(cls):
    block = _block(cls)
    x = torch.randn(2, 6, D, requires_grad=True)
    block(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in block.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("cls", [PostNormBlock, NoResidualBlock])
def test_attention_is_recorded_once_per_block(cls):
    block = _block(cls)
    x = torch.randn(2, 6, D)
    with record_attention(block) as maps:
        out = block(x)
    assert len(maps) == 1 and maps[0].shape == (2, H, 6, 6)
    torch.testing.assert_close(out, block(x))


@pytest.mark.parametrize("cls", [PostNormBlock, NoResidualBlock])
def test_plugs_into_vit_through_block_fn(cls):
    torch.manual_seed(0)
    model = vitlearn.ViT(depth=2, block_fn=cls)
    torch.manual_seed(0)
    default = vitlearn.ViT(depth=2)
    assert all(type(block) is cls for block in model.encoder.blocks)
    # same random numbers drawn: the variants start from the default model's weights
    for (name, p), (_, q) in zip(model.named_parameters(), default.named_parameters()):
        assert torch.equal(p, q), name
    images = torch.randn(4, 1, 28, 28)
    logits = model(images)
    assert logits.shape == (4, 10)
    assert not torch.allclose(logits, default(images))
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert model.attention_maps(images).shape == (4, 2, 4, 17, 17)


def test_a_checkpoint_of_the_old_post_norm_option_loads_with_the_class(tmp_path):
    # Checkpoints record a custom block by name only; one saved with the old
    # block_fn=partial(EncoderBlock, norm="post") holds the same weights as a PostNormBlock
    # model, so it loads with vitlearn.load(path, block_fn=PostNormBlock).
    model = vitlearn.ViT(depth=2, block_fn=PostNormBlock).eval()
    path = vitlearn.save(model, tmp_path / "post.pt")
    state = torch.load(path, weights_only=True)
    assert state["custom_layers"] == {"block_fn": "vitlearn.encoder.PostNormBlock"}
    state["custom_layers"] = {"block_fn": "vitlearn.encoder.EncoderBlock(norm='post')"}  # as saved before
    torch.save(state, path)
    with pytest.raises(vitlearn.CheckpointError, match="block_fn"):
        vitlearn.load(path)
    loaded = vitlearn.load(path, block_fn=PostNormBlock)
    images = torch.randn(3, 1, 28, 28)
    assert torch.equal(loaded(images), model(images))
