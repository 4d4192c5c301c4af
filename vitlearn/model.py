"""The Vision Transformer, assembled from the eight steps (Dosovitskiy et al., 2021).

    images [B, C, H, W]
      -> patch embedding      [B, N, D]      steps 2-4 (patches.py)
      -> prepend [CLS]        [B, 1+N, D]    step 5    (tokens.py)
      -> + position embedding [B, 1+N, D]    step 6    (tokens.py)
      -> Transformer encoder  [B, 1+N, D]    step 7    (attention.py, encoder.py)
      -> pool [CLS] (or mean) [B, D]
      -> head                 [B, classes]   step 8    (head.py)

(``forward`` runs the last block for [CLS] alone, the only token the head reads;
``forward_features`` returns every token.)

The shape of the model is one :class:`ViTConfig` (as nanoGPT's ``GPTConfig``): the model
keeps it as ``model.config``, checkpoints store it, the command line builds it.

Every part is built by a constructor argument (``embed_layer``, ``cls_token_layer``,
``pos_embed_layer``, ``attn_layer``, ``block_fn``, ``head_layer``; None means ours), each
called with keyword arguments (the table :data:`vitlearn.contract.PARTS`), so a hand-written
part can be plugged into the real model; the first forward pass at each image shape checks
the shape each part returns.

The file reads top to bottom: the config, the model (its parts), the forward pass, model
surgery (``reset_classifier``, ``set_img_size``), the converters' class methods.
Initialisation follows vit-pytorch: PyTorch's default Linear init, and [CLS] and position
embeddings drawn from N(0, 1). timm's N(0, 0.02) everywhere suits long ImageNet schedules;
on MNIST in a few epochs it learns far slower (``benchmarks/init_comparison.py``).

The default (patch 7, D=64, depth 4, 4 heads, MLP 128) has 139,018 parameters
(``python -m vitlearn info`` prints it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from . import pretrained
from .attention import check_heads, record_attention
from .contract import build_part, check_dropout, check_positive_int, checking_part_outputs, part_name
from .data import BatchSource
from .encoder import TransformerEncoder, check_mlp_ratio
from .head import ClassificationHead
from .patches import PatchEmbedding, check_images, check_patch_size
from .tokens import ClassToken, PositionEmbedding, SinCosPositionEmbedding

__all__ = ["ViT", "ViTConfig", "POOLS", "POS_EMBEDS"]

POOLS = ("cls", "mean")
POS_EMBEDS = ("learned", "sincos", "none")


@dataclass
class ViTConfig:
    """Everything that fixes the shape of a ViT (not its weights). Checked when it is made,
    so a ViT never exists with a configuration that cannot run."""

    img_size: int = 28        # images are img_size x img_size pixels
    patch_size: int = 7       # cut into (img_size / patch_size)^2 patches
    in_chans: int = 1         # colour channels (1 for MNIST)
    num_classes: int = 10
    embed_dim: int = 64       # D: the width of every token
    depth: int = 4            # encoder blocks
    num_heads: int = 4        # attention heads per block (each D / num_heads wide)
    mlp_ratio: float = 2.0    # MLP hidden width = mlp_ratio * D
    pool: str = "cls"         # "cls": classify the [CLS] token; "mean": the mean of the patches
    pos_embed: str = "learned"  # "learned", "sincos" (fixed) or "none"
    dropout: float = 0.0
    attn_dropout: float = 0.0

    def __post_init__(self):
        check_positive_int("ViT", img_size=self.img_size, patch_size=self.patch_size,
                           in_chans=self.in_chans, num_classes=self.num_classes,
                           embed_dim=self.embed_dim, depth=self.depth, num_heads=self.num_heads)
        check_mlp_ratio("ViT", self.embed_dim, self.mlp_ratio)
        check_dropout("ViT", dropout=self.dropout, attn_dropout=self.attn_dropout)
        if self.pool not in POOLS:
            raise ValueError(f"unknown pool={self.pool!r}; use one of {POOLS}")
        if self.pos_embed not in POS_EMBEDS:
            raise ValueError(f"unknown pos_embed={self.pos_embed!r}; use one of {POS_EMBEDS}")
        check_patch_size(self.img_size, self.patch_size)
        check_heads(self.embed_dim, self.num_heads)

    @property
    def grid_size(self) -> int:
        return self.img_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size ** 2

    @property
    def num_prefix_tokens(self) -> int:
        return 1 if self.pool == "cls" else 0

    def replace(self, **changes) -> ViTConfig:
        """A copy with some fields changed (and checked again)."""
        return dataclasses.replace(self, **changes)


_DEFAULT = ViTConfig()


class ViT(nn.Module):
    """The Vision Transformer. ``ViT(depth=6)`` or ``ViT.from_config(ViTConfig(depth=6))``;
    the keyword arguments are the fields of :class:`ViTConfig` plus the parts."""

    def __init__(self, *, img_size: int = _DEFAULT.img_size, patch_size: int = _DEFAULT.patch_size,
                 in_chans: int = _DEFAULT.in_chans, num_classes: int = _DEFAULT.num_classes,
                 embed_dim: int = _DEFAULT.embed_dim, depth: int = _DEFAULT.depth,
                 num_heads: int = _DEFAULT.num_heads, mlp_ratio: float = _DEFAULT.mlp_ratio,
                 pool: str = _DEFAULT.pool, pos_embed: str = _DEFAULT.pos_embed,
                 dropout: float = _DEFAULT.dropout, attn_dropout: float = _DEFAULT.attn_dropout,
                 embed_layer: Callable[..., nn.Module] | None = None,
                 cls_token_layer: Callable[..., nn.Module] | None = None,
                 pos_embed_layer: Callable[..., nn.Module] | None = None,
                 attn_layer: Callable[..., nn.Module] | None = None,
                 block_fn: Callable[..., nn.Module] | None = None,
                 head_layer: Callable[..., nn.Module] | None = None):
        super().__init__()
        cfg = self.config = ViTConfig(
            img_size=img_size, patch_size=patch_size, in_chans=in_chans, num_classes=num_classes,
            embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio, pool=pool,
            pos_embed=pos_embed, dropout=dropout, attn_dropout=attn_dropout)
        parts = dict(embed_layer=embed_layer, cls_token_layer=cls_token_layer,
                     pos_embed_layer=pos_embed_layer, attn_layer=attn_layer, block_fn=block_fn,
                     head_layer=head_layer)
        self.custom_layers = {name: part_name(fn) for name, fn in parts.items() if fn is not None}
        if cls_token_layer is not None and cfg.pool != "cls":
            raise ValueError(f"cls_token_layer is only used with pool='cls' (pool={cfg.pool!r} has "
                             f"no [CLS] token); drop cls_token_layer or use pool='cls'")
        if pos_embed_layer is not None and cfg.pos_embed != "learned":
            raise ValueError(f"pos_embed_layer replaces the pos_embed={cfg.pos_embed!r} choice; "
                             f"pass one of them, not both")

        self.patch_embed = build_part(embed_layer or PatchEmbedding, "embed_layer", dict(  # steps 2-4
            img_size=cfg.img_size, patch_size=cfg.patch_size, in_chans=cfg.in_chans,
            embed_dim=cfg.embed_dim))
        if hasattr(self.patch_embed, "check_input"):
            self.patch_embed.check_input = False  # embed() checks the images once, here
        self.cls_token = build_part(cls_token_layer or ClassToken, "cls_token_layer",  # step 5
                                    dict(embed_dim=cfg.embed_dim)) if cfg.pool == "cls" else None
        positions = {"learned": PositionEmbedding, "sincos": SinCosPositionEmbedding}  # step 6
        pos_layer = pos_embed_layer or positions.get(cfg.pos_embed)
        self.pos_embed = build_part(pos_layer, "pos_embed_layer", dict(
            num_patches=cfg.num_patches, embed_dim=cfg.embed_dim,
            num_prefix_tokens=cfg.num_prefix_tokens)) if pos_layer is not None else None
        self.dropout = nn.Dropout(cfg.dropout)
        self.encoder = TransformerEncoder(                                                # step 7
            embed_dim=cfg.embed_dim, depth=cfg.depth, num_heads=cfg.num_heads,
            mlp_ratio=cfg.mlp_ratio, dropout=cfg.dropout, attn_dropout=cfg.attn_dropout,
            attn_layer=attn_layer, block_fn=block_fn)
        self._head_layer = head_layer or ClassificationHead  # reset_classifier builds another
        self.head = build_part(self._head_layer, "head_layer",                              # step 8
                               dict(embed_dim=cfg.embed_dim, num_classes=cfg.num_classes))
        self._checked_shapes: set[tuple[int, ...]] = set()  # image shapes whose parts were checked

    @classmethod
    def from_config(cls, config: ViTConfig | dict, **parts) -> ViT:
        """A ViT of this configuration (a :class:`ViTConfig` or its dict, as checkpoints store)."""
        fields = dataclasses.asdict(config) if isinstance(config, ViTConfig) else dict(config)
        return cls(**fields, **parts)

    @classmethod
    def for_dataset(cls, data, **overrides) -> ViT:
        """A ViT shaped by ``data``: channels and image size from its first image, the number
        of classes from its ``classes`` (else its largest label + 1); ``overrides`` are any
        other :class:`ViTConfig` fields and parts (``depth=6``, ``attn_layer=...``).
        ``data``: a vitlearn ``ImageDataset``, any Dataset of (image [C, H, W], label)
        (``ImageFolder``, ``TensorDataset``, ``Subset``, torchvision's MNIST with
        ``ToTensor()``) or a DataLoader. The patch size is 7 when it divides the image size,
        else the divisor of the image size nearest to 7 (32 -> 8): pass ``patch_size=`` to
        choose. The class names go into the checkpoints that ``fit`` writes, so that
        ``python -m vitlearn predict`` prints them."""
        source = BatchSource(data, "data")
        c, h, w = source.first_image().shape
        size = overrides.pop("img_size", None) or h
        if h != w and "img_size" not in overrides and size == h:
            raise ValueError(f"the images are {h}x{w} and a ViT takes square images; resize them "
                             f"in the dataset's transform (transforms.Resize(({h}, {h}))), or pass "
                             f"img_size= and resize to it")
        classes, targets = source.classes, source.targets()
        if "num_classes" not in overrides:
            if classes:
                overrides["num_classes"] = len(classes)
            elif targets is not None and targets.numel():
                overrides["num_classes"] = int(targets.max()) + 1
            else:
                raise ValueError(f"ViT.for_dataset: {type(source.dataset).__name__} lists neither "
                                 f"classes nor targets; pass num_classes=")
        if "patch_size" not in overrides:
            overrides["patch_size"] = min((p for p in range(1, size + 1) if size % p == 0),
                                          key=lambda p: (abs(p - _DEFAULT.patch_size), p))
        overrides.setdefault("in_chans", c)
        return cls(img_size=size, **overrides)

    # The attributes a learner reads most, kept in step with the config.
    @property
    def img_size(self) -> int:
        return self.config.img_size

    @property
    def patch_size(self) -> int:
        return self.config.patch_size

    @property
    def in_chans(self) -> int:
        return self.config.in_chans

    @property
    def pool(self) -> str:
        return self.config.pool

    @property
    def num_patches(self) -> int:
        return self.config.num_patches

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the model computes in (that of its first parameter)."""
        return next(self.parameters()).dtype

    # -- forward: images -> tokens -> logits (steps 1-8) --------------------------------------

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Steps 1-6: images [B, C, H, W] -> tokens [B, 1+N, D] ready for the encoder.

        The images are checked here, once per forward pass, against the model: a tensor of
        4 dimensions, the dtype of the weights (not raw uint8 pixels), the channels and size.
        """
        check_images(images, self.patch_size, in_chans=self.in_chans, img_size=self.img_size,
                     dtype=self.dtype)
        x = self.patch_embed(images)         # [B, N, D]
        if self.cls_token is not None:
            x = self.cls_token(x)            # [B, 1+N, D]
        if self.pos_embed is not None:
            x = self.pos_embed(x)
        return self.dropout(x)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """Steps 1-7: the encoded tokens [B, 1+N, D] (no [CLS] with pool='mean': [B, N, D])."""
        with self._checking_parts(images):
            return self.encoder(self.embed(images))

    def forward_head(self, tokens: torch.Tensor) -> torch.Tensor:
        """Step 8: pool the tokens (the [CLS] one, or the mean) and classify -> logits."""
        pooled = tokens[:, 0] if self.pool == "cls" else tokens.mean(dim=1)  # [B, D]
        return self.head(pooled)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Steps 1-8: images [B, C, H, W] -> logits [B, classes].

        With pool='cls' the head reads only [CLS], so the last block updates [CLS] alone (the
        other tokens still serve as its keys and values): their last updates would be thrown
        away. The logits are those of ``forward_head(forward_features(images))`` up to float
        rounding, for less work (``python benchmarks/throughput.py``). A subclass that
        overrides ``forward_features`` (as notebook 00's ``MyViT``) gets it called as written.
        """
        if self.pool == "cls" and type(self).forward_features is ViT.forward_features:
            with self._checking_parts(images):
                cls = self.encoder(self.embed(images), num_queries=1)  # [B, 1, D]
                return self.forward_head(cls)
        with self._checking_parts(images):
            return self.forward_head(self.forward_features(images))  # logits [B, classes]

    def _checking_parts(self, images: torch.Tensor):
        """The first forward pass at each image shape checks every part's output shape where
        it plugs in (:func:`vitlearn.contract.checking_part_outputs`): a wrong one is named
        with both shapes, instead of being broadcast away or failing deep inside torch. Later
        passes at that shape run without the hooks (one set lookup)."""
        if torch.compiler.is_compiling():  # traced code runs the parts unchecked
            return nullcontext()
        key = tuple(images.shape[1:]) if isinstance(images, torch.Tensor) else None
        if key is None or key in self._checked_shapes:
            return nullcontext()
        return self._part_checks(key)

    @contextmanager
    def _part_checks(self, key: tuple[int, ...]) -> Iterator[None]:
        cfg = self.config

        def tokens_out(args, kwargs):  # attention, block: [B, n, D], n = num_queries or N
            b, n, _ = args[0].shape
            return b, kwargs.get("num_queries") or n, cfg.embed_dim

        parts = [("embed_layer", self.patch_embed,
                  lambda a, k: (a[0].shape[0], cfg.num_patches, cfg.embed_dim))]
        if self.cls_token is not None:
            parts.append(("cls_token_layer", self.cls_token,
                          lambda a, k: (a[0].shape[0], a[0].shape[1] + 1, cfg.embed_dim)))
        if self.pos_embed is not None:
            parts.append(("pos_embed_layer", self.pos_embed, lambda a, k: tuple(a[0].shape)))
        for block in self.encoder.blocks:
            parts.append(("block_fn", block, tokens_out))
            attn = getattr(block, "attn", None)
            if isinstance(attn, nn.Module):
                parts.append(("attn_layer", attn, tokens_out))
        parts.append(("head_layer", self.head, lambda a, k: (a[0].shape[0], cfg.num_classes)))
        with checking_part_outputs(parts):
            yield
        self._checked_shapes.add(key)

    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities softmax(logits) [B, classes], in eval mode."""
        with self._inference():
            return self(images).softmax(dim=-1)

    def attention_maps(self, images: torch.Tensor) -> torch.Tensor:
        """Attention weights of every layer and head: [B, depth, heads, T, T], T = 1+N with
        [CLS] (N with pool='mean'), recorded by :func:`~vitlearn.attention.record_attention`
        in eval mode (the explicit attention path, whatever path ``forward`` uses)."""
        with self._inference(), record_attention(self.encoder) as maps:
            self.forward_features(images)
        return torch.stack(maps, dim=1)

    def no_weight_decay(self) -> set[str]:
        """Names of the parameters that AdamW must not decay towards zero: the [CLS] token and
        the position embeddings, whoever wrote those parts (timm's convention). Norms and
        biases are not listed: ``make_optimizer`` decays only Linear/Conv weights anyway."""
        names = set()
        for prefix, part in (("cls_token", self.cls_token), ("pos_embed", self.pos_embed)):
            if part is not None:
                names |= {f"{prefix}.{name}" for name, _ in part.named_parameters()}
        return names

    @contextmanager
    def _inference(self) -> Iterator[ViT]:
        """Eval mode without gradients, then the train/eval mode restored (as
        ``vitlearn.eval_mode``, which lives with training: model.py imports nothing from it)."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                yield self
        finally:
            self.train(was_training)

    # -- model surgery: a new head, a new resolution ---------------------------------------

    def reset_classifier(self, num_classes: int, *, zero_init: bool = True,
                         head_layer: Callable[..., nn.Module] | None = None) -> ViT:
        """Replace the head by a new one for ``num_classes`` classes (timm's name), to fine-tune
        on another task; returns the model. ``config.num_classes`` follows.

        The new head is built like the old one (the same ``head_layer``; or ``head_layer=``,
        e.g. :class:`~vitlearn.head.ClassificationHead` to swap the paper's pre-training MLP
        head for a single linear layer). With ``zero_init`` (the paper, section 3.2: "a
        zero-initialized D x K feedforward layer") the head's last Linear layer starts at
        weight 0 and bias 0: every image gets the same logits, i.e. uniform probabilities, and
        the gradient that reaches the pretrained encoder through those zero weights is zero at
        first and grows only as the head learns, instead of the arbitrary gradients that a
        random head sends back into the features.
        """
        check_positive_int("ViT.reset_classifier", num_classes=num_classes)
        factory = self._head_layer if head_layer is None else head_layer
        config = self.config.replace(num_classes=num_classes)
        head = build_part(factory, "head_layer", dict(embed_dim=config.embed_dim,
                                                      num_classes=num_classes))
        if zero_init:
            linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
            if not linears:
                raise TypeError(f"reset_classifier(zero_init=True) zeroes the head's last "
                                f"nn.Linear, but {type(head).__name__} has none; pass "
                                f"zero_init=False or give the head an nn.Linear output layer")
            with torch.no_grad():
                linears[-1].weight.zero_()
                if linears[-1].bias is not None:
                    linears[-1].bias.zero_()
        old = next(self.head.parameters(), None)
        old = next(self.parameters(), None) if old is None else old
        if old is not None:
            head = head.to(device=old.device, dtype=old.dtype)
        head.train(self.training)
        self.head, self._head_layer, self.config = head, factory, config
        self._checked_shapes.clear()  # a new head: check it on the next forward
        if factory is ClassificationHead:
            self.custom_layers.pop("head_layer", None)
        else:
            self.custom_layers["head_layer"] = part_name(factory)
        return self

    def set_img_size(self, img_size: int) -> ViT:
        """Run at a new resolution: resample the position embeddings to the new patch grid."""
        config = self.config.replace(img_size=img_size)  # checks img_size
        if self.pos_embed is not None and not callable(getattr(self.pos_embed, "set_grid_size", None)):
            # Checked before anything changes, so the model stays usable at its old size.
            raise TypeError(f"set_img_size needs the position embedding to resample itself, but "
                            f"{type(self.pos_embed).__name__} (pos_embed_layer) has no set_grid_size "
                            f"method; add `def set_grid_size(self, grid_size)` that replaces its "
                            f"positions with vitlearn.resample_position_embedding(pos, grid_size, "
                            f"num_prefix_tokens=...)")
        check_size = getattr(self.patch_embed, "check_img_size", None)
        if callable(check_size):
            check_size(img_size)  # e.g. HybridEmbedding: its stem reaches only some grids
        self.config = config
        grid = config.grid_size
        if self.pos_embed is not None:
            self.pos_embed.set_grid_size(grid)
        for attr, value in (("img_size", img_size), ("grid_size", grid), ("num_patches", grid * grid)):
            if hasattr(self.patch_embed, attr):
                setattr(self.patch_embed, attr, value)
        self._checked_shapes.clear()
        return self

    # -- converters: the same network from timm / Hugging Face, with its weights ------------

    @classmethod
    def from_timm(cls, model: nn.Module) -> ViT:
        """The same network as a timm ``VisionTransformer`` (plain ViT family), with its weights:
        identical outputs, or an error naming what is unsupported (:mod:`vitlearn.pretrained`).
        The new model is on the same device and dtype, in eval mode if the timm model was."""
        return cls._from_converted(pretrained.convert_timm(model))

    @classmethod
    def from_pretrained(cls, name: str, **kwargs) -> ViT:
        """A pretrained timm ViT by name (e.g. ``"vit_base_patch16_224"``), converted; needs
        internet the first time and fails fast without it (:mod:`vitlearn.pretrained`)."""
        return cls.from_timm(pretrained.load_timm_pretrained(name, **kwargs))

    @classmethod
    def from_transformers(cls, model: nn.Module) -> ViT:
        """The same network as a Hugging Face ``ViTForImageClassification``, with its weights."""
        return cls._from_converted(pretrained.convert_transformers(model))

    @classmethod
    def _from_converted(cls, converted: pretrained.Converted) -> ViT:
        """Build what a converter computed: its configuration and LayerNorm eps, on the device
        and in the dtype of its weights, in its train/eval mode."""
        ref = converted.state_dict["patch_embed.proj.weight"]
        with torch.device(ref.device):
            vit = cls(**converted.config)
        for m in vit.modules():
            if isinstance(m, nn.LayerNorm):
                m.eps = converted.norm_eps
        vit = vit.to(dtype=ref.dtype)
        vit.load_state_dict(converted.state_dict)
        return vit.train(converted.training)
