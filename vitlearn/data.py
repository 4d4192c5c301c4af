"""The data: MNIST and Fashion-MNIST in memory, any image Dataset, a folder of images, and
the one batch source through which ``fit`` and ``evaluate`` get all of them.

60,000 28x28 images are 47 MB as uint8, so MNIST lives in memory (:class:`ImageDataset`) and
each batch is one indexing operation: no DataLoader workers and no per-image PIL calls on the
hot path. Any other map-style Dataset of (image [C, H, W] float, label) comes in through the
same :class:`BatchSource`, which batches it by index in the order the shuffle generator draws
and applies the same random shifts; :class:`ImageFolderDataset` reads a folder laid out as
torchvision's ``ImageFolder`` (what ``python -m vitlearn train --data-dir`` trains on).
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torch.utils.data
from einops import rearrange

from .contract import check_positive_int
from .patches import check_patch_size

__all__ = ["DATASETS", "ImageDataset", "DataNotFoundError", "load_dataset", "default_data_dir",
           "resolve_data_dir", "normalize", "random_shift", "random_affine", "rotate_zoom",
           "iterate_batches", "train_val_split",
           "BatchSource", "check_item", "dataset_targets", "dataset_classes", "ImageFolderError",
           "scan_image_folder", "ImageFolderDataset", "load_image_folder", "read_image"]

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


def random_affine(images: torch.Tensor, max_rotate: float, max_scale: float,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Rotate every image [B, C, H, W] about its centre by its own random angle in
    [-max_rotate, max_rotate] degrees and zoom it by its own factor in [1 - max_scale,
    1 + max_scale] (bilinear; what comes in from outside the image is its corner value, the
    background). A handwritten digit is still the same digit slightly turned or resized, which
    a model that sees each image 30 times would otherwise learn by heart."""
    if max_rotate <= 0 and max_scale <= 0:
        return images
    u = torch.rand(2, images.shape[0], generator=generator, dtype=torch.float64) * 2 - 1  # [-1, 1)
    return rotate_zoom(images, u[0] * max_rotate, 1 + u[1] * max_scale)


