"""Multi-scale layers: squeeze space into channels, and split half of the channels off to the prior."""

from __future__ import annotations

import torch
from torch import nn

from .prior import standard_normal_log_prob

__all__ = ["SqueezeFlow", "SplitFlow"]


class SqueezeFlow(nn.Module):
    """Move each 2x2 block of pixels into channels: ``[B, C, H, W] <-> [B, 4C, H/2, W/2]``.

    A permutation of the variables, so its log-determinant is zero.

    Example:
        >>> z, _ = SqueezeFlow()(torch.arange(1, 17).view(1, 1, 4, 4), None)
        >>> z[0, :, 0, 0]
        tensor([1, 2, 5, 6])
    """

    def forward(
        self, z: torch.Tensor, ldj: torch.Tensor | None, reverse: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Squeeze (``reverse=False``) or unsqueeze ``z``; ``ldj`` passes through unchanged."""
        if z.dim() != 4:
            raise ValueError(f"squeeze expects [batch, channels, height, width], got shape {list(z.shape)}")
        b, c, h, w = z.shape
        if not reverse:
            if h % 2 or w % 2:
                raise ValueError(f"squeeze needs an even height and width, got {h}x{w}; pad or crop the image first")
            z = z.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
            return z.reshape(b, 4 * c, h // 2, w // 2), ldj
        if c % 4:
            raise ValueError(f"unsqueeze needs a channel count divisible by 4, got {c}")
        z = z.reshape(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
        return z.reshape(b, c // 4, 2 * h, 2 * w), ldj


class SplitFlow(nn.Module):
    """Factor out the second half of the channels onto the standard-normal prior.

    Forward keeps the first half and adds the prior's log-density of the second half to ``ldj``
    (as if that half were carried to the end of the flow). Reverse draws the second half from the
    prior, or takes it from ``z_split``, and subtracts its log-density.
    """

    def forward(
        self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False, z_split: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Split off (``reverse=False``) or re-attach the factored-out channels."""
        if not reverse:
            if z.shape[1] % 2:
                raise ValueError(f"split needs an even channel count, got {z.shape[1]}")
            z, z_split = z.chunk(2, dim=1)
            return z, ldj + standard_normal_log_prob(z_split)
        if z_split is None:
            z_split = torch.randn_like(z)
        return torch.cat([z, z_split], dim=1), ldj - standard_normal_log_prob(z_split)
