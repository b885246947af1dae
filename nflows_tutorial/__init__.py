"""Companion package of the nflows-tutorial course: normalizing flows on MNIST, piece by piece."""

from .acceleration import accelerate
from .analysis.bpd import evaluate_bpd
from .analysis.results import results_row, results_table
from .analysis.sampling import draw_samples, interpolate, save_image_grid
from .flows import (
    MODEL_NAMES,
    ChannelLayerNorm,
    ConcatELU,
    CouplingLayer,
    Dequantization,
    FlowLayer,
    GatedBlock,
    GatedConvNet,
    ImageFlow,
    SplitFlow,
    SqueezeFlow,
    VariationalDequantization,
    bits_per_dim,
    create_channel_mask,
    create_checkerboard_mask,
    create_model,
    create_multiscale_flow,
    create_simple_flow,
)
from .io.checkpoints import load_pretrained
from .io.mnist import ImageDataset, load_mnist, make_loader
from .runtime import default_device

__version__ = "0.1.0"

__all__ = [
    "ImageFlow",
    "bits_per_dim",
    "FlowLayer",
    "Dequantization",
    "VariationalDequantization",
    "CouplingLayer",
    "SqueezeFlow",
    "SplitFlow",
    "ConcatELU",
    "ChannelLayerNorm",
    "GatedBlock",
    "GatedConvNet",
    "create_checkerboard_mask",
    "create_channel_mask",
    "create_simple_flow",
    "create_multiscale_flow",
    "create_model",
    "MODEL_NAMES",
    "ImageDataset",
    "load_mnist",
    "make_loader",
    "load_pretrained",
    "default_device",
    "evaluate_bpd",
    "results_row",
    "results_table",
    "draw_samples",
    "interpolate",
    "save_image_grid",
    "accelerate",
]
