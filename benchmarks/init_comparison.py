"""Why vitlearn initialises like vit-pytorch and not like timm: accuracy after a short run.

Trains the default ViT twice per seed on the first 6,000 MNIST training images for 3 epochs
(batch 64) and scores 2,000 held-out training images (the test set is never used to choose):
once with vitlearn's init (PyTorch's default Linear init, [CLS] and position embeddings from
N(0, 1)), once with timm's (truncated N(0, 0.02) for every Linear, [CLS] and position).

    python benchmarks/init_comparison.py [--seeds 3]
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import vitlearn
from vitlearn.data import train_val_split


def timm_init(model: vitlearn.ViT) -> vitlearn.ViT:
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
    nn.init.trunc_normal_(model.cls_token.token, std=0.02)
    nn.init.trunc_normal_(model.pos_embed.pos, std=0.02)
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    train, val = train_val_split(vitlearn.load_dataset("mnist"), 2000)
    train = train[:6000]
    print(f"{'seed':>4}  {'vitlearn init':>13}  {'timm init':>9}")
    results = {"vitlearn": [], "timm": []}
    for seed in range(args.seeds):
        row = []
        for name in results:
            torch.manual_seed(seed)
            model = vitlearn.ViT()
            if name == "timm":
                timm_init(model)
            h = vitlearn.fit(model, train, val, epochs=3, batch_size=64, seed=seed, progress=False)
            results[name].append(h.final_test_acc)
            row.append(h.final_test_acc)
        print(f"{seed:>4}  {row[0]:>13.2%}  {row[1]:>9.2%}", flush=True)
    mean = {k: sum(v) / len(v) for k, v in results.items()}
    print(f"mean  {mean['vitlearn']:>13.2%}  {mean['timm']:>9.2%}   "
          f"(vitlearn - timm: {100 * (mean['vitlearn'] - mean['timm']):+.1f} points)")


if __name__ == "__main__":
    main()
