"""More answers as students write them: mistakes of the kinds an independent examiner's set found unnamed.

Importing this module registers them with :mod:`planted_faults`, beside the first set: wrong signs and bases that
only a positive log-likelihood shows, arguments changed in place, floor division, a maximum never added back,
parameters cached at construction or detached from the output, a coupling checked fresh (the identity), splits and
dequantizations that drop or misplace a term, floats of the wrong width, crashes that are not shape errors.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from planted_faults import (
    LAYER_SECONDS,
    AffineCoupling,
    Conv1x1Start,
    HouseholderStart,
    MyVariationalDequantization,
    Pair,
    _channel,
    _checkerboard,
    _example,
    check_dequantization,
    fault,
)
from torch import nn

from nflows_tutorial import Dequantization, GatedConvNet, ImageFlow, SplitFlow, SqueezeFlow
from nflows_tutorial.course.checks import check_layer
from nflows_tutorial.flows.coupling import CouplingLayer
from nflows_tutorial.flows.masks import create_channel_mask, create_checkerboard_mask
from nflows_tutorial.flows.prior import standard_normal_log_prob


def check_fresh_coupling(cls: type[nn.Module]) -> None:
    """A student's affine coupling as it is built, its conditioner's last layer zero: the identity until trained."""
    layer = cls(1, create_checkerboard_mask(4, 4))
    with torch.no_grad():
        for p in layer.parameters():
            p.zero_()
    check_layer(layer, _example(4, 1, 4, 4), time_limit_s=LAYER_SECONDS)


def check_split(cls: type[nn.Module]) -> None:
    """A student's split of 2 channels into 1 kept and 1 set aside onto the prior."""
    check_layer(cls(), _example(4, 2, 4, 4), time_limit_s=LAYER_SECONDS)


def check_pixels(cls: type[nn.Module]) -> None:
    """A student's plain dequantization on integer pixels."""
    pixels = torch.randint(0, 256, (4, 1, 3, 3), generator=torch.Generator().manual_seed(0))
    check_layer(cls(), pixels, time_limit_s=LAYER_SECONDS)


# Exercise 1 ---------------------------------------------------------------------------------------------------------
@fault(1, "takes abs() of the log-likelihood instead of negating it", r"abs|never negative")
def bpd_abs(log_px: torch.Tensor, dims: int) -> torch.Tensor:
    return log_px.abs() / (dims * math.log(2))


@fault(1, "divides in place on the caller's tensor", r"in place")
def bpd_in_place(log_px: torch.Tensor, dims: int) -> torch.Tensor:
    return log_px.div_(-dims * math.log(2))


@fault(1, "floor-divides with //", r"whole numbers|//")
def bpd_floor_division(log_px: torch.Tensor, dims: int) -> torch.Tensor:
    return -log_px // (dims * math.log(2))


@fault(1, "takes the number of dimensions from the batch, len(log_px)", r"batch size|times")
def bpd_len(log_px: torch.Tensor, dims: int) -> torch.Tensor:
    return -log_px / (len(log_px) * math.log(2))


# Exercise 2 ---------------------------------------------------------------------------------------------------------
ALPHA = 1e-5


def _logit_layer(z: torch.Tensor, ldj: torch.Tensor, reverse: bool, term: Callable[..., torch.Tensor]) -> Pair:
    """The logit layer with the logit's log-det term computed by ``term(y, v)``, the alpha step's term right."""
    dims = z[0].numel()
    if not reverse:
        y = z * (1 - ALPHA) + ALPHA / 2
        log_det = dims * math.log(1 - ALPHA) + term(y, z).flatten(1).sum(dim=1)
        return torch.log(y) - torch.log1p(-y), ldj + log_det
    y = torch.sigmoid(z)
    v = (y - ALPHA / 2) / (1 - ALPHA)
    log_det = dims * math.log(1 - ALPHA) + term(y, v).flatten(1).sum(dim=1)
    return v, ldj - log_det


