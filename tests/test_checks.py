"""vitlearn.checks: every zoo bug is caught with its own diagnosis, correct variants pass,
shape mistakes get an expected-shape message, NotImplementedError passes through, a pass
prints one line, and the notebooks' own solutions pass every check."""

import json
import math
import re
import sys

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

import vitlearn
from conftest import ROOT
from vitlearn import checks
from vitlearn.checks import CheckFailed

sys.path.insert(0, str(ROOT / "tests"))
import bug_zoo as zoo  # noqa: E402

N_TRAIN, BATCH, EPOCHS, WARMUP_EPOCHS, PEAK_LR, MIN_F = 60_000, 128, 24, 1.0, 0.002, 0.01


def _groups(split):
    torch.manual_seed(0)
    model = vitlearn.ViT()
    decay, no_decay = split(model)
    return lambda: checks.check_weight_decay_groups(model, decay, no_decay)


def _numbers(fn):
    values = fn(N_TRAIN, BATCH, EPOCHS, WARMUP_EPOCHS, PEAK_LR, MIN_F)
    return lambda: checks.check_schedule_numbers(**values, n_train=N_TRAIN, batch_size=BATCH, epochs=EPOCHS,
                                                 warmup_epochs=WARMUP_EPOCHS, peak_lr=PEAK_LR,
                                                 min_factor=MIN_F)


