"""Companion package of the nflows-tutorial course: normalizing flows on MNIST, piece by piece."""

from . import flows
from .acceleration import accelerate
from .analysis.bpd import evaluate_bpd
from .analysis.results import results_row, results_table
from .analysis.sampling import draw_samples, interpolate, save_image_grid
from .flows import *  # noqa: F403  (the maths: every name of flows.__all__)
from .io.checkpoints import load_pretrained
from .io.mnist import ImageDataset, load_mnist, make_loader
from .runtime import default_device

__version__ = "0.1.0"

__all__ = [
    *flows.__all__,
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
