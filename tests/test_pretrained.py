"""vitlearn.pretrained: timm and Hugging Face ViTs converted into vitlearn.ViT give the same
logits (every weight randomised first: timm zero-initialises the head and some biases, which
would hide a wrong mapping), unsupported architectures are refused by name, and
from_pretrained fails fast without a network."""

import time

import pytest
import torch
from torch import nn

import vitlearn
from vitlearn import _preflight
from vitlearn.pretrained import PretrainedWeightsError, UnsupportedModelError

timm = pytest.importorskip("timm")

# float32: the largest difference measured on these models was below 1e-6 for logits of size ~1
ATOL32, RTOL32 = 1e-5, 1e-5


def randomise(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)
    return model.eval()


def timm_vit(**kw):
    base = dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3, num_classes=7)
    return randomise(timm.models.VisionTransformer(**{**base, **kw}))


CONFIGS = {
    "small-3ch": dict(),
    "patch4-res32-depth3": dict(patch_size=4, depth=3, embed_dim=32, num_heads=4, mlp_ratio=2.0),
    "patch16-res48": dict(img_size=48, patch_size=16, embed_dim=64, num_heads=8, depth=1),
    "mnist-like-1ch": dict(img_size=28, patch_size=7, in_chans=1, embed_dim=64, depth=4, num_heads=4,
                           mlp_ratio=2.0, num_classes=10),
    "no-qkv-bias": dict(qkv_bias=False),
    "mean-pool-fc-norm": dict(class_token=False, global_pool="avg"),
    "no-embed-class": dict(no_embed_class=True),
    "odd-mlp-ratio": dict(mlp_ratio=48 / 11 * 1.0, embed_dim=44, num_heads=4),
    "no-pos-embed": dict(pos_embed="none"),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_from_timm_gives_the_same_logits(name):
    model = timm_vit(**CONFIGS[name])
    ours = vitlearn.ViT.from_timm(model)
    assert isinstance(ours, vitlearn.ViT) and not ours.training
    c = model.patch_embed.proj.in_channels
    size = model.patch_embed.img_size[0]
    x = torch.randn(4, c, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = model(x), ours(x)
    assert expected.abs().max() > 0.1  # the head is not zero: a wrong mapping would show
    torch.testing.assert_close(got, expected, atol=ATOL32, rtol=RTOL32)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in model.parameters()) + (
        3 * model.embed_dim * len(model.blocks) if model.blocks[0].attn.qkv.bias is None else 0) + (
        model.embed_dim if model.no_embed_class else 0)


def test_from_timm_is_exact_in_float64():
    model = timm_vit(**CONFIGS["patch4-res32-depth3"]).double()
    ours = vitlearn.ViT.from_timm(model)
    assert ours.head.fc.weight.dtype == torch.float64
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), model(x), atol=1e-12, rtol=1e-12)


def test_from_timm_keeps_train_mode_and_dropout_rates():
    model = timm.models.VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2,
                                          num_classes=3, drop_rate=0.1, attn_drop_rate=0.2,
                                          proj_drop_rate=0.1)
    ours = vitlearn.ViT.from_timm(model.train())
    assert ours.training
    assert ours.config.dropout == 0.1 and ours.config.attn_dropout == 0.2


def test_vit_base_16_maps_with_the_paper_count_on_the_meta_device():
    with torch.device("meta"):
        model = timm.create_model("vit_base_patch16_224", pretrained=False)
    ours = vitlearn.ViT.from_timm(model)
    assert ours.config.embed_dim == 768 and ours.config.depth == 12 and ours.config.num_heads == 12
    assert ours.num_patches == 196
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in model.parameters()) == 86_567_656


REFUSED = [
    (dict(reg_tokens=2), "register tokens"),
    (dict(init_values=1e-5), "layer scale"),
    (dict(qk_norm=True), "qk_norm"),
    (dict(global_pool="map"), "global_pool='map'"),
    (dict(global_pool="avg"), "with a class token"),
    (dict(class_token=False, global_pool="avg", fc_norm=False), "without fc_norm"),
    (dict(pre_norm=True), "pre_norm"),
    (dict(dynamic_img_size=True), "dynamic_img_size"),
    (dict(act_layer="gelu_tanh"), "exact GELU"),
    (dict(drop_path_rate=0.1, depth=2), "stochastic depth"),  # block 0 gets rate 0
    (dict(num_classes=0), "no classification head"),
    (dict(scale_attn_norm=True), "scale_attn_norm"),
    (dict(img_size=(32, 48)), "non-square"),
]


@pytest.mark.parametrize("kw,message", REFUSED, ids=[m for _, m in REFUSED])
def test_unsupported_timm_models_are_refused_by_name(kw, message):
    model = timm.models.VisionTransformer(**{**dict(img_size=32, patch_size=8, embed_dim=32, depth=1,
                                                    num_heads=2), **kw})
    with pytest.raises(UnsupportedModelError, match="unsupported: .*" + message.replace("(", r"\(")
                       .replace(")", r"\)")):
        vitlearn.ViT.from_timm(model)


def test_every_problem_is_named_once_in_the_models_order():
    # notebook 09 prints this message for a later ViT (registers and layer scale)
    later_vit = timm.models.VisionTransformer(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3,
                                              reg_tokens=4, init_values=1e-5)
    with pytest.raises(UnsupportedModelError) as info:
        vitlearn.ViT.from_timm(later_vit)
    assert str(info.value) == ("cannot convert this timm model into vitlearn.ViT exactly; unsupported: "
                               "4 register tokens (reg_tokens): vitlearn.ViT has none; layer scale "
                               "(init_values): vitlearn.ViT's blocks have none")


