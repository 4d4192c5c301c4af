"""The bug zoo: realistic wrong implementations of the learner's parts, one mistake each.

Every entry has the signature of the notebook's learner part, so it can be handed to the
matching ``vitlearn.checks`` function (tests/test_checks.py asserts the check names the
mistake) and, for the model parts, plugged into ``vitlearn.ViT`` to measure what the mistake
costs in training (benchmarks/bug_cost.py). notebooks/bug_zoo.md describes each one for
learners. The docstring of every entry names its mistake.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

import vitlearn

# -- steps 2-4: patches ---------------------------------------------------------------------


def patchify_unfold(images, patch_size):
    """Channel order: F.unfold flattens each patch as (c p1 p2); the paper's order is (p1 p2 c)."""
    return F.unfold(images, kernel_size=patch_size, stride=patch_size).transpose(1, 2)


def patchify_column_major(images, patch_size):
    """Column-major patch order: the patches are numbered down the columns, (w h), not (h w)."""
    return rearrange(images, "b c (h p1) (w p2) -> b (w h) (p1 p2 c)", p1=patch_size, p2=patch_size)


def patchify_transposed(images, patch_size):
    """Each patch is transposed: its pixels are read column by column, (p2 p1 c)."""
    return rearrange(images, "b c (h p1) (w p2) -> b (h w) (p2 p1 c)", p1=patch_size, p2=patch_size)


