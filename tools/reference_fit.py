"""Print the History of a short seeded fit on MNIST as JSON: the fixture of
tests/test_batches.py::test_mnist_fit_matches_the_original_code.

Produced with the code before the generic-data change (commit be77a9b):
    PYTHONPATH=<checkout at be77a9b> VITLEARN_DATA_DIR=... python tools/reference_fit.py \
        > tests/data/reference_fit.json
Two epochs (two seeds of the shuffle/augmentation/dropout streams), dropout on (so the
global generator's draws count too), random shifts on, 1,024 training and 256 test images.
Run with 2 threads (torch.set_num_threads(2), as the fixture was written on a 2-core machine):
a different thread count splits some reductions differently and changes the last digits.
"""

import json

import torch

import vitlearn


def reference_run() -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        return _run()
    finally:
        torch.set_num_threads(threads)


def _run() -> dict:
    train = vitlearn.load_dataset("mnist", train=True)[:1024]
    test = vitlearn.load_dataset("mnist", train=False)[:256]
    torch.manual_seed(0)
    model = vitlearn.ViT(embed_dim=32, depth=2, num_heads=2, dropout=0.1)
    history = vitlearn.fit(model, train, test, epochs=2, batch_size=64, seed=5, max_shift=2,
                           progress=False, device="cpu")
    return {"train_loss": history.train_loss, "train_acc": history.train_acc,
            "test_acc": history.test_acc, "lr": history.lr,
            "param_sum": float(sum(p.detach().double().sum() for p in model.parameters()))}


if __name__ == "__main__":
    print(json.dumps(reference_run(), indent=1))
