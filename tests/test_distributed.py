"""``vitlearn.fit`` under DistributedDataParallel: 2 CPU processes (gloo) must end with identical
weights, equal (to float rounding) to one process training on the same global batches.

With no augmentation (max_shift=0), no dropout and every global batch cut into two equal halves,
DDP's averaged gradient is the full-batch gradient, so the two runs compute the same function.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

import vitlearn
from vitlearn.training import default_device

MODEL = dict(embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0)
# Small lr: Adam's first steps are close to lr * sign(g), so a gradient element near zero could
# flip sign on float rounding alone; a small lr keeps such flips far below the tolerance.
FIT = dict(epochs=2, batch_size=32, lr=1e-4, warmup_epochs=0.5, max_shift=0, seed=3, progress=False)
N_TRAIN, N_TEST = 160, 40  # 5 steps per epoch

WORKER = textwrap.dedent("""
    import sys
    import torch
    import torch.distributed as dist
    import vitlearn

    torch.set_num_threads(1)
    sys.path.insert(0, sys.argv[2])
    from test_distributed import FIT, MODEL, synthetic

    caller_starts = sys.argv[3] == "caller"
    if caller_starts:  # the caller's own process group: fit must leave it as it found it
        dist.init_process_group("gloo")
    train, test = synthetic()
    torch.manual_seed(1234)
    model = vitlearn.ViT(**MODEL)
    seen, ranks = [], set()  # images per training forward pass on this rank; (rank, world) seen
    def record(m, args):
        if m.training:
            seen.append(len(args[0]))
            ranks.add((dist.get_rank(), dist.get_world_size()))
    model.register_forward_pre_hook(record)
    history = vitlearn.fit(model, train, test, **FIT)
    (rank, world), = ranks
    torch.save({"state": model.state_dict(), "history": history.to_dict(), "seen": seen,
                "world": world, "rank": rank, "initialized_after": dist.is_initialized()}, sys.argv[1])
    if caller_starts:
        dist.destroy_process_group()
""")


def synthetic(seed: int = 0) -> tuple[vitlearn.ImageDataset, vitlearn.ImageDataset]:
    g = torch.Generator().manual_seed(seed)
    n = N_TRAIN + N_TEST
    images = torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    data = vitlearn.ImageDataset(images, labels, classes=tuple(str(i) for i in range(10)),
                                 mean=0.13, std=0.31, name="mnist")
    return data[:N_TRAIN], data[N_TRAIN:]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_ranks(tmp_path, world: int = 2, group: str = "fit") -> list[dict]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    port = str(_free_port())
    procs = []
    for rank in range(world):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "RANK": str(rank),
               "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(world),
               "OMP_NUM_THREADS": "1", "VITLEARN_DEVICE": "cpu"}
        out = tmp_path / f"rank{rank}.pt"
        procs.append((out, subprocess.Popen(
            [sys.executable, str(script), str(out), os.path.dirname(__file__), group], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
    results = []
    try:
        for out, proc in procs:
            log, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0, f"rank failed (exit {proc.returncode}):\n{log}"
            results.append(torch.load(out, weights_only=False))
    finally:
        for _, proc in procs:
            if proc.poll() is None:
                proc.kill()
    return results


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch.distributed with gloo is not available")
def test_ddp_two_ranks_match_each_other_and_one_process(tmp_path):
    ranks = _run_ranks(tmp_path)
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world"] == 2 for r in ranks)
    # fit started the process group (torchrun's variables), so fit ended it
    assert not any(r["initialized_after"] for r in ranks)
    # Each rank trains on its half of every global batch.
    steps = FIT["epochs"] * (N_TRAIN // FIT["batch_size"])
    for r in ranks:
        assert r["seen"] == [FIT["batch_size"] // 2] * steps

    # 1. Every rank ends with exactly the same weights (DDP keeps replicas in lockstep).
    s0, s1 = ranks[0]["state"], ranks[1]["state"]
    assert s0.keys() == s1.keys()
    for name in s0:
        assert torch.equal(s0[name], s1[name]), f"ranks differ in {name}"
    # The metrics are all-reduced, so both ranks report the same history.
    assert ranks[0]["history"]["train_loss"] == ranks[1]["history"]["train_loss"]

    # 2. The same run in one process, same global batch: the same function up to rounding.
    train, test = synthetic()
    torch.manual_seed(1234)
    model = vitlearn.ViT(**MODEL)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    history = vitlearn.fit(model, train, test, device="cpu", **FIT)
    single = model.state_dict()
    moved = max((single[k] - initial[k]).abs().max().item() for k in single)
    assert moved > 1e-4, "training did not change the weights; the comparison would be empty"
    worst = max((s0[k] - single[k]).abs().max().item() for k in single)
    print(f"weights moved by up to {moved:.2e}; DDP vs one process: up to {worst:.2e}")
    assert worst < 1e-5, f"DDP and single-process weights differ by up to {worst:.2e}"
    assert ranks[0]["history"]["train_loss"] == pytest.approx(history.train_loss, rel=1e-5)
    # Accuracies: allow one argmax flipped by rounding.
    assert ranks[0]["history"]["train_acc"] == pytest.approx(history.train_acc, abs=1.01 / N_TRAIN)
    assert ranks[0]["history"]["test_acc"] == pytest.approx(history.test_acc, abs=1.01 / N_TEST)


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch.distributed with gloo is not available")
def test_fit_leaves_a_process_group_the_caller_started(tmp_path):
    ranks = _run_ranks(tmp_path, group="caller")
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world"] == 2 for r in ranks)
    assert all(r["initialized_after"] for r in ranks)
    assert torch.equal(ranks[0]["state"]["head.fc.weight"], ranks[1]["state"]["head.fc.weight"])


def test_default_device(monkeypatch):
    monkeypatch.delenv("VITLEARN_DEVICE", raising=False)
    assert default_device("cpu") == torch.device("cpu")
    assert default_device(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.setenv("VITLEARN_DEVICE", "cpu")
    assert default_device() == torch.device("cpu")
    assert default_device("meta") == torch.device("meta")  # the argument beats the variable
    monkeypatch.delenv("VITLEARN_DEVICE")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_device() == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    if getattr(torch.backends, "mps", None) is not None:
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
        assert default_device() == torch.device("mps")
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert default_device() == torch.device("cpu")
