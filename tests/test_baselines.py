"""vitlearn.baselines: the small CNN (shapes, gradients, size next to ViT's, errors), the
subsets of the data-scale experiment, and the experiment itself on a tiny synthetic set."""

import pytest
import torch
import torch.nn.functional as F

import vitlearn
from vitlearn import ImageDataset
from vitlearn.baselines import (
    DataScaleResult,
    SmallCNN,
    data_scale_experiment,
    repeat_to,
    stratified_subset,
)


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def synthetic(n=200, seed=0):
    """The class decides where a bright square sits (as in test_training.py)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = torch.randint(0, 40, (n, 28, 28), generator=g, dtype=torch.uint8)
    for i, y in enumerate(labels.tolist()):
        r, c = divmod(y, 5)
        images[i, 4 + 10 * r:12 + 10 * r, 1 + 5 * c:6 + 5 * c] = 255
    return ImageDataset(images, labels, tuple(str(i) for i in range(10)), 0.13, 0.31, "mnist")


@pytest.mark.parametrize("kw,shape", [({}, (5, 1, 28, 28)),
                                      (dict(img_size=32, in_chans=3, num_classes=7), (2, 3, 32, 32)),
                                      (dict(width=8, img_size=8), (3, 1, 8, 8))])
def test_shapes(kw, shape):
    model = SmallCNN(**kw)
    x = torch.randn(shape)
    logits = model(x)
    assert logits.shape == (shape[0], kw.get("num_classes", 10))
    feats = model.forward_features(x)
    assert feats.shape[:2] == (shape[0], 4 * kw.get("width", 24))
    torch.testing.assert_close(model.forward_head(feats), logits)


def test_parameter_count_is_close_to_the_default_vit():
    cnn, vit = n_params(SmallCNN()), n_params(vitlearn.ViT())
    assert cnn == 136_498 and vit == 139_018
    assert abs(cnn - vit) / vit < 0.05


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    model = SmallCNN()
    loss = F.cross_entropy(model(torch.randn(8, 1, 28, 28)), torch.arange(8))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_keyword_only_constructor_and_clear_errors():
    with pytest.raises(TypeError):
        SmallCNN(28)
    model = SmallCNN()
    with pytest.raises(ValueError, match="in_chans=3"):
        model(torch.randn(2, 3, 28, 28))
    with pytest.raises(ValueError, match="unsqueeze"):
        model(torch.randn(1, 28, 28))
    with pytest.raises(ValueError, match="at least 8x8"):
        SmallCNN(img_size=6)
    with pytest.raises(ValueError, match="width"):
        SmallCNN(width=0)


def test_fit_trains_it():
    train, test = synthetic(256), synthetic(100, seed=1)
    torch.manual_seed(0)
    history = vitlearn.fit(SmallCNN(width=8), train, test, epochs=3, batch_size=32, lr=1e-2,
                           max_shift=0, progress=False)
    assert history.train_loss[-1] < history.train_loss[0]
    assert history.final_test_acc > 0.9


def test_stratified_subset_keeps_class_proportions_and_is_seeded():
    data = synthetic(1000)
    sub = stratified_subset(data, 0.1, seed=3)
    assert len(sub) == 100
    assert torch.bincount(sub.labels, minlength=10).tolist() == [10] * 10
    assert torch.equal(stratified_subset(data, 0.1, seed=3).images, sub.images)
    assert not torch.equal(stratified_subset(data, 0.1, seed=4).images, sub.images)
    assert stratified_subset(data, 1.0) is data
    with pytest.raises(ValueError, match="fraction"):
        stratified_subset(data, 0.0)


def test_repeat_to_makes_every_size_the_same_number_of_images():
    data = synthetic(30)
    big = repeat_to(data, 100)
    assert len(big) == 100
    assert torch.equal(big.images[:30], data.images) and torch.equal(big.images[30:60], data.images)
    with pytest.raises(ValueError, match="size"):
        repeat_to(data, 0)


def test_data_scale_experiment_same_steps_for_every_size():
    train, test = synthetic(200), synthetic(50, seed=1)
    models = {"ViT": lambda: vitlearn.ViT(embed_dim=16, depth=1, num_heads=2),
              "CNN": lambda: SmallCNN(width=4)}
    result = data_scale_experiment(models, (0.1, 1.0), train=train, test=test, epochs=1,
                                   batch_size=50, max_shift=0)
    assert isinstance(result, DataScaleResult)
    assert result.model == ["ViT", "CNN", "ViT", "CNN"]
    assert result.n_train == [20, 20, 200, 200]
    assert result.steps == [4, 4, 4, 4]  # 200 // 50 per "epoch", whatever the subset's size
    assert all(0 <= a <= 1 for a in result.test_acc)
    assert result.accuracy("CNN", 1.0) == result.test_acc[3]
    text = str(result)
    assert text.count("acc ") == 4 and " s" in text
    # seeded: a rerun gives the same accuracies
    again = data_scale_experiment(models, (0.1, 1.0), train=train, test=test, epochs=1,
                                  batch_size=50, max_shift=0)
    assert again.test_acc == result.test_acc
    with pytest.raises(KeyError, match="no run"):
        result.accuracy("MLP", 1.0)
