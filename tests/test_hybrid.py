"""HybridEmbedding (vitlearn.patches): the paper's hybrid input, a small CNN's feature map cut
into 1x1 patches and projected (section 3.1), as a drop-in ``embed_layer`` of vitlearn.ViT."""

import pytest
import torch
from torch import nn

import vitlearn
from vitlearn.patches import HybridEmbedding, PatchEmbedding


def _images(b=4, c=1, size=28, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, size, size, generator=g)


@pytest.mark.parametrize("img_size, patch_size, in_chans, grid, stride2", [
    (28, 7, 1, 4, 3),     # 28 -> 14 -> 7 -> 4: 16 tokens, like PatchEmbedding
    (28, 4, 1, 7, 2),     # 28 -> 14 -> 7: 49 tokens
    (28, 14, 1, 2, 4),
    (28, 28, 1, 1, 5),    # one token
    (28, 1, 1, 28, 0),    # no halving: one stride-1 layer
    (32, 8, 3, 4, 3),     # colour, a power of two
    (224, 16, 3, 14, 4),  # ViT-B/16's grid
])
def test_shape_and_token_count(img_size, patch_size, in_chans, grid, stride2):
    embed = HybridEmbedding(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=24,
                            stem_width=8)
    assert (embed.img_size, embed.patch_size, embed.grid_size) == (img_size, patch_size, grid)
    assert embed.num_patches == grid * grid == (img_size // patch_size) ** 2
    assert embed.num_stride2 == stride2
    convs = [m for m in embed.stem if isinstance(m, nn.Conv2d)]
    assert len(convs) == max(stride2, 1)
    assert all(m.kernel_size == (3, 3) for m in convs)
    out = embed(_images(2, in_chans, img_size))
    assert out.shape == (2, grid * grid, 24)  # [B, N, D]


def test_same_keywords_and_token_count_as_patch_embedding():
    kw = dict(img_size=28, patch_size=7, in_chans=1, embed_dim=64)
    hybrid, plain = HybridEmbedding(**kw), PatchEmbedding(**kw)
    x = _images()
    assert hybrid(x).shape == plain(x).shape == (4, 16, 64)
    for attr in ("img_size", "patch_size", "grid_size", "num_patches", "in_chans", "embed_dim"):
        assert getattr(hybrid, attr) == getattr(plain, attr), attr


def test_parameter_count_is_modest():
    embed = HybridEmbedding(img_size=28, patch_size=7, in_chans=1, embed_dim=64, stem_width=32)
    # convs 1*32*9 + 2 * 32*32*9, three BatchNorms 3 * 2*32, projection 32*64 + 64
    assert sum(p.numel() for p in embed.parameters()) == 288 + 2 * 9216 + 192 + 2112 == 21_024
    vit = vitlearn.ViT(embed_layer=HybridEmbedding)
    plain = vitlearn.ViT()
    extra = sum(p.numel() for p in vit.parameters()) - sum(p.numel() for p in plain.parameters())
    assert extra == 21_024 - 3_200  # the stem replaces the 3,200 of the linear projection


def test_tokens_see_neighbourhoods():
    """Each token depends on the pixels of its own region and, through the overlapping 3x3
    windows, on some pixels beyond it: unlike a patch embedding, not only on its own patch."""
    embed = HybridEmbedding(img_size=28, patch_size=7, in_chans=1, embed_dim=8).eval()
    x = _images(1).requires_grad_()
    embed(x)[0, 5].sum().backward()  # token 5: grid row 1, column 1 (pixels 7-13 in a patch grid)
    touched = x.grad[0, 0].abs() > 0
    rows, cols = touched.any(dim=1).nonzero().flatten(), touched.any(dim=0).nonzero().flatten()
    assert touched.sum() > 49  # more than one 7x7 patch
    assert rows.min() > 0 and rows.max() < 27 and cols.min() > 0 and cols.max() < 27  # still local


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    embed = HybridEmbedding(img_size=28, patch_size=7, in_chans=1, embed_dim=16)
    x = _images().requires_grad_()
    embed(x).square().mean().backward()
    for name, p in embed.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0


def test_plugs_into_vit_and_trains():
    torch.manual_seed(0)
    model = vitlearn.ViT(embed_layer=HybridEmbedding)
    assert isinstance(model.patch_embed, HybridEmbedding)
    assert model.patch_embed.check_input is False  # the ViT checks the images once, at its entry
    x, y = _images(32), torch.arange(32) % 10
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):  # memorise one batch
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert model.embed(x).shape == (32, 1 + 16, 64)  # [B, 1+N, D]