def test_the_converter_returns_what_it_computed_and_the_model_builds_it():
    model = randomise(timm_vit(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
                               num_classes=5))
    converted = vitlearn.pretrained.convert_timm(model)
    assert converted.config == dict(img_size=32, patch_size=8, in_chans=3, num_classes=5, embed_dim=32,
                                    depth=2, num_heads=2, mlp_ratio=4.0, pool="cls", pos_embed="learned",
                                    dropout=0.0, attn_dropout=0.0)
    assert converted.norm_eps == 1e-6 and converted.training is False
    vit = vitlearn.ViT.from_timm(model)
    assert vit.state_dict().keys() == converted.state_dict.keys()
    for name, tensor in vit.state_dict().items():
        assert torch.equal(tensor, converted.state_dict[name]), name


def test_distilled_and_other_architectures_are_refused():
    deit = timm.models.deit.VisionTransformerDistilled(img_size=32, patch_size=8, embed_dim=32, depth=1,
                                                       num_heads=2, num_classes=3)
    with pytest.raises(UnsupportedModelError, match="distillation token"):
        vitlearn.ViT.from_timm(deit)
    with pytest.raises(UnsupportedModelError, match="got Linear"):
        vitlearn.ViT.from_timm(nn.Linear(3, 3))


def test_from_pretrained_fails_fast_without_network(monkeypatch):
    """Simulated: every connection is refused (as with no network), whatever this machine has."""
    def refuse(*args, **kwargs):
        raise OSError("[Errno 101] Network is unreachable")

    monkeypatch.setattr(_preflight.socket, "create_connection", refuse)
    monkeypatch.setattr(_preflight, "cached", lambda cfg: False)
    t0 = time.perf_counter()
    with pytest.raises(PretrainedWeightsError, match="not reachable.*internet"):
        vitlearn.ViT.from_pretrained("vit_base_patch16_224")
    assert time.perf_counter() - t0 < 5


def test_from_pretrained_fails_fast_on_this_machine_when_offline():
    """The real thing, unpatched: where the hub cannot be reached, the error comes within seconds
    and names the cause (no traceback from inside the downloader)."""
    if _preflight.reachable("huggingface.co", 443, 3.0) is None:
        pytest.skip("huggingface.co is reachable here: this test is for machines without network")
    if _preflight.cached(timm.models.get_pretrained_cfg("vit_tiny_patch16_224").to_dict()):
        pytest.skip("the weights are in the local cache")
    t0 = time.perf_counter()
    with pytest.raises(PretrainedWeightsError, match="not reachable") as info:
        vitlearn.ViT.from_pretrained("vit_tiny_patch16_224")
    assert time.perf_counter() - t0 < 10
    assert info.value.__cause__ is None and info.value.__context__ is None  # no chained traceback
    assert "\n" not in str(info.value)


def test_from_pretrained_unknown_name():
    with pytest.raises(PretrainedWeightsError, match="no model named 'vit_bse_patch16_224'"):
        vitlearn.ViT.from_pretrained("vit_bse_patch16_224")


transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("kw", [dict(), dict(qkv_bias=False),
                                dict(image_size=48, patch_size=16, num_channels=1, intermediate_size=100,
                                     num_hidden_layers=1)], ids=["small", "no-qkv-bias", "1ch-patch16"])
def test_from_transformers_gives_the_same_logits(kw):
    cfg = transformers.ViTConfig(**{**dict(image_size=32, patch_size=8, num_channels=3, hidden_size=48,
                                           num_hidden_layers=2, num_attention_heads=3,
                                           intermediate_size=96, num_labels=5), **kw})
    model = randomise(transformers.ViTForImageClassification(cfg))
    ours = vitlearn.ViT.from_transformers(model)
    x = torch.randn(3, cfg.num_channels, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        expected = model(pixel_values=x).logits
        got = ours(x)
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(got, expected, atol=ATOL32, rtol=RTOL32)


def test_from_transformers_refuses_other_activations_and_models():
    cfg = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=64, hidden_act="relu")
    with pytest.raises(UnsupportedModelError, match="hidden_act='relu'"):
        vitlearn.ViT.from_transformers(transformers.ViTForImageClassification(cfg))
    with pytest.raises(UnsupportedModelError, match="ViTForImageClassification"):
        vitlearn.ViT.from_transformers(nn.Linear(2, 2))


def test_from_pretrained_turns_a_failed_download_into_one_clear_error(monkeypatch):
    """The host answers but the download fails (a proxy, a firewall, an expired token): timm's
    exception, whatever its type, becomes one PretrainedWeightsError naming it, not a traceback."""
    class ConnectError(Exception):  # like httpx.ConnectError: not an OSError
        pass

    def failing_download(*args, **kwargs):
        raise ConnectError("[Errno 111] Connection refused\nlong traceback text")

    monkeypatch.setattr(_preflight, "cached", lambda cfg: False)
    monkeypatch.setattr(_preflight, "reachable", lambda host, port, timeout: None)
    monkeypatch.setattr(timm, "create_model", failing_download)
    with pytest.raises(PretrainedWeightsError, match=r"could not load .* \(ConnectError: \[Errno 111\] "
                                                     r"Connection refused\)$") as info:
        vitlearn.ViT.from_pretrained("vit_base_patch16_224")
    assert info.value.__suppress_context__ and info.value.__cause__ is None
