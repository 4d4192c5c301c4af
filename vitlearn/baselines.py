"""A small convolutional network, and the paper's central experiment in miniature.

ViT's claim (Dosovitskiy et al., 2021, figures 3-4) is about *data*: a CNN's built-in
assumptions (locality: each filter sees a small neighbourhood; translation equivariance:
the same filter slides everywhere) are worth a lot when data are scarce, while a Transformer
has to learn them from the data, and overtakes the CNN only once there is a great deal of
it (ImageNet-21k, JFT-300M). :func:`data_scale_experiment` trains a ViT and
:class:`SmallCNN` on growing subsets of the training set with the same number of
optimizer steps, and evaluates both on the full test set.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .data import ImageDataset, load_dataset
from .model import ViT
from .training import fit

__all__ = ["SmallCNN", "stratified_subset", "repeat_to", "DataScaleResult", "data_scale_experiment"]


class SmallCNN(nn.Module):
    """Four 3x3 Conv-BatchNorm-ReLU layers (width, 2*width, 4*width, 4*width channels): a
    stride-2 stem, then 2x2 max-pooling between the later ones, global average pooling over
    positions and a Linear classifier. Locality (3x3 kernels) and translation equivariance
    (the same kernel everywhere) are built in: the inductive biases ViT lacks.

    ``width=24`` gives 136,498 parameters for MNIST, next to the default ViT's 139,018, and a
    training step costs about the same on a CPU: the stride-2 stem keeps the 28x28 maps out of
    it (the seconds of every run are in :func:`data_scale_experiment`'s table; in notebook 09
    about 20 s for the ViT's 936 steps and 21-23 s for the CNN's, on 2 cores).
    ``forward_features`` / ``forward_head`` split it like a timm model.
    """

    def __init__(self, *, img_size: int = 28, in_chans: int = 1, num_classes: int = 10,
                 width: int = 24, dropout: float = 0.0):
        super().__init__()
        if img_size < 8:
            raise ValueError(f"img_size={img_size} is too small: a stride-2 stem and two 2x2 "
                             f"poolings need images of at least 8x8 pixels")
        if width < 1 or in_chans < 1 or num_classes < 1:
            raise ValueError(f"width, in_chans and num_classes must be >= 1; got width={width}, "
                             f"in_chans={in_chans}, num_classes={num_classes}")
        self.img_size, self.in_chans, self.num_classes, self.width = img_size, in_chans, num_classes, width
        self.config = dict(img_size=img_size, in_chans=in_chans, num_classes=num_classes, width=width,
                           dropout=dropout)

        def stage(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                                 nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

        self.stages = nn.Sequential(       # shapes for 28x28 images
            stage(in_chans, width, 2),     # [B, w, 14, 14]   stride-2 stem
            stage(width, 2 * width),       # [B, 2w, 14, 14]
            nn.MaxPool2d(2),               # [B, 2w, 7, 7]
            stage(2 * width, 4 * width),   # [B, 4w, 7, 7]
            nn.MaxPool2d(2),               # [B, 4w, 3, 3]
            stage(4 * width, 4 * width),   # [B, 4w, 3, 3]
        )
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(4 * width, num_classes)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B, C, H, W] -> feature maps [B, 4*width, H/4, W/4]."""
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"expected a batch of images [B, C, H, W], got {shape}; add a batch "
                             f"dimension with images.unsqueeze(0) (one image [C, H, W])")
        if images.shape[1] != self.in_chans:
            raise ValueError(f"the model expects {self.in_chans} channel(s) but the images have "
                             f"{images.shape[1]} (shape {tuple(images.shape)}); build it with "
                             f"in_chans={images.shape[1]}")
        return self.stages(images)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Global average pooling over positions, then the classifier -> logits [B, classes]."""
        return self.head(self.drop(features.mean(dim=(2, 3))))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(images))


def stratified_subset(dataset: ImageDataset, fraction: float, *, seed: int = 0) -> ImageDataset:
    """A seeded random ``round(fraction * len(dataset))`` images of ``dataset`` with every class
    in its original proportion (largest remainders get the rounding), in shuffled order."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return dataset
    g = torch.Generator().manual_seed(seed)
    classes = torch.unique(dataset.labels)
    members = [(dataset.labels == c).nonzero().flatten() for c in classes]
    total = max(len(classes), round(fraction * len(dataset)))
    quotas = [fraction * len(idx) for idx in members]
    counts = [max(1, int(q)) for q in quotas]
    by_remainder = sorted(range(len(quotas)), key=lambda i: int(quotas[i]) - quotas[i])
    for i in by_remainder[:max(0, total - sum(counts))]:
        counts[i] += 1
    picks = [idx[torch.randperm(len(idx), generator=g)[:k]] for idx, k in zip(members, counts)]
    chosen = torch.cat(picks)
    return dataset[chosen[torch.randperm(len(chosen), generator=g)]]


