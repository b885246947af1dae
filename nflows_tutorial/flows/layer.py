"""The convention every invertible layer of the course follows, as a type."""

from __future__ import annotations

from typing import Protocol

import torch

__all__ = ["FlowLayer"]


class FlowLayer(Protocol):
    """An invertible layer: ``layer(z, ldj)`` maps towards the latent, ``layer(z, ldj, reverse=True)`` back.

    ``ldj`` holds one running log-determinant per sample; the layer returns its output with
    ``log|det J|`` of its own map added (subtracted in reverse). Any ``torch.nn.Module`` whose
    ``forward`` takes and returns these fits; layers may accept further keyword arguments.
    """

    def __call__(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(z', ldj + log|det dz'/dz|)``, or the inverse map with ``reverse=True``."""
        ...