def patchify_reshape_only(images, patch_size):
    """A reshape without a permute: it cuts the image into strips of rows, not P x P squares."""
    b, c, h, w = images.shape
    return images.reshape(b, (h // patch_size) * (w // patch_size), patch_size * patch_size * c)


def unpatchify_wrong_interleave(patches, patch_size, img_size, in_chans):
    """Merges (h w p1 p2) instead of interleaving (h p1) (w p2): the patches come back scrambled."""
    b, g = patches.shape[0], img_size // patch_size
    x = patches.reshape(b, g, g, patch_size, patch_size, in_chans).permute(0, 5, 1, 2, 3, 4)
    return x.reshape(b, in_chans, img_size, img_size)


class PatchEmbeddingColumnMajor(nn.Module):
    """Column-major patch order inside a patch embedding (the tokens come out in (w h) order)."""

    def __init__(self, *, img_size, patch_size, in_chans, embed_dim):
        super().__init__()
        self.patch_size = patch_size
        self.num_patches = (img_size // patch_size) ** 2
        self.proj = nn.Linear(patch_size * patch_size * in_chans, embed_dim)

    def forward(self, images):
        return self.proj(patchify_column_major(images, self.patch_size))


class PatchEmbeddingUnfold(nn.Module):
    """Channel order (c p1 p2) from F.unfold inside a patch embedding (harmless with 1 channel)."""

    def __init__(self, *, img_size, patch_size, in_chans, embed_dim):
        super().__init__()
        self.patch_size = patch_size
        self.num_patches = (img_size // patch_size) ** 2
        self.proj = nn.Linear(patch_size * patch_size * in_chans, embed_dim)

    def forward(self, images):
        return self.proj(patchify_unfold(images, self.patch_size))


def patch_embed_params_no_bias(patch_size, in_chans, embed_dim):
    """Forgets the bias of the Linear layer (counts only the P*P*C x D weight)."""
    return patch_size * patch_size * in_chans * embed_dim


# -- steps 5-6: [CLS], pooling, positions ---------------------------------------------------

class ClassTokenAppended(nn.Module):
    """[CLS] appended at the end instead of prepended: the head (which reads token 0) gets a patch."""

    def __init__(self, *, embed_dim):
        super().__init__()
        self.token = nn.Parameter(torch.randn(1, 1, embed_dim))

    def forward(self, x):
        return torch.cat([x, self.token.expand(x.shape[0], -1, -1)], dim=1)


def pool_last_token(tokens, pool):
    """Reads the LAST token for pool='cls'; [CLS] is the first one."""
    return tokens[:, -1] if pool == "cls" else tokens.mean(dim=1)


def pool_mean_skips_first(tokens, pool):
    """Mean pooling that drops token 0, as if a [CLS] were there; with pool='mean' there is none.

    (The mirror image of averaging the [CLS] token in with the patches: the mean must cover
    exactly the patch tokens, and vitlearn's ViT(pool='mean') builds no [CLS] token.)
    """
    return tokens[:, 0] if pool == "cls" else tokens[:, 1:].mean(dim=1)


class PositionEmbeddingNoClsSlot(nn.Module):
    """Positions without a slot for [CLS]: pos has num_patches rows, not prefix + num_patches."""

    def __init__(self, *, num_patches, embed_dim, num_prefix_tokens=1):
        super().__init__()
        self.num_prefix_tokens = num_prefix_tokens
        self.pos = nn.Parameter(torch.randn(1, num_patches, embed_dim))

    def forward(self, x):
        return x + self.pos


def sincos_rows_cols_swapped(grid_size, embed_dim, num_prefix_tokens=0, temperature=10000.0):
    """Rows and columns swapped: the first half of the channels encodes the row, not the column."""
    rows, cols = torch.meshgrid(torch.arange(grid_size), torch.arange(grid_size), indexing="ij")
    omega = 1.0 / temperature ** (torch.arange(embed_dim // 4) / (embed_dim // 4))
    r, c = rows.flatten()[:, None] * omega, cols.flatten()[:, None] * omega
    pe = torch.cat([r.sin(), r.cos(), c.sin(), c.cos()], dim=1)
    return torch.cat([torch.zeros(num_prefix_tokens, embed_dim), pe])[None]


def resample_bilinear(pos, new_grid_size, num_prefix_tokens=1):
    """Bilinear instead of bicubic interpolation of the position grid."""
    prefix, grid = pos[:, :num_prefix_tokens], pos[:, num_prefix_tokens:]
    g = math.isqrt(grid.shape[1])
    img = rearrange(grid, "1 (h w) d -> 1 d h w", h=g)
    img = F.interpolate(img, size=(new_grid_size, new_grid_size), mode="bilinear", align_corners=False)
    return torch.cat([prefix, rearrange(img, "1 d h w -> 1 (h w) d")], dim=1)


def resample_prefix_interpolated(pos, new_grid_size, num_prefix_tokens=1):
    """Forgets the [CLS] row: interpolates the whole table as if every row were a grid position."""
    g = math.isqrt(pos.shape[1] - num_prefix_tokens)
    img = rearrange(pos[:, num_prefix_tokens:], "1 (h w) d -> 1 d h w", h=g)
    img = F.interpolate(img, size=(new_grid_size, new_grid_size), mode="bicubic", align_corners=False)
    return rearrange(img, "1 d h w -> 1 (h w) d")


# -- step 7a: attention ---------------------------------------------------------------------

def attention_softmax_over_queries(q, k, v):
    """Softmax over dim=-2 (the queries): the columns, not the rows, sum to 1."""
    w = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(dim=-2)
    return w @ v, w


def attention_no_scaling(q, k, v):
    """No 1/sqrt(d) scaling: the scores grow with d and the softmax saturates."""
    w = (q @ k.transpose(-2, -1)).softmax(dim=-1)
    return w @ v, w


def attention_scaled_by_d(q, k, v):
    """Divides by d instead of sqrt(d): the scores are too small, the weights too flat."""
    w = (q @ k.transpose(-2, -1) / q.shape[-1]).softmax(dim=-1)
    return w @ v, w


def attention_output_only(q, k, v):
    """Returns only F.scaled_dot_product_attention's output: the weights are missing."""
    return F.scaled_dot_product_attention(q, k, v)


def causal_attention_diagonal_masked(q, k, v):
    """Masks the diagonal too (triu without diagonal=1): query 0 sees nothing and gives nan."""
    n = q.shape[-2]
    mask = torch.triu(torch.ones(n, n, dtype=torch.bool))
    w = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).masked_fill(mask, float("-inf")).softmax(-1)
    return w @ v, w


def causal_attention_mask_after_softmax(q, k, v):
    """Zeroes the future after the softmax: the rows no longer sum to 1."""
    n = q.shape[-2]
    future = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
    w = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1).masked_fill(future, 0.0)
    return w @ v, w


class _Attention(nn.Module):
    """The notebook's MyMultiHeadSelfAttention layout: qkv = Linear(D, 3D), proj = Linear(D, D)."""

    def __init__(self, *, embed_dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim)
        self.proj = nn.Linear(embed_dim, embed_dim)

    def split(self, x):
        return rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.num_heads)

    def finish(self, out, weights, need_weights):
        out = self.proj(rearrange(out, "b h n d -> b n (h d)"))
        return (out, weights) if need_weights else out


class AttentionSoftmaxOverQueries(_Attention):
    """Multi-head attention with the softmax over dim=-2 (the queries) instead of the keys."""

    def forward(self, x, need_weights=False):
        q, k, v = self.split(x)
        out, w = attention_softmax_over_queries(q, k, v)
        return self.finish(out, w, need_weights)


class AttentionNoScaling(_Attention):
    """Multi-head attention without the 1/sqrt(head_dim) scaling."""

    def forward(self, x, need_weights=False):
        q, k, v = self.split(x)
        out, w = attention_no_scaling(q, k, v)
        return self.finish(out, w, need_weights)


class AttentionScaledByEmbedDim(_Attention):
    """Divides the scores by sqrt(embed_dim) instead of sqrt(head_dim)."""

    def forward(self, x, need_weights=False):
        q, k, v = self.split(x)
        w = (q @ k.transpose(-2, -1) / math.sqrt(self.qkv.in_features)).softmax(dim=-1)
        return self.finish(w @ v, w, need_weights)


class AttentionHeadsMergedDH(_Attention):
    """Merges the heads in (d h) order: out.permute(0, 3, 2, 1)-style, not concatenated as (h d)."""

    def forward(self, x, need_weights=False):
        q, k, v = self.split(x)
        w = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(dim=-1)
        out = self.proj(rearrange(w @ v, "b h n d -> b n (d h)"))
        return (out, w) if need_weights else out


class AttentionHeadsSplitDH(_Attention):
    """Splits qkv's output into heads as (three d h): each 'head' gets every h-th channel."""

    def forward(self, x, need_weights=False):
        q, k, v = rearrange(self.qkv(x), "b n (three d h) -> three b h n d", three=3, h=self.num_heads)
        w = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(dim=-1)
        return self.finish(w @ v, w, need_weights)


class AttentionNoProjection(_Attention):
    """Defines proj but never applies it: the heads are concatenated and returned as they are."""

    def forward(self, x, need_weights=False):
        q, k, v = self.split(x)
        w = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(dim=-1)
        out = rearrange(w @ v, "b h n d -> b n (h d)")
        return (out, w) if need_weights else out


# -- step 7b: LayerNorm, MLP, encoder block -------------------------------------------------

class LayerNormUnbiased(nn.Module):
    """LayerNorm with the unbiased variance (x.var() divides by D-1, nn.LayerNorm by D)."""

    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        mean, var = x.mean(dim=-1, keepdim=True), x.var(dim=-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class LayerNormOverTokens(LayerNormUnbiased):
    """LayerNorm over the wrong axis: statistics over dim=1 (the tokens), not each token's features."""

    def forward(self, x):
        mean, var = x.mean(dim=1, keepdim=True), x.var(dim=1, keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class LayerNormEpsOutsideSqrt(LayerNormUnbiased):
    """Adds eps to the standard deviation instead of to the variance under the square root."""

    def forward(self, x):
        mean, var = x.mean(dim=-1, keepdim=True), x.var(dim=-1, keepdim=True, unbiased=False)
        return (x - mean) / (torch.sqrt(var) + self.eps) * self.weight + self.bias


class MLPNoGelu(nn.Module):
    """GELU missing between fc1 and fc2: the MLP collapses to one linear map."""

    def __init__(self, *, embed_dim, hidden_dim, dropout=0.0):
        super().__init__()
        self.fc1 = nn.Linear(embed_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, embed_dim)

    def forward(self, x):
        return self.fc2(self.fc1(x))


class _Block(nn.Module):
    """The notebook's MyEncoderBlock layout: norm1, attn (qkv, proj), norm2, mlp (fc1, fc2)."""

    mlp_class = vitlearn.MLP

    def __init__(self, *, embed_dim, num_heads, mlp_ratio=2.0, dropout=0.0, attn_dropout=0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(embed_dim, eps=1e-6)
        self.attn = vitlearn.MultiHeadSelfAttention(embed_dim=embed_dim, num_heads=num_heads,
                                                    attn_dropout=attn_dropout, proj_dropout=dropout)
        self.norm2 = nn.LayerNorm(embed_dim, eps=1e-6)
        self.mlp = self.mlp_class(embed_dim=embed_dim, hidden_dim=int(embed_dim * mlp_ratio), dropout=dropout)


class BlockPostNorm(_Block):
    """Post-norm (the original Transformer): LayerNorm after each residual, not inside the branch."""

    def forward(self, x):
        x = self.norm1(x + self.attn(x))
        return self.norm2(x + self.mlp(x))


class BlockNoAttnResidual(_Block):
    """The attention residual is missing: x = attn(norm1(x)) instead of x = x + attn(norm1(x))."""

    def forward(self, x):
        x = self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class BlockNoMlpResidual(_Block):
    """The MLP residual is missing: x = mlp(norm2(x)) instead of x = x + mlp(norm2(x))."""

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return self.mlp(self.norm2(x))


class BlockNoGelu(_Block):
    """An encoder block whose MLP has no GELU between fc1 and fc2."""

    mlp_class = MLPNoGelu

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class BlockNormOverTokens(_Block):
    """An encoder block whose LayerNorms normalise over the tokens (dim=1) instead of the features."""

    def __init__(self, *, embed_dim, num_heads, mlp_ratio=2.0, dropout=0.0, attn_dropout=0.0):
        super().__init__(embed_dim=embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio, dropout=dropout,
                         attn_dropout=attn_dropout)
        self.norm1, self.norm2 = LayerNormOverTokens(embed_dim), LayerNormOverTokens(embed_dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def block_params_no_layernorm(D, mlp_ratio):
    """Forgets the two LayerNorms (gain and bias each: 4D parameters)."""
    H = int(D * mlp_ratio)
    return (3 * D * D + 3 * D) + (D * D + D) + (D * H + H) + (H * D + D)


# -- step 8: head and loss ------------------------------------------------------------------

class HeadWithSoftmax(nn.Module):
    """Softmax inside the head: returns probabilities, then F.cross_entropy softmaxes them again."""

    def __init__(self, *, embed_dim, num_classes):
        super().__init__()
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.fc = nn.Linear(embed_dim, num_classes)

    def forward(self, x):
        return self.fc(self.norm(x)).softmax(dim=-1)


def cross_entropy_log_of_softmax(logits, labels):
    """Cross-entropy via log(softmax(...)): log(0) = -inf for big logits."""
    return -torch.log(logits.softmax(dim=-1))[torch.arange(len(labels)), labels].mean()


def cross_entropy_sum(logits, labels):
    """Sums the loss over the batch instead of averaging: the gradient scales with the batch size."""
    return -F.log_softmax(logits, dim=-1)[torch.arange(len(labels)), labels].sum()


def smoothed_ce_eps_over_k_minus_1(logits, labels, eps):
    """Label smoothing that spreads eps over the K-1 wrong classes (PyTorch spreads eps/K over all K)."""
    k = logits.shape[-1]
    onehot = F.one_hot(labels, k).to(logits.dtype)
    target = (1 - eps) * onehot + eps / (k - 1) * (1 - onehot)
    return -(target * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def smoothed_ce_eps_times_sum(logits, labels, eps):
    """Label smoothing with eps times the SUM of -log p over the classes (eps, not eps/K, per class)."""
    log_probs = F.log_softmax(logits, dim=-1)
    nll = -log_probs[torch.arange(len(labels)), labels]
    return ((1 - eps) * nll - eps * log_probs.sum(dim=-1)).mean()


# -- training -------------------------------------------------------------------------------

def random_shift_roll(images, max_shift, generator=None):
    """torch.roll wraps around: the pixels that leave one side come back on the other."""
    s = max_shift
    offsets = torch.randint(-s, s + 1, (2, images.shape[0]), generator=generator)
    return torch.stack([torch.roll(img, shifts=(int(dy), int(dx)), dims=(1, 2))
                        for img, dy, dx in zip(images, offsets[0], offsets[1])])


def random_shift_zero_fill(images, max_shift, generator=None):
    """Fills the uncovered border with 0, but normalised MNIST's background is -0.42, not 0."""
    b, c, h, w = images.shape
    s = max_shift
    padded = F.pad(images, (s, s, s, s))  # zeros
    offsets = torch.randint(0, 2 * s + 1, (2, b), generator=generator)
    return torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offsets.T.tolist())])


def random_shift_same_for_batch(images, max_shift, generator=None):
    """One (dy, dx) for the whole batch instead of one per image."""
    b, c, h, w = images.shape
    s = max_shift
    fill = images[:, :, :1, :1]
    padded = F.pad(images - fill, (s, s, s, s)) + fill
    dy, dx = torch.randint(0, 2 * s + 1, (2,), generator=generator).tolist()
    return padded[:, :, dy:dy + h, dx:dx + w]


def warmup_cosine_off_by_one(step, total_steps, warmup_steps, min_factor=0.0):
    """Warm-up off by one: step / warmup_steps gives step 0 a factor of 0 (a wasted first step)."""
    if step < warmup_steps:
        return step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_cosine_no_min_factor(step, total_steps, warmup_steps, min_factor=0.0):
    """Ignores min_factor: the learning rate decays all the way to 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return 0.5 * (1 + math.cos(math.pi * progress))


def weight_decay_everything(model):
    """Weight decay on every parameter: biases, LayerNorm gains, [CLS] and positions too."""
    return list(model.parameters()), []


def weight_decay_by_name_weight(model):
    """Decays every parameter called '*weight': that includes the LayerNorm gains."""
    decay = [p for n, p in model.named_parameters() if n.endswith("weight")]
    return decay, [p for n, p in model.named_parameters() if not n.endswith("weight")]


def schedule_numbers_ceil(n_train, batch_size, epochs, warmup_epochs, peak_lr, min_factor):
    """Counts the last, partial batch (math.ceil), but fit drops it (drop_last=True)."""
    steps_per_epoch = math.ceil(n_train / batch_size)
    total_steps = epochs * steps_per_epoch
    warmup_steps = round(warmup_epochs * steps_per_epoch)
    factor = vitlearn.training.warmup_cosine(total_steps // 2, total_steps, warmup_steps, min_factor)
    lr_halfway = peak_lr * factor
    return dict(steps_per_epoch=steps_per_epoch, total_steps=total_steps, warmup_steps=warmup_steps,
                lr_halfway=lr_halfway)


# -- the whole model ------------------------------------------------------------------------

class ViTNoPositions(vitlearn.ViT):
    """forward_features that forgets to add the position embedding."""

    def forward_features(self, images):
        x = self.cls_token(self.patch_embed(images))
        for block in self.encoder.blocks:
            x = block(x)
        return x


def vit_params_no_cls_position(*, img_size, patch_size, in_chans, num_classes, embed_dim, depth, mlp_ratio):
    """Counts N rows of positions instead of 1 + N: [CLS] needs a position row too."""
    D, N, H = embed_dim, (img_size // patch_size) ** 2, int(embed_dim * mlp_ratio)
    block = 4 * D + (3 * D * D + 3 * D) + (D * D + D) + (D * H + H) + (H * D + D)
    embed = patch_size ** 2 * in_chans * D + D
    return embed + D + N * D + depth * block + 2 * D + D * num_classes + num_classes


# == more mistakes, one per entry (issue 20): what the first zoo's checks let through or only
# == called generic. Same layout, step by step. =============================================

# -- steps 2-4: patches ---------------------------------------------------------------------

def patchify_strided(images, patch_size):
    """(p1 h) instead of (h p1): each "patch" takes every (H/P)-th pixel, a strided grid, not a square."""
    return rearrange(images, "b c (p1 h) (p2 w) -> b (h w) (p1 p2 c)", p1=patch_size, p2=patch_size)


def unpatchify_reshape_only(patches, patch_size, img_size, in_chans):
    """Reshapes the patches straight back to [B, C, H, W] without undoing the permute."""
    return patches.reshape(patches.shape[0], in_chans, img_size, img_size)


def patch_embed_params_no_channels(patch_size, in_chans, embed_dim):
    """Forgets the channels: counts a P*P x D weight, as if every image were grey."""
    return patch_size * patch_size * embed_dim + embed_dim


def patch_embed_params_bias_doubled(patch_size, in_chans, embed_dim):
    """Counts the bias twice (once with the weight, once again on its own)."""
    return patch_size * patch_size * in_chans * embed_dim + 2 * embed_dim


# -- steps 5-6: [CLS], pooling, positions ---------------------------------------------------

class ClassTokenAddedToEveryToken(ClassTokenAppended):
    """Adds the [CLS] vector to every patch token instead of putting one more token in front."""

    def forward(self, x):
        return x + self.token


class ClassTokenNotExpanded(ClassTokenAppended):
    """Concatenates the [1, 1, D] token without expanding it to the batch: fails for B > 1."""

    def forward(self, x):
        return torch.cat([self.token, x], dim=1)


def pool_sum(tokens, pool):
    """Sums the tokens for pool='mean' instead of averaging them."""
    return tokens[:, 0] if pool == "cls" else tokens.sum(dim=1)


class PositionEmbeddingInPlace(nn.Module):
    """x += self.pos: adds the positions into the caller's tensor, in place."""

    def __init__(self, *, num_patches, embed_dim, num_prefix_tokens=1):
        super().__init__()
        self.pos = nn.Parameter(torch.randn(1, num_prefix_tokens + num_patches, embed_dim) * 0.02)

    def forward(self, x):
        x += self.pos
        return x


class PositionEmbeddingMultiplied(PositionEmbeddingInPlace):
    """Multiplies the tokens by the positions instead of adding them."""

    def forward(self, x):
        return x * self.pos


def _sincos(grid_size, embed_dim, num_prefix_tokens, temperature, *, dtype=torch.float32, div=4):
    rows, cols = torch.meshgrid(torch.arange(grid_size, dtype=dtype), torch.arange(grid_size, dtype=dtype),
                                indexing="ij")
    omega = 1.0 / temperature ** (torch.arange(embed_dim // 4, dtype=dtype) / (embed_dim // div))
    r, c = rows.flatten()[:, None] * omega, cols.flatten()[:, None] * omega
    pe = torch.cat([c.sin(), c.cos(), r.sin(), r.cos()], dim=1)
    return torch.cat([torch.zeros(num_prefix_tokens, embed_dim, dtype=dtype), pe])[None]


def sincos_float64(grid_size, embed_dim, num_prefix_tokens=0, temperature=10000.0):
    """Builds the table in float64 (torch.arange of a float64 grid): the model's tokens are float32."""
    return _sincos(grid_size, embed_dim, num_prefix_tokens, temperature, dtype=torch.float64)


def sincos_frequencies_over_half(grid_size, embed_dim, num_prefix_tokens=0, temperature=10000.0):
    """Spaces the D/4 frequencies over D/2 (k / (D/2)): the slowest one is far too fast."""
    return _sincos(grid_size, embed_dim, num_prefix_tokens, temperature, div=2)


def _resample_parts(pos, new_grid_size, num_prefix_tokens):
    prefix, grid = pos[:, :num_prefix_tokens], pos[:, num_prefix_tokens:]
    return prefix, grid, math.isqrt(grid.shape[1]), (new_grid_size, new_grid_size)


def resample_reshape_no_permute(pos, new_grid_size, num_prefix_tokens=1):
    """Reshapes the [1, g*g, D] grid straight to [1, D, g, g] without a permute: rows and features mix."""
    prefix, grid, g, size = _resample_parts(pos, new_grid_size, num_prefix_tokens)
    img = F.interpolate(grid.reshape(1, -1, g, g), size=size, mode="bicubic", align_corners=False)
    return torch.cat([prefix, rearrange(img, "1 d h w -> 1 (h w) d")], dim=1)


def resample_flatten_no_permute(pos, new_grid_size, num_prefix_tokens=1):
    """Flattens the interpolated [1, D, g', g'] straight to [1, g'*g', D] without a permute."""
    prefix, grid, g, size = _resample_parts(pos, new_grid_size, num_prefix_tokens)
    img = F.interpolate(rearrange(grid, "1 (h w) d -> 1 d h w", h=g), size=size, mode="bicubic",
                        align_corners=False)
    return torch.cat([prefix, img.reshape(1, -1, pos.shape[-1])], dim=1)


def resample_align_corners(pos, new_grid_size, num_prefix_tokens=1):
    """align_corners=True: the grid's corners are pinned, the scale between them changes."""
    prefix, grid, g, size = _resample_parts(pos, new_grid_size, num_prefix_tokens)
    img = F.interpolate(rearrange(grid, "1 (h w) d -> 1 d h w", h=g), size=size, mode="bicubic",
                        align_corners=True)
    return torch.cat([prefix, rearrange(img, "1 d h w -> 1 (h w) d")], dim=1)


def resample_prefix_at_end(pos, new_grid_size, num_prefix_tokens=1):
    """Puts the [CLS] row back after the grid instead of in front of it."""
    prefix, grid, g, size = _resample_parts(pos, new_grid_size, num_prefix_tokens)
    img = F.interpolate(rearrange(grid, "1 (h w) d -> 1 d h w", h=g), size=size, mode="bicubic",
                        align_corners=False)
    return torch.cat([rearrange(img, "1 d h w -> 1 (h w) d"), prefix], dim=1)


def resample_antialias(pos, new_grid_size, num_prefix_tokens=1):
    """antialias=True: when the grid shrinks it blurs, which the reference (timm's) does not."""
    prefix, grid, g, size = _resample_parts(pos, new_grid_size, num_prefix_tokens)
    img = F.interpolate(rearrange(grid, "1 (h w) d -> 1 d h w", h=g), size=size, mode="bicubic",
                        align_corners=False, antialias=True)
    return torch.cat([prefix, rearrange(img, "1 d h w -> 1 (h w) d")], dim=1)


# -- step 7a: attention ---------------------------------------------------------------------

def _softmax_naive(s):
    e = s.exp()
    return e / e.sum(dim=-1, keepdim=True)


def attention_naive_softmax(q, k, v):
    """Softmax as exp(s) / exp(s).sum(): overflows to inf / inf = nan at large scores."""
    w = _softmax_naive(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]))
    return w @ v, w


def attention_scaled_after_softmax(q, k, v):
    """Divides the weights by sqrt(d) after the softmax instead of the scores before it."""
    w = (q @ k.transpose(-2, -1)).softmax(dim=-1) / math.sqrt(q.shape[-1])
    return w @ v, w


def attention_qk_swapped(q, k, v):
    """k @ q.T instead of q @ k.T: the weights come out transposed."""
    w = (k @ q.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(dim=-1)
    return w @ v, w


def causal_attention_naive_softmax(q, k, v):
    """A correct mask, but the softmax as exp(s) / exp(s).sum(): nan at large scores."""
    n = q.shape[-2]
    future = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
    w = _softmax_naive((q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).masked_fill(future, float("-inf")))
    return w @ v, w


class AttentionHeadsNoTranspose(_Attention):
    """Makes the heads with a reshape alone: [B, N, D] viewed as [B, h, N, d] (no transpose)."""

    def forward(self, x, need_weights=False):
        b, n, d = x.shape
        q, k, v = (t.reshape(b, self.num_heads, n, d // self.num_heads) for t in self.qkv(x).chunk(3, dim=-1))
        w = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(dim=-1)
        return self.finish(w @ v, w, need_weights)


class AttentionMergeNoTranspose(_Attention):
    """Merges the heads with a reshape alone: [B, h, N, d] read as [B, N, D] (no transpose)."""

    def forward(self, x, need_weights=False):
        b, n, d = x.shape
        q, k, v = self.split(x)
        w = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(dim=-1)
        out = self.proj((w @ v).reshape(b, n, d))
        return (out, w) if need_weights else out


class AttentionQKSwapped(_Attention):
    """Scores k @ q.T: row i holds key i's match with every query (the weights are transposed)."""

    def forward(self, x, need_weights=False):
        q, k, v = self.split(x)
        out, w = attention_qk_swapped(q, k, v)
        return self.finish(out, w, need_weights)


class AttentionKVSwapped(_Attention):
    """Unpacks qkv as (q, v, k): the keys are the values' projection and the reverse."""

    def forward(self, x, need_weights=False):
        q, v, k = self.split(x)
        w = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(dim=-1)
        return self.finish(w @ v, w, need_weights)


class AttentionNaiveSoftmax(_Attention):
    """Multi-head attention with the softmax written as exp(s) / exp(s).sum(): nan at large scores."""

    def forward(self, x, need_weights=False):
        q, k, v = self.split(x)
        out, w = attention_naive_softmax(q, k, v)
        return self.finish(out, w, need_weights)


class AttentionSoftmaxOverHeads(_Attention):
    """Softmax over dim=1, the heads, instead of the keys."""

    def forward(self, x, need_weights=False):
        q, k, v = self.split(x)
        w = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(dim=1)
        return self.finish(w @ v, w, need_weights)


class AttentionHeadDimIsEmbedDim(_Attention):
    """Reshapes qkv with head_dim = D instead of D / h: a torch error inside forward."""

    def forward(self, x, need_weights=False):
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, d).permute(2, 0, 3, 1, 4)
        out, w = vitlearn.scaled_dot_product_attention(*qkv)
        return self.finish(out, w, need_weights)


# -- step 7b: LayerNorm, MLP, encoder block -------------------------------------------------

class LayerNormInPlace(LayerNormUnbiased):
    """Subtracts the mean in place (x -= mean): the caller's tokens, needed by the residual, change."""

    def forward(self, x):
        x -= x.mean(dim=-1, keepdim=True)
        return x / torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps) * self.weight + self.bias


class LayerNormNoAffine(LayerNormUnbiased):
    """Normalises but never applies the learned gain and bias."""

    def forward(self, x):
        mean, var = x.mean(dim=-1, keepdim=True), x.var(dim=-1, keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + self.eps)


class MLPIgnoresDropout(MLPNoGelu):
    """Takes dropout= but never applies it: no nn.Dropout anywhere."""

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class MLPRelu(MLPNoGelu):
    """ReLU instead of GELU between fc1 and fc2."""

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


class MLPWithResidual(MLPNoGelu):
    """Adds its input to its output: the residual belongs to the block, not to the MLP."""

    def forward(self, x):
        return x + self.fc2(F.gelu(self.fc1(x)))


class BlockParallel(_Block):
    """Attention and MLP both read the block's input (a parallel block, not ViT's sequential one)."""

    def forward(self, x):
        return x + self.attn(self.norm1(x)) + self.mlp(self.norm2(x))


class BlockNormedStream(_Block):
    """Replaces x by norm1(x), so the residual stream itself is normalised."""

    def forward(self, x):
        x = self.norm1(x)
        x = x + self.attn(x)
        x = self.norm2(x)
        return x + self.mlp(x)


class BlockNorm1Twice(_Block):
    """Uses norm1 before the MLP as well; norm2 is never used."""

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm1(x))


def block_params_fixed_ratio(D, mlp_ratio):
    """Counts the MLP with a hidden width of 4D whatever mlp_ratio is."""
    H = 4 * D
    return 4 * D + (3 * D * D + 3 * D) + (D * D + D) + (D * H + H) + (H * D + D)


def block_params_layernorm_doubled(D, mlp_ratio):
    """Counts the two LayerNorms twice (4D extra)."""
    return block_params_no_layernorm(D, mlp_ratio) + 8 * D


def block_params_no_proj_bias(D, mlp_ratio):
    """Forgets the bias of the output projection proj (D numbers)."""
    return block_params_no_layernorm(D, mlp_ratio) + 4 * D - D


# -- step 8: head and loss ------------------------------------------------------------------

class HeadNoNorm(HeadWithSoftmax):
    """Skips the head's LayerNorm: fc(x) instead of fc(norm(x))."""

    def forward(self, x):
        return self.fc(x)


class HeadLogSoftmax(HeadWithSoftmax):
    """Returns log-probabilities; F.cross_entropy applies the log-softmax itself."""

    def forward(self, x):
        return self.fc(self.norm(x)).log_softmax(dim=-1)


def cross_entropy_one_hot(logits, labels):
    """F.one_hot(labels) without num_classes: a batch that lacks the last class gets too few columns."""
    return -(F.one_hot(labels).to(logits.dtype) * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def cross_entropy_plus_sign(logits, labels):
    """Forgets the minus sign: returns the mean log-probability of the labels."""
    return F.log_softmax(logits, dim=-1)[torch.arange(len(labels)), labels].mean()


def smoothed_ce_one_hot(logits, labels, eps):
    """F.one_hot(labels) without num_classes in the smoothed loss: fails on a batch without class K-1."""
    k = logits.shape[-1]
    target = (1 - eps) * F.one_hot(labels).to(logits.dtype) + eps / k
    return -(target * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def smoothed_ce_no_one_minus_eps(logits, labels, eps):
    """Adds eps * the uniform term but keeps the full weight 1 on the true class (no 1 - eps)."""
    lp = F.log_softmax(logits, dim=-1)
    return (-lp[torch.arange(len(labels)), labels] - eps * lp.mean(dim=-1)).mean()


def smoothed_ce_uniform_sign(logits, labels, eps):
    """The uniform term with the wrong sign: + eps * mean(log p) instead of - eps * mean(log p)."""
    lp = F.log_softmax(logits, dim=-1)
    return ((1 - eps) * -lp[torch.arange(len(labels)), labels] + eps * lp.mean(dim=-1)).mean()


def smoothed_ce_eps_swapped(logits, labels, eps):
    """eps and 1 - eps swapped: eps on the true class, 1 - eps spread over all classes."""
    lp = F.log_softmax(logits, dim=-1)
    return (eps * -lp[torch.arange(len(labels)), labels] - (1 - eps) * lp.mean(dim=-1)).mean()


def smoothed_ce_uniform_on_logits(logits, labels, eps):
    """The uniform term averages the raw logits, not the log-probabilities."""
    lp = F.log_softmax(logits, dim=-1)
    return ((1 - eps) * -lp[torch.arange(len(labels)), labels] - eps * logits.mean(dim=-1)).mean()


def smoothed_ce_true_class_left_out(logits, labels, eps):
    """Target 1 - eps on the true class and eps/K on the others only: the target sums to 1 - eps/K."""
    k = logits.shape[-1]
    onehot = F.one_hot(labels, k).to(logits.dtype)
    target = (1 - eps) * onehot + eps / k * (1 - onehot)
    return -(target * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


# -- training -------------------------------------------------------------------------------

def _window_shift(images, oy, ox, s):
    b, c, h, w = images.shape
    fill = images[:, :, :1, :1]
    padded = F.pad(images - fill, (s, s, s, s)) + fill
    return torch.stack([padded[i, :, oy[i]:oy[i] + h, ox[i]:ox[i] + w] for i in range(b)])


def random_shift_in_place(images, max_shift, generator=None):
    """Writes the shifted images into its input (images[i] = ...): the caller's batch changes."""
    s = max_shift
    offsets = torch.randint(0, 2 * s + 1, (2, images.shape[0]), generator=generator)
    shifted = _window_shift(images, offsets[0].tolist(), offsets[1].tolist(), s)
    images[:] = shifted
    return images


def random_shift_dx_from_row_0(images, max_shift, generator=None):
    """Takes dx from row 0 of the offsets and dy from row 1 (swapped against vitlearn's convention)."""
    s = max_shift
    offsets = torch.randint(0, 2 * s + 1, (2, images.shape[0]), generator=generator)
    return _window_shift(images, offsets[1].tolist(), offsets[0].tolist(), s)


def random_shift_signed(images, max_shift, generator=None):
    """Draws signed shifts in [-s, s] and moves the image BY them (out[r] = in[r - dy]): a valid
    augmentation, but not vitlearn's window convention, so it differs from random_shift."""
    s = max_shift
    d = torch.randint(-s, s + 1, (2, images.shape[0]), generator=generator)
    return _window_shift(images, (s - d[0]).tolist(), (s - d[1]).tolist(), s)


def random_shift_offsets_b_by_2(images, max_shift, generator=None):
    """Draws signed offsets as a [B, 2] tensor and copies the overlap: a valid shift (it passed the
    first check), but the generator's numbers land on other images than vitlearn's [2, B] draw."""
    b, c, h, w = images.shape
    s = max_shift
    if s == 0:
        return images.clone()
    d = torch.randint(-s, s + 1, (b, 2), generator=generator)
    out = images[:, :, :1, :1].expand_as(images).clone()
    for i, (dy, dx) in enumerate(d.tolist()):
        src = images[i, :, max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)]
        out[i, :, max(0, -dy):h + min(0, -dy), max(0, -dx):w + min(0, -dx)] = src
    return out


def random_shift_ignores_generator(images, max_shift, generator=None):
    """Draws the offsets from the global RNG, ignoring generator=: runs do not repeat."""
    s = max_shift
    offsets = torch.randint(0, 2 * s + 1, (2, images.shape[0]))
    return _window_shift(images, offsets[0].tolist(), offsets[1].tolist(), s)


def warmup_cosine_not_clamped(step, total_steps, warmup_steps, min_factor=0.0):
    """Does not clamp the cosine's progress at 1: after total_steps the factor rises again."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))


def weight_decay_filter_iterators(model):
    """Returns filter objects: one-shot iterators, empty the second time they are read (AdamW finds none)."""
    params = list(model.parameters())
    return filter(lambda p: p.ndim == 2, params), filter(lambda p: p.ndim != 2, params)


def schedule_numbers_warmup_in_epochs(n_train, batch_size, epochs, warmup_epochs, peak_lr, min_factor):
    """Uses warmup_epochs as the number of warm-up steps (epochs, not optimizer steps)."""
    steps_per_epoch = n_train // batch_size
    total_steps = epochs * steps_per_epoch
    warmup_steps = round(warmup_epochs)
    lr = peak_lr * vitlearn.training.warmup_cosine(total_steps // 2, total_steps, warmup_steps, min_factor)
    return dict(steps_per_epoch=steps_per_epoch, total_steps=total_steps, warmup_steps=warmup_steps,
                lr_halfway=lr)


# -- the whole model ------------------------------------------------------------------------

class ViTFirstBlockOnly(vitlearn.ViT):
    """forward_features that runs only the first encoder block (a return inside the loop)."""

    def forward_features(self, images):
        x = self.pos_embed(self.cls_token(self.patch_embed(images)))
        for block in self.encoder.blocks:
            return block(x)


def vit_params_no_head_norm(*, img_size, patch_size, in_chans, num_classes, embed_dim, depth, mlp_ratio):
    """Forgets the head's LayerNorm (gain and bias, 2D)."""
    D = embed_dim
    return vit_params_no_cls_position(img_size=img_size, patch_size=patch_size, in_chans=in_chans,
                                      num_classes=num_classes, embed_dim=D, depth=depth,
                                      mlp_ratio=mlp_ratio) + D - 2 * D


def vit_params_blocks_once(*, img_size, patch_size, in_chans, num_classes, embed_dim, depth, mlp_ratio):
    """Counts one encoder block, not depth of them."""
    return vit_params_no_cls_position(img_size=img_size, patch_size=patch_size, in_chans=in_chans,
                                      num_classes=num_classes, embed_dim=embed_dim, depth=1,
                                      mlp_ratio=mlp_ratio) + embed_dim


# -- how many of the zoo's messages name their mistake ----------------------------------------

def _count() -> None:
    """Run every entry of tests/test_checks.py's ZOO through its check and count the messages that
    contain the expected words, the wrong parts that pass, and the generic messages. With
    PYTHONPATH pointing at an older vitlearn (e.g. `git archive <commit> vitlearn | tar -x -C
    /tmp/old`), the same zoo measures the older checks."""
    import contextlib
    import io
    import re

    import test_checks as t

    from vitlearn.checks import CheckFailed

    first_new = [b.__name__ for b, _, _ in t.ZOO].index("patchify_strided")
    for label, entries in (("first zoo", t.ZOO[:first_new]), ("second round", t.ZOO[first_new:]),
                           ("all", t.ZOO)):
        named = passed = generic = 0
        for bug, check, words in entries:
            run = check(bug) if check in (t._groups, t._numbers) else (lambda: check(bug))  # noqa: B023
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    run()
                passed += 1
                continue
            except CheckFailed as err:
                msg = str(err)
            named += words in msg
            generic_words = (r"look at the order of the operations|off by [+-][\d,]+$|"
                             r"failed with \w+: [^\n]*\(called")
            generic += words not in msg and bool(re.search(generic_words, msg))
        print(f"{label}: {named} of {len(entries)} messages name the mistake, {passed} wrong parts pass, "
              f"{generic} generic, {len(entries) - named - passed - generic} other (checks from "
              f"{vitlearn.checks.__file__})")


if __name__ == "__main__":
    _count()
