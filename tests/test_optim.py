"""vitlearn.optim: Muon for the encoder's matrices, AdamW for the rest, and fit(optimizer=...)."""

import math

import pytest
import torch
from test_training import KW, small_model, synthetic
from torch import nn

import vitlearn
from vitlearn.optim import MuonAdamW, newton_schulz
from vitlearn.training import make_optimizer


@pytest.mark.parametrize("shape", [(64, 64), (192, 64), (64, 128), (3, 32, 96)])
def test_newton_schulz_flattens_the_singular_values_and_keeps_the_singular_vectors(shape):
    gen = torch.Generator().manual_seed(0)
    *batch, rows, cols = shape
    k = min(rows, cols)
    u, _ = torch.linalg.qr(torch.randn(*batch, rows, k, generator=gen))
    v, _ = torch.linalg.qr(torch.randn(*batch, cols, k, generator=gen))
    s = torch.linspace(0.1, 1.0, k) * 7.0  # a spread of 10x, at an arbitrary scale
    g = u @ torch.diag_embed(s.expand(*batch, k)) @ v.mT
    x = newton_schulz(g)
    assert x.shape == g.shape
    coeffs = u.mT @ x @ v  # x in g's singular vectors: diagonal, with every entry near 1
    diag = torch.diagonal(coeffs, dim1=-2, dim2=-1)
    assert diag.min() > 0.6 and diag.max() < 1.25  # the quintic's band around 1 (not exactly 1)
    assert (coeffs - torch.diag_embed(diag)).abs().max() < 1e-4
    assert torch.linalg.svdvals(x).max() < 1.25  # nothing outside g's singular vectors


def test_adamw_groups_step_exactly_as_torch_adamw():
    torch.manual_seed(0)
    a, b = nn.Linear(8, 4), nn.Linear(8, 4)
    b.load_state_dict(a.state_dict())
    ref = torch.optim.AdamW(a.parameters(), lr=1e-2, weight_decay=0.1)
    ours = MuonAdamW([{"params": list(b.parameters())}], lr=1e-2, weight_decay=0.1)
    for _ in range(5):
        x = torch.randn(16, 8)
        for model, opt in ((a, ref), (b, ours)):
            opt.zero_grad()
            model(x).square().sum().backward()
            opt.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=1e-6)
    assert set(ours.state[b.weight]) == set(ref.state[a.weight])  # the same state, same names


def reference_muon_step(p, grad, buf, *, lr, wd, beta=0.95):
    """One Muon step for one matrix, written out plainly (no batching, no foreach)."""
    buf = beta * buf + (1 - beta) * grad
    nesterov = (1 - beta) * grad + beta * buf
    update = newton_schulz(nesterov)
    return p * (1 - lr * wd) - lr * 0.2 * math.sqrt(max(p.shape)) * update, buf


def test_muon_groups_follow_the_plain_muon_update():
    torch.manual_seed(0)
    ws = [nn.Parameter(torch.randn(48, 16)) for _ in range(2)] + [nn.Parameter(torch.randn(16, 32))]
    refs = [w.detach().clone() for w in ws]
    bufs = [torch.zeros_like(w) for w in ws]
    opt = MuonAdamW([{"params": ws, "muon": True, "weight_decay": 0.05}], lr=0.01)
    for _ in range(3):
        grads = [torch.randn_like(w) for w in ws]
        for w, g in zip(ws, grads):
            w.grad = g.clone()
        opt.step()
        for i, g in enumerate(grads):
            refs[i], bufs[i] = reference_muon_step(refs[i], g, bufs[i], lr=0.01, wd=0.05)
    for w, r in zip(ws, refs):
        torch.testing.assert_close(w.detach(), r, rtol=1e-5, atol=1e-6)


def test_muon_group_refuses_what_is_not_a_matrix():
    with pytest.raises(ValueError, match=r"2-D weight matrices only.*\(64,\).*muon=False"):
        MuonAdamW([{"params": [nn.Parameter(torch.zeros(64))], "muon": True}])


