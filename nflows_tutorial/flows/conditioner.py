"""The conditioner network of a coupling layer: a gated residual CNN (after Flow++)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConcatELU", "ChannelLayerNorm", "GatedBlock", "GatedConvNet"]


class ConcatELU(nn.Module):
    r"""Concatenated ELU: :math:`[\mathrm{elu}(x), \mathrm{elu}(-x)]` along the channels.

    It doubles the channel count. Unlike a ReLU, no input gets a zero gradient on both halves,
    which keeps gradients flowing into the zero-initialised last convolution.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.elu(torch.cat([x, -x], dim=1))


class ChannelLayerNorm(nn.Module):
    r"""Layer norm over the channels of each pixel: :math:`\gamma (x - \mu) / \sqrt{\sigma^2 + \epsilon} + \beta`.

    ``mu`` and the biased variance ``sigma^2`` are taken over the channel axis alone, so every pixel
    is normalised on its own; ``gamma`` and ``beta`` have shape ``[1, C, 1, 1]``.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var, mean = torch.var_mean(x, dim=1, keepdim=True, correction=0)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.gamma + self.beta


class GatedBlock(nn.Module):
    r"""Residual block with a sigmoid gate: :math:`x + a \odot \sigma(b)`.

    ``a`` and ``b`` are the two channel halves of ``net(x)``, where ``net`` is
    ConcatELU, 3x3 conv (2h -> h), ConcatELU, 1x1 conv (2h -> 2h).
    """

    def __init__(self, channels: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = channels if hidden is None else hidden
        self.net = nn.Sequential(
            ConcatELU(),
            nn.Conv2d(2 * channels, hidden, kernel_size=3, padding=1),
            ConcatELU(),
            nn.Conv2d(2 * hidden, 2 * channels, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.net(x).chunk(2, dim=1)
        return x + a * torch.sigmoid(b)


class GatedConvNet(nn.Module):
    """Conditioner that maps the kept variables to a coupling's scale and shift.

    Layout of ``nn`` (the published checkpoints depend on it): 3x3 conv (c_in -> hidden),
    ``num_layers`` times (GatedBlock, ChannelLayerNorm), ConcatELU, 3x3 conv (2 hidden -> c_out).
    The last convolution starts at zero, so a fresh coupling layer is the identity.

    Arguments:
        c_in: input channels (the coupling's channels, plus the image's for variational dequantization).
        hidden: channels inside the network.
        c_out: output channels; ``None`` means ``2 * c_in`` (a scale and a shift per input channel).
        num_layers: number of gated blocks.

    Example:
        >>> net = GatedConvNet(c_in=1, hidden=32)
        >>> net(torch.randn(2, 1, 28, 28)).shape
        torch.Size([2, 2, 28, 28])
    """

    def __init__(self, c_in: int, hidden: int = 32, c_out: int | None = None, num_layers: int = 3) -> None:
        super().__init__()
        c_out = 2 * c_in if c_out is None else c_out
        layers: list[nn.Module] = [nn.Conv2d(c_in, hidden, kernel_size=3, padding=1)]
        for _ in range(num_layers):
            layers += [GatedBlock(hidden), ChannelLayerNorm(hidden)]
        last = nn.Conv2d(2 * hidden, c_out, kernel_size=3, padding=1)
        for param in last.parameters():  # weight and bias: a fresh coupling is the identity
            nn.init.zeros_(param)
        layers += [ConcatELU(), last]
        self.nn = nn.Sequential(*layers)
        self.c_in = c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nn(x)
