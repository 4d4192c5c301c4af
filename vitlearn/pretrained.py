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

The converters return what they computed (:class:`Converted`: the configuration and the
weights under our names); ``ViT.from_timm`` and friends build the model from it. They need
the optional extra: ``pip install "vitlearn[pretrained]"``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from einops import rearrange
from torch import nn

from ._preflight import why_not_downloadable

__all__ = ["UnsupportedModelError", "PretrainedWeightsError", "Converted", "convert_timm",
           "convert_transformers", "load_timm_pretrained", "timm_state_dict_to_vitlearn"]


class Converted(NamedTuple):
    """What a converter computed; :meth:`vitlearn.ViT.from_timm` (and ``from_transformers``,
    ``from_pretrained``) builds the model from it. The weights keep the source's device and
    dtype."""

    config: dict              # the ViT keywords (fields of vitlearn.ViTConfig)
    state_dict: dict          # the weights under vitlearn.ViT's names
    norm_eps: float           # the source's LayerNorm eps (ours default to 1e-6)
    training: bool            # the source's train/eval mode

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


def _model_problems(model, vt) -> list[str]:
    """What in the model around the blocks vitlearn.ViT does not compute: one row per
    (condition, message); conditions that need a part only look when it is there."""
    name, pool, pe = type(model).__name__, model.global_pool, model.patch_embed
    token, avg = model.attn_pool is None and pool == "token", model.attn_pool is None and pool == "avg"
    conv = pe.proj if type(pe).__name__ == "PatchEmbed" and isinstance(getattr(pe, "proj", None),
                                                                        nn.Conv2d) else None
    size = tuple(pe.img_size) if conv is not None and pe.img_size is not None else None
    distilled = hasattr(model, "dist_token")
    table = [
        (distilled, "a distillation token (DeiT distilled): vitlearn.ViT has one [CLS] token only"),
        (type(model) is not vt.VisionTransformer and not distilled, f"the subclass {name}"),
        (getattr(model, "num_reg_tokens", 0),
         f"{getattr(model, 'num_reg_tokens', 0)} register tokens (reg_tokens): vitlearn.ViT has none"),
        (not (token or avg), f"global_pool={pool!r} (attention/max pooling or none): vitlearn.ViT pools "
                             f"the [CLS] token ('token') or the mean of the patch tokens ('avg' with "
                             f"fc_norm)"),
        (token and model.cls_token is None, "token pooling without a class token"),
        (token and (not _is_identity(model.fc_norm) or _is_identity(model.norm)),
         "token pooling with fc_norm (a LayerNorm after pooling instead of the final norm): "
         "vitlearn.ViT's head normalises the pooled [CLS] with the final norm"),
        (avg and model.cls_token is not None,
         "global_pool='avg' with a class token ([CLS] takes part in attention but is not pooled): "
         "vitlearn.ViT's pool='mean' has no class token; use class_token=False"),
        (avg and (_is_identity(model.fc_norm) or not _is_identity(model.norm)),
         "global_pool='avg' without fc_norm (the final norm on every token before averaging): "
         "vitlearn.ViT's pool='mean' normalises after averaging (fc_norm=True)"),
        (avg and getattr(model, "pool_include_prefix", False), "pool_include_prefix=True"),
        (not _is_identity(model.norm_pre), "pre_norm=True (a LayerNorm before the blocks, norm_pre; "
                                           "CLIP-style)"),
        (getattr(model, "dynamic_img_size", False),
         "dynamic_img_size=True: build the timm model at one resolution (vitlearn.ViT changes "
         "resolution with set_img_size)"),
        (conv is None, f"patch embedding {type(pe).__name__} (vitlearn.ViT: one Conv2d-equivalent "
                       f"projection)"),
        (conv is not None and (conv.kernel_size != conv.stride or conv.kernel_size[0] != conv.kernel_size[1]
                               or conv.padding not in ((0, 0), "valid") or conv.groups != 1
                               or conv.dilation != (1, 1)),
         f"a patch projection that is not a square kernel=stride Conv2d ({conv})"),
        (conv is not None and not _is_identity(getattr(pe, "norm", None)),
         "a norm after the patch embedding (embed_norm_layer)"),
        (conv is not None and getattr(pe, "dynamic_img_pad", False), "dynamic_img_pad=True"),
        (conv is not None and (size is None or size[0] != size[1]),
         f"non-square images {size}: vitlearn.ViT takes square img_size"),
        (not _is_identity(getattr(model, "patch_drop", None)), "patch_drop_rate > 0 (PatchDropout)"),
        (isinstance(model.head, nn.Identity),
         "no classification head (num_classes=0): create it with num_classes >= 1"),
    ]
    return [message for condition, message in table if condition]


