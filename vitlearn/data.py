"""MNIST and Fashion-MNIST held in memory as uint8 tensors, batched and augmented as tensors.

60,000 28x28 images are 47 MB as uint8, so the whole set lives in memory and each batch is
one indexing operation: no DataLoader workers and no per-image PIL calls on the hot path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from einops import rearrange

from .contract import check_positive_int
from .patches import check_patch_size

__all__ = ["DATASETS", "ImageDataset", "DataNotFoundError", "load_dataset", "default_data_dir",
           "resolve_data_dir", "normalize", "random_shift", "iterate_batches", "train_val_split"]

# name -> (torchvision class name, classes, training-set mean, std of pixels scaled to [0, 1])
DATASETS = {
    "mnist": ("MNIST", tuple(str(i) for i in range(10)), 0.1307, 0.3081),
    "fashion-mnist": ("FashionMNIST", ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                       "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
                      0.2860, 0.3530),
}


_RESIZE_MODES = ("bilinear", "nearest")


class DataNotFoundError(FileNotFoundError):
    """The data set is not on disk and could not be downloaded."""


@dataclass
class ImageDataset:
    """Images [N, 28, 28] uint8 and labels [N] int64, plus what is needed to normalise them."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    mean: float
    std: float
    name: str = "mnist"

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index) -> ImageDataset:
        """A subset (slice, index tensor or list), sharing the normalisation constants."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return ImageDataset(self.images[index], self.labels[index], self.classes, self.mean,
                            self.std, self.name)

    def tensors(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """All images normalised to float [N, 1, 28, 28], and the labels."""
        return (normalize(self.images.to(device), self.mean, self.std),
                self.labels.to(device))

    def _with_images(self, images: torch.Tensor) -> ImageDataset:
        return ImageDataset(images, self.labels, self.classes, self.mean, self.std, self.name)

    def shuffle_patches(self, patch_size: int, seed: int = 0) -> ImageDataset:
        """The same images with their ``patch_size`` x ``patch_size`` patches shuffled, by one
        permutation for every image: ``torch.randperm(num_patches)`` drawn from a generator
        seeded with ``seed``. What a ViT without position embeddings cannot tell from the
        original (notebook 04). Any pixel dtype (uint8 stays uint8); labels unchanged."""
        check_positive_int("shuffle_patches", patch_size=patch_size)
        check_positive_int("shuffle_patches", minimum=0, seed=seed)
        images = self.images if self.images.ndim == 4 else self.images[:, None]  # [N, C, H, W]
        if images.ndim != 4:
            raise ValueError(f"shuffle_patches: expected images [N, H, W] or [N, C, H, W], got "
                             f"shape {tuple(self.images.shape)}")
        h, w = images.shape[-2:]
        check_patch_size(h, patch_size, what="image height")
        check_patch_size(w, patch_size, what="image width")
        perm = torch.randperm((h // patch_size) * (w // patch_size),
                              generator=torch.Generator().manual_seed(seed))
        patches = rearrange(images, "n c (h p1) (w p2) -> n (h w) p1 p2 c",
                            p1=patch_size, p2=patch_size)
        shuffled = rearrange(patches[:, perm], "n (h w) p1 p2 c -> n c (h p1) (w p2)",
                             h=h // patch_size)
        return self._with_images(shuffled.reshape(self.images.shape).contiguous())

    def resize(self, size: int | tuple[int, int], mode: str = "bilinear") -> ImageDataset:
        """The images resized to ``size`` x ``size`` (or ``(height, width)``) pixels by
        ``torch.nn.functional.interpolate`` (``"bilinear"`` or ``"nearest"``; no antialiasing,
        meant for enlarging), rounded back to the images' dtype (uint8 stays uint8, 0-255).
        Labels and normalisation constants unchanged: e.g. MNIST at 56 px for a ViT whose
        position embeddings were resampled with ``model.set_img_size(56)``."""
        if isinstance(size, (tuple, list)) and len(size) != 2:
            raise ValueError(f"resize: size must be one number or (height, width), got {size!r}")
        height, width = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        check_positive_int("resize", height=height, width=width)
        if mode not in _RESIZE_MODES:
            raise ValueError(f"resize: unknown mode={mode!r}; use one of {_RESIZE_MODES}")
        images = self.images if self.images.ndim == 4 else self.images[:, None]  # [N, C, H, W]
        if images.ndim != 4:
            raise ValueError(f"resize: expected images [N, H, W] or [N, C, H, W], got "
                             f"shape {tuple(self.images.shape)}")
        dtype = self.images.dtype
        options = {"align_corners": False, "antialias": False} if mode == "bilinear" else {}
        chunks = []
        for start in range(0, len(images), 4096):  # float copies of a few thousand images at a time
            out = torch.nn.functional.interpolate(images[start:start + 4096].float(),
                                                  size=(height, width), mode=mode, **options)
            if not dtype.is_floating_point:
                info = torch.iinfo(dtype)
                out = out.round_().clamp_(info.min, info.max)
            chunks.append(out.to(dtype))
        resized = torch.cat(chunks) if chunks else images.new_empty((0, images.shape[1], height, width))
        if self.images.ndim == 3:
            resized = resized[:, 0]
        return self._with_images(resized.contiguous())


def default_data_dir() -> Path:
    """Where torchvision downloads the data when no folder is given: ~/.cache/vitlearn/data."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vitlearn" / "data"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The argument, else $VITLEARN_DATA_DIR, else :func:`default_data_dir`."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("VITLEARN_DATA_DIR")
    return Path(env).expanduser() if env else default_data_dir()


