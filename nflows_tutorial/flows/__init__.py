"""The maths of the course: every layer, network, mask and model that the notebooks show.

Each layer maps ``(z, ldj)`` to ``(z', ldj + log|det dz'/dz|)``, or back with ``reverse=True``.
"""

from .builders import MODEL_NAMES, create_model, create_multiscale_flow, create_simple_flow
from .conditioner import ChannelLayerNorm, ConcatELU, GatedBlock, GatedConvNet
from .coupling import CouplingLayer
from .dequantization import Dequantization, VariationalDequantization
from .layer import FlowLayer
from .masks import create_channel_mask, create_checkerboard_mask
from .model import ImageFlow, bits_per_dim
from .multiscale import SplitFlow, SqueezeFlow

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
]
