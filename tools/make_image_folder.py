"""Write a small folder of generated PNG images in torchvision's ImageFolder layout, for the
README's "Train on your own data" example and the tests (tests/test_own_data.py):

    python tools/make_image_folder.py shapes/                 # shapes/<class>/<i>.png
    python tools/make_image_folder.py shapes/ --splits        # shapes/train/... and shapes/val/...

Class k is a bright square in quarter k of a noisy dark image (RGB, 32x32 by default): easy
to learn, so a few epochs show whether the pipeline works. A folder of real photos needs no
change: one sub-folder per class.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image

CLASSES = ("top-left", "top-right", "bottom-left", "bottom-right")


def make_folder(root: str | Path, classes=CLASSES[:2], n: int = 12, size: int = 16, mode: str = "RGB",
                seed: int = 0) -> Path:
    """``n`` PNGs per class under ``root/<class>/``; class k's square sits in quarter k."""
    root = Path(root)
    g = torch.Generator().manual_seed(seed)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = torch.randint(0, 60, (size, size, 3), generator=g, dtype=torch.uint8)
            r, c = divmod(k % 4, 2)
            pixels[r * size // 2:(r + 1) * size // 2, c * size // 2:(c + 1) * size // 2, k // 4 % 3] = 255
            Image.fromarray(pixels.numpy()).convert(mode).save(root / name / f"{i}.png")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--splits", action="store_true", help="write train/ and val/ (1/4 as many)")
    args = parser.parse_args()
    root = Path(args.root)
    if args.splits:
        make_folder(root / "train", CLASSES, args.per_class, args.size)
        make_folder(root / "val", CLASSES, max(1, args.per_class // 4), args.size, seed=1)
    else:
        make_folder(root, CLASSES, args.per_class, args.size)
    print(f"wrote {len(CLASSES)} classes of {args.size}x{args.size} PNGs under {root}")


if __name__ == "__main__":
    main()
