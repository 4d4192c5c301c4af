"""The real ViT weights in this library's model: converters from timm and Hugging Face.

The paper's models are ordinary ViTs: a Conv2d-equivalent patch projection, a [CLS] token,
learned positions, pre-norm blocks, a final LayerNorm and a Linear head. So a pretrained
ViT-B/16 from timm (``vit_base_patch16_224``) or Hugging Face (``google/vit-base-patch16-224``)
is a :class:`vitlearn.ViT` with other names for the same tensors. This module copies them
across, name by name, and refuses (with the reason) what our ViT cannot compute exactly.

    timm VisionTransformer              vitlearn.ViT
    patch_embed.proj  Conv2d [D,C,P,P]  patch_embed.proj  Linear [D, (P P C)]   (load_conv)
    cls_token         [1, 1, D]         cls_token.token
    pos_embed         [1, 1+N, D]       pos_embed.pos
    blocks.i.norm1 / attn.qkv / attn.proj / norm2 / mlp.fc1 / mlp.fc2
                                        encoder.blocks.i. (same names)
    norm              LayerNorm         head.norm
    head              Linear            head.fc

timm applies its final ``norm`` to every token and then takes [CLS]; our head applies the same
LayerNorm to the pooled [CLS] only. LayerNorm works on each token separately, so the logits
are the same (``forward_features`` differs: ours returns the tokens before that norm).
timm's ``global_pool='avg'`` with ``fc_norm`` (norm after pooling, no class token) is our
``pool='mean'``. A timm qkv without bias (``qkv_bias=False``) becomes our qkv with a zero
bias: the same function, plus a bias parameter that a fine-tuning run may then train.

The converters need the optional extra: ``pip install "vitlearn[pretrained]"``.
"""

from __future__ import annotations

import os
import socket
import threading
from urllib.parse import urlparse

import torch
from einops import rearrange
from torch import nn

__all__ = ["UnsupportedModelError", "PretrainedWeightsError", "from_timm", "from_pretrained",
           "from_transformers", "timm_state_dict_to_vitlearn", "PAPER_MODELS", "paper_vit", "count_flops"]

#: Table 1 of the paper (layers, hidden size D, MLP size, heads; "Params" as printed there),
#: with the patch size of the name (ViT-L/16: Large, 16x16 patches).
PAPER_MODELS = {
    "ViT-B/16": dict(depth=12, embed_dim=768, mlp_dim=3072, num_heads=12, patch_size=16, paper="86M"),
    "ViT-L/16": dict(depth=24, embed_dim=1024, mlp_dim=4096, num_heads=16, patch_size=16, paper="307M"),
    "ViT-H/14": dict(depth=32, embed_dim=1280, mlp_dim=5120, num_heads=16, patch_size=14, paper="632M"),
}


def paper_vit(name: str, *, img_size: int = 224, num_classes: int = 1000, device="meta") -> nn.Module:
    """One of the paper's models as a :class:`vitlearn.ViT` (3 channels, 224 px, 1000 classes),
    on the ``meta`` device by default: every shape, no memory, no weights (ViT-H/14 would need
    2.5 GB), enough to count parameters and FLOPs."""
    from .model import ViT

    if name not in PAPER_MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {list(PAPER_MODELS)}")
    m = PAPER_MODELS[name]
    with torch.device(device):
        return ViT(img_size=img_size, patch_size=m["patch_size"], in_chans=3, num_classes=num_classes,
                   embed_dim=m["embed_dim"], depth=m["depth"], num_heads=m["num_heads"],
                   mlp_ratio=m["mlp_dim"] / m["embed_dim"])


