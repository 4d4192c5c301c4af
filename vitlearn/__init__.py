"""vitlearn: the Vision Transformer, built step by step (and trained on MNIST on a CPU).

The public parts, in the order of the paper's pipeline::

    patchify / unpatchify / PatchEmbedding           steps 2-4   vitlearn.patches
    HybridEmbedding (a CNN stem's feature map as patches, section 3.1)
    ClassToken / PositionEmbedding / sin-cos          steps 5-6   vitlearn.tokens
    scaled_dot_product_attention / MultiHeadSelfAttention  step 7   vitlearn.attention
    record_attention (attention maps of any model)
    attention_rollout / mean_attention_distance (as tensors)    vitlearn.attention_maps
    MLP / EncoderBlock / TransformerEncoder           step 7      vitlearn.encoder
    PostNormBlock / NoResidualBlock (block_fn= variants, notebook 06)
    ClassificationHead / MLPHead (pre-training head)  step 8      vitlearn.head
    ViTConfig / ViT                                   all         vitlearn.model
    SmallCNN / data_scale_experiment                  ViT vs a CNN as data grows   vitlearn.baselines
    compare / Variant                                 side-by-side runs (ablations) vitlearn.experiments
    ViT.from_timm / from_pretrained / from_transformers  the real weights      vitlearn.pretrained
    PAPER_MODELS / paper_vit / count_flops          the paper's Table 1   vitlearn.paper_models
    require_version (a notebook's first cell: the installed vitlearn is the one it was written for)
"""

from . import baselines, checks, experiments, pretrained
from .attention import MultiHeadSelfAttention, record_attention, scaled_dot_product_attention
from .baselines import SmallCNN, data_scale_experiment
from .checkpoint import CheckpointError, load, load_checkpoint, save, shipped_checkpoint
from .data import DataNotFoundError, ImageDataset, load_dataset
from .encoder import MLP, EncoderBlock, NoResidualBlock, PostNormBlock, TransformerEncoder
from .experiments import Comparison, Variant, compare
from .head import ClassificationHead, MLPHead
from .model import ViT, ViTConfig
from .patches import HybridEmbedding, PatchEmbedding, patchify, unpatchify
from .tokens import (
                     ClassToken,
                     PositionEmbedding,
                     SinCosPositionEmbedding,
                     resample_position_embedding,
                     sincos_2d_position_embedding,
)
from .training import Evaluation, History, default_device, eval_mode, evaluate, fit
from .versions import VersionMismatchError, require_version
from .versions import __version__ as __version__  # the release (pyproject.toml says the same)

__all__ = [
    "patchify", "unpatchify", "PatchEmbedding", "HybridEmbedding",
    "ClassToken", "PositionEmbedding", "SinCosPositionEmbedding",
    "sincos_2d_position_embedding", "resample_position_embedding",
    "scaled_dot_product_attention", "MultiHeadSelfAttention", "record_attention",
    "MLP", "EncoderBlock", "PostNormBlock", "NoResidualBlock", "TransformerEncoder",
    "ClassificationHead", "MLPHead",
    "ViT", "ViTConfig", "eval_mode",
    "ImageDataset", "load_dataset", "DataNotFoundError",
    "fit", "evaluate", "History", "Evaluation", "default_device",
    "save", "load", "load_checkpoint", "shipped_checkpoint", "CheckpointError",
    "SmallCNN", "data_scale_experiment", "baselines", "pretrained", "checks",
    "compare", "Variant", "Comparison", "experiments",
    "require_version", "VersionMismatchError",
]