def test_make_optimizer_muon_takes_the_encoder_matrices_only():
    model = small_model()
    opt = make_optimizer(model, lr=1e-3, weight_decay=0.05, optimizer="muon")
    muon, adamw_decay, adamw_rest = opt.param_groups
    encoder_matrices = {id(m.weight) for m in model.encoder.modules() if isinstance(m, nn.Linear)}
    assert muon["muon"] and {id(p) for p in muon["params"]} == encoder_matrices
    assert {id(p) for p in adamw_decay["params"]} == {id(model.patch_embed.proj.weight),
                                                        id(model.head.fc.weight)}
    assert not adamw_decay["muon"] and adamw_decay["weight_decay"] == 0.05
    assert adamw_rest["weight_decay"] == 0.0
    counted = sum(len(g["params"]) for g in opt.param_groups)
    assert counted == len(list(model.parameters()))


def test_muon_needs_an_encoder_and_says_so():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    with pytest.raises(ValueError, match="model.encoder.*optimizer='adamw'"):
        make_optimizer(mlp, lr=1e-3, weight_decay=0.05, optimizer="muon")


def test_fit_refuses_an_unknown_optimizer_before_any_work():
    with pytest.raises(ValueError, match=r"optimizer must be one of 'adamw', 'muon'.*'sgd'"):
        vitlearn.fit(small_model(), synthetic(64), synthetic(32, seed=1), optimizer="sgd", progress=False)


def test_fit_with_muon_learns_repeats_and_resumes_exactly(tmp_path):
    train, test = synthetic(), synthetic(64, seed=1)
    kw = {**KW, "optimizer": "muon"}
    full, again = small_model(), small_model()
    h_full = vitlearn.fit(full, train, test, checkpoint=tmp_path / "run-{epoch}.pt", **kw)
    h_again = vitlearn.fit(again, train, test, **kw)
    assert h_full.train_loss == h_again.train_loss
    assert h_full.train_loss[-1] < h_full.train_loss[0]
    resumed = small_model()
    h_res = vitlearn.fit(resumed, train, test, resume=tmp_path / "run-1.pt", **kw)
    assert h_res.train_loss == h_full.train_loss
    for (name, pa), pb in zip(full.named_parameters(), resumed.parameters()):
        assert torch.equal(pa, pb), name
    adamw = small_model()
    vitlearn.fit(adamw, train, test, **KW)
    assert not torch.equal(adamw.encoder.blocks[0].attn.qkv.weight, full.encoder.blocks[0].attn.qkv.weight)
    with pytest.raises(ValueError, match="optimizer"):  # the optimizer is part of the settings
        vitlearn.fit(small_model(), train, test, resume=tmp_path / "run-1.pt", **KW)


@pytest.mark.parametrize("setting, message", [
    (dict(lr=-1e-3), r"lr must be a number >= 0, got lr=-0.001"),
    (dict(momentum=1.0), r"momentum must be a number in \[0, 1\)"),
    (dict(ns_steps=0), r"ns_steps must be a whole number >= 1"),
    (dict(betas=(0.9, 1.5)), r"betas must be two numbers in \[0, 1\)"),
    (dict(weight_decay=float("nan")), r"weight_decay must be a number >= 0"),
])
def test_bad_settings_are_refused_when_made(setting, message):
    with pytest.raises(ValueError, match=message):
        MuonAdamW([nn.Parameter(torch.zeros(4, 4))], **setting)


def test_a_group_added_later_is_checked_too():
    opt = MuonAdamW([nn.Parameter(torch.zeros(4, 4))])
    with pytest.raises(ValueError, match="2-D weight matrices only"):
        opt.add_param_group({"params": [nn.Parameter(torch.zeros(4))], "muon": True})
    with pytest.raises(ValueError, match="momentum"):
        opt.add_param_group({"params": [nn.Parameter(torch.zeros(4, 4))], "momentum": -0.1})


def test_a_checkpoint_from_before_the_optimizer_setting_resumes_as_adamw(tmp_path):
    train, test = synthetic(), synthetic(64, seed=1)
    full = small_model()
    h_full = vitlearn.fit(full, train, test, checkpoint=tmp_path / "run-{epoch}.pt", **KW)
    state = torch.load(tmp_path / "run-1.pt", weights_only=True)
    del state["train_config"]["optimizer"]  # as written before fit had the setting
    torch.save(state, tmp_path / "old.pt")
    h_res = vitlearn.fit(small_model(), train, test, resume=tmp_path / "old.pt", **KW)
    assert h_res.train_loss == h_full.train_loss
    with pytest.raises(ValueError, match="optimizer"):
        vitlearn.fit(small_model(), train, test, resume=tmp_path / "old.pt", **{**KW, "optimizer": "muon"})