def count_flops(model: nn.Module, images: torch.Tensor) -> int:
    """Floating-point operations of the architecture on ``images``: every token through every
    block, as the paper and timm count them, counted by PyTorch's
    ``torch.utils.flop_counter.FlopCounterMode`` (matrix products only: a multiply-add counts 2;
    the ``GMACs`` timm and fvcore print are half this). A model with ``forward_features`` and
    ``forward_head`` (vitlearn's, timm's) is counted through those: ``vitlearn.ViT.forward``
    itself skips the last block's updates of the tokens the head never reads, so it runs a
    little less than this. Works on ``meta`` tensors, so the paper's largest models are counted
    without running them."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        if hasattr(model, "forward_features") and hasattr(model, "forward_head"):
            model.forward_head(model.forward_features(images))
        else:
            model(images)
    return int(counter.get_total_flops())


class UnsupportedModelError(ValueError):
    """The model is not a plain ViT that :class:`vitlearn.ViT` computes exactly."""


class PretrainedWeightsError(OSError):
    """Pretrained weights could not be obtained (no network, unknown name, missing extra)."""


def _import(name: str):
    try:
        return __import__(name)
    except ImportError:
        raise ImportError(f"this needs the optional package {name!r}: pip install \"vitlearn[pretrained]\" "
                          f"(or pip install {name})") from None


def _is_identity(module) -> bool:
    return module is None or isinstance(module, nn.Identity)


def _dropout_p(module) -> float:
    return float(module.p) if isinstance(module, nn.Dropout) else 0.0


def _layer_norm_eps(norms: list[nn.Module], what: str) -> float:
    """All LayerNorms must be plain, affine LayerNorms with one eps; return it."""
    eps = set()
    for norm in norms:
        if type(norm).__name__ not in ("LayerNorm",) or not isinstance(norm, nn.LayerNorm):
            raise UnsupportedModelError(f"{what}: the normalisation layers are {type(norm).__name__}, "
                                        f"vitlearn.ViT uses LayerNorm")
        if norm.weight is None or norm.bias is None:
            raise UnsupportedModelError(f"{what}: LayerNorm without a learned gain and bias is not supported")
        eps.add(float(norm.eps))
    if len(eps) != 1:
        raise UnsupportedModelError(f"{what}: LayerNorms with different eps {sorted(eps)}")
    return eps.pop()


def _check_timm(model) -> tuple[dict, float]:
    """Refuse what vitlearn.ViT cannot compute; return the ViT keywords and what the mapping needs."""
    timm = _import("timm")
    vt = timm.models.vision_transformer
    name = type(model).__name__
    if not isinstance(model, vt.VisionTransformer):
        raise UnsupportedModelError(f"from_timm converts timm's plain VisionTransformer; got {name} "
                                    f"(a different architecture)")
    problems = []
    if hasattr(model, "dist_token"):
        problems.append("a distillation token (DeiT distilled): vitlearn.ViT has one [CLS] token only")
    if type(model) is not vt.VisionTransformer and not problems:
        problems.append(f"the subclass {name}")
    if getattr(model, "num_reg_tokens", 0):
        problems.append(f"{model.num_reg_tokens} register tokens (reg_tokens): vitlearn.ViT has none")
    pool = model.global_pool
    if model.attn_pool is not None or pool not in ("token", "avg"):
        problems.append(f"global_pool={pool!r} (attention/max pooling or none): vitlearn.ViT pools the "
                        f"[CLS] token ('token') or the mean of the patch tokens ('avg' with fc_norm)")
    elif pool == "token":
        if model.cls_token is None:
            problems.append("token pooling without a class token")
        if not _is_identity(model.fc_norm) or _is_identity(model.norm):
            problems.append("token pooling with fc_norm (a LayerNorm after pooling instead of the final "
                            "norm): vitlearn.ViT's head normalises the pooled [CLS] with the final norm")
    else:  # avg
        if model.cls_token is not None:
            problems.append("global_pool='avg' with a class token ([CLS] takes part in attention but "
                            "is not pooled): vitlearn.ViT's pool='mean' has no class token; "
                            "use class_token=False")
        if _is_identity(model.fc_norm) or not _is_identity(model.norm):
            problems.append("global_pool='avg' without fc_norm (the final norm on every token "
                            "before averaging): vitlearn.ViT's pool='mean' normalises after "
                            "averaging (fc_norm=True)")
        if getattr(model, "pool_include_prefix", False):
            problems.append("pool_include_prefix=True")
    if not _is_identity(model.norm_pre):
        problems.append("pre_norm=True (a LayerNorm before the blocks, norm_pre; CLIP-style)")
    if getattr(model, "dynamic_img_size", False):
        problems.append("dynamic_img_size=True: build the timm model at one resolution "
                        "(vitlearn.ViT changes resolution with set_img_size)")
    pe = model.patch_embed
    if type(pe).__name__ != "PatchEmbed" or not isinstance(getattr(pe, "proj", None), nn.Conv2d):
        problems.append(f"patch embedding {type(pe).__name__} "
                        f"(vitlearn.ViT: one Conv2d-equivalent projection)")
    else:
        conv = pe.proj
        if (conv.kernel_size != conv.stride or conv.kernel_size[0] != conv.kernel_size[1]
                or conv.padding not in ((0, 0), "valid") or conv.groups != 1 or conv.dilation != (1, 1)):
            problems.append(f"a patch projection that is not a square kernel=stride Conv2d ({conv})")
        if not _is_identity(getattr(pe, "norm", None)):
            problems.append("a norm after the patch embedding (embed_norm_layer)")
        if getattr(pe, "dynamic_img_pad", False):
            problems.append("dynamic_img_pad=True")
        size = tuple(pe.img_size) if pe.img_size is not None else None
        if size is None or size[0] != size[1]:
            problems.append(f"non-square images {size}: vitlearn.ViT takes square img_size")
    if getattr(model, "patch_drop", None) is not None and not _is_identity(model.patch_drop):
        problems.append("patch_drop_rate > 0 (PatchDropout)")
    if isinstance(model.head, nn.Identity):
        problems.append("no classification head (num_classes=0): create it with num_classes >= 1")

    attn_drop, proj_drop = set(), set()
    hidden = set()
    norms = [model.norm if pool == "token" else model.fc_norm]
    for i, blk in enumerate(model.blocks):
        where = f"blocks.{i}"
        if type(blk) is not vt.Block:
            problems.append(f"{where} is a {type(blk).__name__} (vitlearn.ViT: the standard pre-norm Block)")
            continue
        if not (_is_identity(blk.ls1) and _is_identity(blk.ls2)):
            problems.append("layer scale (init_values): vitlearn.ViT's blocks have none")
        for dp in ("drop_path1", "drop_path2"):
            if not _is_identity(getattr(blk, dp)):
                problems.append(f"stochastic depth (drop_path_rate > 0, {where}): create the timm model "
                                f"with drop_path_rate=0 (it only matters in training)")
                break
        attn, mlp = blk.attn, blk.mlp
        if type(attn).__name__ != "Attention":
            problems.append(f"{where}.attn is a {type(attn).__name__}")
        else:
            if not (_is_identity(attn.q_norm) and _is_identity(attn.k_norm)):
                problems.append("qk_norm=True (LayerNorm on queries and keys)")
            if not _is_identity(getattr(attn, "norm", None)):
                problems.append("scale_attn_norm=True (a LayerNorm inside attention)")
            if getattr(attn, "gate", None) is not None:
                problems.append("gated attention")
            if attn.qkv.out_features != 3 * model.embed_dim or attn.proj.in_features != model.embed_dim:
                problems.append("an attention width different from embed_dim (attn_head_dim)")
            if attn.proj.bias is None:
                problems.append("an attention output projection without bias (proj_bias=False)")
            attn_drop.add(_dropout_p(attn.attn_drop))
            proj_drop.add(_dropout_p(attn.proj_drop))
        if type(mlp).__name__ != "Mlp" or not hasattr(mlp, "fc1"):
            problems.append(f"{where}.mlp is a {type(mlp).__name__} (vitlearn.ViT: Linear-GELU-Linear)")
        else:
            if type(mlp.act) is not nn.GELU or mlp.act.approximate != "none":
                problems.append(f"the activation {mlp.act} (vitlearn.ViT uses exact GELU)")
            if not _is_identity(getattr(mlp, "norm", None)):
                problems.append("scale_mlp_norm=True (a LayerNorm inside the MLP)")
            if mlp.fc1.bias is None or mlp.fc2.bias is None:
                problems.append("MLP layers without bias (proj_bias=False)")
            hidden.add(mlp.fc1.out_features)
            proj_drop.add(_dropout_p(getattr(mlp, "drop1", None)))
        norms += [blk.norm1, blk.norm2]
    if len(hidden) > 1:
        problems.append(f"blocks with different MLP widths {sorted(hidden)}")
    if problems:
        unique = list(dict.fromkeys(problems))
        raise UnsupportedModelError("cannot convert this timm model into vitlearn.ViT exactly; unsupported: "
                                    + "; ".join(unique))
    eps = _layer_norm_eps(norms, "timm model")
    d = model.embed_dim
    h = hidden.pop()
    pos_dropout = _dropout_p(model.pos_drop)
    dropout = max(proj_drop | {pos_dropout})
    return dict(img_size=pe.img_size[0], patch_size=pe.proj.kernel_size[0], in_chans=pe.proj.in_channels,
                num_classes=model.head.out_features, embed_dim=d, depth=len(model.blocks),
                num_heads=model.blocks[0].attn.num_heads, mlp_ratio=_mlp_ratio(h, d),
                pool="cls" if pool == "token" else "mean",
                pos_embed="learned" if model.pos_embed is not None else "none",
                dropout=dropout, attn_dropout=max(attn_drop | {0.0})), eps


def _mlp_ratio(hidden: int, dim: int) -> float:
    """A ratio r with int(dim * r) == hidden (hidden / dim itself can round down by one)."""
    ratio = hidden / dim
    return ratio if int(dim * ratio) == hidden else (hidden + 0.5) / dim


def _new_vit(config: dict, eps: float, device=None, dtype=None):
    from .model import ViT

    with torch.device(device or "cpu"):
        vit = ViT(**config)
    for m in vit.modules():
        if isinstance(m, nn.LayerNorm):
            m.eps = eps
    return vit.to(dtype=dtype) if dtype is not None else vit


def timm_state_dict_to_vitlearn(state: dict[str, torch.Tensor], *, no_embed_class: bool = False,
                                has_cls_token: bool = True) -> dict[str, torch.Tensor]:
    """Rename (and reshape) a timm ViT state dict to vitlearn.ViT's names.

    The patch projection's Conv2d weight [D, C, P, P] becomes the Linear weight [D, (P P C)]
    (the pixel order of :func:`vitlearn.patchify`). With ``no_embed_class`` (timm adds no
    position to [CLS]) the [CLS] position becomes a zero row. A missing qkv bias becomes zeros.
    """
    out = {}
    d = state["patch_embed.proj.weight"].shape[0]
    ref = state["patch_embed.proj.weight"]
    out["patch_embed.proj.weight"] = rearrange(ref, "d c p1 p2 -> d (p1 p2 c)")
    out["patch_embed.proj.bias"] = state.get("patch_embed.proj.bias", ref.new_zeros(d))
    if has_cls_token:
        out["cls_token.token"] = state["cls_token"]
    if "pos_embed" in state:
        pos = state["pos_embed"]
        if no_embed_class and has_cls_token:
            pos = torch.cat([pos.new_zeros(1, 1, d), pos], dim=1)
        out["pos_embed.pos"] = pos
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    for i in range(depth):
        src, dst = f"blocks.{i}.", f"encoder.blocks.{i}."
        for name in ("norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.proj.weight",
                     "attn.proj.bias", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
                     "mlp.fc2.weight", "mlp.fc2.bias"):
            out[dst + name] = state[src + name]
        out[dst + "attn.qkv.bias"] = state.get(src + "attn.qkv.bias", ref.new_zeros(3 * d))
    final = "norm" if "norm.weight" in state else "fc_norm"
    out["head.norm.weight"], out["head.norm.bias"] = state[f"{final}.weight"], state[f"{final}.bias"]
    out["head.fc.weight"], out["head.fc.bias"] = state["head.weight"], state["head.bias"]
    return out


@torch.no_grad()
def from_timm(model) -> nn.Module:
    """A :class:`vitlearn.ViT` computing exactly what the timm ``VisionTransformer`` computes.

    Any size, patch size and (square) resolution of the plain ViT family: a [CLS] token (or none
    with ``global_pool='avg'`` and ``fc_norm``), learned (or no) position embeddings, pre-norm
    blocks with exact GELU, LayerNorm. Anything else raises :class:`UnsupportedModelError`
    naming what is unsupported. The new model is on the same device and dtype, in eval mode if
    the timm model was.
    """
    config, eps = _check_timm(model)
    ref = model.patch_embed.proj.weight
    vit = _new_vit(config, eps, device=ref.device, dtype=ref.dtype)
    state = timm_state_dict_to_vitlearn(model.state_dict(), no_embed_class=bool(model.no_embed_class),
                                        has_cls_token=model.cls_token is not None)
    vit.load_state_dict(state)
    return vit.train(model.training)


def _weights_host(pretrained_cfg: dict) -> tuple[str, int]:
    """(host, port) that the download of these weights connects to first (a proxy if one is set)."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    if proxy:
        p = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        return p.hostname or proxy, p.port or 80
    if pretrained_cfg.get("hf_hub_id"):
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
        p = urlparse(endpoint)
        return p.hostname or "huggingface.co", p.port or 443
    p = urlparse(pretrained_cfg.get("url") or "https://huggingface.co")
    return p.hostname or "huggingface.co", p.port or 443


