"""Notebook 04's position experiments: PositionEmbedding(init_std=...),
ImageDataset.shuffle_patches and ImageDataset.resize."""

from __future__ import annotations

import functools

import pytest
import torch
from einops import rearrange

import vitlearn
from vitlearn.data import ImageDataset
from vitlearn.tokens import PositionEmbedding


def _dataset(images: torch.Tensor) -> ImageDataset:
    return ImageDataset(images, torch.arange(len(images)) % 10, tuple(str(i) for i in range(10)),
                        0.1307, 0.3081)


def _random_digits(n: int = 6, size: int = 28, seed: int = 0) -> ImageDataset:
    g = torch.Generator().manual_seed(seed)
    return _dataset(torch.randint(0, 256, (n, size, size), generator=g, dtype=torch.uint8))


def _numbered_patches(n: int, grid: int, patch: int) -> torch.Tensor:
    """uint8 [n, grid*patch, grid*patch] whose patch k (reading order) is filled with k, plus
    10 * image index, so every patch of every image is recognisable."""
    values = (torch.arange(grid * grid)[None, :] + 10 * torch.arange(n)[:, None]).to(torch.uint8)
    return rearrange(values[:, :, None, None].expand(n, grid * grid, patch, patch),
                     "n (h w) p1 p2 -> n (h p1) (w p2)", h=grid).contiguous()


def _patch_ids(images: torch.Tensor, patch: int) -> torch.Tensor:
    """[n, H, W] built by _numbered_patches (possibly shuffled) -> [n, N]: which patch sits where."""
    patches = rearrange(images, "n (h p1) (w p2) -> n (h w) (p1 p2)", p1=patch, p2=patch)
    assert (patches == patches[:, :, :1]).all(), "a patch was cut apart"
    return patches[:, :, 0].long()


# ---------------------------------------------------------------- PositionEmbedding(init_std)

def test_init_std_default_draws_the_same_table_as_before():
    torch.manual_seed(3)
    before = torch.randn(1, 17, 64)           # what PositionEmbedding drew before init_std existed
    torch.manual_seed(3)
    default = PositionEmbedding(num_patches=16, embed_dim=64).pos
    torch.manual_seed(3)
    explicit = PositionEmbedding(num_patches=16, embed_dim=64, init_std=1.0).pos
    assert torch.equal(default, before) and torch.equal(explicit, before)
    # ... and the next random numbers are the same too (nothing extra drawn)
    torch.manual_seed(3)
    PositionEmbedding(num_patches=16, embed_dim=64, init_std=0.02)
    after_small = torch.rand(5)
    torch.manual_seed(3)
    PositionEmbedding(num_patches=16, embed_dim=64)
    assert torch.equal(torch.rand(5), after_small)


def test_init_std_scales_the_same_draws():
    torch.manual_seed(0)
    big = PositionEmbedding(num_patches=16, embed_dim=64).pos
    torch.manual_seed(0)
    small = PositionEmbedding(num_patches=16, embed_dim=64, init_std=0.02).pos
    torch.testing.assert_close(small, big * 0.02)


@pytest.mark.parametrize("init_std", [1.0, 0.02, 0.5])
def test_init_std_is_the_std_of_a_large_table(init_std):
    torch.manual_seed(0)
    pos = PositionEmbedding(num_patches=1024, embed_dim=256, init_std=init_std).pos
    assert pos.std().item() == pytest.approx(init_std, rel=0.02)
    assert abs(pos.mean().item()) < 0.01 * init_std
    assert pos.requires_grad


def test_init_std_zero_gives_zeros_that_still_learn():
    pos_embed = PositionEmbedding(num_patches=4, embed_dim=8, init_std=0)
    assert torch.equal(pos_embed.pos, torch.zeros(1, 5, 8))
    pos_embed(torch.randn(2, 5, 8)).sum().backward()
    assert pos_embed.pos.grad is not None and pos_embed.pos.grad.abs().sum() > 0


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "0.02", True, None])
def test_init_std_bad_values_are_refused_with_the_name(bad):
    with pytest.raises(ValueError, match="init_std"):
        PositionEmbedding(num_patches=16, embed_dim=64, init_std=bad)