# (zoo entry, how to check it, words the diagnosis must contain)
ZOO = [
    (zoo.patchify_unfold, checks.check_patchify, "(c p1 p2)"),
    (zoo.patchify_column_major, checks.check_patchify, "column-major"),
    (zoo.patchify_transposed, checks.check_patchify, "transposed"),
    (zoo.patchify_reshape_only, checks.check_patchify, "without a permute"),
    (zoo.unpatchify_wrong_interleave, checks.check_unpatchify, "[B, C, h, p1, w, p2]"),
    (zoo.PatchEmbeddingColumnMajor, checks.check_patch_embedding, "column-major"),
    (zoo.PatchEmbeddingUnfold, checks.check_patch_embedding, "(c p1 p2)"),
    (zoo.patch_embed_params_no_bias, checks.check_patch_embed_params, "bias is missing"),
    (zoo.ClassTokenAppended, checks.check_class_token, "appended at the end"),
    (zoo.pool_last_token, checks.check_pool, "LAST token"),
    (zoo.pool_mean_skips_first, checks.check_pool, "token 0 is left out of the mean"),
    (zoo.PositionEmbeddingNoClsSlot, checks.check_position_embedding, "no slot for [CLS]"),
    (zoo.sincos_rows_cols_swapped, checks.check_sincos_2d, "rows and columns are swapped"),
    (zoo.resample_bilinear, checks.check_resample, "bilinear"),
    (zoo.resample_prefix_interpolated, checks.check_resample, "prefix ([CLS]) rows"),
    (zoo.attention_softmax_over_queries, checks.check_attention, "softmax over the last dimension"),
    (zoo.attention_no_scaling, checks.check_attention, "too large by sqrt(d)"),
    (zoo.attention_scaled_by_d, checks.check_attention, "too small by sqrt(d)"),
    (zoo.attention_output_only, checks.check_attention, "must return a pair (output, weights)"),
    (zoo.causal_attention_diagonal_masked, checks.check_causal_attention, "diagonal is masked too"),
    (zoo.causal_attention_mask_after_softmax, checks.check_causal_attention, "BEFORE the softmax"),
    (zoo.AttentionSoftmaxOverQueries, checks.check_multi_head_attention, "softmax over the last dimension"),
    (zoo.AttentionNoScaling, checks.check_multi_head_attention, "too large by sqrt(d)"),
    (zoo.AttentionScaledByEmbedDim, checks.check_multi_head_attention, "sqrt(embed_dim)"),
    (zoo.AttentionHeadsMergedDH, checks.check_multi_head_attention, "merged in (d h) order"),
    (zoo.AttentionHeadsSplitDH, checks.check_multi_head_attention, "split in (d h) order"),
    (zoo.AttentionNoProjection, checks.check_multi_head_attention, "no output projection"),
    (zoo.LayerNormUnbiased, checks.check_layer_norm, "unbiased"),
    (zoo.LayerNormOverTokens, checks.check_layer_norm, "over dim=1 (the tokens)"),
    (zoo.LayerNormEpsOutsideSqrt, checks.check_layer_norm, "inside the square root"),
    (zoo.MLPNoGelu, checks.check_mlp, "no activation between fc1 and fc2"),
    (zoo.BlockPostNorm, checks.check_encoder_block, "post-norm"),
    (zoo.BlockNoAttnResidual, checks.check_encoder_block, "attention residual is missing"),
    (zoo.BlockNoMlpResidual, checks.check_encoder_block, "MLP residual is missing"),
    (zoo.BlockNoGelu, checks.check_encoder_block, "no activation between fc1 and fc2"),
    (zoo.BlockNormOverTokens, checks.check_encoder_block, "normalise over dim=1 (the tokens)"),
    (zoo.block_params_no_layernorm, checks.check_block_params, "LayerNorms are missing"),
    (zoo.HeadWithSoftmax, checks.check_classification_head, "softmax inside the head"),
    (zoo.cross_entropy_log_of_softmax, checks.check_cross_entropy, "use F.log_softmax"),
    (zoo.cross_entropy_sum, checks.check_cross_entropy, "sum over the batch"),
    (zoo.smoothed_ce_eps_over_k_minus_1, checks.check_smoothed_cross_entropy, "K-1 wrong classes"),
    (zoo.smoothed_ce_eps_times_sum, checks.check_smoothed_cross_entropy, "SUM of -log p"),
    (zoo.random_shift_roll, checks.check_random_shift, "torch.roll"),
    (zoo.random_shift_zero_fill, checks.check_random_shift, "filled with 0"),
    (zoo.random_shift_same_for_batch, checks.check_random_shift, "same shift"),
    (zoo.warmup_cosine_off_by_one, checks.check_warmup_cosine, "warm-up off by one"),
    (zoo.warmup_cosine_no_min_factor, checks.check_warmup_cosine, "min_factor is ignored"),
    (zoo.weight_decay_everything, _groups, "bias"),
    (zoo.weight_decay_by_name_weight, _groups, "LayerNorm gain"),
    (zoo.schedule_numbers_ceil, _numbers, "partial batch"),
    (zoo.ViTNoPositions, checks.check_vit, "position embedding is never added"),
    (zoo.vit_params_no_cls_position, checks.check_vit_params, "position table (1 + N rows"),
    # issue 20: what the first zoo's checks let through or only called generic
    (zoo.patchify_strided, checks.check_patchify, "strided grid"),
    (zoo.unpatchify_reshape_only, checks.check_unpatchify, "without a permute"),
    (zoo.patch_embed_params_no_channels, checks.check_patch_embed_params, "channels are missing"),
    (zoo.patch_embed_params_bias_doubled, checks.check_patch_embed_params, "the bias (D) is counted twice"),
    (zoo.ClassTokenAddedToEveryToken, checks.check_class_token, "added to every patch token"),
    (zoo.ClassTokenNotExpanded, checks.check_class_token, "In your forward, line"),
    (zoo.pool_sum, checks.check_pool, "sum over the tokens"),
    (zoo.PositionEmbeddingInPlace, checks.check_position_embedding, "changed its input x"),
    (zoo.PositionEmbeddingMultiplied, checks.check_position_embedding, "they are ADDED"),
    (zoo.sincos_float64, checks.check_sincos_2d, "build it in float32"),
    (zoo.sincos_frequencies_over_half, checks.check_sincos_2d, "spaced over D/2"),
    (zoo.resample_reshape_no_permute, checks.check_resample, "reshaped to [1, D, g, g] without a permute"),
    (zoo.resample_flatten_no_permute, checks.check_resample, "flattened back without a permute"),
    (zoo.resample_align_corners, checks.check_resample, "align_corners=True"),
    (zoo.resample_prefix_at_end, checks.check_resample, "after the grid"),
    (zoo.resample_antialias, checks.check_resample, "antialias=True"),
    (zoo.attention_naive_softmax, checks.check_attention, "exp(s) / exp(s).sum()"),
    (zoo.attention_scaled_after_softmax, checks.check_attention, "after the softmax"),
    (zoo.attention_qk_swapped, checks.check_attention, "(k qᵀ)"),
    (zoo.causal_attention_naive_softmax, checks.check_causal_attention, "exp(s) / exp(s).sum()"),
    (zoo.AttentionHeadsNoTranspose, checks.check_multi_head_attention,
     "heads were made with a reshape alone"),
    (zoo.AttentionMergeNoTranspose, checks.check_multi_head_attention, "heads were merged with a reshape "
                                                                       "alone"),
    (zoo.AttentionQKSwapped, checks.check_multi_head_attention, "q and k are swapped"),
    (zoo.AttentionKVSwapped, checks.check_multi_head_attention, "keys and values are swapped"),
    (zoo.AttentionNaiveSoftmax, checks.check_multi_head_attention, "exp(s) / exp(s).sum()"),
    (zoo.AttentionSoftmaxOverHeads, checks.check_multi_head_attention, "over dim=1, the heads"),
    (zoo.AttentionHeadDimIsEmbedDim, checks.check_multi_head_attention, "In your forward, line"),
    (zoo.LayerNormInPlace, checks.check_layer_norm, "changed its input x"),
    (zoo.LayerNormNoAffine, checks.check_layer_norm, "gain and bias are not applied"),
    (zoo.MLPIgnoresDropout, checks.check_mlp, "dropout is never applied"),
    (zoo.MLPRelu, checks.check_mlp, "ReLU"),
    (zoo.MLPWithResidual, checks.check_mlp, "the residual belongs to the encoder block"),
    (zoo.BlockParallel, checks.check_encoder_block, "parallel block"),
    (zoo.BlockNormedStream, checks.check_encoder_block, "residual stream is normalised"),
    (zoo.BlockNorm1Twice, checks.check_encoder_block, "norm1 is used before the MLP too"),
    (zoo.block_params_fixed_ratio, checks.check_block_params, "mlp_ratio"),
    (zoo.block_params_layernorm_doubled, checks.check_block_params, "counted twice"),
    (zoo.block_params_no_proj_bias, checks.check_block_params, "the bias of proj (D) or the bias of fc2 (D) "
                                                               "is missing"),
    (zoo.HeadNoNorm, checks.check_classification_head, "LayerNorm is skipped"),
    (zoo.HeadLogSoftmax, checks.check_classification_head, "log-probabilities"),
    (zoo.cross_entropy_one_hot, checks.check_cross_entropy, "num_classes"),
    (zoo.cross_entropy_plus_sign, checks.check_cross_entropy, "sign is wrong"),
    (zoo.smoothed_ce_one_hot, checks.check_smoothed_cross_entropy, "num_classes"),
    (zoo.smoothed_ce_no_one_minus_eps, checks.check_smoothed_cross_entropy, "(1 - eps)"),
    (zoo.smoothed_ce_uniform_sign, checks.check_smoothed_cross_entropy, "uniform term has the wrong sign"),
    (zoo.smoothed_ce_eps_swapped, checks.check_smoothed_cross_entropy, "eps and 1 - eps are swapped"),
    (zoo.smoothed_ce_uniform_on_logits, checks.check_smoothed_cross_entropy, "raw logits"),
    (zoo.smoothed_ce_true_class_left_out, checks.check_smoothed_cross_entropy, "true class gets eps/K too"),
    (zoo.random_shift_in_place, checks.check_random_shift, "changed its input images"),
    (zoo.random_shift_dx_from_row_0, checks.check_random_shift, "dy and dx are swapped"),
    (zoo.random_shift_signed, checks.check_random_shift, "opposite direction"),
    (zoo.random_shift_ignores_generator, checks.check_random_shift, "with that generator"),
    (zoo.random_shift_offsets_b_by_2, checks.check_random_shift, "as a [B, 2] tensor"),
    (zoo.warmup_cosine_not_clamped, checks.check_warmup_cosine, "comes back up"),
    (zoo.weight_decay_filter_iterators, _groups, "one-shot iterator"),
    (zoo.schedule_numbers_warmup_in_epochs, _numbers, "not epochs"),
    (zoo.ViTFirstBlockOnly, checks.check_vit, "only the first block runs"),
    (zoo.vit_params_no_head_norm, checks.check_vit_params, "the head's LayerNorm (gain and bias)"),
    (zoo.vit_params_blocks_once, checks.check_vit_params, "only one encoder block is counted"),
]


