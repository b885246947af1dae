"""Companion package of the nflows-tutorial course: normalizing flows on MNIST, piece by piece."""

from .builders import MODEL_NAMES, create_model, create_multiscale_flow, create_simple_flow
from .data import ImageDataset, load_mnist, make_loader
from .layers import CouplingLayer, Dequantization, SplitFlow, SqueezeFlow, VariationalDequantization
from .masks import create_channel_mask, create_checkerboard_mask
from .model import ImageFlow, bits_per_dim
from .networks import ChannelLayerNorm, ConcatELU, GatedBlock, GatedConvNet

__version__ = "0.1.0"

__all__ = [
    "ImageFlow",
    "bits_per_dim",
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
]
