"""Affine coupling: transform half of the variables with a scale and shift predicted from the other half."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["CouplingLayer"]


class CouplingLayer(nn.Module):
    r"""Affine coupling layer with a binary mask ``m`` (1 = kept, 0 = transformed).

    .. math::
        (s, t) = \mathrm{net}(m \odot z),\quad s \leftarrow (1 - m)\,\tanh(s / e^{a})\,e^{a},\quad
        t \leftarrow (1 - m)\,t,\quad z' = (z + t)\,e^{s}

    so :math:`\log|\det| = \sum s` and the inverse is :math:`z = z' e^{-s} - t`. The learned
    per-channel ``a`` (``scaling_factor``) bounds the log-scale softly to :math:`\pm e^{a}`.

    References: Dinh et al. (2017), "Density estimation using Real NVP".

    Arguments:
        network: maps ``c_in`` channels (plus the conditioning channels, if any) to ``2 * c_in``.
        mask: ``[1, 1, H, W]`` checkerboard or ``[1, c_in, 1, 1]`` channel mask.
        c_in: number of channels of ``z``.
    """

    mask: torch.Tensor

    def __init__(self, network: nn.Module, mask: torch.Tensor, c_in: int) -> None:
        super().__init__()
        if mask.dim() != 4 or mask.shape[0] != 1 or mask.shape[1] not in (1, c_in):
            raise ValueError(
                f"mask must have shape [1, 1, H, W] or [1, {c_in}, 1, 1] for c_in={c_in}, got {list(mask.shape)}"
            )
        self.network = network
        self.scaling_factor = nn.Parameter(torch.zeros(c_in))
        self.register_buffer("mask", mask)
        self.c_in = c_in

    def forward(
        self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False, cond: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply the coupling (or its inverse); ``cond`` is concatenated to the network's input."""
        self._check_shape(z)
        kept = z * self.mask
        net_in = kept if cond is None else torch.cat([kept, cond], dim=1)
        s, t = self.network(net_in).chunk(2, dim=1)
        bound = self.scaling_factor.exp().view(1, -1, 1, 1)
        free = 1 - self.mask
        s = torch.tanh(s / bound) * bound * free
        t = t * free
        if not reverse:
            return (z + t) * torch.exp(s), ldj + s.flatten(1).sum(dim=1)
        return z * torch.exp(-s) - t, ldj - s.flatten(1).sum(dim=1)

    def _check_shape(self, z: torch.Tensor) -> None:
        if z.dim() != 4 or z.shape[1] != self.c_in:
            raise ValueError(
                f"coupling layer built for {self.c_in} channels got input of shape {list(z.shape)}; "
                f"expected [batch, {self.c_in}, height, width]"
            )
        if self.mask.shape[-2:] != (1, 1) and z.shape[-2:] != self.mask.shape[-2:]:
            raise ValueError(
                f"coupling layer's mask is {self.mask.shape[-2]}x{self.mask.shape[-1]} but the input is "
                f"{z.shape[-2]}x{z.shape[-1]}; build the mask for the image size this layer sees"
            )