def test_fit_with_a_hybrid_is_seeded(mnist):
    train, test = mnist
    small_train, small_test = train[:512], test[:256]

    def run():
        torch.manual_seed(0)
        model = vitlearn.ViT(embed_layer=HybridEmbedding)
        history = vitlearn.fit(model, small_train, small_test, epochs=1, batch_size=64, progress=False)
        return model, history

    (m1, h1), (m2, h2) = run(), run()
    assert h1.final_test_acc == h2.final_test_acc
    for (name, a), b in zip(m1.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(a, b), name  # BatchNorm's running statistics included


def test_seeded_construction_is_deterministic():
    torch.manual_seed(0)
    a = HybridEmbedding(img_size=28, patch_size=7, in_chans=1, embed_dim=64)
    torch.manual_seed(0)
    b = HybridEmbedding(img_size=28, patch_size=7, in_chans=1, embed_dim=64)
    x = _images()
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


@pytest.mark.parametrize("img_size, patch_size", [(30, 3), (84, 3), (36, 3)])
def test_unreachable_grid_is_refused(img_size, patch_size):
    # 30 -> 15 -> 8 -> 4 -> 2 -> 1 never reaches 10; 84 -> 42 -> 21 -> 11 -> ... never 28;
    # 36 -> 18 -> 9 -> 5 -> ... never 12
    with pytest.raises(ValueError, match=r"never to img_size / patch_size = \d+.*choose patch_size from"):
        HybridEmbedding(img_size=img_size, patch_size=patch_size, in_chans=1, embed_dim=8)
    with pytest.raises(ValueError, match="never to img_size / patch_size"):
        vitlearn.ViT(img_size=img_size, patch_size=patch_size, embed_layer=HybridEmbedding)


def test_error_lists_the_reachable_patch_sizes():
    with pytest.raises(ValueError) as err:
        HybridEmbedding(img_size=30, patch_size=3, in_chans=1, embed_dim=8)
    assert "[1, 2, 15, 30]" in str(err.value)  # 30 / {30, 15, 2, 1}: the divisors on the halving path
    for p in (1, 2, 15, 30):
        HybridEmbedding(img_size=30, patch_size=p, in_chans=1, embed_dim=8)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="not divisible"):
        HybridEmbedding(img_size=28, patch_size=5, in_chans=1, embed_dim=8)
    with pytest.raises(ValueError, match="stem_width"):
        HybridEmbedding(img_size=28, patch_size=7, in_chans=1, embed_dim=8, stem_width=0)


def test_bad_images_are_refused_when_used_alone():
    embed = HybridEmbedding(img_size=28, patch_size=7, in_chans=1, embed_dim=8)
    with pytest.raises(ValueError, match="channel"):
        embed(_images(2, 3))
    with pytest.raises(ValueError, match="built for 28x28"):
        embed(_images(2, 1, 14))
    with pytest.raises(TypeError, match="uint8"):
        embed(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))


def test_set_img_size_when_the_stem_reaches_the_new_grid():
    torch.manual_seed(0)
    model = vitlearn.ViT(embed_layer=HybridEmbedding).eval()
    model.set_img_size(42)  # 42 -> 21 -> 11 -> 6 = 42 / 7
    embed = model.patch_embed
    assert (embed.img_size, embed.grid_size, embed.num_patches) == (42, 6, 36)
    assert model.embed(_images(2, 1, 42)).shape == (2, 1 + 36, 64)
    model.set_img_size(28)
    assert model(_images(2)).shape == (2, 10)


def test_set_img_size_refuses_a_grid_the_stem_cannot_reach():
    model = vitlearn.ViT(embed_layer=HybridEmbedding)
    # three stride-2 layers take 56 px to 7x7, but patch 7 on 56 px means an 8x8 grid
    pos_before = model.pos_embed.pos.detach().clone()
    with pytest.raises(ValueError, match="3 stride-2 layer.*7x7 feature map, not the 8x8 grid"):
        model.set_img_size(56)
    # refused before anything changed: the model still runs at 28 px, positions untouched
    assert model.config.img_size == 28 and model.pos_embed.pos.shape == pos_before.shape
    assert torch.equal(model.pos_embed.pos, pos_before)
    assert model(_images(2)).shape == (2, 10)
    with pytest.raises(ValueError, match="3 stride-2 layer"):
        model.patch_embed.img_size = 56
