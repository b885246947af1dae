"""Dequantization: from integer pixels to a continuous density on the real line, and back."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Dequantization", "VariationalDequantization", "dequantization_density"]


def _check_pixels(x: torch.Tensor, levels: int) -> None:
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise TypeError(
            f"dequantization expects integer pixels 0..{levels - 1} (uint8 or int32), got a {x.dtype} tensor; "
            f"convert images in [0, 1] with (img * {levels - 1}).round().to(torch.int32)"
        )
    if torch.iinfo(x.dtype).min > 0 or torch.iinfo(x.dtype).max < levels - 1:
        raise TypeError(f"a {x.dtype} tensor cannot hold the pixel values 0..{levels - 1}; use uint8 or int32")
    if x.numel() and not torch.compiler.is_compiling():
        # Python ints: 256 does not fit a uint8 comparison. int64 for the unsigned types aminmax lacks.
        lo, hi = (int(v) for v in torch.aminmax(x if x.dtype == torch.uint8 else x.to(torch.int64)))
        if lo < 0 or hi >= levels:
            raise ValueError(
                f"dequantization expects pixel values in 0..{levels - 1}, got values from {int(lo)} to {int(hi)}"
            )


class Dequantization(nn.Module):
    r"""Uniform dequantization followed by a scaled logit.

    Forward (``x`` integer in ``0..L-1``, ``D`` values per image, ``u ~ U[0, 1)``):

    .. math::
        v = (x + u) / L,\quad y = (1 - \alpha) v + \alpha / 2,\quad z = \log y - \log(1 - y)

    with :math:`\log|\det| = -D \log L + D \log(1 - \alpha) - \sum (\log y + \log(1 - y))`.
    Reverse applies the sigmoid, undoes the :math:`\alpha` scaling, multiplies by ``L`` and
    rounds down, so any ``u`` in ``[0, 1)`` gives back the same integers.

    References: Theis et al. (2016), "A note on the evaluation of generative models"; Dinh et al.
    (2017), "Density estimation using Real NVP" (the logit with :math:`\alpha`).

    Arguments:
        alpha: squeezes ``v`` into ``[alpha/2, 1 - alpha/2]`` so that the logit stays finite.
        levels: number of discrete values per pixel (256 for 8-bit images).
    """

    def __init__(self, alpha: float = 1e-5, levels: int = 256) -> None:
        super().__init__()
        self.alpha = alpha
        self.levels = levels

    def forward(
        self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Dequantize integer images to logits (``reverse=False``) or quantize logits back to integers.

        ``noise`` (same shape as ``z``, values in ``[0, 1)``) replaces the random draw of ``u``.
        """
        if not reverse:
            _check_pixels(z, self.levels)
            z, ldj = self.dequantize(z, ldj, noise)
            return self.logit(z, ldj)
        z, ldj = self.sigmoid(z, ldj)
        ldj = ldj + math.log(self.levels) * z[0].numel()
        z = torch.floor(z * self.levels).clamp(0, self.levels - 1).to(torch.int32)
        return z, ldj

    def dequantize(
        self, x: torch.Tensor, ldj: torch.Tensor, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Map integers ``x`` to ``(x + u) / L`` in ``[0, 1)``, in the dtype of ``ldj``."""
        x = x.to(ldj.dtype)
        u = torch.rand_like(x) if noise is None else noise.to(x)
        return (x + u) / self.levels, ldj - math.log(self.levels) * x[0].numel()

    def logit(self, z: torch.Tensor, ldj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map ``z`` in ``[0, 1]`` to the real line: alpha scaling, then ``log z - log(1 - z)``."""
        z = z * (1 - self.alpha) + 0.5 * self.alpha
        log_z, log_1mz = torch.log(z), torch.log1p(-z)
        ldj = ldj + math.log(1 - self.alpha) * z[0].numel() - (log_z + log_1mz).flatten(1).sum(dim=1)
        return log_z - log_1mz, ldj

    def sigmoid(self, z: torch.Tensor, ldj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact inverse of :meth:`logit`: sigmoid, then undo the alpha scaling."""
        ldj = ldj + (-z - 2 * F.softplus(-z)).flatten(1).sum(dim=1)
        z = (torch.sigmoid(z) - 0.5 * self.alpha) / (1 - self.alpha)
        return z, ldj - math.log(1 - self.alpha) * z[0].numel()

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, levels={self.levels}"


class VariationalDequantization(Dequantization):
    r"""Dequantization with learned noise :math:`u \sim q(u \mid x)` instead of a uniform one.

    A uniform draw is mapped to the real line with :meth:`logit`, through coupling layers that also
    see the image (as ``x / 255 * 2 - 1``), and back into ``[0, 1)`` with :meth:`sigmoid`. The log
    determinant of that little flow is ``-log q(u|x)`` relative to the uniform, so the training loss
    stays the same expression as for uniform dequantization.

    Because :meth:`sigmoid` undoes the alpha scaling, the learned ``u`` lies in
    :math:`(-\frac{\alpha}{2(1-\alpha)}, 1 + \frac{\alpha}{2(1-\alpha)})`, a sliver (about 5e-6 for
    the default alpha) wider than ``[0, 1)`` on each side; a draw in that sliver quantizes to a neighbour.

    References: Ho et al. (2019), "Flow++: Improving flow-based generative models with variational
    dequantization and architecture design".

    Arguments:
        flows: coupling layers that accept ``cond=`` (the conditioning image).
        alpha: as in :class:`Dequantization`.
    """

    def __init__(self, flows: Iterable[nn.Module], alpha: float = 1e-5, levels: int = 256) -> None:
        super().__init__(alpha=alpha, levels=levels)
        self.flows = nn.ModuleList(flows)

    def dequantize(
        self, x: torch.Tensor, ldj: torch.Tensor, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``u ~ q(u|x)`` through the conditional flow and return ``(x + u) / L``."""
        x = x.to(ldj.dtype)
        cond = x / (self.levels - 1) * 2 - 1
        u = torch.rand_like(x) if noise is None else noise.to(x)
        u, ldj = self.logit(u, ldj)
        for flow in self.flows:
            u, ldj = flow(u, ldj, cond=cond)
        u, ldj = self.sigmoid(u, ldj)
        return (x + u) / self.levels, ldj - math.log(self.levels) * x[0].numel()


def dequantization_density(
    prior: Sequence[float] | torch.Tensor, z: torch.Tensor, alpha: float = 1e-5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Density on the logit axis that uniform dequantization gives a discrete distribution ``prior``.

    ``prior`` holds one non-negative weight per level (normalised here, so it need not sum to 1);
    ``z`` is a 1-D grid of logits. Returns ``(density, level)``: the density at each ``z`` and the
    discrete value that owns it. Each level's area under the density equals its prior probability.
    """
    prior = torch.as_tensor(prior, dtype=torch.float64).flatten()
    if prior.numel() < 2 or (prior < 0).any() or prior.sum() <= 0:
        raise ValueError(f"prior must hold at least two non-negative weights with a positive sum, got {prior.tolist()}")
    prior = prior / prior.sum()
    layer = Dequantization(alpha=alpha, levels=prior.numel())
    grid = z.to(torch.float64).reshape(-1, 1, 1, 1)
    level, log_jac = layer(grid, torch.zeros(grid.shape[0], dtype=torch.float64), reverse=True)
    level = level.flatten().long()
    return log_jac.exp() * prior[level], level
