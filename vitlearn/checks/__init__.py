"""Instant checks for the learner's parts: run them, compare with ours, and name the mistake.

Every ``check_*`` function runs a part written in a notebook on several inputs, copies the
weights of our part into it by name, and compares the outputs with ours (and with the torch
built-in where there is one). A pass prints one line saying what was verified. A failure
raises :class:`CheckFailed` with the most likely mistake and its fix: when the output is
wrong, the check computes the outputs of the usual mistakes ("mutants": softmax over the
wrong axis, no scaling, post-norm, ...) on the same inputs with the same weights and names
the one that matches; when none does, it says which element differs and by how much.
A mutant is only consulted when the output is wrong, and never when it coincides with the
right answer on those inputs, so a correct part written differently cannot be misdiagnosed.

A ``NotImplementedError`` raised by the learner's code propagates unchanged (the exercise
edition's "you have not written this part yet"); any other exception becomes a CheckFailed
that names the call, the inputs' shapes and the original error (kept as ``__cause__``).

The package mirrors the course's steps: ``_harness`` holds the machinery shared by every check
(:class:`CheckFailed`, running the learner's code, comparing, naming the mutant), and one module
per step holds its checks (``patches``, ``tokens``, ``attention``, ``encoder``, ``head``,
``training``, ``model``). Every check is imported here: ``vitlearn.checks.check_x``.
"""

from ._harness import CheckFailed
from .attention import check_attention, check_causal_attention, check_multi_head_attention
from .encoder import check_block_params, check_encoder_block, check_layer_norm, check_mlp
from .head import check_classification_head, check_cross_entropy, check_smoothed_cross_entropy
from .model import check_vit, check_vit_params
from .patches import (
    check_patch_embed_params,
    check_patch_embedding,
    check_patchify,
    check_token_count,
    check_unpatchify,
)
from .tokens import check_class_token, check_pool, check_position_embedding, check_resample, check_sincos_2d
from .training import (
    check_random_shift,
    check_schedule_numbers,
    check_warmup_cosine,
    check_weight_decay_groups,
)

__all__ = [
    "CheckFailed",
    "check_patchify", "check_unpatchify", "check_patch_embedding", "check_patch_embed_params",
    "check_token_count", "check_vit", "check_class_token", "check_pool", "check_position_embedding",
    "check_sincos_2d", "check_resample", "check_attention", "check_causal_attention",
    "check_multi_head_attention", "check_layer_norm", "check_mlp", "check_encoder_block",
    "check_block_params", "check_classification_head", "check_cross_entropy", "check_random_shift",
    "check_warmup_cosine", "check_smoothed_cross_entropy", "check_weight_decay_groups",
    "check_schedule_numbers", "check_vit_params",
]

