"""Epoch time of ``fit`` on a generic Dataset (torchvision's MNIST with ``ToTensor``) beside
vitlearn's in-memory ``ImageDataset``: same model, same images, same settings, one run each.

    flock /tmp/vitlearn-cpu.lock .venv/bin/python benchmarks/generic_loading.py
    flock /tmp/vitlearn-cpu.lock .venv/bin/python benchmarks/generic_loading.py --train-size 60000

Rows, each one ``fit`` epoch (training, then evaluating on ``--test-size`` test images):

* ``ImageDataset``: uint8 tensors in memory, each batch one indexing + ``normalize`` (the default);
* ``torchvision MNIST``: ``datasets.MNIST(transform=Compose([ToTensor(), Normalize(...)]))``
  handed to ``fit`` as it is: items read one by one (a PIL image per item), batched by index
  in the main process;
* ``DataLoader, N workers``: the same dataset in a ``DataLoader(num_workers=N,
  persistent_workers=True)``, which ``fit`` uses as it comes (its own shuffling);
* ``TensorDataset``: the same normalised images, already float in memory (the cost of the
  generic path itself, without PIL).

The ratio is each row's epoch time over the ``ImageDataset`` row's (the issue's goal: <= 1.3).
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch.utils.data import DataLoader, Subset, TensorDataset

import vitlearn
from vitlearn.data import DATASETS, normalize, resolve_data_dir


def epoch_seconds(train, test, args) -> tuple[float, float]:
    torch.manual_seed(0)
    model = vitlearn.ViT()
    t0 = time.perf_counter()
    history = vitlearn.fit(model, train, test, epochs=1, batch_size=args.batch_size, progress=False,
                           device="cpu")
    return time.perf_counter() - t0, history.final_test_acc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=12_000)
    parser.add_argument("--test-size", type=int, default=2_000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    from torchvision import datasets, transforms

    root = str(resolve_data_dir())
    _, _, mean, std = DATASETS["mnist"]
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((mean,), (std,))])
    tv_train = Subset(datasets.MNIST(root, train=True, transform=tf), range(args.train_size))
    tv_test = Subset(datasets.MNIST(root, train=False, transform=tf), range(args.test_size))
    mem_train = vitlearn.load_dataset("mnist", train=True)[:args.train_size]
    mem_test = vitlearn.load_dataset("mnist", train=False)[:args.test_size]
    tensors = [TensorDataset(normalize(d.images, mean, std), d.labels) for d in (mem_train, mem_test)]

    rows = [("ImageDataset (in memory)", mem_train, mem_test),
            ("torchvision MNIST, ToTensor", tv_train, tv_test),
            ("TensorDataset (float, in memory)", *tensors)]
    for n in args.workers:
        loader = DataLoader(tv_train, batch_size=args.batch_size, shuffle=True, drop_last=True,
                            num_workers=n, persistent_workers=True)
        rows.append((f"DataLoader, {n} worker(s)", loader,
                     DataLoader(tv_test, batch_size=1000, num_workers=n, persistent_workers=True)))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; default ViT, 1 epoch on "
          f"{args.train_size:,} MNIST images, batch {args.batch_size}, then {args.test_size:,} test images")
    base = None
    for name, train, test in rows:
        seconds, acc = epoch_seconds(train, test, args)
        base = base or seconds
        print(f"{name:34s} {seconds:7.1f} s   {seconds / base:5.2f}x   test acc {acc:.2%}", flush=True)


if __name__ == "__main__":
    main()
