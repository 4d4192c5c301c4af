"""The paper's figure 7 as numbers (vitlearn.attention_maps): how position similarity falls
with distance on the grid, and the shipped 7x7-grid checkpoint the lessons load."""

import hashlib
import itertools
import re
from pathlib import Path

import pytest
import torch

import vitlearn
from vitlearn.attention_maps import (
    position_similarity,
    rank_correlation,
    similarity_by_distance,
    similarity_distance_correlation,
)

ROOT = Path(__file__).resolve().parents[1]


def spearman_by_hand(a, b):
    """Spearman without ties: 1 - 6 sum d^2 / (n (n^2 - 1))."""
    n = len(a)
    rank = lambda xs: {x: r for r, x in enumerate(sorted(xs))}  # noqa: E731
    ra, rb = rank(a), rank(b)
    d2 = sum((ra[x] - rb[y]) ** 2 for x, y in zip(a, b))
    return 1 - 6 * d2 / (n * (n * n - 1))


def test_rank_correlation_matches_the_textbook_formula_and_handles_ties():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(30, generator=g), torch.randn(30, generator=g)
    assert rank_correlation(a, b) == pytest.approx(spearman_by_hand(a.tolist(), b.tolist()))
    assert rank_correlation(a, a.exp()) == pytest.approx(1.0)          # any rising function: +1
    assert rank_correlation(a, -a ** 3) == pytest.approx(-1.0)
    # ties get the mean of their ranks: [1, 2, 2, 3] has ranks [0, 1.5, 1.5, 3]
    assert rank_correlation([1, 2, 2, 3], [3, 2, 2, 1]) == pytest.approx(-1.0)
    assert rank_correlation([1, 2, 2, 3], [0, 1, 2, 3]) == pytest.approx(0.9486832980505138)


def test_rank_correlation_refuses_what_has_no_correlation():
    with pytest.raises(ValueError, match="same length"):
        rank_correlation([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="constant"):
        rank_correlation([1, 1, 1], [1, 2, 3])


def with_table(patch_size: int, table: torch.Tensor) -> vitlearn.ViT:
    torch.manual_seed(0)
    model = vitlearn.ViT(patch_size=patch_size, embed_dim=16, depth=1, num_heads=2)
    with torch.no_grad():
        model.pos_embed.pos[0, 1:] = table
    return model


def bumps(grid: int) -> torch.Tensor:
    """A table that encodes the 2-D layout: channel k is a Gaussian bump around one of 16 points
    spread over the grid, so the nearer two patches, the more alike their vectors."""
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    places = torch.stack([rows.flatten(), cols.flatten()], dim=-1).float()              # [N, 2]
    centres = torch.cartesian_prod(torch.linspace(0, grid - 1, 4), torch.linspace(0, grid - 1, 4))
    return torch.exp(-torch.cdist(places, centres) ** 2 / 4)                            # [N, 16]


def test_a_2d_layout_correlates_strongly_and_a_random_table_not_at_all():
    grid = 7
    layout = with_table(4, bumps(grid))
    random = with_table(4, torch.randn(grid * grid, 16, generator=torch.Generator().manual_seed(1)))
    assert similarity_distance_correlation(layout) < -0.95
    assert abs(similarity_distance_correlation(random)) < 0.15
    falls = list(similarity_by_distance(layout).values())
    assert falls[0] > falls[-1] + 0.5                                 # neighbours alike, corners apart


def test_max_distance_keeps_only_the_near_pairs():
    """A table alike along the border (like MNIST's background patches) and local inside:
    the all-pairs number is weak, the near-pairs one strong."""
    grid = 7
    table = bumps(grid)
    rows, cols = torch.arange(49) // grid, torch.arange(49) % grid
    border = (rows == 0) | (rows == grid - 1) | (cols == 0) | (cols == grid - 1)
    table[border] = 1.0                                                # every border patch the same vector
    model = with_table(4, table)
    near = similarity_distance_correlation(model, max_distance=1.5)   # neighbours and diagonals
    assert similarity_distance_correlation(model) > -0.1 and near < -0.4
    sim, dist = vitlearn.attention_maps._pairs(model, None, 1.5)
    assert set(dist.round(decimals=2).tolist()) == {1.0, 1.41}
    with pytest.raises(ValueError, match="max_distance is in patches"):
        similarity_distance_correlation(model, max_distance=0.5)


def test_similarity_by_distance_lists_every_distance_of_the_grid():
    model = with_table(7, torch.randn(16, 16))
    found = similarity_by_distance(model)
    expected = sorted({round((dr * dr + dc * dc) ** 0.5, 2)
                       for dr, dc in itertools.product(range(4), repeat=2)} - {0.0})
    assert list(found) == expected                                   # 1, 1.41, 2, 2.24, ... 4.24
    sim = position_similarity(model)
    pairs = [(i, j) for i in range(16) for j in range(i + 1, 16)
             if abs(i // 4 - j // 4) + abs(i % 4 - j % 4) == 1]      # the 24 neighbours
    assert found[1.0] == pytest.approx(sum(float(sim[i, j]) for i, j in pairs) / len(pairs))


def test_reference_measures_what_training_changed():
    model = with_table(7, torch.randn(16, 16))
    reference = model.pos_embed.pos.detach().clone()
    change = bumps(4)
    with torch.no_grad():
        model.pos_embed.pos[0, 1:] += change
    assert similarity_distance_correlation(model) > -0.5                # hidden by the random start
    assert similarity_distance_correlation(model, reference=reference) == pytest.approx(
        similarity_distance_correlation(with_table(7, change)), abs=1e-3)
    with pytest.raises(ValueError, match="pos_at_init"):
        position_similarity(model, reference=torch.zeros(1, 5, 16))


def test_position_similarity_needs_a_position_table():
    with pytest.raises(ValueError, match="no position embedding"):
        similarity_distance_correlation(vitlearn.ViT(pos_embed="none", embed_dim=16, depth=1, num_heads=2))


def test_the_shipped_7x7_checkpoint_loads_and_is_the_one_recorded(mnist):
    path = vitlearn.shipped_checkpoint("mnist-7x7")
    model = vitlearn.load(path)
    assert model.patch_size == 4 and model.num_patches == 49
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest in (ROOT / "BENCHMARKS.md").read_text(), "record the checkpoint's sha256 in BENCHMARKS.md"
    state = vitlearn.load_checkpoint(path)
    stored = state["history"]["test_acc"][-1]
    _, test = mnist
    assert vitlearn.evaluate(model, test[:2000]).accuracy > 0.97
    assert re.fullmatch(r"0\.9\d+", str(stored))                      # its training ended above 90%


def test_shipped_checkpoint_names_the_ones_there_are():
    with pytest.raises(KeyError, match="mnist-7x7"):
        vitlearn.shipped_checkpoint("imagenet")
