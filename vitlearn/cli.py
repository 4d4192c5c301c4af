"""``python -m vitlearn`` / ``vitlearn``: train, evaluate and predict from the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Subset

from .checkpoint import CheckpointError, load, load_checkpoint
from .data import (
    DATASETS,
    IMAGE_EXTENSIONS,
    DataNotFoundError,
    ImageFolderDataset,
    load_dataset,
    load_image_folder,
    normalize,
    read_image,
)
from .model import ViT, ViTConfig
from .training import OPTIMIZERS, TrainConfig, evaluate, fit

# train's flags that set the model: --patch-size -> ViTConfig.patch_size, ...
MODEL_FLAGS = ("patch_size", "embed_dim", "depth", "num_heads")
_TRAIN = TrainConfig()  # train's defaults are fit's


def _model_flags(args) -> dict:
    """``train``'s model flags that were given (--patch-size, --embed-dim, ...)."""
    return {name: getattr(args, name) for name in MODEL_FLAGS if getattr(args, name) is not None}


def _model_config(args, num_classes: int) -> ViTConfig:
    """The ViTConfig of ``train``'s model flags, the rest ViTConfig's defaults."""
    return ViTConfig(num_classes=num_classes, **_model_flags(args))


def is_image_folder(data_dir) -> bool:
    """Whether ``--data-dir`` points at a folder of images (one sub-folder per class, or
    train/ and val/ splits of those) rather than at a folder holding MNIST/raw or
    FashionMNIST/raw: it exists, holds no MNIST or FashionMNIST folder, and has a sub-folder."""
    if data_dir is None:
        return False
    root = Path(data_dir).expanduser()
    if not root.is_dir() or any((root / name).exists() for name, *_ in DATASETS.values()):
        return False
    return any(p.is_dir() and not p.name.startswith(".") for p in root.iterdir())


