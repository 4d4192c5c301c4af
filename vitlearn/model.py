"""The Vision Transformer, assembled from the eight steps (Dosovitskiy et al., 2021).

    images [B, C, H, W]
      -> patch embedding      [B, N, D]      steps 2-4 (patches.py)
      -> prepend [CLS]        [B, 1+N, D]    step 5    (tokens.py)
      -> + position embedding [B, 1+N, D]    step 6    (tokens.py)
      -> Transformer encoder  [B, 1+N, D]    step 7    (attention.py, encoder.py)
      -> pool [CLS] (or mean) [B, D]
      -> head                 [B, classes]   step 8    (head.py)

Every part is built by a constructor argument (``embed_layer``, ``cls_token_layer``,
``pos_embed_layer``, ``attn_layer``, ``block_fn``, ``head_layer``), each called with keyword
arguments, so a hand-written part can be plugged into the real model.
Initialisation follows vit-pytorch: PyTorch's default Linear init, and [CLS] and position
embeddings drawn from N(0, 1). timm's N(0, 0.02) everywhere suits long ImageNet schedules;
on MNIST in a few epochs it learns far slower (``benchmarks/init_comparison.py``).

The default (patch 7, D=64, depth 4, 4 heads, MLP 128) has 139,018 parameters
(``python -m vitlearn info`` prints it).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .attention import MultiHeadSelfAttention
from .encoder import EncoderBlock, TransformerEncoder
from .head import ClassificationHead
from .patches import PatchEmbedding, check_images
from .tokens import ClassToken, PositionEmbedding, SinCosPositionEmbedding

__all__ = ["ViT", "POOLS", "POS_EMBEDS"]

POOLS = ("cls", "mean")
POS_EMBEDS = ("learned", "sincos", "none")
_BUILTIN = {PatchEmbedding, ClassToken, MultiHeadSelfAttention, EncoderBlock, ClassificationHead}


class ViT(nn.Module):
    def __init__(self, *, img_size: int = 28, patch_size: int = 7, in_chans: int = 1,
                 num_classes: int = 10, embed_dim: int = 64, depth: int = 4, num_heads: int = 4,
                 mlp_ratio: float = 2.0, pool: str = "cls", pos_embed: str = "learned",
                 dropout: float = 0.0, attn_dropout: float = 0.0,
                 embed_layer: Callable[..., nn.Module] = PatchEmbedding,
                 cls_token_layer: Callable[..., nn.Module] = ClassToken,
                 pos_embed_layer: Callable[..., nn.Module] | None = None,
                 attn_layer: Callable[..., nn.Module] = MultiHeadSelfAttention,
                 block_fn: Callable[..., nn.Module] = EncoderBlock,
                 head_layer: Callable[..., nn.Module] = ClassificationHead):
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"unknown pool={pool!r}; use one of {POOLS}")
        if pos_embed not in POS_EMBEDS:
            raise ValueError(f"unknown pos_embed={pos_embed!r}; use one of {POS_EMBEDS}")
        if img_size % patch_size:
            divisors = [p for p in range(1, img_size + 1) if img_size % p == 0]
            raise ValueError(f"img_size={img_size} is not divisible by patch_size={patch_size}; "
                             f"choose patch_size from {divisors}")
        if embed_dim % num_heads:
            divisors = [h for h in range(1, embed_dim + 1) if embed_dim % h == 0]
            raise ValueError(f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}; "
                             f"choose num_heads from {divisors} or change embed_dim")
        self.config = dict(img_size=img_size, patch_size=patch_size, in_chans=in_chans,
                           num_classes=num_classes, embed_dim=embed_dim, depth=depth,
                           num_heads=num_heads, mlp_ratio=mlp_ratio, pool=pool,
                           pos_embed=pos_embed, dropout=dropout, attn_dropout=attn_dropout)
        self.custom_layers = {name: f"{fn.__module__}.{fn.__qualname__}" for name, fn in
                              dict(embed_layer=embed_layer, cls_token_layer=cls_token_layer,
                                   pos_embed_layer=pos_embed_layer, attn_layer=attn_layer,
                                   block_fn=block_fn, head_layer=head_layer).items()
                              if fn is not None and fn not in _BUILTIN}
        self.img_size, self.patch_size, self.in_chans = img_size, patch_size, in_chans
        self.pool = pool
        num_patches = (img_size // patch_size) ** 2
        num_prefix = 1 if pool == "cls" else 0

        self.patch_embed = embed_layer(img_size=img_size, patch_size=patch_size,
                                       in_chans=in_chans, embed_dim=embed_dim)  # steps 2-4
        self.cls_token = cls_token_layer(embed_dim=embed_dim) if pool == "cls" else None  # step 5
        if pos_embed_layer is not None:                                              # step 6
            self.pos_embed = pos_embed_layer(num_patches=num_patches, embed_dim=embed_dim,
                                             num_prefix_tokens=num_prefix)
        elif pos_embed == "learned":
            self.pos_embed = PositionEmbedding(num_patches=num_patches, embed_dim=embed_dim,
                                               num_prefix_tokens=num_prefix)
        elif pos_embed == "sincos":
            self.pos_embed = SinCosPositionEmbedding(num_patches=num_patches, embed_dim=embed_dim,
                                                     num_prefix_tokens=num_prefix)
        else:
            self.pos_embed = None
        self.dropout = nn.Dropout(dropout)
        self.encoder = TransformerEncoder(embed_dim=embed_dim, depth=depth, num_heads=num_heads,
                                          mlp_ratio=mlp_ratio, dropout=dropout,
                                          attn_dropout=attn_dropout, attn_layer=attn_layer,
                                          block_fn=block_fn)                         # step 7
        self.head = head_layer(embed_dim=embed_dim, num_classes=num_classes)         # step 8

    @property
    def num_patches(self) -> int:
        return (self.img_size // self.patch_size) ** 2

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Steps 1-6: images [B, C, H, W] -> tokens [B, 1+N, D] ready for the encoder."""
        check_images(images, self.patch_size, in_chans=self.in_chans, img_size=self.img_size)
        x = self.patch_embed(images)         # [B, N, D]
        if self.cls_token is not None:
            x = self.cls_token(x)            # [B, 1+N, D]
        if self.pos_embed is not None:
            x = self.pos_embed(x)
        return self.dropout(x)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """Steps 1-7: the encoded tokens [B, 1+N, D] (no [CLS] with pool='mean': [B, N, D])."""
        return self.encoder(self.embed(images))

    def forward_head(self, tokens: torch.Tensor) -> torch.Tensor:
        """Step 8: pool the tokens (the [CLS] one, or the mean) and classify -> logits."""
        pooled = tokens[:, 0] if self.pool == "cls" else tokens.mean(dim=1)  # [B, D]
        return self.head(pooled)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(images))  # logits [B, classes]

    @torch.no_grad()
    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities softmax(logits) [B, classes], in eval mode."""
        was_training = self.training
        self.eval()
        try:
            return self(images).softmax(dim=-1)
        finally:
            self.train(was_training)

    @torch.no_grad()
    def attention_maps(self, images: torch.Tensor) -> torch.Tensor:
        """Attention weights of every layer and head: [B, depth, heads, T, T], T = 1+N with
        [CLS] (N with pool='mean'). Uses the explicit attention path, so it works whatever
        path ``forward`` uses."""
        was_training = self.training
        self.eval()
        try:
            _, maps = self.encoder(self.embed(images), need_weights=True)
        finally:
            self.train(was_training)
        return maps

    def set_img_size(self, img_size: int) -> ViT:
        """Run at a new resolution: resample the position embeddings to the new patch grid."""
        if img_size % self.patch_size:
            raise ValueError(f"img_size={img_size} is not divisible by patch_size="
                             f"{self.patch_size}; pick a multiple of {self.patch_size}")
        grid = img_size // self.patch_size
        if self.pos_embed is not None:
            self.pos_embed.set_grid_size(grid)
        self.img_size = self.config["img_size"] = img_size
        for attr, value in (("img_size", img_size), ("grid_size", grid), ("num_patches", grid * grid)):
            if hasattr(self.patch_embed, attr):
                setattr(self.patch_embed, attr, value)
        return self

