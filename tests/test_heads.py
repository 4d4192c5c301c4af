"""The two heads of the paper (MLPHead for pre-training, ClassificationHead for fine-tuning)
and ViT.reset_classifier (a new, zero-initialised head for a new task)."""

import copy

import pytest
import torch
from torch import nn

import vitlearn
from conftest import synthetic_digits as _digits
from vitlearn.head import ClassificationHead, MLPHead

SMALL = dict(embed_dim=16, depth=1, num_heads=2)


class MyHead(nn.Module):
    """A learner's head (LayerNorm + Linear), as in notebook 07."""

    def __init__(self, *, embed_dim, num_classes):
        super().__init__()
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.fc = nn.Linear(embed_dim, num_classes)

    def forward(self, x):
        return self.fc(self.norm(x))


def _images(n=4, seed=0):
    return torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


# --- MLPHead ---------------------------------------------------------------------------------

def test_mlp_head_shapes_and_layers():
    head = MLPHead(embed_dim=32, num_classes=7, hidden_dim=24)
    assert head(torch.randn(5, 32)).shape == (5, 7)
    assert (head.pre_logits.in_features, head.pre_logits.out_features) == (32, 24)
    assert (head.fc.in_features, head.fc.out_features) == (24, 7)
    assert MLPHead(embed_dim=32, num_classes=7).pre_logits.out_features == 32  # hidden = D


def test_mlp_head_is_layernorm_linear_tanh_linear():
    torch.manual_seed(0)
    head = MLPHead(embed_dim=8, num_classes=3, hidden_dim=6)
    x = torch.randn(4, 8) * 3 + 1
    expected = head.fc(torch.tanh(head.pre_logits(nn.functional.layer_norm(x, (8,), eps=1e-6))))
    torch.testing.assert_close(head(x), expected)
    torch.testing.assert_close(head.predict_proba(x), expected.softmax(-1))


def test_mlp_head_gradients_reach_every_parameter():
    head = MLPHead(embed_dim=8, num_classes=3)
    x = torch.randn(4, 8, requires_grad=True)
    nn.functional.cross_entropy(head(x), torch.tensor([0, 1, 2, 0])).backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("kwargs", [dict(embed_dim=0, num_classes=3), dict(embed_dim=8, num_classes=0),
                                    dict(embed_dim=8, num_classes=3, hidden_dim=0),
                                    dict(embed_dim=8, num_classes=3, hidden_dim=2.5)])
def test_mlp_head_refuses_bad_sizes(kwargs):
    with pytest.raises(ValueError, match="MLPHead"):
        MLPHead(**kwargs)


def test_mlp_head_is_keyword_only():
    with pytest.raises(TypeError):
        MLPHead(8, 3)


def test_mlp_head_plugs_into_vit():
    torch.manual_seed(0)
    model = vitlearn.ViT(**SMALL, head_layer=MLPHead)
    assert isinstance(model.head, MLPHead) and model.head.pre_logits.out_features == 16
    assert model(_images()).shape == (4, 10)
    assert model.custom_layers == {"head_layer": "vitlearn.head.MLPHead"}
    plain = vitlearn.ViT(**SMALL)
    extra = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in plain.parameters())
    assert extra == 16 * 16 + 16  # the hidden layer: D x D weights + D biases
    nn.functional.cross_entropy(model(_images()), torch.arange(4)).backward()
    assert all(p.grad is not None for p in model.parameters())


# --- reset_classifier ------------------------------------------------------------------------

def test_reset_classifier_zero_init_gives_uniform_probabilities():
    torch.manual_seed(0)
    model = vitlearn.ViT(**SMALL)
    assert model.reset_classifier(5) is model                      # zero_init=True by default
    assert model.config.num_classes == 5
    assert model.head.fc.out_features == 5
    assert torch.count_nonzero(model.head.fc.weight) == 0 and torch.count_nonzero(model.head.fc.bias) == 0
    probs = model.predict_proba(_images(6))
    torch.testing.assert_close(probs, torch.full((6, 5), 0.2))


def test_reset_classifier_zero_init_leaves_the_encoder_alone_on_the_first_step():
    """Through zero head weights no gradient reaches the features: only the head moves."""
    torch.manual_seed(0)
    model = vitlearn.ViT(**SMALL).reset_classifier(3)
    nn.functional.cross_entropy(model(_images()), torch.tensor([0, 1, 2, 0])).backward()
    for name, p in model.named_parameters():
        if name.startswith("head.fc"):
            assert p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None or p.grad.abs().sum() == 0, name


def test_reset_classifier_random_init():
    torch.manual_seed(0)
    model = vitlearn.ViT(**SMALL)
    model.reset_classifier(4, zero_init=False)
    assert model.config.num_classes == 4 and model.head.fc.weight.shape == (4, 16)
    assert torch.count_nonzero(model.head.fc.weight) == model.head.fc.weight.numel()
    probs = model.predict_proba(_images(6))
    assert not torch.allclose(probs, torch.full((6, 4), 0.25))