@pytest.mark.parametrize("bug,check,diagnosis", ZOO, ids=[b.__name__ for b, _, _ in ZOO])
def test_zoo_bug_is_caught_with_its_diagnosis(bug, check, diagnosis, capsys):
    assert bug.__doc__, "every zoo entry names its mistake in a docstring"
    run = check(bug) if check in (_groups, _numbers) else (lambda: check(bug))
    with pytest.raises(CheckFailed) as info:
        run()
    assert diagnosis in str(info.value), str(info.value)
    assert capsys.readouterr().out == "", "a failing check prints nothing"


def test_zoo_has_an_entry_per_documented_mistake():
    assert len(ZOO) >= 25
    names = {name for name in dir(zoo) if not name.startswith("_") and callable(getattr(zoo, name))
             and getattr(getattr(zoo, name), "__module__", "") == "bug_zoo"}
    assert names == {b.__name__ for b, _, _ in ZOO}, "every zoo entry has a test"


# -- correct implementations written differently pass --------------------------------------

def patchify_unfold_reordered(images, patch_size):
    c = images.shape[1]
    cols = F.unfold(images, kernel_size=patch_size, stride=patch_size).transpose(1, 2)  # (c p1 p2)
    return rearrange(cols, "b n (c p1 p2) -> b n (p1 p2 c)", c=c, p1=patch_size)