def _reachable(host: str, port: int, timeout: float) -> str | None:
    """None if a TCP connection to host:port opens within ``timeout`` s, else why not.

    The probe runs in a daemon thread so that a name lookup that hangs (a resolver with no
    network can wait far longer than ``timeout``) cannot hold the caller up either."""
    outcome: dict[str, str] = {}

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome["ok"] = ""
        except OSError as err:
            outcome["error"] = f"{type(err).__name__}: {err}"

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    if "ok" in outcome:
        return None
    return outcome.get("error", f"no answer within {timeout:g} s")


def _cached(pretrained_cfg: dict) -> bool:
    """Whether timm's Hugging Face download of these weights is already in the local cache."""
    repo = pretrained_cfg.get("hf_hub_id")
    if not repo:
        return False
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    repo, _, revision = repo.partition("@")
    for filename in ("model.safetensors", "open_clip_pytorch_model.bin", "pytorch_model.bin"):
        path = try_to_load_from_cache(repo, filename, revision=revision or None)
        if isinstance(path, str):
            return True
    return False


def from_pretrained(name: str, *, timeout: float = 3.0, **timm_kwargs) -> nn.Module:
    """``from_timm(timm.create_model(name, pretrained=True, **timm_kwargs))``, failing fast.

    timm downloads the weights from the Hugging Face hub (once; then they are cached). Before
    that, the hub's host is tried with a ``timeout``-second connection, so with no network this
    raises :class:`PretrainedWeightsError` saying so within seconds, instead of waiting on the
    downloader's retries. Weights already in the cache need no network. To load a file you
    downloaded yourself: ``from_pretrained(name, pretrained_cfg_overlay=dict(file="path"))``.
    """
    timm = _import("timm")
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('.')[0][:12]}*", pretrained=True)[:8]
        raise PretrainedWeightsError(f"timm has no model named {name!r}"
                                     + (f"; similar names: {close}" if close else
                                        "; list them with timm.list_models('vit_*', pretrained=True)"))
    try:
        cfg = timm.models.get_pretrained_cfg(name.split(".")[0] if "." not in name else name)
    except Exception:  # an unknown tag
        cfg = None
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        raise PretrainedWeightsError(f"timm has no pretrained weights for {name!r}; list the ones it has "
                                     f"with timm.list_models('{name.split('.')[0]}*', pretrained=True)")
    cfg = cfg.to_dict()
    local = bool((timm_kwargs.get("pretrained_cfg_overlay") or {}).get("file")) or bool(cfg.get("file"))
    if not local and not _cached(cfg):
        host, port = _weights_host(cfg)
        why = _reachable(host, port, timeout)
        if why is not None:
            raise PretrainedWeightsError(
                f"cannot download the pretrained weights of {name!r}: {host}:{port} is not reachable within "
                f"{timeout:g} s ({why}). This needs internet access (or the weights in the Hugging Face "
                f"cache, or a local file via pretrained_cfg_overlay=dict(file=...)).")
    try:
        model = timm.create_model(name, pretrained=True, **timm_kwargs)
    except Exception as err:  # requests/httpx/hub errors: not all are OSErrors
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise PretrainedWeightsError(f"timm could not load the pretrained weights of {name!r} "
                                     f"({type(err).__name__}: {first[:300]})") from None
    return from_timm(model.eval())