def _block_problems(blk, where: str, embed_dim: int, vt) -> list[str]:
    """What in one block vitlearn's pre-norm EncoderBlock does not compute (as above)."""
    if type(blk) is not vt.Block:
        return [f"{where} is a {type(blk).__name__} (vitlearn.ViT: the standard pre-norm Block)"]
    attn, mlp = blk.attn, blk.mlp
    is_attn = type(attn).__name__ == "Attention"
    is_mlp = type(mlp).__name__ == "Mlp" and hasattr(mlp, "fc1")
    table = [
        (not (_is_identity(blk.ls1) and _is_identity(blk.ls2)),
         "layer scale (init_values): vitlearn.ViT's blocks have none"),
        (not (_is_identity(blk.drop_path1) and _is_identity(blk.drop_path2)),
         f"stochastic depth (drop_path_rate > 0, {where}): create the timm model with "
         f"drop_path_rate=0 (it only matters in training)"),
        (not is_attn, f"{where}.attn is a {type(attn).__name__}"),
        (is_attn and not (_is_identity(getattr(attn, "q_norm", None))
                          and _is_identity(getattr(attn, "k_norm", None))),
         "qk_norm=True (LayerNorm on queries and keys)"),
        (is_attn and not _is_identity(getattr(attn, "norm", None)),
         "scale_attn_norm=True (a LayerNorm inside attention)"),
        (is_attn and getattr(attn, "gate", None) is not None, "gated attention"),
        (is_attn and (attn.qkv.out_features != 3 * embed_dim or attn.proj.in_features != embed_dim),
         "an attention width different from embed_dim (attn_head_dim)"),
        (is_attn and attn.proj.bias is None,
         "an attention output projection without bias (proj_bias=False)"),
        (not is_mlp, f"{where}.mlp is a {type(mlp).__name__} (vitlearn.ViT: Linear-GELU-Linear)"),
        (is_mlp and (type(mlp.act) is not nn.GELU or mlp.act.approximate != "none"),
         f"the activation {getattr(mlp, 'act', None)} (vitlearn.ViT uses exact GELU)"),
        (is_mlp and not _is_identity(getattr(mlp, "norm", None)),
         "scale_mlp_norm=True (a LayerNorm inside the MLP)"),
        (is_mlp and (mlp.fc1.bias is None or mlp.fc2.bias is None),
         "MLP layers without bias (proj_bias=False)"),
    ]
    return [message for condition, message in table if condition]