def _train_data(args):
    """(train, test, name) from --data-dir (a folder of images) or --dataset (MNIST ...)."""


    if is_image_folder(args.data_dir):
        train, test = load_image_folder(args.data_dir, img_size=args.img_size,
                                        val_split=args.val_split, seed=args.seed)
        if args.limit:
            train = Subset(train, range(min(args.limit, len(train))))
        return train, test, f"images of {args.data_dir}"
    train = load_dataset(args.dataset, train=True, data_dir=args.data_dir)
    test = load_dataset(args.dataset, train=False, data_dir=args.data_dir)
    if args.img_size and args.img_size != train.images.shape[-1]:
        train, test = train.resize(args.img_size), test.resize(args.img_size)
    if args.limit:
        train, test = train[:args.limit], test[:max(1, args.limit // 6)]
    return train, test, f"{train.name} images"


def _train(args) -> int:

    # Nonsense flags fail here, before the data is loaded (a folder's image size is known
    # only once it has been read: ViT.for_dataset checks the model flags against it).
    if not is_image_folder(args.data_dir):
        _model_config(args, num_classes=len(DATASETS[args.dataset][1]))
    TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                optimizer=args.optimizer)
    if args.limit < 0:
        raise ValueError(f"--limit must be >= 0 (0: all images), got {args.limit}")
    train, test, name = _train_data(args)
    torch.manual_seed(args.seed)
    model = ViT.for_dataset(train, **_model_flags(args))
    print(f"training a ViT ({sum(p.numel() for p in model.parameters()):,} parameters) on "
          f"{len(train):,} {name} for {args.epochs} epoch(s)", flush=True)
    history = fit(model, train, test, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                  optimizer=args.optimizer, seed=args.seed, progress=not args.no_progress, device=args.device,
                  checkpoint=args.output, compile=args.compile)
    print(history)
    print(f"test accuracy: {history.final_test_acc:.2%} ({len(test):,} images), "
          f"{history.total_seconds:.0f} s")
    print(f"saved checkpoint: {args.output}")
    return 0


def _evaluate(args) -> int:

    state = load_checkpoint(args.checkpoint)
    name = args.dataset or (state.get("dataset") or {}).get("name", "mnist")
    model = load(args.checkpoint)
    if is_image_folder(args.data_dir):  # its val/ or test/ split, else every image in it
        root = Path(args.data_dir).expanduser()
        split = next((root / s for s in ("val", "test") if (root / s).is_dir()), root)
        classes = (state.get("dataset") or {}).get("classes")
        test = ImageFolderDataset(split, img_size=model.img_size, in_chans=model.in_chans,
                                  classes=tuple(classes) if classes else None)
        name = f"images of {split}"
    elif name not in DATASETS:
        raise ValueError(f"{args.checkpoint} was trained on {name!r} data; evaluate it on a folder "
                         f"of images with --data-dir path/to/images/")
    else:
        test = load_dataset(name, train=False, data_dir=args.data_dir)
        name = f"{name} test images"
    result = evaluate(model, test, device=args.device)
    print(f"test accuracy: {result.accuracy:.2%} ({len(test):,} {name})")
    return 0


def load_image(path: str | Path, size: int = 28, invert: str = "auto") -> torch.Tensor:
    """Read any PNG/JPEG as a 28x28 grey uint8 tensor [28, 28], white strokes on black like
    MNIST (``invert='auto'`` flips images whose border is brighter than their centre)."""
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            if img.mode in ("RGBA", "LA", "P"):
                img = img.convert("RGBA")
                background = Image.new("RGBA", img.size, (255, 255, 255, 255))
                img = Image.alpha_composite(background, img)
            grey = img.convert("L").resize((size, size), Image.Resampling.LANCZOS)
    except FileNotFoundError:
        raise FileNotFoundError(f"no such image file: {path}") from None
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{path} is not an image PIL can read (PNG or JPEG expected): {err}") from None
    x = torch.frombuffer(bytearray(grey.tobytes()), dtype=torch.uint8).reshape(size, size)
    if invert == "yes" or (invert == "auto" and _border_is_bright(x)):
        x = 255 - x
    return x


def _border_is_bright(x: torch.Tensor) -> bool:
    border = torch.cat([x[0], x[-1], x[:, 0], x[:, -1]]).float().mean()
    return bool(border > x.float().mean())


def _image_files(paths: list[str]) -> list[Path]:
    """The image files named, and those inside the folders named (sorted)."""

    files = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                print(f"error: the folder {path} holds no images", file=sys.stderr)
            files += found
        else:
            files.append(path)
    return files


def _predict(args) -> int:

    info = load_checkpoint(args.checkpoint).get("dataset") or {}
    name = info.get("name", "mnist")
    mnist_like = name in DATASETS
    _, classes, mean, std = DATASETS.get(name, DATASETS["mnist"])
    classes = info.get("classes") or classes
    mean, std = info.get("mean", mean), info.get("std", std)
    model = load(args.checkpoint)
    status = 0
    for path in _image_files(args.images):
        try:
            if mnist_like:  # grey digits, white on black: inverted when drawn dark on light
                x = normalize(load_image(path, size=model.img_size, invert=args.invert)[None], mean, std)
            else:  # as the training folder's images were read (grey or RGB, the same scaling)
                x = read_image(path, img_size=model.img_size, in_chans=model.in_chans,
                               mean=0.0 if mean is None else mean, std=1.0 if std is None else std)[None]
        except (ValueError, FileNotFoundError) as err:
            print(f"error: {err}", file=sys.stderr)
            status = 1
            continue
        probs = model.predict_proba(x)[0]
        p, k = probs.max(dim=0)
        print(f"{path}: {classes[k]} (probability {p.item():.3f})")
    return status


def _info(args) -> int:

    model = ViT()
    print(f"default ViT: {model.config}")
    print(f"parameters: {sum(p.numel() for p in model.parameters()):,}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vitlearn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a ViT (on MNIST, or on a folder of your images) and "
                       "save a checkpoint")
    t.add_argument("--epochs", type=int, default=_TRAIN.epochs, help="(default: %(default)s)")
    t.add_argument("--batch-size", type=int, default=_TRAIN.batch_size, help="(default: %(default)s)")
    t.add_argument("--lr", type=float, default=_TRAIN.lr, help="peak learning rate (default: %(default)s)")
    t.add_argument("--optimizer", default=_TRAIN.optimizer, choices=OPTIMIZERS,
                   help="adamw, or muon for the encoder's matrices (default: %(default)s)")
    t.add_argument("--dataset", default="mnist", choices=sorted(DATASETS))
    t.add_argument("--data-dir", default=None, help="a folder of your images, one sub-folder per "
                   "class (with train/ and val/ or test/ splits, or cut by --val-split); or the "
                   "folder holding MNIST/raw or FashionMNIST/raw (default: $VITLEARN_DATA_DIR, "
                   "else ~/.cache/vitlearn/data)")
    t.add_argument("--img-size", type=int, default=None, help="resize every image to N x N pixels "
                   "(default: the images' own size, which must then be one square size)")
    t.add_argument("--val-split", type=float, default=0.1, help="share of a folder without val/ or "
                   "test/ kept for validation (default: %(default)s)")
    t.add_argument("--output", "-o", default="vit-mnist.pt", help="checkpoint path")
    t.add_argument("--seed", type=int, default=_TRAIN.seed)
    t.add_argument("--device", default=None, help="cpu, cuda, mps (default: automatic)")
    for name in MODEL_FLAGS:  # defaults from ViTConfig (via ViT.for_dataset); checked by it
        default = getattr(ViTConfig, name)
        more = " for 28x28 images, else the divisor of the image size nearest to it" \
            if name == "patch_size" else ""
        t.add_argument(f"--{name.replace('_', '-')}", type=int, default=None,
                       help=f"model {name} (default: {default}{more})")
    t.add_argument("--limit", type=int, default=0, help="train on the first N images only "
                   "(and test on N/6): a quick smoke run")
    t.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    t.add_argument("--compile", action="store_true",
                   help="train through torch.compile (slow first step, faster after)")
    t.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="print the test accuracy of a checkpoint")
    e.add_argument("checkpoint")
    e.add_argument("--dataset", default=None, choices=sorted(DATASETS),
                   help="default: the data set the checkpoint was trained on")
    e.add_argument("--data-dir", default=None, help="a folder of images (its val/ or test/ split "
                   "when present, else all of it), or the folder holding MNIST/raw")
    e.add_argument("--device", default=None)
    e.set_defaults(func=_evaluate)

    p = sub.add_parser("predict", help="classify PNG/JPEG images (or the images in folders) with a "
                       "checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--invert", choices=("auto", "yes", "no"), default="auto",
                   help="MNIST digits are white on black; 'auto' inverts dark-on-light images")
    p.set_defaults(func=_predict)

    i = sub.add_parser("info", help="print the default model's configuration and size")
    i.set_defaults(func=_info)

    from .grading import add_grade_parser  # grade: its flags live with the grader (vitlearn/grading.py)
    add_grade_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    try:
        return args.func(args)
    except (CheckpointError, DataNotFoundError, OSError, ValueError, TypeError,
            FloatingPointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
