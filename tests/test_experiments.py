"""vitlearn.compare: the side-by-side runs of the step notebooks."""

import re
from configparser import ConfigParser
from pathlib import Path

import pytest
import torch

import vitlearn
from conftest import synthetic_digits as _digits
from vitlearn.experiments import Comparison, Variant, compare

TRAIN, TEST = _digits(512, 0), _digits(200, 1)
SMALL = dict(embed_dim=16, depth=1, num_heads=2)


def _run(variants, **kwargs):
    kwargs.setdefault("epochs", 1)
    return compare(variants, TRAIN, TEST, progress=False, batch_size=64, **kwargs)


def test_first_variant_with_seed_0_is_the_plain_run(capsys):
    result = _run({"a": lambda: vitlearn.ViT(**SMALL)}, epochs=2)
    torch.manual_seed(0)
    model = vitlearn.ViT(**SMALL)
    history = vitlearn.fit(model, TRAIN, TEST, epochs=2, batch_size=64, seed=0, progress=False)
    assert result.histories["a"][0].test_acc == history.test_acc
    assert result.histories["a"][0].train_loss == history.train_loss
    for p, q in zip(result.models["a"].parameters(), model.parameters()):
        assert torch.equal(p, q)
    assert "a, seed 0: test acc" in capsys.readouterr().out


def test_rerun_repeats_bit_for_bit_and_seeds_differ():
    variants = {"p7": lambda: vitlearn.ViT(**SMALL), "p14": lambda: vitlearn.ViT(patch_size=14, **SMALL)}
    one = _run(variants, seeds=(0, 1))
    two = _run(variants, seeds=(0, 1))
    for name in variants:
        assert [h.train_loss for h in one.histories[name]] == [h.train_loss for h in two.histories[name]]
    assert one.histories["p7"][0].train_loss != one.histories["p7"][1].train_loss
    assert one.tokens == {"p7": 16, "p14": 4}
    assert one.params["p7"] == sum(p.numel() for p in vitlearn.ViT(**SMALL).parameters())
    assert one.accuracy("p7") == pytest.approx(sum(one.accuracies("p7")) / 2)
    assert one.best() in variants


def test_variant_fit_settings_override_the_comparison_and_reach_fit():
    result = _run({"decay": Variant(lambda: vitlearn.ViT(**SMALL), weight_decay=0.3, lr=1e-3),
                   "plain": lambda: vitlearn.ViT(**SMALL)}, lr=5e-3)
    assert result.histories["decay"][0].lr[0] != result.histories["plain"][0].lr[0]
    # the recorded learning rate follows each run's own peak lr
    ratio = result.histories["plain"][0].lr[0] / result.histories["decay"][0].lr[0]
    assert ratio == pytest.approx(5.0)


def _sanitize(text: str) -> str:
    cfg = ConfigParser(interpolation=None)
    cfg.read(Path(__file__).with_name("nbval_sanitize.cfg"))
    for section in cfg.sections():
        text = re.sub(cfg[section]["regex"], cfg[section]["replace"], text)
    return text


def test_table_masks_every_cpu_dependent_number():
    """Two comparisons whose accuracies and seconds differ print the same text once sanitized
    (what nbval compares), and the table has a row per variant with its token count."""
    result = _run({"patch 7": lambda: vitlearn.ViT(**SMALL),
                   "patch 14": lambda: vitlearn.ViT(patch_size=14, **SMALL)}, seeds=(0, 1))
    table = str(result)
    lines = table.splitlines()
    assert len(lines) == 3 and lines[0].startswith("variant") and "mean" in lines[0]
    assert lines[2].startswith("patch 14") and " 4 " in lines[2]
    other = Comparison(seeds=result.seeds, histories={k: [h for h in v] for k, v in result.histories.items()},
                       params=result.params, tokens=result.tokens)
    for histories in other.histories.values():
        for i, h in enumerate(histories):
            histories[i] = type(h)(**{**h.to_dict(), "test_acc": [a * 0.97 for a in h.test_acc],
                                      "seconds": [s * 13.7 + 10 for s in h.seconds]})
    assert str(other) != table
    assert _sanitize(str(other)) == _sanitize(table)
    assert not re.search(r"\d\.\d\d%", _sanitize(table))


def test_plot_has_a_line_per_variant():
    result = _run({"a": lambda: vitlearn.ViT(**SMALL), "b": lambda: vitlearn.ViT(pool="mean", **SMALL)},
                  seeds=(0, 1), epochs=2)
    fig = result.plot()
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")]
    assert [label.split(" (")[0] for label in labels] == ["a", "b"]
    assert len(ax.get_lines()) == 2 * (2 + 1)  # two faint seed lines and one mean per variant


@pytest.mark.parametrize("call, message", [
    (lambda: compare({}, TRAIN, TEST), "non-empty dict"),
    (lambda: compare([vitlearn.ViT], TRAIN, TEST), "non-empty dict"),
    (lambda: compare({"a": vitlearn.ViT}, TRAIN, TEST, seeds=()), "seeds"),
    (lambda: compare({"a": vitlearn.ViT}, TRAIN, TEST, seeds=(-1,)), "seeds"),
    (lambda: compare({"a": vitlearn.ViT}, TRAIN, TEST, seed=3), "seeds=(...)"),
    (lambda: compare({"a": Variant(vitlearn.ViT, seed=3)}, TRAIN, TEST), "seeds=(...)"),
    (lambda: Variant(vitlearn.ViT()), "fresh model"),
    (lambda: compare({"a": lambda: 3}, TRAIN, TEST, progress=False), "not an nn.Module"),
])
def test_bad_input_says_what_to_change(call, message):
    with pytest.raises((ValueError, TypeError), match=re.escape(message)):
        call()


def test_unknown_variant_lists_the_names():
    result = _run({"a": lambda: vitlearn.ViT(**SMALL)})
    with pytest.raises(KeyError, match="'a'"):
        result.accuracy("b")


def test_a_partial_part_is_named_with_its_options():
    import functools
    model = vitlearn.ViT(pos_embed_layer=functools.partial(vitlearn.PositionEmbedding, init_std=0.02),
                         block_fn=vitlearn.PostNormBlock, **SMALL)
    assert model.custom_layers == {"pos_embed_layer": "vitlearn.tokens.PositionEmbedding(init_std=0.02)",
                                   "block_fn": "vitlearn.encoder.PostNormBlock"}