def repeat_to(dataset: ImageDataset, size: int) -> ImageDataset:
    """The dataset repeated (and cut) to exactly ``size`` images, so an "epoch" over a small
    subset takes as many optimizer steps as one over the full set. ``fit`` shuffles the
    copies together and random shifts make the copies of one image differ."""
    if size < 1 or len(dataset) == 0:
        raise ValueError(f"need a non-empty dataset and size >= 1, got {len(dataset)} images, size={size}")
    reps = -(-size // len(dataset))
    return dataset[torch.arange(len(dataset)).repeat(reps)[:size]]


@dataclass
class DataScaleResult:
    """One row per (model, training-set size): test accuracy on the full test set."""

    model: list[str] = field(default_factory=list)
    fraction: list[float] = field(default_factory=list)
    n_train: list[int] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    params: dict[str, int] = field(default_factory=dict)
    dataset: str = "mnist"

    def to_dict(self) -> dict:
        return asdict(self)

    def accuracy(self, model: str, fraction: float) -> float:
        for m, f, a in zip(self.model, self.fraction, self.test_acc):
            if m == model and f == fraction:
                return a
        raise KeyError(f"no run of {model!r} on fraction {fraction}; have {sorted(set(self.model))} "
                       f"x {sorted(set(self.fraction))}")

    def __str__(self) -> str:
        rows = [f"{'model':6s} {'params':>8s} {'train images':>12s} {'steps':>6s}  test accuracy   time"]
        for m, f, n, s, a, t in zip(self.model, self.fraction, self.n_train, self.steps, self.test_acc,
                                    self.seconds):
            rows.append(f"{m:6s} {self.params.get(m, 0):8,d} {n:7,d} ({f:4.0%}) {s:6d}  acc {a:.2%}   "
                        f"{t:.1f} s")
        return "\n".join(rows)


def data_scale_experiment(models: dict[str, Callable[[], nn.Module]] | None = None,
                          fractions: tuple[float, ...] = (0.01, 0.1, 1.0), *,
                          dataset: str = "mnist", train: ImageDataset | None = None,
                          test: ImageDataset | None = None, epochs: int = 2, seed: int = 0,
                          progress: bool = False, **fit_kwargs) -> DataScaleResult:
    """Train every model on every fraction of the training set with the same budget, and
    evaluate each on the full test set.

    ``models`` maps a name to a function that builds a fresh model (default: ``vitlearn.ViT()``
    and :class:`SmallCNN`, each built after ``torch.manual_seed(seed)``). Each subset is a
    seeded, stratified random sample (:func:`stratified_subset`) repeated to the size of the
    full training set (:func:`repeat_to`), so every run takes the same number of optimizer
    steps: ``epochs * (len(train) // batch_size)`` (936 for MNIST with the defaults), with the
    same learning-rate schedule. The remaining keywords go to :func:`vitlearn.fit`.
    """
    if models is None:
        models = {"ViT": ViT, "CNN": SmallCNN}
    if not models or not fractions:
        raise ValueError("need at least one model and one fraction")
    train = train if train is not None else load_dataset(dataset, train=True)
    test = test if test is not None else load_dataset(train.name, train=False)
    batch_size = fit_kwargs.get("batch_size", 128)
    result = DataScaleResult(dataset=train.name)
    for fraction in fractions:
        subset = stratified_subset(train, fraction, seed=seed)
        repeated = repeat_to(subset, len(train))
        for name, build in models.items():
            torch.manual_seed(seed)
            model = build()
            result.params[name] = sum(p.numel() for p in model.parameters())
            t0 = time.perf_counter()
            history = fit(model, repeated, test, epochs=epochs, seed=seed, progress=progress, **fit_kwargs)
            result.model.append(name)
            result.fraction.append(fraction)
            result.n_train.append(len(subset))
            result.steps.append(epochs * (len(repeated) // batch_size))
            result.test_acc.append(history.final_test_acc)
            result.seconds.append(time.perf_counter() - t0)
    return result
