"""The three MNIST flows of the course: ``simple``, ``vardeq`` and ``multiscale``."""

from __future__ import annotations

from collections.abc import Callable

from .conditioner import GatedConvNet
from .coupling import CouplingLayer
from .dequantization import Dequantization, VariationalDequantization
from .layer import FlowLayer
from .masks import create_channel_mask, create_checkerboard_mask
from .model import ImageFlow
from .multiscale import SplitFlow, SqueezeFlow

__all__ = [
    "checkerboard_couplings",
    "channel_couplings",
    "variational_dequantization",
    "create_simple_flow",
    "create_multiscale_flow",
    "create_model",
    "check_model_name",
    "MODEL_NAMES",
]

IMAGE_SHAPE = (1, 28, 28)


def checkerboard_couplings(n: int, hidden: int, cond_channels: int = 0) -> list[CouplingLayer]:
    """``n`` single-channel 28x28 couplings with alternating checkerboard masks."""
    _, h, w = IMAGE_SHAPE
    return [
        CouplingLayer(
            network=GatedConvNet(c_in=1 + cond_channels, hidden=hidden, c_out=2),
            mask=create_checkerboard_mask(h, w, invert=i % 2 == 1),
            c_in=1,
        )
        for i in range(n)
    ]


def channel_couplings(n: int, channels: int, hidden: int) -> list[CouplingLayer]:
    """``n`` couplings on ``channels`` channels with alternating channel masks."""
    return [
        CouplingLayer(
            network=GatedConvNet(c_in=channels, hidden=hidden),
            mask=create_channel_mask(channels, invert=i % 2 == 1),
            c_in=channels,
        )
        for i in range(n)
    ]


def variational_dequantization() -> VariationalDequantization:
    """Variational dequantization whose noise flow is 4 checkerboard couplings conditioned on the image (hidden 16)."""
    return VariationalDequantization(checkerboard_couplings(4, hidden=16, cond_channels=1))


def create_simple_flow(use_vardeq: bool = True) -> ImageFlow:
    """Single-scale flow: (variational) dequantization, then 8 checkerboard couplings (hidden 32)."""
    dequant: FlowLayer = variational_dequantization() if use_vardeq else Dequantization()
    return ImageFlow([dequant, *checkerboard_couplings(8, hidden=32)], image_shape=IMAGE_SHAPE)


def create_multiscale_flow() -> ImageFlow:
    """Multi-scale flow: variational dequantization; 2 couplings at 1x28x28; squeeze; 2 at 4x14x14;
    split; squeeze; 4 at 8x7x7 (hidden 32, 48, 64)."""
    flows: list[FlowLayer] = [
        variational_dequantization(),
        *checkerboard_couplings(2, hidden=32),
        SqueezeFlow(),
        *channel_couplings(2, channels=4, hidden=48),
        SplitFlow(),
        SqueezeFlow(),
        *channel_couplings(4, channels=8, hidden=64),
    ]
    return ImageFlow(flows, image_shape=IMAGE_SHAPE, latent_shape=(8, 7, 7))


_BUILDERS: dict[str, Callable[[], ImageFlow]] = {
    "simple": lambda: create_simple_flow(use_vardeq=False),
    "vardeq": lambda: create_simple_flow(use_vardeq=True),
    "multiscale": create_multiscale_flow,
}
MODEL_NAMES: tuple[str, ...] = tuple(_BUILDERS)


def check_model_name(name: str) -> str:
    """Return ``name`` if it is one of :data:`MODEL_NAMES`; otherwise raise a ``ValueError`` listing them.

    Example:
        >>> check_model_name("multiscal")
        Traceback (most recent call last):
        ...
        ValueError: unknown model 'multiscal'; choose one of simple, vardeq, multiscale
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    return name


def create_model(name: str) -> ImageFlow:
    """Build a fresh model by name: one of ``simple``, ``vardeq``, ``multiscale``."""
    return _BUILDERS[check_model_name(name)]()
