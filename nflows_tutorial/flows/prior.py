"""The standard-normal prior that every flow in the course maps its images onto."""

from __future__ import annotations

import math

import torch

__all__ = ["standard_normal_log_prob", "LOG_SQRT_2PI"]

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """Return ``log N(z; 0, I)`` summed over all but the batch dimension, one value per sample."""
    return -(0.5 * z.square() + LOG_SQRT_2PI).flatten(1).sum(dim=1)