@fault(2, "writes the logit's term as +Σ(log y + log(1 - y))", r"sign")
def logit_layer_logit_term_sign(z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
    return _logit_layer(z, ldj, reverse, lambda y, v: torch.log(y) + torch.log1p(-y))


@fault(2, "takes the logit's term at v, before the α step", r"uses v|of y")
def logit_layer_term_of_v(z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
    return _logit_layer(z, ldj, reverse, lambda y, v: -(torch.log(v) + torch.log1p(-v)))


# Exercise 3 ---------------------------------------------------------------------------------------------------------
@fault(3, "subtracts α/2 after the sigmoid but never divides by 1 - α", r"1 - α")
def quantize_half_alpha(z: torch.Tensor) -> torch.Tensor:
    v = torch.sigmoid(z) - 0.5e-5
    return torch.floor(v * 256).clamp(0, 255).to(torch.int32)


@fault(3, "computes in float32", r"float32")
def quantize_float32(z: torch.Tensor) -> torch.Tensor:
    v = (torch.sigmoid(z.float()) - 0.5e-5) / (1 - 1e-5)
    return torch.floor(v * 256).clamp(0, 255).to(torch.int32)


# Exercise 4 ---------------------------------------------------------------------------------------------------------
@fault(4, "shifts by the maximum and never adds it back", r"maximum|max")
def lme_no_add_back(log_p: torch.Tensor) -> torch.Tensor:
    shifted = log_p - log_p.max(dim=0).values
    return torch.log(torch.exp(shifted).mean(dim=0))


@fault(4, "subtracts M instead of log M", r"log M|subtract M")
def lme_minus_m(log_p: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(log_p, dim=0) - log_p.shape[0]


@fault(4, "counts M along the images", r"number of draws|dimension 0")
def lme_m_from_images(log_p: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(log_p, dim=0) - math.log(log_p.shape[1])


# Exercise 6 ---------------------------------------------------------------------------------------------------------
@fault(6, "inverts the mask by reversing its channel order", r"1 - the plain mask|reverse order")
def channel_mask_flipped(c_in: int, invert: bool = False) -> torch.Tensor:
    mask = torch.zeros(1, c_in, 1, 1)
    mask[:, : c_in // 2] = 1
    return mask.flip(1) if invert else mask


# Exercise 8 ---------------------------------------------------------------------------------------------------------
@fault(8, "gives the channel couplings a network of 2 output channels, as the checkerboard ones", r"outputs? 2|c_out")
def early_split_two_outputs() -> ImageFlow:
    def channel(i: int, c: int) -> CouplingLayer:
        return CouplingLayer(
            GatedConvNet(c_in=c, hidden=16, c_out=2), create_channel_mask(c, invert=i % 2 == 1), c_in=c
        )

    flows: list[nn.Module] = [Dequantization(), _checkerboard(0), _checkerboard(1), SqueezeFlow(), SplitFlow()]
    flows += [channel(0, 2), channel(1, 2), SqueezeFlow(), channel(0, 8), channel(1, 8)]
    return ImageFlow(flows, image_shape=(1, 28, 28), latent_shape=(8, 7, 7))


# Exercise 11 --------------------------------------------------------------------------------------------------------
class Conv1x1Answer(Conv1x1Start):
    """A student's 1x1 convolution, each step a method to get wrong: ``z' = W z`` and ``H W log|det W|``."""

    def log_det(self, z: torch.Tensor) -> torch.Tensor | float:
        return z.shape[2] * z.shape[3] * torch.linalg.slogdet(self.weight).logabsdet

    def mixing(self, reverse: bool) -> torch.Tensor:
        return torch.linalg.inv(self.weight) if reverse else self.weight

    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        log_det = self.log_det(z)
        z = F.conv2d(z, self.mixing(reverse)[:, :, None, None])
        return z, ldj - log_det if reverse else ldj + log_det


@fault(11, "mixes the channels with a detached weight", r"gradient")
class Conv1x1Detached(Conv1x1Answer):
    def mixing(self, reverse: bool) -> torch.Tensor:
        return super().mixing(reverse).detach()


@fault(11, "computes log|det W| once, in __init__", r"__init__|computed once|stays")
class Conv1x1CachedLogDet(Conv1x1Answer):
    def __init__(self, channels: int) -> None:
        super().__init__(channels)
        self.log_abs_det = torch.linalg.slogdet(self.weight).logabsdet.item()

    def log_det(self, z: torch.Tensor) -> torch.Tensor | float:
        return z.shape[2] * z.shape[3] * self.log_abs_det


@fault(11, "reverse applies the transpose of the inverse", r"W⁻¹ᵀ|inv\(W\) itself")
class Conv1x1InverseTransposed(Conv1x1Answer):
    def mixing(self, reverse: bool) -> torch.Tensor:
        return torch.linalg.inv(self.weight).T if reverse else self.weight


@fault(11, "multiplies log|det W| by the height only", r"H or W|H·W")
class Conv1x1HeightOnly(Conv1x1Answer):
    def log_det(self, z: torch.Tensor) -> torch.Tensor | float:
        return z.shape[2] * torch.linalg.slogdet(self.weight).logabsdet


@fault(11, "takes log|det W| as a Python number with .item()", r"no gradient|\.item\(\)")
class Conv1x1ItemLogDet(Conv1x1Answer):
    def log_det(self, z: torch.Tensor) -> torch.Tensor | float:
        return z.shape[2] * z.shape[3] * torch.linalg.slogdet(self.weight).logabsdet.item()


# Exercise 12 --------------------------------------------------------------------------------------------------------
@fault(12, "builds the matrix once, in __init__", r"same matrix|__init__")
class HouseholderCached(HouseholderStart):
    def __init__(self, channels: int, reflections: int = 4) -> None:
        super().__init__(channels, reflections)
        with torch.no_grad():
            self.cached = super().matrix()

    def matrix(self) -> torch.Tensor:
        return self.cached

    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        w = self.matrix().T if reverse else self.matrix()
        return F.conv2d(z, w[:, :, None, None].to(z.dtype)), ldj


@fault(12, "divides each reflection by the length of v", r"length|vᵀ ?v")
class HouseholderByLength(HouseholderStart):
    def matrix(self) -> torch.Tensor:
        eye = torch.eye(self.vectors.shape[1], dtype=self.vectors.dtype)
        product = eye
        for v in self.vectors:
            product = product @ (eye - 2 * torch.outer(v, v) / v.norm())
        return product

    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        w = self.matrix().T if reverse else self.matrix()
        return F.conv2d(z, w[:, :, None, None]), ldj


# Layers outside the exercises ---------------------------------------------------------------------------------------
@fault(
    "layer", "sums s over every value, the kept ones included, checked as built", r"mask", check=check_fresh_coupling
)
class AffineUnmaskedLogDetFresh(AffineCoupling):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        s, t = self.network(z * self.mask).chunk(2, dim=1)
        keep = self.mask
        if not reverse:
            return keep * z + (1 - keep) * (z + t) * torch.exp(s), ldj + s.flatten(1).sum(dim=1)
        return keep * z + (1 - keep) * (z * torch.exp(-s) - t), ldj - s.flatten(1).sum(dim=1)


@fault("layer", "averages s where the log-det sums it", r"mean|average")
class AffineMeanLogDet(AffineCoupling):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        s, t = self.network(z * self.mask).chunk(2, dim=1)
        s, t = torch.tanh(s) * (1 - self.mask), t * (1 - self.mask)
        if not reverse:
            return (z + t) * torch.exp(s), ldj + s.flatten(1).mean(dim=1)
        return z * torch.exp(-s) - t, ldj - s.flatten(1).mean(dim=1)


@fault("layer", "a typo in forward raises AttributeError", r"AttributeError")
class AffineTypo(AffineCoupling):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        return z * self.masks, ldj


@fault("layer", "sums the log-det over height and width only", r"dimension of size 1|every dimension")
class AffinePartialSum(AffineCoupling):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        s, t = self.network(z * self.mask).chunk(2, dim=1)
        s, t = torch.tanh(s) * (1 - self.mask), t * (1 - self.mask)
        if not reverse:
            return (z + t) * torch.exp(s), ldj + s.sum(dim=(2, 3))
        return z * torch.exp(-s) - t, ldj - s.sum(dim=(2, 3))


@fault("layer", "returns float32 whatever it is given", r"float32|dtype")
class AffineFloat32(AffineCoupling):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        z, ldj = super().forward(z, ldj, reverse)
        return z.float(), ldj


class SplitStart(nn.Module):
    """A student's split: keep the first channel half, set the other aside and score it under the prior."""

    def term(self, aside: torch.Tensor) -> torch.Tensor:
        return standard_normal_log_prob(aside)

    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        if reverse:
            aside = torch.randn_like(z)
            return torch.cat([z, aside], dim=1), ldj - self.term(aside)
        kept, aside = z.chunk(2, dim=1)
        return kept, ldj + self.term(aside)


@fault("layer", "never adds the prior term of the values set aside", r"log N|z_split", check=check_split)
class SplitNoPrior(SplitStart):
    def term(self, aside: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(aside), dtype=aside.dtype)


@fault("layer", "averages the prior's log-density over the values set aside", r"averaged|sum it", check=check_split)
class SplitAveraged(SplitStart):
    def term(self, aside: torch.Tensor) -> torch.Tensor:
        return standard_normal_log_prob(aside) / aside[0].numel()


class DequantizationStart(nn.Module):
    """A student's dequantization, ``logit((1 - alpha)(x + u) / L + alpha/2)``, each step a method to get wrong."""

    alpha, levels = 1e-5, 256

    def scaled(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return (x + u) / self.levels

    def pixels(self, v: torch.Tensor) -> torch.Tensor:
        return torch.floor(v * self.levels).clamp(0, self.levels - 1).to(torch.int32)

    def back_ldj(self, ldj: torch.Tensor, log_det: torch.Tensor) -> torch.Tensor:
        return ldj - log_det

    def noise_for(self, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        return torch.rand_like(x) if noise is None else noise.to(x)

    def forward(
        self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False, noise: torch.Tensor | None = None
    ) -> Pair:
        a, d = self.alpha, z[0].numel()
        if not reverse:
            x = z.to(ldj.dtype)
            y = self.scaled(x, self.noise_for(x, noise)) * (1 - a) + a / 2
        else:
            y = torch.sigmoid(z)
        log_det = (
            -d * math.log(self.levels) + d * math.log(1 - a) - (torch.log(y) + torch.log1p(-y)).flatten(1).sum(dim=1)
        )
        if not reverse:
            return torch.log(y) - torch.log1p(-y), ldj + log_det
        return self.pixels((y - a / 2) / (1 - a)), self.back_ldj(ldj, log_det)


@fault("layer", "reverse never clips to 0..255", r"clip|clamp", check=check_pixels)
class DequantizationNoClip(DequantizationStart):
    def pixels(self, v: torch.Tensor) -> torch.Tensor:
        return torch.floor(v * self.levels).to(torch.int32)


@fault("layer", "reverse returns ldj as it came", r"ldj unchanged", check=check_pixels)
class DequantizationReverseKeepsLdj(DequantizationStart):
    def back_ldj(self, ldj: torch.Tensor, log_det: torch.Tensor) -> torch.Tensor:
        return ldj


@fault("layer", "ignores the noise= it is given", r"noise", check=check_pixels)
class DequantizationOwnNoise(DequantizationStart):
    def noise_for(self, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        return torch.rand_like(x)


@fault("layer", "divides by 255 (and takes D log 255)", r"number of levels|256", check=check_pixels)
class DequantizationBy255(DequantizationStart):
    levels = 255

    def pixels(self, v: torch.Tensor) -> torch.Tensor:
        return torch.floor(v * 255).clamp(0, 255).to(torch.int32)


@fault("layer", "reverse rounds to the nearest level", r"round down|floor", check=check_pixels)
class DequantizationRounds(DequantizationStart):
    def pixels(self, v: torch.Tensor) -> torch.Tensor:
        return torch.round(v * self.levels).clamp(0, self.levels - 1).to(torch.int32)


@fault("layer", "has no alpha step, so pixel 0 with noise 0 has an infinite logit", r"α step", check=check_pixels)
class DequantizationNoAlpha(DequantizationStart):
    alpha = 0.0


@fault("layer", "draws the set-aside half in reverse but leaves ldj as it came", r"ldj unchanged", check=check_split)
class SplitReverseKeepsLdj(SplitStart):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        if reverse:
            return torch.cat([z, torch.randn_like(z)], dim=1), ldj
        return super().forward(z, ldj)


@fault(8, "declares the image shape channels-last, (28, 28, 1)", r"image_shape|channels, height, width")
def early_split_channels_last() -> ImageFlow:
    flows: list[nn.Module] = [Dequantization(), _checkerboard(0), _checkerboard(1), SqueezeFlow(), SplitFlow()]
    flows += [_channel(0, 2), _channel(1, 2), SqueezeFlow(), _channel(0, 8), _channel(1, 8)]
    return ImageFlow(flows, image_shape=(28, 28, 1), latent_shape=(8, 7, 7))


@fault(12, "takes the vectors as the columns of self.vectors", r"columns|each row")
class HouseholderColumns(HouseholderStart):
    def matrix(self) -> torch.Tensor:
        eye = torch.eye(self.vectors.shape[1], dtype=self.vectors.dtype)
        product = eye
        for v in self.vectors.T:
            product = product @ (eye - 2 * torch.outer(v, v) / v.dot(v))
        return product

    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        w = self.matrix().T if reverse else self.matrix()
        return F.conv2d(z, w[:, :, None, None]), ldj


@fault("layer", "drops the noise flow's log-det altogether", r"noise flow", check=check_dequantization)
class VariationalNoNoiseLogDet(MyVariationalDequantization):
    def noise_flow(self, x: torch.Tensor, u: torch.Tensor) -> Pair:
        noise, _ = super().noise_flow(x, u)
        return noise, torch.zeros(len(x), dtype=x.dtype)