def patchify_view_transpose(images, patch_size):
    b, c, h, w = images.shape
    p = patch_size
    x = images.view(b, c, h // p, p, w // p, p).transpose(1, 2).transpose(2, 4)  # [b, h, w, p1, c, p2]
    return x.transpose(4, 5).reshape(b, (h // p) * (w // p), p * p * c)


def attention_einsum(q, k, v):
    w = torch.einsum("...id,...jd->...ij", q, k).div(q.shape[-1] ** 0.5).softmax(-1)
    return torch.einsum("...ij,...jd->...id", w, v), w


def attention_sdpa(q, k, v):
    w = (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(dim=-1)
    return F.scaled_dot_product_attention(q, k, v), w


def causal_sdpa(q, k, v):
    n = q.shape[-2]
    mask = torch.ones(n, n, dtype=torch.bool).tril()
    w = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).masked_fill(~mask, -math.inf).softmax(-1)
    return F.scaled_dot_product_attention(q, k, v, is_causal=True), w


class AttentionFusedAndEinsum(nn.Module):
    def __init__(self, *, embed_dim, num_heads):
        super().__init__()
        self.h = num_heads
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim)
        self.proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, x, need_weights=False):
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.h, d // self.h).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        out = self.proj(out)
        if not need_weights:
            return out
        return out, torch.einsum("bhid,bhjd->bhij", q, k).mul(q.shape[-1] ** -0.5).softmax(-1)


class LayerNormFunctional(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps, self.weight, self.bias = eps, nn.Parameter(torch.ones(dim)), nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        return F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)


class MLPSequential(nn.Sequential):
    def __init__(self, *, embed_dim, hidden_dim, dropout=0.0):
        super().__init__(nn.Linear(embed_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(hidden_dim, embed_dim), nn.Dropout(dropout))


class BlockWithTorchNorm(nn.Module):
    def __init__(self, *, embed_dim, num_heads, mlp_ratio=2.0, dropout=0.0, attn_dropout=0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(embed_dim, eps=1e-6)
        self.attn = AttentionFusedAndEinsum(embed_dim=embed_dim, num_heads=num_heads)
        self.norm2 = LayerNormFunctional(embed_dim)
        self.mlp = vitlearn.MLP(embed_dim=embed_dim, hidden_dim=int(embed_dim * mlp_ratio))

    def forward(self, x):
        h = x + self.attn(self.norm1(x))
        return h + self.mlp(self.norm2(h))


class ClassTokenRepeat(nn.Module):
    def __init__(self, *, embed_dim):
        super().__init__()
        self.token = nn.Parameter(torch.zeros(1, 1, embed_dim))

    def forward(self, x):
        return torch.cat([repeat(self.token, "1 1 d -> b 1 d", b=len(x)), x], dim=1)


def cross_entropy_logsumexp(logits, labels):
    return (logits.logsumexp(-1) - logits.gather(1, labels[:, None])[:, 0]).mean()


def smoothed_via_nll(logits, labels, eps):
    lp = logits.log_softmax(-1)
    return (1 - eps) * F.nll_loss(lp, labels) - eps * lp.mean(-1).mean()


def warmup_cosine_clamped(step, total_steps, warmup_steps, min_factor=0.0):
    if step >= warmup_steps:
        t = min(step - warmup_steps, total_steps - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_factor + (1 - min_factor) * (1 + math.cos(math.pi * t)) / 2
    return (step + 1) / warmup_steps


CORRECT = [
    (checks.check_patchify, patchify_unfold_reordered),
    (checks.check_patchify, patchify_view_transpose),
    (checks.check_patchify, vitlearn.patchify),
    (checks.check_unpatchify, vitlearn.unpatchify),
    (checks.check_attention, attention_einsum),
    (checks.check_attention, attention_sdpa),
    (checks.check_causal_attention, causal_sdpa),
    (checks.check_multi_head_attention, AttentionFusedAndEinsum),
    (checks.check_multi_head_attention, vitlearn.MultiHeadSelfAttention),
    (checks.check_layer_norm, LayerNormFunctional),
    (checks.check_layer_norm, nn.LayerNorm),
    (checks.check_mlp, MLPSequential),
    (checks.check_mlp, vitlearn.MLP),
    (checks.check_encoder_block, BlockWithTorchNorm),
    (checks.check_encoder_block, vitlearn.EncoderBlock),
    (checks.check_class_token, ClassTokenRepeat),
    (checks.check_class_token, vitlearn.ClassToken),
    (checks.check_position_embedding, vitlearn.PositionEmbedding),
    (checks.check_patch_embedding, vitlearn.PatchEmbedding),
    (checks.check_classification_head, vitlearn.ClassificationHead),
    (checks.check_sincos_2d, lambda g, d, p=0, t=10000.0: vitlearn.sincos_2d_position_embedding(
        g, d, num_prefix_tokens=p, temperature=t)),
    (checks.check_resample, vitlearn.resample_position_embedding),
    (checks.check_cross_entropy, cross_entropy_logsumexp),
    (checks.check_cross_entropy, F.cross_entropy),
    (checks.check_smoothed_cross_entropy, smoothed_via_nll),
    (checks.check_random_shift, vitlearn.data.random_shift),
    (checks.check_warmup_cosine, warmup_cosine_clamped),
    (checks.check_vit, vitlearn.ViT),
]


@pytest.mark.parametrize("check,impl", CORRECT,
                         ids=[f"{c.__name__}-{getattr(i, '__name__', 'lambda')}" for c, i in CORRECT])
def test_correct_variants_pass_with_one_line(check, impl, capsys):
    state = torch.random.get_rng_state()
    check(impl)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith(f"{check.__name__}: correct — "), out
    assert torch.equal(torch.random.get_rng_state(), state), "a check leaves the global RNG alone"


# -- shapes, types, errors ------------------------------------------------------------------

def test_shape_mistakes_name_the_expected_shape():
    with pytest.raises(CheckFailed,
                       match=r"got shape \[2, 49, 16\], expected \[2, 16, 49\].*\[B, N, P\*P\*C\]"):
        checks.check_patchify(lambda x, p: vitlearn.patchify(x, p).transpose(1, 2))
    with pytest.raises(CheckFailed, match=r"expected \[8, 64\].*dim=1"):
        checks.check_pool(lambda t, pool: t[0])
    with pytest.raises(CheckFailed, match=r"single number \(shape \[\]\)"):
        checks.check_cross_entropy(lambda lg, lb: F.cross_entropy(lg, lb, reduction="none"))
    with pytest.raises(CheckFailed, match=r"expected a tensor of shape \[2, 16, 49\], got a list"):
        checks.check_patchify(lambda x, p: vitlearn.patchify(x, p).tolist())


def test_dtype_conversions_are_reported():
    with pytest.raises(CheckFailed, match="dtype torch.float32, expected torch.float64"):
        checks.check_attention(lambda q, k, v: tuple(t.float() for t in attention_einsum(q, k, v)))


def test_errors_inside_torch_become_a_check_failure_naming_the_call():
    class WrongSizes(nn.Module):
        def __init__(self, *, embed_dim, num_heads):
            super().__init__()
            self.qkv = nn.Linear(embed_dim, 3 * embed_dim)
            self.proj = nn.Linear(embed_dim, embed_dim)

        def forward(self, x, need_weights=False):
            return self.proj(self.qkv(x))  # [B, N, 3D] into Linear(D, D)

    with pytest.raises(CheckFailed, match=r"WrongSizes\(embed_dim=64, num_heads=4\)\.forward failed with "
                                          r"RuntimeError: .*called with \[2, 17, 64\] float32") as info:
        checks.check_multi_head_attention(WrongSizes)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_parameter_names_that_differ_are_listed():
    class SeparateLinears(nn.Module):
        def __init__(self, *, embed_dim, num_heads):
            super().__init__()
            self.q, self.k, self.v = (nn.Linear(embed_dim, embed_dim) for _ in range(3))
            self.proj = nn.Linear(embed_dim, embed_dim)

    with pytest.raises(CheckFailed) as info:
        checks.check_multi_head_attention(SeparateLinears)
    msg = str(info.value)
    assert "missing (ours has them): qkv.weight [192, 64], qkv.bias [192]" in msg
    assert "unexpected (yours only): q.weight [64, 64]" in msg


def test_a_parameter_never_used_in_forward_is_named():
    class DetachedToken(vitlearn.ClassToken):
        def forward(self, x):
            return torch.cat([self.token.detach().expand(len(x), -1, -1), x], dim=1)

    with pytest.raises(CheckFailed, match=r"no gradient reaches token\): these parameters are never used"):
        checks.check_class_token(DetachedToken)


def test_not_implemented_error_propagates_unchanged():
    def stub(*args, **kwargs):
        raise NotImplementedError("write my_attention")

    class Stub(nn.Module):
        def __init__(self, **kwargs):
            super().__init__()
            raise NotImplementedError("write MyEncoderBlock")

    class StubForward(vitlearn.MLP):
        def forward(self, x):
            raise NotImplementedError("write forward")

    for check, impl in [(checks.check_attention, stub), (checks.check_patchify, stub),
                        (checks.check_warmup_cosine, stub), (checks.check_encoder_block, Stub),
                        (checks.check_mlp, StubForward), (checks.check_random_shift, stub)]:
        with pytest.raises(NotImplementedError):
            check(impl)


def test_an_unknown_mistake_gets_a_precise_generic_message():
    def slightly_off(q, k, v):
        out, w = attention_einsum(q, k, v)
        return out * (1 + 0.01 * out), w

    with pytest.raises(CheckFailed, match=r"mismatch in the attention output against ours .* the largest "
                                          r"difference is .* at index"):
        checks.check_attention(slightly_off)


def test_a_wrong_value_of_the_right_shape_is_described_how_it_differs():
    def shifted(q, k, v):
        out, w = attention_einsum(q, k, v)
        return out + 0.01, w

    def tokens_rolled(q, k, v):
        out, w = attention_einsum(q, k, v)
        return out.roll(1, dims=-2), w

    with pytest.raises(CheckFailed, match=r"every value is ours \+0.01: the same constant"):
        checks.check_attention(shifted)

    def output_times_sqrt_d(q, k, v):
        out, w = attention_einsum(q, k, v)
        return out * math.sqrt(q.shape[-1]), w

    with pytest.raises(CheckFailed, match=r"every value is 2.828 times ours: it is sqrt\(d\) too large"):
        checks.check_attention(output_times_sqrt_d)
    with pytest.raises(CheckFailed, match=r"along queries \(tokens\), rolled by 1"):
        checks.check_attention(tokens_rolled)


def test_checks_run_under_no_grad():
    with torch.no_grad():
        checks.check_mlp(vitlearn.MLP)


# -- the notebooks' own solutions -----------------------------------------------------------

def _notebook_namespace(folder=ROOT / "notebooks"):
    ns = {}
    exec("import math, torch, vitlearn\nimport torch.nn.functional as F\nfrom torch import nn\n"
         "from einops import rearrange, repeat\nfrom vitlearn import checks", ns)
    for path in sorted(folder.glob("0[0-8]_*.ipynb")):  # the series 00-08
        for cell in json.loads(path.read_text())["cells"]:
            src = "".join(cell["source"])
            learner_part = r"^(def (my_|patch_embed_params|block_params)|class My)"
            if cell["cell_type"] != "code" or not re.search(learner_part, src, re.M):
                continue
            keep, inside = [], False
            for line in src.splitlines():  # the definitions only, not the demo code after them
                if re.match(r"^(def |class |@)", line):
                    inside = True
                elif line and not line[0].isspace() and not line.startswith("#"):
                    inside = False
                if inside:
                    keep.append(line)
            exec("\n".join(keep), ns)
    return ns


NOTEBOOK_PARTS = [
    ("check_patchify", "my_patchify"), ("check_patchify", "my_patchify_einops"),
    ("check_unpatchify", "my_unpatchify"), ("check_patch_embedding", "MyPatchEmbedding"),
    ("check_patch_embed_params", "patch_embed_params"), ("check_vit", "MyViT"),
    ("check_class_token", "MyClassToken"), ("check_pool", "my_pool"),
    ("check_position_embedding", "MyPositionEmbedding"), ("check_sincos_2d", "my_sincos_2d"),
    ("check_resample", "my_resample"), ("check_attention", "my_attention"),
    ("check_causal_attention", "my_causal_attention"),
    ("check_multi_head_attention", "MyMultiHeadSelfAttention"), ("check_layer_norm", "MyLayerNorm"),
    ("check_mlp", "MyMLP"), ("check_encoder_block", "MyEncoderBlock"), ("check_block_params", "block_params"),
    ("check_classification_head", "MyClassificationHead"), ("check_cross_entropy", "my_cross_entropy"),
    ("check_random_shift", "my_random_shift"), ("check_warmup_cosine", "my_warmup_cosine"),
    ("check_smoothed_cross_entropy", "my_smoothed_cross_entropy"),
]


def test_the_notebooks_solutions_pass_every_check(capsys):
    ns = _notebook_namespace()
    for check, name in NOTEBOOK_PARTS:
        assert name in ns, f"{name} is no longer defined in the notebooks"
        getattr(checks, check)(ns[name])
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(NOTEBOOK_PARTS) and all(" correct — " in line for line in out), out
    spe = N_TRAIN // BATCH
    total, warm = EPOCHS * spe, round(WARMUP_EPOCHS * spe)
    checks.check_schedule_numbers(steps_per_epoch=spe, total_steps=total, warmup_steps=warm,
                                  lr_halfway=PEAK_LR * ns["my_warmup_cosine"](total // 2, total, warm, MIN_F),
                                  n_train=N_TRAIN, batch_size=BATCH, epochs=EPOCHS,
                                  warmup_epochs=WARMUP_EPOCHS, peak_lr=PEAK_LR, min_factor=MIN_F)
    checks.check_token_count((28 // 4) ** 2 + 1, 4 * 4 * 64 + 64, patch_size=4)
    model = vitlearn.ViT()
    checks.check_weight_decay_groups(model, [p for p in model.parameters() if p.ndim == 2],
                                     [p for p in model.parameters() if p.ndim != 2])


def test_the_exercise_stubs_raise_not_implemented_through_the_checks():
    folder = ROOT / "notebooks" / "exercises"
    if not folder.exists():
        pytest.skip("no exercise edition generated (tools/make_exercises.py)")
    ns = _notebook_namespace(folder)
    stubs = 0
    for check, name in NOTEBOOK_PARTS:
        if name in ns and "NotImplementedError" in _source(ns[name]):
            stubs += 1
            with pytest.raises(NotImplementedError):
                getattr(checks, check)(ns[name])
    assert stubs >= 20, f"only {stubs} exercise stubs found"


def _source(obj):
    import inspect

    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):  # defined by exec: no file to read, look at the code's names
        code = getattr(obj, "__code__", None) or getattr(getattr(obj, "__init__", None), "__code__", None)
        names = set(code.co_names) if code else set()
        for member in vars(obj).values() if isinstance(obj, type) else ():
            names |= set(getattr(getattr(member, "__code__", None), "co_names", ()))
        return " ".join(names)


def test_vit_params_formula_for_vit_b16():
    def vit_params(*, img_size, patch_size, in_chans, num_classes, embed_dim, depth, mlp_ratio):
        D, N, H = embed_dim, (img_size // patch_size) ** 2, int(embed_dim * mlp_ratio)
        block = 4 * D + 4 * D * D + 4 * D + 2 * D * H + H + D
        embed = patch_size ** 2 * in_chans * D + D
        return embed + D + (N + 1) * D + depth * block + 2 * D + D * num_classes + num_classes

    checks.check_vit_params(vit_params)


# -- issue 20: what the checks are given, and the blocks they must accept --------------------

@pytest.mark.parametrize("check,given,words", [
    (checks.check_multi_head_attention, vitlearn.MultiHeadSelfAttention(embed_dim=16, num_heads=2),
     "was given an instance, MultiHeadSelfAttention(...), already built; it wants the class itself"),
    (checks.check_encoder_block, vitlearn.EncoderBlock(embed_dim=16, num_heads=2),
     "check_encoder_block(EncoderBlock), without parentheses"),
    (checks.check_attention, vitlearn.MultiHeadSelfAttention,
     "was given the module class MultiHeadSelfAttention; it wants a plain function"),
    (checks.check_patchify, vitlearn.PatchEmbedding(img_size=28, patch_size=7, in_chans=1, embed_dim=8),
     "was given a module instance, PatchEmbedding(...); it wants a plain function"),
    (checks.check_cross_entropy, 3.0, "it wants your function itself, without calling it"),
    (checks.check_mlp, "MLP", "it wants your module class"),
])
def test_a_class_for_an_instance_or_the_reverse_says_which_was_given(check, given, words):
    with pytest.raises(CheckFailed) as info:
        check(given)
    assert words in str(info.value), str(info.value)
    assert "Wanted: " in str(info.value)


def test_weight_decay_groups_given_a_model_class_says_so():
    with pytest.raises(CheckFailed, match="was given the class ViT; it wants the built model"):
        checks.check_weight_decay_groups(vitlearn.ViT, [], [])


class BlockAskingForWeights(BlockWithTorchNorm):
    """Written the natural way after notebook 05: the block asks its attention for the weights."""

    def forward(self, x):
        a, self.last_weights = self.attn(self.norm1(x), need_weights=True)
        h = x + a
        return h + self.mlp(self.norm2(h))


def test_a_block_that_asks_its_attention_for_the_weights_passes(capsys):
    checks.check_encoder_block(BlockAskingForWeights)
    assert capsys.readouterr().out.startswith("check_encoder_block: correct")


def test_a_torch_error_in_the_learners_code_names_their_line_and_tensors():
    with pytest.raises(CheckFailed) as info:
        checks.check_multi_head_attention(zoo.AttentionHeadDimIsEmbedDim)
    msg = str(info.value)
    assert "In your forward, line" in msg and "self.qkv(x).reshape(b, n, 3, self.num_heads, d)" in msg, msg
    assert "x is [2, 17, 64] float32" in msg and "self.qkv is Linear(64 -> 192)" in msg, msg


def test_a_check_does_not_count_its_own_mutants_as_inputs_changed():
    """The in-place probe compares the inputs before and after the learner's call only."""
    checks.check_layer_norm(nn.LayerNorm)
    checks.check_random_shift(vitlearn.data.random_shift)