def test_reset_classifier_keeps_the_encoder_and_the_head_kind():
    torch.manual_seed(0)
    model = vitlearn.ViT(**SMALL, head_layer=MyHead)
    encoder = copy.deepcopy(model.encoder.state_dict())
    model.reset_classifier(3)
    assert type(model.head) is MyHead and model.head.fc.out_features == 3
    for name, tensor in model.encoder.state_dict().items():
        assert torch.equal(tensor, encoder[name]), name
    assert torch.equal(model.head.norm.weight, torch.ones(16))      # a fresh LayerNorm


def test_reset_classifier_mlp_head_zeroes_the_output_layer_and_can_switch_to_linear():
    torch.manual_seed(0)
    model = vitlearn.ViT(**SMALL, head_layer=MLPHead)
    model.reset_classifier(6)
    assert isinstance(model.head, MLPHead)
    assert torch.count_nonzero(model.head.fc.weight) == 0
    assert torch.count_nonzero(model.head.pre_logits.weight) > 0     # only the last layer is zeroed
    model.reset_classifier(6, head_layer=ClassificationHead)          # the paper's fine-tuning head
    assert type(model.head) is ClassificationHead and model.custom_layers == {}
    torch.testing.assert_close(model.predict_proba(_images()), torch.full((4, 6), 1 / 6))


def test_reset_classifier_keeps_train_or_eval_mode_device_and_dtype():
    model = vitlearn.ViT(**SMALL).double().eval()
    model.reset_classifier(3, zero_init=False)
    assert not model.head.training
    assert model.head.fc.weight.dtype == torch.float64
    assert model(_images().double()).shape == (4, 3)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "10"])
def test_reset_classifier_refuses_bad_num_classes(bad):
    model = vitlearn.ViT(**SMALL)
    head = model.head
    with pytest.raises(ValueError, match="reset_classifier.*num_classes"):
        model.reset_classifier(bad)
    assert model.head is head and model.config.num_classes == 10    # nothing changed


def test_reset_classifier_zero_init_needs_a_linear_layer():
    class NoLinear(nn.Module):
        def __init__(self, *, embed_dim, num_classes):
            super().__init__()
            self.w = nn.Parameter(torch.randn(embed_dim, num_classes))

        def forward(self, x):
            return x @ self.w

    model = vitlearn.ViT(**SMALL, head_layer=NoLinear)
    with pytest.raises(TypeError, match="zero_init=False"):
        model.reset_classifier(3)
    assert model.config.num_classes == 10
    model.reset_classifier(3, zero_init=False)
    assert model(_images()).shape == (4, 3)


def test_reset_classifier_on_a_copy_leaves_the_original():
    torch.manual_seed(0)
    model = vitlearn.ViT(**SMALL)
    before = model(_images()).detach()
    new = copy.deepcopy(model).reset_classifier(3)
    assert model.config.num_classes == 10 and model.head.fc.out_features == 10
    torch.testing.assert_close(model(_images()), before)
    assert new.config.num_classes == 3


def test_checkpoint_after_reset_classifier(tmp_path):
    torch.manual_seed(0)
    model = vitlearn.ViT(**SMALL).reset_classifier(4, zero_init=False).eval()
    loaded = vitlearn.load(vitlearn.save(model, tmp_path / "a.pt"))
    assert loaded.config == model.config and loaded.config.num_classes == 4
    with torch.no_grad():
        torch.testing.assert_close(loaded(_images()), model(_images()), rtol=0, atol=0)


def test_checkpoint_after_reset_classifier_with_custom_heads(tmp_path):
    torch.manual_seed(0)
    model = vitlearn.ViT(**SMALL, head_layer=MyHead).reset_classifier(7, zero_init=False).eval()
    path = vitlearn.save(model, tmp_path / "mine.pt")
    with pytest.raises(vitlearn.CheckpointError, match="head_layer"):
        vitlearn.load(path)
    loaded = vitlearn.load(path, head_layer=MyHead)
    assert type(loaded.head) is MyHead and loaded.config.num_classes == 7
    with torch.no_grad():
        torch.testing.assert_close(loaded(_images()), model(_images()), rtol=0, atol=0)

    # An MLP-head model fine-tuned with a linear head is an ordinary ViT again.
    mlp = vitlearn.ViT(**SMALL, head_layer=MLPHead).reset_classifier(
        2, head_layer=ClassificationHead, zero_init=False).eval()
    loaded = vitlearn.load(vitlearn.save(mlp, tmp_path / "mlp.pt"))
    with torch.no_grad():
        torch.testing.assert_close(loaded(_images()), mlp(_images()), rtol=0, atol=0)


def test_fit_after_reset_classifier_trains_the_new_head():
    torch.manual_seed(0)
    model = vitlearn.ViT(**SMALL, num_classes=3).reset_classifier(10)
    history = vitlearn.fit(model, _digits(512, 0), _digits(200, 1), epochs=1, batch_size=64,
                           progress=False)
    assert torch.count_nonzero(model.head.fc.weight) > 0
    assert history.final_test_acc > 0.1
