"""Companion package of the nflows-tutorial course: normalizing flows on MNIST, piece by piece."""

from .acceleration import accelerate
from .builders import MODEL_NAMES, create_model, create_multiscale_flow, create_simple_flow
from .data import ImageDataset, load_mnist, make_loader
from .devices import default_device
from .evaluation import evaluate_bpd, results_row, results_table
from .layers import CouplingLayer, Dequantization, FlowLayer, SplitFlow, SqueezeFlow, VariationalDequantization
from .masks import create_channel_mask, create_checkerboard_mask
from .model import ImageFlow, bits_per_dim
from .networks import ChannelLayerNorm, ConcatELU, GatedBlock, GatedConvNet
from .pretrained import load_pretrained
from .sampling import draw_samples, interpolate, save_image_grid

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
