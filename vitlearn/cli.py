"""``python -m vitlearn`` / ``vitlearn``: train, evaluate and predict from the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from .data import DATASETS, normalize
from .model import ViTConfig
from .training import OPTIMIZERS

# train's flags that set the model: --patch-size -> ViTConfig.patch_size, ...
MODEL_FLAGS = ("patch_size", "embed_dim", "depth", "num_heads")


def _model_config(args, num_classes: int):
    """The ViTConfig of ``train``'s model flags (--patch-size, --embed-dim, ...)."""
    from .model import ViTConfig

    return ViTConfig(num_classes=num_classes, **{name: getattr(args, name) for name in MODEL_FLAGS})


def _train(args) -> int:
    from .data import load_dataset
    from .model import ViT
    from .training import TrainConfig, fit

    # Nonsense flags fail here, before the data is loaded.
    config = _model_config(args, num_classes=len(DATASETS[args.dataset][1]))
    TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                optimizer=args.optimizer)
    if args.limit < 0:
        raise ValueError(f"--limit must be >= 0 (0: all images), got {args.limit}")
    train = load_dataset(args.dataset, train=True, data_dir=args.data_dir)
    test = load_dataset(args.dataset, train=False, data_dir=args.data_dir)
    if args.limit:
        train, test = train[:args.limit], test[:max(1, args.limit // 6)]
    torch.manual_seed(args.seed)
    model = ViT.from_config(config)
    print(f"training a ViT ({sum(p.numel() for p in model.parameters()):,} parameters) on "
          f"{len(train):,} {train.name} images for {args.epochs} epoch(s)", flush=True)
    history = fit(model, train, test, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                  optimizer=args.optimizer, seed=args.seed, progress=not args.no_progress, device=args.device,
                  checkpoint=args.output, compile=args.compile)
    print(history)
    print(f"test accuracy: {history.final_test_acc:.2%} ({len(test):,} images), "
          f"{history.total_seconds:.0f} s")
    print(f"saved checkpoint: {args.output}")
    return 0


def _evaluate(args) -> int:
    from .checkpoint import load, load_checkpoint
    from .data import load_dataset
    from .training import evaluate

    state = load_checkpoint(args.checkpoint)
    name = args.dataset or (state.get("dataset") or {}).get("name", "mnist")
    model = load(args.checkpoint)
    test = load_dataset(name, train=False, data_dir=args.data_dir)
    result = evaluate(model, test, device=args.device)
    print(f"test accuracy: {result.accuracy:.2%} ({len(test):,} {name} test images)")
    return 0


def load_image(path: str | Path, size: int = 28, invert: str = "auto") -> torch.Tensor:
    """Read any PNG/JPEG as a 28x28 grey uint8 tensor [28, 28], white strokes on black like
    MNIST (``invert='auto'`` flips images whose border is brighter than their centre)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

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


def _predict(args) -> int:
    from .checkpoint import load, load_checkpoint

    info = load_checkpoint(args.checkpoint).get("dataset") or {}
    name = info.get("name", "mnist")
    _, classes, mean, std = DATASETS.get(name, DATASETS["mnist"])
    classes = info.get("classes", classes)
    model = load(args.checkpoint)
    status = 0
    for path in args.images:
        try:
            x = load_image(path, size=model.img_size, invert=args.invert)
        except (ValueError, FileNotFoundError) as err:
            print(f"error: {err}", file=sys.stderr)
            status = 1
            continue
        probs = model.predict_proba(normalize(x[None], info.get("mean", mean), info.get("std", std)))[0]
        p, k = probs.max(dim=0)
        print(f"{path}: {classes[k]} (probability {p.item():.3f})")
    return status


def _info(args) -> int:
    from .model import ViT

    model = ViT()
    print(f"default ViT: {model.config}")
    print(f"parameters: {sum(p.numel() for p in model.parameters()):,}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vitlearn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train the default ViT and save a checkpoint")
    t.add_argument("--epochs", type=int, default=5)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    t.add_argument("--optimizer", default="adamw", choices=OPTIMIZERS,
                   help="adamw, or muon for the encoder's matrices (default: %(default)s)")
    t.add_argument("--dataset", default="mnist", choices=sorted(DATASETS))
    t.add_argument("--data-dir", default=None, help="folder holding MNIST/raw or "
                   "FashionMNIST/raw (default: $VITLEARN_DATA_DIR, else ~/.cache/vitlearn/data)")
    t.add_argument("--output", "-o", default="vit-mnist.pt", help="checkpoint path")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default=None, help="cpu, cuda, mps (default: automatic)")
    for name in MODEL_FLAGS:  # defaults from ViTConfig; checked by it
        t.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(ViTConfig, name),
                       help=f"model {name} (default: %(default)s)")
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
    e.add_argument("--data-dir", default=None)
    e.add_argument("--device", default=None)
    e.set_defaults(func=_evaluate)

    p = sub.add_parser("predict", help="classify PNG/JPEG images with a checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("images", nargs="+")
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
    from .checkpoint import CheckpointError
    from .data import DataNotFoundError

    try:
        return args.func(args)
    except (CheckpointError, DataNotFoundError, OSError, ValueError, TypeError,
            FloatingPointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