def _check_timm(model) -> tuple[dict, float]:
    """Refuse what vitlearn.ViT cannot compute; return the ViT keywords and the LayerNorm eps."""
    timm = _import("timm")
    vt = timm.models.vision_transformer
    if not isinstance(model, vt.VisionTransformer):
        raise UnsupportedModelError(f"from_timm converts timm's plain VisionTransformer; got "
                                    f"{type(model).__name__} (a different architecture)")
    problems = _model_problems(model, vt)
    for i, blk in enumerate(model.blocks):
        problems += _block_problems(blk, f"blocks.{i}", model.embed_dim, vt)
    hidden = {blk.mlp.fc1.out_features for blk in model.blocks if hasattr(getattr(blk, "mlp", None), "fc1")}
    if len(hidden) > 1:
        problems.append(f"blocks with different MLP widths {sorted(hidden)}")
    if problems:
        raise UnsupportedModelError("cannot convert this timm model into vitlearn.ViT exactly; unsupported: "
                                    + "; ".join(dict.fromkeys(problems)))
    # Every block is now a plain timm Block of Attention and Mlp.
    pool, pe = model.global_pool, model.patch_embed
    norms = [model.norm if pool == "token" else model.fc_norm]
    norms += [norm for blk in model.blocks for norm in (blk.norm1, blk.norm2)]
    eps = _layer_norm_eps(norms, "timm model")
    attn_drop = {_dropout_p(blk.attn.attn_drop) for blk in model.blocks}
    proj_drop = {p for blk in model.blocks for p in (_dropout_p(blk.attn.proj_drop),
                                                     _dropout_p(getattr(blk.mlp, "drop1", None)))}
    d = model.embed_dim
    return dict(img_size=pe.img_size[0], patch_size=pe.proj.kernel_size[0], in_chans=pe.proj.in_channels,
                num_classes=model.head.out_features, embed_dim=d, depth=len(model.blocks),
                num_heads=model.blocks[0].attn.num_heads, mlp_ratio=_mlp_ratio(hidden.pop(), d),
                pool="cls" if pool == "token" else "mean",
                pos_embed="learned" if model.pos_embed is not None else "none",
                dropout=max(proj_drop | {_dropout_p(model.pos_drop)}),
                attn_dropout=max(attn_drop | {0.0})), eps


def _mlp_ratio(hidden: int, dim: int) -> float:
    """A ratio r with int(dim * r) == hidden (hidden / dim itself can round down by one)."""
    ratio = hidden / dim
    return ratio if int(dim * ratio) == hidden else (hidden + 0.5) / dim


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
def convert_timm(model) -> Converted:
    """What a :class:`vitlearn.ViT` needs to compute exactly what the timm ``VisionTransformer``
    computes (``ViT.from_timm`` builds it).

    Any size, patch size and (square) resolution of the plain ViT family: a [CLS] token (or none
    with ``global_pool='avg'`` and ``fc_norm``), learned (or no) position embeddings, pre-norm
    blocks with exact GELU, LayerNorm. Anything else raises :class:`UnsupportedModelError`
    naming what is unsupported.
    """
    config, eps = _check_timm(model)
    state = timm_state_dict_to_vitlearn(model.state_dict(), no_embed_class=bool(model.no_embed_class),
                                        has_cls_token=model.cls_token is not None)
    return Converted(config, state, eps, model.training)


def load_timm_pretrained(name: str, *, timeout: float = 3.0, **timm_kwargs) -> nn.Module:
    """``timm.create_model(name, pretrained=True, **timm_kwargs)`` in eval mode, failing fast.

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
    local = bool((timm_kwargs.get("pretrained_cfg_overlay") or {}).get("file"))
    why = why_not_downloadable(cfg.to_dict(), local_file=local, timeout=timeout)
    if why is not None:
        raise PretrainedWeightsError(
            f"cannot download the pretrained weights of {name!r}: {why}. This needs internet access "
            f"(or the weights in the Hugging Face cache, or a local file via "
            f"pretrained_cfg_overlay=dict(file=...)).")
    try:
        model = timm.create_model(name, pretrained=True, **timm_kwargs)
    except Exception as err:  # requests/httpx/hub errors: not all are OSErrors
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise PretrainedWeightsError(f"timm could not load the pretrained weights of {name!r} "
                                     f"({type(err).__name__}: {first[:300]})") from None
    return model.eval()


@torch.no_grad()
def convert_transformers(model) -> Converted:
    """What a :class:`vitlearn.ViT` needs to compute what Hugging Face's
    ``ViTForImageClassification`` does (``ViT.from_transformers`` builds it).

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
    return Converted(config, state, float(c.layer_norm_eps), model.training)