def rotate_zoom(images: torch.Tensor, degrees: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Image i of [B, C, H, W] turned clockwise (as drawn) by ``degrees[i]`` about its centre and
    zoomed by ``scales[i]`` (bilinear), the background (corner value) filling what comes in."""
    angle = torch.deg2rad(torch.as_tensor(degrees, dtype=torch.float64))
    scale = torch.as_tensor(scales, dtype=torch.float64)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale                   # output -> input
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, sin, zero], -1), torch.stack([-sin, cos, zero], -1)], 1)
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    fill = images[:, :, :1, :1]
    return F.grid_sample(images - fill, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False) + fill


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


# -- any image data: one batch source for fit and evaluate ------------------------------------

def dataset_targets(data) -> torch.Tensor | None:
    """The labels of a whole dataset without loading its images, where it holds them: an
    ImageDataset's ``labels``, a TensorDataset's second tensor, a ``targets`` attribute
    (torchvision's datasets, ImageFolder), a Subset's slice of those. None: not known up front."""
    from torch.utils.data import Subset, TensorDataset

    if isinstance(data, ImageDataset):
        return data.labels
    if isinstance(data, Subset):
        targets = dataset_targets(data.dataset)
        return None if targets is None else targets[torch.as_tensor(list(data.indices), dtype=torch.long)]
    if isinstance(data, TensorDataset):
        return data.tensors[1] if len(data.tensors) == 2 else None
    targets = getattr(data, "targets", None)
    if targets is None or getattr(data, "target_transform", None) is not None:
        return None
    try:
        return torch.as_tensor(targets)
    except (TypeError, ValueError, RuntimeError):
        return None


def dataset_classes(data) -> tuple[str, ...] | None:
    """The class names a dataset declares (``classes``; through a Subset), else None."""
    from torch.utils.data import DataLoader, Subset

    if isinstance(data, DataLoader):
        return dataset_classes(data.dataset)
    if isinstance(data, Subset):
        return dataset_classes(data.dataset)
    classes = getattr(data, "classes", None)
    return tuple(str(c) for c in classes) if classes is not None else None


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {list(value.shape)}"
    return f"a {type(value).__module__}.{type(value).__qualname__}"


def check_item(item, role: str, index: int = 0) -> tuple[torch.Tensor, int]:
    """``(image [C, H, W] float, label)`` of one dataset item, or an error that names the fix."""
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        length = f" of length {len(item)}" if isinstance(item, (tuple, list)) else ""
        raise TypeError(f"{role}[{index}] is {_describe(item)}{length}; fit and evaluate need "
                        f"items (image, label): a float image tensor [C, H, W] "
                        f"and an integer class index")
    image, label = item
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"{role}[{index}]'s image is {_describe(image)}, not a tensor; give the dataset "
                        f"transform=torchvision.transforms.ToTensor() (plus Normalize(mean, std)) so "
                        f"that its items are float tensors [C, H, W]")
    if not image.dtype.is_floating_point:
        raise TypeError(f"{role}[{index}]'s image is {_describe(image)} (raw pixel values?); fit needs "
                        f"float images: convert in the dataset's transform (ToTensor() scales to [0, 1]) "
                        f"and normalise there")
    if image.ndim != 3:
        hint = " add the channel axis with image.unsqueeze(0)" if image.ndim == 2 else \
            " each item is one image [C, H, W], not a batch"
        raise ValueError(f"{role}[{index}]'s image has shape {list(image.shape)}; an item's image is "
                         f"[C, H, W]:{hint}")
    if isinstance(label, torch.Tensor):
        if label.numel() != 1 or label.dtype.is_floating_point or label.dtype == torch.bool:
            raise TypeError(f"{role}[{index}]'s label is {_describe(label)}; a label is one integer "
                            f"class index (e.g. 3), not a one-hot vector or a float")
        label = int(label)
    elif isinstance(label, bool) or not isinstance(label, numbers.Integral):
        raise TypeError(f"{role}[{index}]'s label is {label!r} ({type(label).__name__}); a label is an "
                        f"integer class index 0..num_classes-1 (ImageFolder numbers its folders)")
    return image, int(label)


def _collate(items: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (image, label) items into [B, C, H, W] and [B] (the labels as int64)."""
    images = [image for image, _ in items]
    shapes = {tuple(image.shape) for image in images}
    if len(shapes) > 1:
        raise ValueError(f"the images of one batch have different shapes {sorted(shapes)}; resize them "
                         f"to one size in the dataset's transform (torchvision.transforms.Resize((H, W)))")
    labels = torch.as_tensor([int(label) for _, label in items], dtype=torch.long)
    return torch.stack(images), labels


class BatchSource:
    """Ready batches for ``fit`` and ``evaluate``: float images [B, C, H, W] and labels [B].

    Two kinds of data come in through it, and both leave it the same way:

    * a vitlearn :class:`ImageDataset` (MNIST, Fashion-MNIST in memory): each batch is one
      indexing of the uint8 tensors, then ``normalize`` with the dataset's mean and std;
    * any map-style ``torch.utils.data.Dataset`` of ``(image [C, H, W] float, label)``
      (torchvision's datasets with their transforms, ``ImageFolder``, ``TensorDataset``,
      ``Subset``), batched by index in the order ``fit``'s shuffle generator draws; or a
      ``DataLoader``, whose batches are used as they come. Its images are NOT normalised here:
      that is the dataset's transform's job (``Normalize(mean, std)``), so nothing is
      normalised twice.

    Random shifts (``max_shift``) are applied to the training batches of both.
    """

    def __init__(self, data, role: str):
        from torch.utils.data import DataLoader, Dataset, IterableDataset

        if isinstance(data, torch.Tensor):
            raise TypeError(f"{role} is a tensor {list(data.shape)}, without labels; give a vitlearn "
                            f"ImageDataset (images, labels, classes, mean, std), or "
                            f"torch.utils.data.TensorDataset(images [N, C, H, W] float, labels [N])")
        self.data, self.role = data, role
        self.loader = data if isinstance(data, DataLoader) else None
        dataset = data.dataset if self.loader is not None else data
        if isinstance(dataset, IterableDataset):
            raise TypeError(f"{role} is an IterableDataset; fit needs a map-style dataset (one with "
                            f"__getitem__ and __len__) or a DataLoader over one")
        if not isinstance(data, ImageDataset) and not isinstance(dataset, Dataset) and \
                not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
            raise TypeError(f"{role} must be a vitlearn ImageDataset (vitlearn.load_dataset('mnist')), "
                            f"a torch Dataset of (image [C, H, W], label) items, or a DataLoader; got "
                            f"{type(data).__name__}")
        self.dataset = dataset
        self.in_memory = isinstance(data, ImageDataset)
        self.num_classes: int | None = None  # set by fit: labels are checked against it per batch
        if len(dataset) == 0:
            raise ValueError(f"{role} holds no images")

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def name(self) -> str:
        return self.data.name if self.in_memory else type(self.dataset).__name__

    @property
    def classes(self) -> tuple[str, ...] | None:
        return tuple(self.data.classes) if self.in_memory else dataset_classes(self.dataset)

    def targets(self) -> torch.Tensor | None:
        return dataset_targets(self.dataset)

    def first_image(self) -> torch.Tensor:
        """The first image, as the model will get it [C, H, W] (float), checked."""
        if self.in_memory:
            return normalize(self.data.images[:1], self.data.mean, self.data.std)[0]
        return check_item(self.dataset[0], self.role)[0]

    def info(self) -> dict:
        """What checkpoints keep about the data: its name, class names and normalisation (None
        where the dataset's own transform normalises)."""
        classes = self.classes
        if classes is None and self.num_classes is not None:
            classes = tuple(str(k) for k in range(self.num_classes))
        return {"name": self.name, "classes": list(classes or ()),
                "mean": getattr(self.dataset, "mean", None), "std": getattr(self.dataset, "std", None)}

    def steps_per_epoch(self, batch_size: int) -> int:
        """Training steps of one epoch: full batches only, or every batch of a DataLoader."""
        return len(self.loader) if self.loader is not None else len(self) // batch_size

    def train_batches(self, batch_size: int, *, shuffle: torch.Generator, augment: torch.Generator,
                      max_shift: int, max_rotate: float = 0.0, max_scale: float = 0.0,
                      rank: int = 0, world: int = 1, device=None,
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of shuffled, augmented training batches on ``device`` (full batches only;
        with DDP, this rank's slice of every batch): shifted, then rotated and zoomed."""
        if self.in_memory:
            data = self.data
            for xb, yb in iterate_batches(data.images, data.labels, batch_size, shuffle=True,
                                          generator=shuffle, drop_last=True):
                xb, yb = xb[rank::world], yb[rank::world]
                x = normalize(xb, data.mean, data.std)
                x = random_affine(random_shift(x, max_shift, augment), max_rotate, max_scale, augment)
                yield x.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            return
        for xb, yb in self._generic_batches(batch_size, shuffle=shuffle, drop_last=True):
            xb, yb = xb[rank::world], yb[rank::world]
            x = random_affine(random_shift(xb, max_shift, augment), max_rotate, max_scale, augment)
            yield x.to(device, non_blocking=True), yb.to(device, non_blocking=True)

    def eval_batches(self, batch_size: int, device=None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every image once, in order: (images on ``device``, labels on the CPU)."""
        if self.in_memory:
            data = self.data
            for images, labels in iterate_batches(data.images, data.labels, batch_size):
                yield normalize(images.to(device), data.mean, data.std), labels
            return
        for xb, yb in self._generic_batches(batch_size, shuffle=None, drop_last=False):
            yield xb.to(device), yb

    def _generic_batches(self, batch_size: int, *, shuffle: torch.Generator | None, drop_last: bool):
        from torch.utils.data import DataLoader

        if self.loader is not None:
            batches = self.loader
        else:
            n = len(self)
            order = torch.randperm(n, generator=shuffle) if shuffle is not None else torch.arange(n)
            stop = n - n % batch_size if drop_last else n
            index_batches = [order[i:i + batch_size].tolist() for i in range(0, stop, batch_size)]
            batches = DataLoader(self.dataset, batch_sampler=index_batches, collate_fn=self._collate)
        for i, batch in enumerate(batches):
            if self.loader is not None:
                if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                    raise TypeError(f"{self.role}'s DataLoader gives {_describe(batch)} per batch; fit "
                                    f"needs (images [B, C, H, W], labels [B])")
                batch = (batch[0], torch.as_tensor(batch[1]))
            self._check_labels(batch[1], i)
            yield batch

    def _collate(self, items: list) -> tuple[torch.Tensor, torch.Tensor]:
        return _collate(items)

    def _check_labels(self, labels: torch.Tensor, batch: int) -> None:
        """A label outside the model's outputs stops here, naming it (not torch's "Target 12 is
        out of bounds" from inside the loss)."""
        if self.num_classes is None or labels.numel() == 0:
            return
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= self.num_classes:
            bad = low if low < 0 else high
            raise ValueError(f"{self.role} batch {batch} holds the label {bad}, but the model has "
                             f"{self.num_classes} outputs (classes 0..{self.num_classes - 1}); build "
                             f"it with num_classes covering every label (ViT.for_dataset(data) counts "
                             f"them), or fix the labels")


# -- a folder of images, one sub-folder per class (torchvision's ImageFolder layout) ----------

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")


class ImageFolderError(ValueError):
    """A folder of images that cannot be trained on as it is (the message names the file or folder)."""


def read_image(path: str | os.PathLike, *, img_size: int | None = None, in_chans: int = 3,
               mean: float = 0.5, std: float = 0.5) -> torch.Tensor:
    """One image file -> float [C, H, W]: grey (``in_chans=1``) or RGB (3), transparency on
    white, resized to ``img_size`` x ``img_size`` when given, scaled to [0, 1], then
    ``(x - mean) / std``. The preprocessing of :class:`ImageFolderDataset` and of
    ``python -m vitlearn predict`` for folder-trained models: one function, so they agree."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            if img.mode in ("RGBA", "LA", "P", "PA"):
                img = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)),
                                            img.convert("RGBA"))
            img = img.convert("L" if in_chans == 1 else "RGB")
            if img_size is not None and img.size != (img_size, img_size):
                img = img.resize((img_size, img_size), Image.Resampling.BILINEAR)
            pixels = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
            width, height = img.size
    except FileNotFoundError:
        raise FileNotFoundError(f"no such image file: {path}") from None
    except (UnidentifiedImageError, OSError) as err:
        raise ImageFolderError(f"{path} is not an image PIL can read: {err}") from None
    x = pixels.reshape(height, width, -1).permute(2, 0, 1).float().div_(255.0)  # [C, H, W]
    return x.sub_(mean).div_(std)


def scan_image_folder(root: str | os.PathLike, *, img_size: int | None = None,
                      ) -> tuple[list[tuple[Path, int]], tuple[str, ...], int, int]:
    """(samples [(file, class index)], class names, image size, channels) of a folder laid out
    as ``root/<class>/<image>``; every file's header is read, so a bad folder fails here with
    its name: no class folders, one class, a class without images, an unreadable file, or
    (without ``img_size``) images of different or non-square sizes."""
    from PIL import Image, UnidentifiedImageError

    root = Path(root).expanduser()
    if not root.is_dir():
        raise ImageFolderError(f"{root} is not a folder")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise ImageFolderError(f"{root} has no class sub-folders; lay the images out as "
                               f"{root}/<class name>/<image>.png, one sub-folder per class")
    if len(class_dirs) == 1:
        raise ImageFolderError(f"{root} has one class folder ({class_dirs[0].name}); a classifier "
                               f"needs at least two classes, one sub-folder each")
    samples, sizes, grey = [], {}, True
    for k, folder in enumerate(class_dirs):
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not files:
            raise ImageFolderError(f"the class folder {folder} holds no images "
                                   f"({', '.join(IMAGE_EXTENSIONS)}); add some or remove it")
        for path in files:
            try:
                with Image.open(path) as img:
                    sizes.setdefault(img.size, path)
                    grey = grey and img.mode in _GREY_MODES
            except (UnidentifiedImageError, OSError) as err:
                raise ImageFolderError(f"{path} is not an image PIL can read ({err}); remove or "
                                       f"replace it") from None
            samples.append((path, k))
    if img_size is None:
        if len(sizes) > 1:
            (s1, f1), (s2, f2) = list(sizes.items())[:2]
            raise ImageFolderError(f"the images in {root} have different sizes ({f1} is "
                                   f"{s1[0]}x{s1[1]}, {f2} is {s2[0]}x{s2[1]}); choose one size "
                                   f"for all with img_size= (--img-size N)")
        (width, height), path = next(iter(sizes.items()))
        if width != height:
            raise ImageFolderError(f"the images in {root} are {width}x{height} ({path}); a ViT "
                                   f"takes square images: resize them with img_size= (--img-size N)")
        img_size = width
    return samples, tuple(p.name for p in class_dirs), img_size, 1 if grey else 3


class ImageFolderDataset(torch.utils.data.Dataset):
    """A folder laid out as torchvision's ``ImageFolder`` (``root/<class>/<image>``), checked
    when made (:func:`scan_image_folder`), with items ``(image [C, H, W] float, label)``
    normalised to [-1, 1] (``mean = std = 0.5``): what ``python -m vitlearn train --data-dir``
    trains on. ``classes`` and ``targets`` as torchvision's."""

    mean, std = 0.5, 0.5

    def __init__(self, root: str | os.PathLike, *, img_size: int | None = None,
                 in_chans: int | None = None, classes: tuple[str, ...] | None = None):
        samples, found, self.img_size, chans = scan_image_folder(root, img_size=img_size)
        if classes is not None and tuple(classes) != found:
            raise ImageFolderError(f"the class folders of {root} ({', '.join(found)}) are not those "
                                   f"of the training folder ({', '.join(classes)})")
        self.root, self.samples, self.classes = Path(root), samples, found
        self.in_chans = in_chans or chans
        self.targets = [label for _, label in samples]
        self.name = "folder"

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        return read_image(path, img_size=self.img_size, in_chans=self.in_chans, mean=self.mean,
                          std=self.std), label


def load_image_folder(root: str | os.PathLike, *, img_size: int | None = None,
                      val_split: float = 0.1, seed: int = 0):
    """(train, val) of a folder of images: ``root/train`` and ``root/val`` (or ``root/test``)
    when present, else ``root/<class>/...`` cut at random into ``1 - val_split`` and
    ``val_split`` (a ``torch.utils.data.Subset`` each)."""
    root = Path(root).expanduser()
    if (root / "train").is_dir():
        train = ImageFolderDataset(root / "train", img_size=img_size)
        for split in ("val", "test"):
            if (root / split).is_dir():
                return train, ImageFolderDataset(root / split, img_size=train.img_size,
                                                 in_chans=train.in_chans, classes=train.classes)
        data = train
    else:
        data = ImageFolderDataset(root, img_size=img_size)
    if not 0 < val_split < 1:
        raise ValueError(f"val_split must be between 0 and 1 (the share of the images kept for "
                         f"validation), got {val_split}")
    n_val = max(1, round(len(data) * val_split))
    if n_val >= len(data):
        raise ImageFolderError(f"{root} holds {len(data)} images: too few to keep {n_val} for "
                               f"validation; add images or a val/ folder")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed)).tolist()
    subset = torch.utils.data.Subset
    return subset(data, order[n_val:]), subset(data, order[:n_val])
