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