def test_init_std_through_vit_and_resampling():
    torch.manual_seed(0)
    model = vitlearn.ViT(pos_embed_layer=functools.partial(PositionEmbedding, init_std=0.02))
    assert model.pos_embed.pos.shape == (1, 17, 64)
    assert model.pos_embed.pos.std().item() == pytest.approx(0.02, rel=0.1)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    model.set_img_size(56)
    assert model.pos_embed.pos.shape == (1, 65, 64)
    assert model(torch.randn(2, 1, 56, 56)).shape == (2, 10)


def test_default_vit_is_unchanged_by_init_std():
    torch.manual_seed(0)
    ours = vitlearn.ViT()
    torch.manual_seed(0)
    explicit = vitlearn.ViT(pos_embed_layer=functools.partial(PositionEmbedding, init_std=1.0))
    for (name, a), (_, b) in zip(ours.state_dict().items(), explicit.state_dict().items()):
        assert torch.equal(a, b), name


# ---------------------------------------------------------------- ImageDataset.shuffle_patches

def test_shuffle_patches_is_one_permutation_of_the_patches_for_every_image():
    data = _dataset(_numbered_patches(5, grid=4, patch=7))
    shuffled = data.shuffle_patches(7)
    assert shuffled.images.shape == data.images.shape and shuffled.images.dtype == torch.uint8
    ids = _patch_ids(shuffled.images, 7) - 10 * torch.arange(5)[:, None]  # patch k of its own image
    perm = ids[0]
    assert sorted(perm.tolist()) == list(range(16)), "not a permutation of the 16 patches"
    assert not torch.equal(perm, torch.arange(16)), "seed 0 left the patches in place"
    assert (ids == perm).all(), "the images were not all shuffled the same way"
    expected = torch.randperm(16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(perm, expected)  # the documented draw
    assert torch.equal(shuffled.labels, data.labels)
    assert (shuffled.classes, shuffled.mean, shuffled.std, shuffled.name) == (
        data.classes, data.mean, data.std, data.name)


def test_shuffle_patches_seeds():
    data = _dataset(_numbered_patches(2, grid=4, patch=7))
    first = data.shuffle_patches(7, seed=5).images
    assert torch.equal(first, data.shuffle_patches(7, seed=5).images)       # reproducible
    assert not torch.equal(first, data.shuffle_patches(7, seed=6).images)   # a new seed, a new order
    torch.manual_seed(0)
    a = data.shuffle_patches(7).images
    torch.manual_seed(1)
    assert torch.equal(a, data.shuffle_patches(7).images)  # the global RNG plays no part


def test_shuffle_patches_other_patch_sizes_and_channels():
    data = _dataset(_numbered_patches(3, grid=7, patch=4))
    ids = _patch_ids(data.shuffle_patches(4, seed=2).images, 4) - 10 * torch.arange(3)[:, None]
    assert sorted(ids[0].tolist()) == list(range(49)) and (ids == ids[0]).all()
    assert torch.equal(data.shuffle_patches(28).images, data.images)  # one patch: nothing to shuffle
    colour = _dataset(torch.randint(0, 256, (2, 3, 28, 28), dtype=torch.uint8))
    shuffled = colour.shuffle_patches(14, seed=1)
    assert shuffled.images.shape == (2, 3, 28, 28)
    # every channel moves with its patch
    before = rearrange(colour.images, "n c (h p1) (w p2) -> n (h w) c p1 p2", p1=14, p2=14)
    after = rearrange(shuffled.images, "n c (h p1) (w p2) -> n (h w) c p1 p2", p1=14, p2=14)
    perm = torch.randperm(4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(after, before[:, perm])


def test_a_vit_without_positions_cannot_see_the_shuffle():
    data = _random_digits(8)
    shuffled = data.shuffle_patches(7, seed=0)
    x, _ = data.tensors()
    x_shuffled, _ = shuffled.tensors()
    assert not torch.equal(x, x_shuffled)
    torch.manual_seed(0)
    no_positions = vitlearn.ViT(pos_embed="none").eval()
    torch.manual_seed(0)
    learned = vitlearn.ViT().eval()
    with torch.no_grad():
        torch.testing.assert_close(no_positions(x_shuffled), no_positions(x), atol=1e-5, rtol=1e-4)
        assert not torch.allclose(learned(x_shuffled), learned(x), atol=1e-3)
    torch.manual_seed(0)
    mean_pool = vitlearn.ViT(pos_embed="none", pool="mean").eval()
    with torch.no_grad():  # mean pooling over an equivariant encoder is invariant too
        torch.testing.assert_close(mean_pool(x_shuffled), mean_pool(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("patch_size, match", [(5, "not divisible by patch_size=5"),
                                               (0, "patch_size"), (2.5, "patch_size"),
                                               (-7, "patch_size"), (56, "not divisible")])
def test_shuffle_patches_bad_patch_size(patch_size, match):
    with pytest.raises(ValueError, match=match):
        _random_digits(2).shuffle_patches(patch_size)


def test_shuffle_patches_bad_seed():
    with pytest.raises(ValueError, match="seed"):
        _random_digits(2).shuffle_patches(7, seed=-1)


# ---------------------------------------------------------------- ImageDataset.resize

@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_resize_shape_dtype_range(mode):
    data = _random_digits(5)
    data.images[0] = 0
    data.images[1] = 255
    big = data.resize(56, mode=mode)
    assert big.images.shape == (5, 56, 56) and big.images.dtype == torch.uint8
    assert torch.equal(big.labels, data.labels) and (big.mean, big.std) == (data.mean, data.std)
    assert (big.images[0] == 0).all() and (big.images[1] == 255).all()  # constant images stay put
    assert big.images.min() >= data.images.min() and big.images.max() <= data.images.max()
    assert data.images.shape == (5, 28, 28)  # the original is untouched
    assert data.resize((42, 70), mode=mode).images.shape == (5, 42, 70)


def test_resize_nearest_doubling_copies_pixels():
    data = _random_digits(3)
    doubled = data.resize(56, mode="nearest").images
    assert torch.equal(doubled, data.images.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2))


def test_resize_bilinear_matches_interpolate_and_round():
    data = _random_digits(3)
    expected = torch.nn.functional.interpolate(data.images[:, None].float(), size=(56, 56),
                                               mode="bilinear", align_corners=False,
                                               antialias=False).round()
    assert torch.equal(data.resize(56).images, expected[:, 0].to(torch.uint8))


def test_resize_keeps_channels_and_float_images():
    colour = _dataset(torch.randint(0, 256, (2, 3, 28, 28), dtype=torch.uint8))
    assert colour.resize(56).images.shape == (2, 3, 56, 56)
    floats = _dataset(torch.rand(2, 28, 28))
    out = floats.resize(56).images
    assert out.dtype == torch.float32 and out.shape == (2, 56, 56)


def test_resized_digits_run_in_a_resampled_vit():
    torch.manual_seed(0)
    model = vitlearn.ViT().set_img_size(56).eval()
    x, _ = _random_digits(2).resize(56).tensors()
    with torch.no_grad():
        assert model(x).shape == (2, 10)


@pytest.mark.parametrize("size, match", [(0, "height"), (-3, "height"), (2.5, "height"),
                                         ((56, 0), "width"), ("56", "height")])
def test_resize_bad_size(size, match):
    with pytest.raises(ValueError, match=match):
        _random_digits(2).resize(size)


def test_resize_bad_mode():
    with pytest.raises(ValueError, match="bicubic.*bilinear"):
        _random_digits(2).resize(56, mode="bicubic")


def test_resize_bad_tuple():
    with pytest.raises(ValueError, match=r"\(height, width\)"):
        _random_digits(2).resize((56, 56, 1))