@torch.no_grad()
def from_transformers(model) -> nn.Module:
    """A :class:`vitlearn.ViT` computing what Hugging Face's ``ViTForImageClassification`` does.

    Hugging Face keeps q, k and v as three Linear layers; they are stacked into our one ``qkv``
    (rows q, then k, then v, each laid out head by head, as ours). Its final ``layernorm`` is
    applied to every token before the classifier reads [CLS]: our head.norm.
    """
    transformers = _import("transformers")
    if not isinstance(model, transformers.ViTForImageClassification):
        raise UnsupportedModelError(f"from_transformers converts ViTForImageClassification; got "
                                    f"{type(model).__name__}")
    c = model.config
    problems = []
    if c.hidden_act != "gelu":
        problems.append(f"hidden_act={c.hidden_act!r} (vitlearn.ViT uses exact GELU, 'gelu')")
    if isinstance(c.image_size, (tuple, list)) and c.image_size[0] != c.image_size[1]:
        problems.append(f"non-square image_size {c.image_size}")
    if isinstance(c.patch_size, (tuple, list)) and c.patch_size[0] != c.patch_size[1]:
        problems.append(f"non-square patch_size {c.patch_size}")
    if isinstance(model.classifier, nn.Identity):
        problems.append("no classifier (num_labels=0)")
    if problems:
        raise UnsupportedModelError("cannot convert this ViTForImageClassification exactly; unsupported: "
                                    + "; ".join(problems))
    img = c.image_size[0] if isinstance(c.image_size, (tuple, list)) else c.image_size
    patch = c.patch_size[0] if isinstance(c.patch_size, (tuple, list)) else c.patch_size
    d = c.hidden_size
    config = dict(img_size=img, patch_size=patch, in_chans=c.num_channels,
                  num_classes=model.classifier.out_features, embed_dim=d,
                  depth=c.num_hidden_layers, num_heads=c.num_attention_heads,
                  mlp_ratio=_mlp_ratio(c.intermediate_size, d), pool="cls", pos_embed="learned",
                  dropout=float(c.hidden_dropout_prob), attn_dropout=float(c.attention_probs_dropout_prob))
    ref = model.vit.embeddings.patch_embeddings.projection.weight
    vit = _new_vit(config, float(c.layer_norm_eps), device=ref.device, dtype=ref.dtype)
    s = model.state_dict()
    e = "vit.embeddings."
    conv = s[e + "patch_embeddings.projection.weight"]
    state = {"patch_embed.proj.weight": rearrange(conv, "d c p1 p2 -> d (p1 p2 c)"),
             "patch_embed.proj.bias": s[e + "patch_embeddings.projection.bias"],
             "cls_token.token": s[e + "cls_token"], "pos_embed.pos": s[e + "position_embeddings"],
             "head.norm.weight": s["vit.layernorm.weight"], "head.norm.bias": s["vit.layernorm.bias"],
             "head.fc.weight": s["classifier.weight"], "head.fc.bias": s["classifier.bias"]}
    # transformers 5 names (vit.layers.i.attention.q_proj, mlp.fc1) and 4.x names
    # (vit.encoder.layer.i.attention.attention.query, intermediate.dense)
    v5 = "vit.layers.0.attention.q_proj.weight" in s
    names = (dict(layer="vit.layers.", q="attention.q_proj", k="attention.k_proj", v="attention.v_proj",
                  proj="attention.o_proj", fc1="mlp.fc1", fc2="mlp.fc2") if v5 else
             dict(layer="vit.encoder.layer.", q="attention.attention.query", k="attention.attention.key",
                  v="attention.attention.value", proj="attention.output.dense", fc1="intermediate.dense",
                  fc2="output.dense"))
    for i in range(c.num_hidden_layers):
        src, dst = f"{names['layer']}{i}.", f"encoder.blocks.{i}."
        qkv = [src + names[n] + "." for n in ("q", "k", "v")]
        state[dst + "attn.qkv.weight"] = torch.cat([s[q + "weight"] for q in qkv])
        state[dst + "attn.qkv.bias"] = torch.cat([s.get(q + "bias", conv.new_zeros(d)) for q in qkv])
        for mine, theirs in (("attn.proj", names["proj"]), ("norm1", "layernorm_before"),
                             ("norm2", "layernorm_after"), ("mlp.fc1", names["fc1"]),
                             ("mlp.fc2", names["fc2"])):
            state[dst + mine + ".weight"] = s[src + theirs + ".weight"]
            state[dst + mine + ".bias"] = s[src + theirs + ".bias"]
    vit.load_state_dict(state)
    return vit.train(model.training)