def load_dataset(name: str = "mnist", *, train: bool = True,
                 data_dir: str | os.PathLike | None = None, download: bool = True) -> ImageDataset:
    """Load MNIST or Fashion-MNIST through torchvision's dataset classes, into memory.

    With the files present nothing touches the network; otherwise torchvision downloads them
    into the data directory (when ``download`` is true).
    """
    key = name.lower().replace("_", "-")
    if key == "fashionmnist":
        key = "fashion-mnist"
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; use one of {sorted(DATASETS)}")
    cls_name, classes, mean, std = DATASETS[key]
    root = resolve_data_dir(data_dir)
    import torchvision.datasets as tvd

    try:
        ds = getattr(tvd, cls_name)(root=str(root), train=train, download=download)
    except (RuntimeError, OSError) as err:  # missing files, or no network to fetch them
        raise DataNotFoundError(
            f"could not find or download {cls_name} in {root} ({type(err).__name__}: {err}). "
            f"Put the files in {root / cls_name / 'raw'}, or point VITLEARN_DATA_DIR (or the "
            f"data_dir argument / --data-dir) at a folder that holds {cls_name}/raw/") from None
    return ImageDataset(ds.data.contiguous(), ds.targets.long(), classes, mean, std, key)


def normalize(images: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """uint8 [B, 28, 28] (or [B, 1, 28, 28]) -> float [B, 1, 28, 28], zero mean, unit std."""
    x = images.float().div_(255.0)
    if x.ndim == 3:
        x = x.unsqueeze(1)
    return x.sub_(mean).div_(std)


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator | None = None,
                 ) -> torch.Tensor:
    """Shift every image [B, C, H, W] by its own random (dy, dx) in [-max_shift, max_shift],
    filling with the image's corner value (the background). One gather for the whole batch."""
    if max_shift <= 0:
        return images
    b, _, h, w = images.shape
    fill = images[:, :, :1, :1]
    padded = torch.nn.functional.pad(images - fill, (max_shift,) * 4) + fill
    offsets = torch.randint(0, 2 * max_shift + 1, (2, b), generator=generator)
    rows = (offsets[0][:, None] + torch.arange(h))[:, None, :, None]   # [B, 1, H, 1]
    cols = (offsets[1][:, None] + torch.arange(w))[:, None, None, :]   # [B, 1, 1, W]
    bidx = torch.arange(b)[:, None, None, None]
    cidx = torch.arange(images.shape[1])[None, :, None, None]
    return padded[bidx, cidx, rows, cols]


def iterate_batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int, *,
                    shuffle: bool = False, generator: torch.Generator | None = None,
                    drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (images, labels) batches by indexing the in-memory tensors."""
    n = len(labels)
    order = torch.randperm(n, generator=generator) if shuffle else None
    stop = n - n % batch_size if drop_last else n
    for i in range(0, stop, batch_size):
        if order is None:
            yield images[i:i + batch_size], labels[i:i + batch_size]
        else:
            idx = order[i:i + batch_size]
            yield images[idx], labels[idx]


def train_val_split(dataset: ImageDataset, val_size: int = 5000, seed: int = 0,
                    ) -> tuple[ImageDataset, ImageDataset]:
    """Cut a validation set from the training set (choose recipes on it, never on the test set)."""
    if not 0 < val_size < len(dataset):
        raise ValueError(f"val_size must be between 1 and {len(dataset) - 1}, got {val_size}")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    return dataset[order[val_size:]], dataset[order[:val_size]]
