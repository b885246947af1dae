"""Answers to the course's exercises as students write them: wrong ones, each with the words that name its fault,
and right ones written differently from the reference solution, which the checks must accept.

Each answer is registered with the exercise it answers (a number, or ``"layer"`` for a layer written outside the
exercises and checked with ``check_layer``), a one-line description of the mistake in the student's terms, the
check to run on it, and for a fault ``names``: a case-insensitive regular expression that the first line of the
check's failure must match to tell the student what is wrong.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from nflows_tutorial import (
    CouplingLayer,
    Dequantization,
    GatedConvNet,
    ImageFlow,
    SplitFlow,
    SqueezeFlow,
    create_channel_mask,
    create_checkerboard_mask,
    load_mnist,
    load_pretrained,
)
from nflows_tutorial.course.checks import (
    check_additive_coupling,
    check_bits_per_dim,
    check_channel_mask,
    check_early_split_flow,
    check_householder,
    check_importance_bpd,
    check_interpolate,
    check_invertible_conv,
    check_layer,
    check_log_mean_exp,
    check_logit_layer,
    check_quantize,
    check_unsqueeze,
    randomized,
)
from nflows_tutorial.flows.model import bits_per_dim
from nflows_tutorial.flows.prior import standard_normal_log_prob

#: Seconds one call of a layer may take in a check: ample for a right layer, short to wait on one that never returns.
LAYER_SECONDS = 2.0


@dataclass(frozen=True)
class Planted:
    """One answer and how to check it; ``names`` is empty for a right answer."""

    id: str
    exercise: int | str
    description: str
    answer: Any
    check: Callable[[Any], None]
    names: str = ""
    slow: bool = False


FAULTS: list[Planted] = []
VARIANTS: list[Planted] = []

Answer = TypeVar("Answer")

#: What a layer returns: ``(z, ldj)``.
Pair = tuple[torch.Tensor, torch.Tensor]


# The checks ---------------------------------------------------------------------------------------------------------
def _example(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


def check_coupling(cls: type[nn.Module]) -> None:
    """A student's affine coupling ``cls(c_in, mask)``, its parameters randomized, on a checkerboard of 4x4."""
    layer = randomized(cls(1, create_checkerboard_mask(4, 4)), scale=0.3)
    check_layer(layer, _example(4, 1, 4, 4), time_limit_s=LAYER_SECONDS)


def check_dequantization(cls: type[nn.Module]) -> None:
    """A student's variational dequantization ``cls()``, its parameters randomized, on integer pixels."""
    pixels = torch.randint(0, 256, (3, 1, 3, 3), generator=torch.Generator().manual_seed(0))
    check_layer(randomized(cls(), scale=0.3), pixels, time_limit_s=LAYER_SECONDS)


def check_elementwise(layer: Callable[..., Pair]) -> None:
    """A student's layer written as a function, on a batch of 4 small tensors."""
    check_layer(layer, _example(4, 2, 3), time_limit_s=LAYER_SECONDS)


@functools.cache
def trained() -> tuple[ImageFlow, torch.Tensor]:
    """The published ``vardeq`` model (from ``$PATH_CHECKPOINT``, on the CPU) and four test images."""
    model, _ = load_pretrained("vardeq", download=False, device="cpu", progress=False)
    return model, load_mnist("test").images[:4].to(torch.int32)


def check_importance(fn: Callable[..., torch.Tensor]) -> None:
    model, imgs = trained()
    check_importance_bpd(fn, model, imgs)


def check_interpolation(fn: Callable[..., torch.Tensor]) -> None:
    model, imgs = trained()
    check_interpolate(fn, model, imgs[0], imgs[1])


CHECKS: dict[int | str, Callable[[Any], None]] = {
    1: check_bits_per_dim,
    2: check_logit_layer,
    3: check_quantize,
    4: check_log_mean_exp,
    5: check_additive_coupling,
    6: check_channel_mask,
    7: check_unsqueeze,
    8: check_early_split_flow,
    9: check_importance,
    10: check_interpolation,
    11: check_invertible_conv,
    12: check_householder,
    "layer": check_coupling,
}


def fault(
    exercise: int | str, description: str, names: str, check: Callable[[Any], None] | None = None
) -> Callable[[Answer], Answer]:
    """Register the decorated answer as a fault whose failure must match ``names``."""

    def register(answer: Answer) -> Answer:
        FAULTS.append(_planted(exercise, description, answer, check, names))
        return answer

    return register


def variant(
    exercise: int | str, description: str, check: Callable[[Any], None] | None = None
) -> Callable[[Answer], Answer]:
    """Register the decorated answer as a right one, which its check must accept."""

    def register(answer: Answer) -> Answer:
        VARIANTS.append(_planted(exercise, description, answer, check, ""))
        return answer

    return register


def _planted(
    exercise: int | str, description: str, answer: Any, check: Callable[[Any], None] | None, names: str
) -> Planted:
    name = f"{'ex' if isinstance(exercise, int) else ''}{exercise}-{answer.__name__}"
    return Planted(name, exercise, description, answer, check or CHECKS[exercise], names, exercise in (9, 10))


IDENTITY = r"unchanged|identity|returns its input"
IN_PLACE = r"in.place"
KEEPDIM = r"keepdim"
NEVER_RETURNS = r"did not return|never ends|time limit|timed? ?out"
REVERSE_LDJ_UNCHANGED = r"reverse.*(unchanged|subtract)"
REVERSE_ADDS = r"reverse.*(adds|subtract)"


# Exercise 1: bits per dimension -------------------------------------------------------------------------------------
@variant(1, "converts nats to bits with log2(e) instead of dividing by ln 2")
def bpd_via_log2(log_px: torch.Tensor, dims: int) -> torch.Tensor:
    return -log_px * math.log2(math.e) / dims


@variant(1, "divides by a tensor ln 2 in float32, one step at a time")
def bpd_step_by_step(log_px: torch.Tensor, dims: int) -> torch.Tensor:
    nats_per_dim = -log_px / dims
    return nats_per_dim / torch.log(torch.tensor(2.0))


@fault(1, "forgets the minus sign: bits per dimension come out negative", r"sign|negative")
def bpd_sign_flipped(log_px: torch.Tensor, dims: int) -> torch.Tensor:
    return log_px / (dims * math.log(2))


@fault(1, "stays in nats: divides by the number of dimensions only", r"nats|ln ?2|bits")
def bpd_in_nats(log_px: torch.Tensor, dims: int) -> torch.Tensor:
    return -log_px / dims


@fault(1, "multiplies by ln 2 where it must divide", r"divide|multipl")
def bpd_times_ln2(log_px: torch.Tensor, dims: int) -> torch.Tensor:
    return -log_px * math.log(2) / dims


@fault(1, "changes base with log10(2) instead of ln 2", r"base|log ?10|ln ?2")
def bpd_log10(log_px: torch.Tensor, dims: int) -> torch.Tensor:
    return -log_px / (dims * math.log10(2))


@fault(1, "hard-codes MNIST's 784 dimensions instead of the argument dims", r"784|dims")
def bpd_fixed_784(log_px: torch.Tensor, dims: int) -> torch.Tensor:
    return -log_px / (784 * math.log(2))


@fault(1, "forgets to divide by the number of dimensions", r"dimension|dims")
def bpd_per_image(log_px: torch.Tensor, dims: int) -> torch.Tensor:
    return -log_px / math.log(2)


@fault(1, "averages over the batch: one number instead of one per image", r"batch|per image|one (number|value)")
def bpd_batch_mean(log_px: torch.Tensor, dims: int) -> torch.Tensor:
    return (-log_px / (dims * math.log(2))).mean()


@fault(1, "calls the package's bits_per_dim instead of writing the conversion", r"package|bits_per_dim|yourself")
def bpd_package(log_px: torch.Tensor, dims: int) -> torch.Tensor:
    return bits_per_dim(log_px, dims)


# Exercise 2: the logit as a layer -----------------------------------------------------------------------------------
ALPHA = 1e-5


@variant(2, "torch.logit forward, log-sigmoids for the reverse log-det")
def logit_layer_torch_logit(z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
    dims = z[0].numel()
    if not reverse:
        y = z * (1 - ALPHA) + ALPHA / 2
        log_det = dims * math.log(1 - ALPHA) - torch.log(y * (1 - y)).flatten(1).sum(dim=1)
        return torch.logit(y), ldj + log_det
    log_det = dims * math.log(1 - ALPHA) - (F.logsigmoid(z) + F.logsigmoid(-z)).flatten(1).sum(dim=1)
    return (torch.sigmoid(z) - ALPHA / 2) / (1 - ALPHA), ldj - log_det


@variant(2, "the logit as log(y / (1 - y)) and the sigmoid as 1 / (1 + exp(-z))")
def logit_layer_ratio(z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
    dims = z.shape[1] * z.shape[2] * z.shape[3]
    if reverse:
        y = 1 / (1 + torch.exp(-z))
        log_det = dims * math.log(1 - ALPHA) - torch.sum(torch.log(y) + torch.log(1 - y), dim=(1, 2, 3))
        return (y - ALPHA / 2) / (1 - ALPHA), ldj - log_det
    y = ALPHA / 2 + (1 - ALPHA) * z
    log_det = dims * math.log(1 - ALPHA) - torch.sum(torch.log(y) + torch.log(1 - y), dim=(1, 2, 3))
    return torch.log(y / (1 - y)), ldj + log_det


@fault(2, "returns its input: the layer does nothing yet", IDENTITY)
def logit_layer_identity(z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
    return z, ldj


@fault(2, "takes the logit of v directly, without the α step", r"α|alpha")
def logit_layer_no_alpha(z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
    if not reverse:
        log_det = -(torch.log(z) + torch.log1p(-z)).flatten(1).sum(dim=1)
        return torch.log(z) - torch.log1p(-z), ldj + log_det
    y = torch.sigmoid(z)
    return y, ldj - (-(torch.log(y) + torch.log1p(-y)).flatten(1).sum(dim=1))


@fault(2, "leaves the α step's term D log(1 - α) out of the log-det", r"log ?\(1 ?- ?(α|alpha)\)")
def logit_layer_no_alpha_term(z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
    if not reverse:
        y = z * (1 - ALPHA) + ALPHA / 2
        return torch.log(y) - torch.log1p(-y), ldj - (torch.log(y) + torch.log1p(-y)).flatten(1).sum(dim=1)
    y = torch.sigmoid(z)
    return (y - ALPHA / 2) / (1 - ALPHA), ldj + (torch.log(y) + torch.log1p(-y)).flatten(1).sum(dim=1)


@fault(2, "differentiates the logit as 1/y, forgetting the log(1 - y) part", r"1 ?- ?y|logit")
def logit_layer_half_derivative(z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
    dims = z[0].numel()
    if not reverse:
        y = z * (1 - ALPHA) + ALPHA / 2
        log_det = dims * math.log(1 - ALPHA) - torch.log(y).flatten(1).sum(dim=1)
        return torch.log(y) - torch.log1p(-y), ldj + log_det
    y = torch.sigmoid(z)
    log_det = dims * math.log(1 - ALPHA) - torch.log(y).flatten(1).sum(dim=1)
    return (y - ALPHA / 2) / (1 - ALPHA), ldj - log_det


@fault(2, "subtracts the log-det in forward and adds it in reverse", r"sign")
def logit_layer_sign_flipped(z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
    dims = z[0].numel()
    if not reverse:
        y = z * (1 - ALPHA) + ALPHA / 2
        log_det = dims * math.log(1 - ALPHA) - (torch.log(y) + torch.log1p(-y)).flatten(1).sum(dim=1)
        return torch.log(y) - torch.log1p(-y), ldj - log_det
    y = torch.sigmoid(z)
    log_det = dims * math.log(1 - ALPHA) - (torch.log(y) + torch.log1p(-y)).flatten(1).sum(dim=1)
    return (y - ALPHA / 2) / (1 - ALPHA), ldj + log_det


@fault(2, "reverse returns ldj as it came", REVERSE_LDJ_UNCHANGED)
def logit_layer_reverse_keeps_ldj(z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
    dims = z[0].numel()
    if not reverse:
        y = z * (1 - ALPHA) + ALPHA / 2
        log_det = dims * math.log(1 - ALPHA) - (torch.log(y) + torch.log1p(-y)).flatten(1).sum(dim=1)
        return torch.log(y) - torch.log1p(-y), ldj + log_det
    return (torch.sigmoid(z) - ALPHA / 2) / (1 - ALPHA), ldj


@fault(2, "reverse adds the log-det as forward does", REVERSE_ADDS)
def logit_layer_reverse_adds(z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
    dims = z[0].numel()
    y = z * (1 - ALPHA) + ALPHA / 2 if not reverse else torch.sigmoid(z)
    log_det = dims * math.log(1 - ALPHA) - (torch.log(y) + torch.log1p(-y)).flatten(1).sum(dim=1)
    if not reverse:
        return torch.log(y) - torch.log1p(-y), ldj + log_det
    return (y - ALPHA / 2) / (1 - ALPHA), ldj + log_det


@fault(2, "reverse stops after the sigmoid: the α step is never undone", r"α|alpha")
def logit_layer_reverse_keeps_alpha(z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
    dims = z[0].numel()
    y = z * (1 - ALPHA) + ALPHA / 2 if not reverse else torch.sigmoid(z)
    log_det = dims * math.log(1 - ALPHA) - (torch.log(y) + torch.log1p(-y)).flatten(1).sum(dim=1)
    if not reverse:
        return torch.log(y) - torch.log1p(-y), ldj + log_det
    return y, ldj - log_det


@fault(2, "reverse undoes the α step before the sigmoid instead of after it", r"order|α|alpha")
def logit_layer_reverse_wrong_order(z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
    dims = z[0].numel()
    if not reverse:
        y = z * (1 - ALPHA) + ALPHA / 2
        log_det = dims * math.log(1 - ALPHA) - (torch.log(y) + torch.log1p(-y)).flatten(1).sum(dim=1)
        return torch.log(y) - torch.log1p(-y), ldj + log_det
    y = torch.sigmoid((z - ALPHA / 2) / (1 - ALPHA))
    log_det = dims * math.log(1 - ALPHA) - (torch.log(y) + torch.log1p(-y)).flatten(1).sum(dim=1)
    return y, ldj - log_det


@fault(2, "sums the log-det with keepdim=True", KEEPDIM)
def logit_layer_keepdim(z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
    dims = z[0].numel()
    y = z * (1 - ALPHA) + ALPHA / 2 if not reverse else torch.sigmoid(z)
    log_det = dims * math.log(1 - ALPHA) - (torch.log(y) + torch.log1p(-y)).sum(dim=(1, 2, 3), keepdim=True)
    if not reverse:
        return torch.log(y) - torch.log1p(-y), ldj + log_det
    return (y - ALPHA / 2) / (1 - ALPHA), ldj - log_det


@fault(2, "does the α step in place on its input z", IN_PLACE)
def logit_layer_in_place(z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
    dims = z[0].numel()
    if not reverse:
        y = z.mul_(1 - ALPHA).add_(ALPHA / 2)
        log_det = dims * math.log(1 - ALPHA) - (torch.log(y) + torch.log1p(-y)).flatten(1).sum(dim=1)
        return torch.log(y) - torch.log1p(-y), ldj + log_det
    y = torch.sigmoid(z)
    log_det = dims * math.log(1 - ALPHA) - (torch.log(y) + torch.log1p(-y)).flatten(1).sum(dim=1)
    return (y - ALPHA / 2) / (1 - ALPHA), ldj - log_det


# Exercise 3: back to integers ---------------------------------------------------------------------------------------
@variant(3, "a hand-written sigmoid, .floor(), torch.clip and .int()")
def quantize_clip_int(z: torch.Tensor, alpha: float = 1e-5, levels: int = 256) -> torch.Tensor:
    y = 1 / (1 + torch.exp(-z))
    return torch.clip(((y - alpha / 2) / (1 - alpha) * levels).floor(), 0, levels - 1).int()


@fault(3, "rounds to the nearest integer instead of rounding down", r"floor|round(s|ing)? down")
def quantize_round(z: torch.Tensor, alpha: float = 1e-5, levels: int = 256) -> torch.Tensor:
    v = (torch.sigmoid(z) - alpha / 2) / (1 - alpha)
    return torch.round(v * levels).clamp(0, levels - 1).to(torch.int32)


@fault(3, "forgets to undo the α step after the sigmoid", r"α|alpha")
def quantize_alpha_kept(z: torch.Tensor, alpha: float = 1e-5, levels: int = 256) -> torch.Tensor:
    return torch.floor(torch.sigmoid(z) * levels).clamp(0, levels - 1).to(torch.int32)


@fault(3, "rounds down before multiplying by the number of levels", r"256|levels|multipl")
def quantize_no_levels(z: torch.Tensor, alpha: float = 1e-5, levels: int = 256) -> torch.Tensor:
    v = (torch.sigmoid(z) - alpha / 2) / (1 - alpha)
    return torch.floor(v).clamp(0, levels - 1).to(torch.int32)


@fault(3, "multiplies by 255 (the largest pixel) instead of 256 levels", r"256|levels")
def quantize_times_255(z: torch.Tensor, alpha: float = 1e-5, levels: int = 256) -> torch.Tensor:
    v = (torch.sigmoid(z) - alpha / 2) / (1 - alpha)
    return torch.floor(v * (levels - 1)).clamp(0, levels - 1).to(torch.int32)


@fault(3, "never clips, so a logit of 40 gives pixel 256", r"clip|clamp|255")
def quantize_no_clip(z: torch.Tensor, alpha: float = 1e-5, levels: int = 256) -> torch.Tensor:
    v = (torch.sigmoid(z) - alpha / 2) / (1 - alpha)
    return torch.floor(v * levels).to(torch.int32)


@fault(3, "returns floats: the integers are never converted to int32", r"int32|integer")
def quantize_float(z: torch.Tensor, alpha: float = 1e-5, levels: int = 256) -> torch.Tensor:
    v = (torch.sigmoid(z) - alpha / 2) / (1 - alpha)
    return torch.floor(v * levels).clamp(0, levels - 1)


@fault(3, "calls the package's Dequantization layer in reverse", r"package|Dequantization|yourself")
def quantize_package(z: torch.Tensor, alpha: float = 1e-5, levels: int = 256) -> torch.Tensor:
    return Dequantization(alpha, levels)(z, torch.zeros(len(z), dtype=z.dtype), reverse=True)[0]


# Exercise 4: log-mean-exp -------------------------------------------------------------------------------------------
@variant(4, "shifts by amax with keepdim=True and squeezes the result")
def lme_amax_keepdim(log_p: torch.Tensor) -> torch.Tensor:
    top = log_p.amax(dim=0, keepdim=True)
    return (top + torch.log(torch.mean(torch.exp(log_p - top), dim=0, keepdim=True))).squeeze(0)


@variant(4, "sums the shifted exponentials and subtracts log M")
def lme_sum_minus_log_m(log_p: torch.Tensor) -> torch.Tensor:
    top = log_p.max(dim=0).values
    return top + torch.log(torch.exp(log_p - top).sum(dim=0)) - math.log(log_p.shape[0])


@fault(4, "leaves log space: log(mean(exp(log_p))) underflows", r"underflow|overflow|log space|shift|max")
def lme_naive(log_p: torch.Tensor) -> torch.Tensor:
    return torch.log(torch.exp(log_p).mean(dim=0))


@fault(4, "shifts by one maximum over the whole tensor", r"each image|own max|per image|whole batch")
def lme_global_max(log_p: torch.Tensor) -> torch.Tensor:
    top = log_p.max()
    return top + torch.log(torch.exp(log_p - top).mean(dim=0))


@fault(4, "sums the exponentials and forgets to divide by M", r"log ?M|mean|average")
def lme_no_mean(log_p: torch.Tensor) -> torch.Tensor:
    top = log_p.max(dim=0).values
    return top + torch.log(torch.exp(log_p - top).sum(dim=0))


@fault(
    4,
    "averages the logs instead of the probabilities",
    r"mean of (the )?log|average the (probabilities|likelihoods)|log of the mean",
)
def lme_mean_of_logs(log_p: torch.Tensor) -> torch.Tensor:
    return log_p.mean(dim=0)


@fault(4, "reduces over dimension 1 (the images) instead of the draws", r"dim(ension)? ?=? ?[01]|draws")
def lme_wrong_dim(log_p: torch.Tensor) -> torch.Tensor:
    top = log_p.max(dim=1, keepdim=True).values
    return (top + torch.log(torch.exp(log_p - top).mean(dim=1, keepdim=True))).squeeze(1)


@fault(4, "keeps dimension 0 with keepdim=True", KEEPDIM)
def lme_keepdim(log_p: torch.Tensor) -> torch.Tensor:
    top = log_p.max(dim=0, keepdim=True).values
    return top + torch.log(torch.exp(log_p - top).mean(dim=0, keepdim=True))


@variant(4, "torch.logsumexp minus log M, which the statement accepts")
def lme_logsumexp(log_p: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(log_p, dim=0) - math.log(log_p.shape[0])


@fault(4, "finds the maximum in a while loop that never moves on", NEVER_RETURNS)
def lme_endless_loop(log_p: torch.Tensor) -> torch.Tensor:
    top, i = log_p[0], 1
    while i < log_p.shape[0]:
        top = torch.maximum(top, log_p[i])
    return top + torch.log(torch.exp(log_p - top).mean(dim=0))


# Exercise 5: the additive coupling ----------------------------------------------------------------------------------
class AdditiveCouplingStart(nn.Module):
    """The statement's start of exercise 5: the network and the mask; each answer writes forward."""

    def __init__(self, network: nn.Module, mask: torch.Tensor) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("mask", mask)


@variant(5, "shifts z * mask's network output and blends with the mask afterwards")
class AdditiveBlended(AdditiveCouplingStart):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        t = self.network(z * self.mask)
        moved = z - t if reverse else z + t
        return self.mask * z + (1 - self.mask) * moved, ldj


@variant(5, "keeps the masked values with torch.where")
class AdditiveWhere(AdditiveCouplingStart):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        kept = self.mask.bool()
        t = self.network(torch.where(kept, z, torch.zeros_like(z)))
        return torch.where(kept, z, z - t if reverse else z + t), ldj


@fault(5, "returns its input: forward does nothing yet", IDENTITY)
class AdditiveIdentity(AdditiveCouplingStart):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        return z, ldj


@fault(5, "subtracts the shift in forward and adds it in reverse", r"subtract|sign")
class AdditiveSubtracts(AdditiveCouplingStart):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        t = self.network(z * self.mask) * (1 - self.mask)
        return (z + t, ldj) if reverse else (z - t, ldj)


@fault(5, "shifts every value: the shift is not multiplied by (1 - mask)", r"\(1 ?- ?mask\)|mask keeps|kept values")
class AdditiveUnmaskedShift(AdditiveCouplingStart):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        t = self.network(z * self.mask)
        return (z - t, ldj) if reverse else (z + t, ldj)


@fault(5, "feeds the network all of z instead of z * mask", r"z ?\* ?mask|only the kept|kept values")
class AdditiveUnmaskedInput(AdditiveCouplingStart):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        t = self.network(z) * (1 - self.mask)
        return (z - t, ldj) if reverse else (z + t, ldj)


@fault(5, "reverse computes the shift with the inverted mask", r"same mask|other mask|mask as forward")
class AdditiveReverseOtherMask(AdditiveCouplingStart):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        if not reverse:
            return z + self.network(z * self.mask) * (1 - self.mask), ldj
        return z - self.network(z * (1 - self.mask)) * self.mask, ldj


@fault(5, "reverse forgets to multiply the shift by (1 - mask)", r"\(1 ?- ?mask\)|forward keeps|mask keeps|kept values")
class AdditiveReverseUnmasked(AdditiveCouplingStart):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        if not reverse:
            return z + self.network(z * self.mask) * (1 - self.mask), ldj
        return z - self.network(z * self.mask), ldj


@fault(5, "adds the shift to the log-det, though a shift preserves volume", r"volume|log-det is 0|ldj unchanged")
class AdditiveShiftAsLogDet(AdditiveCouplingStart):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        t = self.network(z * self.mask) * (1 - self.mask)
        if not reverse:
            return z + t, ldj + t.flatten(1).sum(dim=1)
        return z - t, ldj - t.flatten(1).sum(dim=1)


@fault(5, "reverse adds the shift again instead of subtracting it", r"forward again|subtract")
class AdditiveReverseAdds(AdditiveCouplingStart):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        t = self.network(z * self.mask) * (1 - self.mask)
        return z + t, ldj


@fault(5, "reverse returns its input: only forward is written", r"reverse.*(unchanged|undo)")
class AdditiveReverseIdentity(AdditiveCouplingStart):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        if reverse:
            return z, ldj
        return z + self.network(z * self.mask) * (1 - self.mask), ldj


@fault(5, "adds the shift to z in place", IN_PLACE)
class AdditiveInPlace(AdditiveCouplingStart):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        t = self.network(z * self.mask) * (1 - self.mask)
        if reverse:
            z -= t
        else:
            z += t
        return z, ldj


# Exercise 6: the channel mask ---------------------------------------------------------------------------------------
@variant(6, "concatenates ones and zeros and views them as [1, c_in, 1, 1]")
def channel_mask_cat(c_in: int, invert: bool = False) -> torch.Tensor:
    mask = torch.cat([torch.ones(c_in // 2), torch.zeros(c_in - c_in // 2)]).view(1, c_in, 1, 1)
    return 1 - mask if invert else mask


@variant(6, "compares an arange with c_in // 2")
def channel_mask_arange(c_in: int, invert: bool = False) -> torch.Tensor:
    kept = torch.arange(c_in) < c_in // 2
    return (kept != invert).float().reshape(1, -1, 1, 1)


@fault(6, "returns a bool mask", r"bool|float")
def channel_mask_bool(c_in: int, invert: bool = False) -> torch.Tensor:
    mask = torch.zeros(1, c_in, 1, 1, dtype=torch.bool)
    mask[:, : c_in // 2] = True
    return ~mask if invert else mask


@fault(6, "inverts the wrong way round", r"invert")
def channel_mask_inverted(c_in: int, invert: bool = False) -> torch.Tensor:
    mask = torch.zeros(1, c_in, 1, 1)
    mask[:, : c_in // 2] = 1
    return mask if invert else 1 - mask


@fault(6, "ignores invert", r"invert")
def channel_mask_invert_ignored(c_in: int, invert: bool = False) -> torch.Tensor:
    mask = torch.zeros(1, c_in, 1, 1)
    mask[:, : c_in // 2] = 1
    return mask


@fault(6, "rounds half of an odd channel count up", r"c_in ?// ?2|round(ed|s)? down|odd")
def channel_mask_rounds_up(c_in: int, invert: bool = False) -> torch.Tensor:
    mask = torch.zeros(1, c_in, 1, 1)
    mask[:, : (c_in + 1) // 2] = 1
    return 1 - mask if invert else mask


@fault(6, "keeps the last channels instead of the first", r"last")
def channel_mask_last(c_in: int, invert: bool = False) -> torch.Tensor:
    mask = torch.zeros(1, c_in, 1, 1)
    mask[:, c_in - c_in // 2 :] = 1
    return 1 - mask if invert else mask


@fault(6, "returns a flat mask of shape [c_in]", r"shape|broadcast")
def channel_mask_flat(c_in: int, invert: bool = False) -> torch.Tensor:
    mask = torch.zeros(c_in)
    mask[: c_in // 2] = 1
    return 1 - mask if invert else mask


# Exercise 7: the squeeze inverse ------------------------------------------------------------------------------------
@variant(7, "fills the 2x2 blocks with strided slices")
def unsqueeze_slices(z: torch.Tensor) -> torch.Tensor:
    b, c, h, w = z.shape
    out = z.new_zeros(b, c // 4, 2 * h, 2 * w)
    for i in range(2):
        for j in range(2):
            out[:, :, i::2, j::2] = z[:, 2 * i + j :: 4]
    return out


@variant(7, "interleaves columns, then rows, with torch.stack")
def unsqueeze_stack(z: torch.Tensor) -> torch.Tensor:
    b, c, h, w = z.shape
    blocks = z.reshape(b, c // 4, 4, h, w)
    top = torch.stack([blocks[:, :, 0], blocks[:, :, 1]], dim=-1).reshape(b, c // 4, h, 2 * w)
    bottom = torch.stack([blocks[:, :, 2], blocks[:, :, 3]], dim=-1).reshape(b, c // 4, h, 2 * w)
    return torch.stack([top, bottom], dim=3).reshape(b, c // 4, 2 * h, 2 * w)


@variant(7, "F.pixel_shuffle, which orders a block's channels the same way")
def unsqueeze_pixel_shuffle(z: torch.Tensor) -> torch.Tensor:
    return F.pixel_shuffle(z, 2)


@fault(7, "reshapes the channels as (2, 2, C) instead of (C, 2, 2)", r"wrong (place|position)s?|channel")
def unsqueeze_channel_last(z: torch.Tensor) -> torch.Tensor:
    b, c, h, w = z.shape
    return z.reshape(b, 2, 2, c // 4, h, w).permute(0, 3, 4, 1, 5, 2).reshape(b, c // 4, 2 * h, 2 * w)


@fault(7, "swaps rows and columns inside each 2x2 block", r"swap|transpos|rows and columns")
def unsqueeze_transposed(z: torch.Tensor) -> torch.Tensor:
    b, c, h, w = z.shape
    return z.reshape(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 3, 5, 2).reshape(b, c // 4, 2 * h, 2 * w)


@fault(
    7, "reshapes without permuting: the right values in the wrong positions", r"wrong (place|position)s?|order|permut"
)
def unsqueeze_reshape_only(z: torch.Tensor) -> torch.Tensor:
    b, c, h, w = z.shape
    return z.reshape(b, c // 4, 2 * h, 2 * w)


@fault(7, "calls .view on the permuted tensor", r"reshape|contiguous")
def unsqueeze_view(z: torch.Tensor) -> torch.Tensor:
    b, c, h, w = z.shape
    return z.view(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).view(b, c // 4, 2 * h, 2 * w)


# Exercise 8: a split at a different depth ---------------------------------------------------------------------------
def _checkerboard(i: int, hidden: int = 16, alternate: bool = True) -> CouplingLayer:
    mask = create_checkerboard_mask(28, 28, invert=alternate and i % 2 == 1)
    return CouplingLayer(GatedConvNet(c_in=1, hidden=hidden), mask, c_in=1)


def _channel(i: int, c: int, hidden: int = 16, alternate: bool = True) -> CouplingLayer:
    return CouplingLayer(
        GatedConvNet(c_in=c, hidden=hidden), create_channel_mask(c, invert=alternate and i % 2 == 1), c_in=c
    )


@variant(8, "builds each stage in a loop and appends to a list")
def early_split_loops() -> ImageFlow:
    flows: list[nn.Module] = [Dequantization()]
    flows += [_checkerboard(i) for i in range(2)]
    flows += [SqueezeFlow(), SplitFlow()]
    flows += [_channel(i, 2) for i in range(2)]
    flows.append(SqueezeFlow())
    flows += [_channel(i, 8) for i in range(2)]
    return ImageFlow(flows, image_shape=(1, 28, 28), latent_shape=(8, 7, 7))


@fault(8, "never inverts a mask: every coupling transforms the same values", r"alternat|same mask|invert")
def early_split_same_masks() -> ImageFlow:
    flows = [
        Dequantization(), _checkerboard(0, alternate=False), _checkerboard(1, alternate=False),
        SqueezeFlow(), SplitFlow(), _channel(0, 2, alternate=False), _channel(1, 2, alternate=False),
        SqueezeFlow(), _channel(0, 8, alternate=False), _channel(1, 8, alternate=False),
    ]  # fmt: skip
    return ImageFlow(flows, image_shape=(1, 28, 28), latent_shape=(8, 7, 7))


@fault(8, "keeps GatedConvNet's default of 32 hidden channels", r"hidden|16")
def early_split_hidden_32() -> ImageFlow:
    flows = [
        Dequantization(), _checkerboard(0, hidden=32), _checkerboard(1, hidden=32),
        SqueezeFlow(), SplitFlow(), _channel(0, 2, hidden=32), _channel(1, 2, hidden=32),
        SqueezeFlow(), _channel(0, 8, hidden=32), _channel(1, 8, hidden=32),
    ]  # fmt: skip
    return ImageFlow(flows, image_shape=(1, 28, 28), latent_shape=(8, 7, 7))


@fault(8, "declares the latent shape (4, 7, 7), halving the channels once more", r"latent")
def early_split_latent_halved() -> ImageFlow:
    flows = [
        Dequantization(), _checkerboard(0), _checkerboard(1),
        SqueezeFlow(), SplitFlow(), _channel(0, 2), _channel(1, 2),
        SqueezeFlow(), _channel(0, 8), _channel(1, 8),
    ]  # fmt: skip
    return ImageFlow(flows, image_shape=(1, 28, 28), latent_shape=(4, 7, 7))


@fault(8, "splits before the first squeeze", r"squeeze")
def early_split_before_squeeze() -> ImageFlow:
    flows = [
        Dequantization(), _checkerboard(0), _checkerboard(1),
        SplitFlow(), SqueezeFlow(), _channel(0, 2), _channel(1, 2),
        SqueezeFlow(), _channel(0, 8), _channel(1, 8),
    ]  # fmt: skip
    return ImageFlow(flows, image_shape=(1, 28, 28), latent_shape=(8, 7, 7))


@fault(
    8, "builds the couplings after the split for 4 channels, forgetting that the split halves them", r"channels|c_in"
)
def early_split_channels_not_halved() -> ImageFlow:
    flows = [
        Dequantization(), _checkerboard(0), _checkerboard(1),
        SqueezeFlow(), SplitFlow(), _channel(0, 4), _channel(1, 4),
        SqueezeFlow(), _channel(0, 8), _channel(1, 8),
    ]  # fmt: skip
    return ImageFlow(flows, image_shape=(1, 28, 28), latent_shape=(8, 7, 7))


@fault(8, "uses checkerboard masks where the statement asks for channel masks", r"channel mask|checkerboard")
def early_split_checkerboards_only() -> ImageFlow:
    def checkerboard(i: int, c: int, size: int) -> CouplingLayer:
        mask = create_checkerboard_mask(size, size, invert=i % 2 == 1)
        return CouplingLayer(GatedConvNet(c_in=c, hidden=16), mask, c_in=c)

    flows = [
        Dequantization(), checkerboard(0, 1, 28), checkerboard(1, 1, 28),
        SqueezeFlow(), SplitFlow(), checkerboard(0, 2, 14), checkerboard(1, 2, 14),
        SqueezeFlow(), checkerboard(0, 8, 7), checkerboard(1, 8, 7),
    ]  # fmt: skip
    return ImageFlow(flows, image_shape=(1, 28, 28), latent_shape=(8, 7, 7))


# Exercise 9: importance sampling by hand (the published model: slow) ------------------------------------------------
@variant(9, "encodes the batch repeated M times in one call")
def importance_repeated(model: ImageFlow, imgs: torch.Tensor, M: int) -> torch.Tensor:
    z, ldj = model.encode(imgs.repeat(M, 1, 1, 1))
    log_p = (ldj + standard_normal_log_prob(z)).view(M, -1)
    top = log_p.max(dim=0).values
    log_px = top + torch.log(torch.exp(log_p - top).mean(dim=0))
    return -log_px / (imgs[0].numel() * math.log(2))


@fault(
    9,
    "averages the bpd of the M draws instead of their likelihoods",
    r"inside the log|log-mean-exp|average the likelihoods",
)
def importance_mean_of_bpd(model: ImageFlow, imgs: torch.Tensor, M: int) -> torch.Tensor:
    bpds = []
    for _ in range(M):
        z, ldj = model.encode(imgs)
        bpds.append(-(ldj + standard_normal_log_prob(z)) * math.log2(math.e) / imgs[0].numel())
    return torch.stack(bpds).mean(dim=0)


@fault(9, "takes log-sum-exp of the draws without subtracting log M", r"log ?M|mean|average")
def importance_no_mean(model: ImageFlow, imgs: torch.Tensor, M: int) -> torch.Tensor:
    log_p = []
    for _ in range(M):
        z, ldj = model.encode(imgs)
        log_p.append(ldj + standard_normal_log_prob(z))
    return -torch.logsumexp(torch.stack(log_p), dim=0) * math.log2(math.e) / imgs[0].numel()


@fault(9, "calls model.bits_per_dim", r"package|bits_per_dim|yourself|encode")
def importance_package(model: ImageFlow, imgs: torch.Tensor, M: int) -> torch.Tensor:
    return model.bits_per_dim(imgs, importance_samples=M)


@fault(9, "returns one bpd for the whole batch", r"batch|per image|one (number|value)")
def importance_batch_mean(model: ImageFlow, imgs: torch.Tensor, M: int) -> torch.Tensor:
    log_p = []
    for _ in range(M):
        z, ldj = model.encode(imgs)
        log_p.append(ldj + standard_normal_log_prob(z))
    log_px = torch.logsumexp(torch.stack(log_p), dim=0) - math.log(M)
    return (-log_px * math.log2(math.e) / imgs[0].numel()).mean()


@fault(9, "encodes once and reuses that draw M times", r"same draw|fresh noise|once per draw")
def importance_one_encode(model: ImageFlow, imgs: torch.Tensor, M: int) -> torch.Tensor:
    z, ldj = model.encode(imgs)
    log_p = torch.stack([ldj + standard_normal_log_prob(z)] * M)
    return -(torch.logsumexp(log_p, dim=0) - math.log(M)) * math.log2(math.e) / imgs[0].numel()


@fault(9, "forgets the prior's log-density of the latents", r"prior")
def importance_no_prior(model: ImageFlow, imgs: torch.Tensor, M: int) -> torch.Tensor:
    log_p = torch.stack([model.encode(imgs)[1] for _ in range(M)])
    return -(torch.logsumexp(log_p, dim=0) - math.log(M)) * math.log2(math.e) / imgs[0].numel()


# Exercise 10: latent interpolation (the published model: slow) ------------------------------------------------------
@fault(10, "blends the two images' pixels instead of their latents", r"pixel|latent")
def interpolate_pixels(model: ImageFlow, img1: torch.Tensor, img2: torch.Tensor, num_steps: int) -> torch.Tensor:
    t = torch.linspace(0, 1, num_steps).view(-1, 1, 1, 1)
    return ((1 - t) * img1.float() + t * img2.float()).round().to(torch.int32)


@variant(10, "mixes the latents with torch.lerp")
def interpolate_lerp(model: ImageFlow, img1: torch.Tensor, img2: torch.Tensor, num_steps: int) -> torch.Tensor:
    with torch.no_grad():
        z, _ = model.encode(torch.stack([img1, img2]))
    t = torch.linspace(0, 1, num_steps, dtype=z.dtype).view(-1, 1, 1, 1)
    z_path = torch.lerp(z[0].expand_as(z[:1]), z[1].expand_as(z[:1]), t)
    return model.sample(z_path.shape, z_init=z_path)


@fault(10, "runs t from 1 down to 0, from img2 to img1", r"direction|img2 to img1|t ?= ?0")
def interpolate_backwards(model: ImageFlow, img1: torch.Tensor, img2: torch.Tensor, num_steps: int) -> torch.Tensor:
    with torch.no_grad():
        z, _ = model.encode(torch.stack([img1, img2]))
    t = torch.linspace(1, 0, num_steps, dtype=z.dtype).view(-1, 1, 1, 1)
    z_path = (1 - t) * z[0] + t * z[1]
    return model.sample(z_path.shape, z_init=z_path)


@fault(10, "mixes img1's latent with itself, so every frame is img1", r"copy|mix")
def interpolate_same_latent(model: ImageFlow, img1: torch.Tensor, img2: torch.Tensor, num_steps: int) -> torch.Tensor:
    with torch.no_grad():
        z, _ = model.encode(torch.stack([img1, img2]))
    t = torch.linspace(0, 1, num_steps, dtype=z.dtype).view(-1, 1, 1, 1)
    z_path = (1 - t) * z[0] + t * z[0]
    return model.sample(z_path.shape, z_init=z_path)


@fault(10, "spaces t as k / num_steps, so the path never reaches img2", r"t ?= ?|1/|linspace|reach")
def interpolate_short_steps(model: ImageFlow, img1: torch.Tensor, img2: torch.Tensor, num_steps: int) -> torch.Tensor:
    with torch.no_grad():
        z, _ = model.encode(torch.stack([img1, img2]))
    t = (torch.arange(num_steps, dtype=z.dtype) / num_steps).view(-1, 1, 1, 1)
    z_path = (1 - t) * z[0] + t * z[1]
    return model.sample(z_path.shape, z_init=z_path)


# Exercise 11: an invertible 1x1 convolution -------------------------------------------------------------------------
class Conv1x1Start(nn.Module):
    """The statement's start of exercise 11: a random rotation as the weight; each answer writes forward."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        rotation, _ = torch.linalg.qr(torch.randn(channels, channels))
        self.weight = nn.Parameter(rotation)


@variant(11, "F.conv2d with the weight as a 1x1 kernel")
class Conv1x1Conv2d(Conv1x1Start):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        log_det = z.shape[2] * z.shape[3] * torch.slogdet(self.weight)[1]
        if reverse:
            return F.conv2d(z, torch.inverse(self.weight)[:, :, None, None]), ldj - log_det
        return F.conv2d(z, self.weight.unsqueeze(-1).unsqueeze(-1)), ldj + log_det


@variant(11, "moves the channels last and multiplies by Wᵀ; log|det W| from torch.det")
class Conv1x1ChannelsLast(Conv1x1Start):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        w = torch.linalg.inv(self.weight) if reverse else self.weight
        out = (z.permute(0, 2, 3, 1) @ w.T).permute(0, 3, 1, 2)
        log_det = z.shape[-1] * z.shape[-2] * torch.log(torch.abs(torch.det(self.weight)))
        return out, ldj - log_det if reverse else ldj + log_det


@fault(11, "takes slogdet's sign where it needs log|det W|", r"sign|logabsdet")
class Conv1x1SlogdetSign(Conv1x1Start):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        log_det = z.shape[2] * z.shape[3] * torch.linalg.slogdet(self.weight)[0]
        if not reverse:
            return torch.einsum("ij,bjhw->bihw", self.weight, z), ldj + log_det
        return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(self.weight), z), ldj - log_det


@fault(11, "returns its input: forward does nothing yet", IDENTITY)
class Conv1x1Identity(Conv1x1Start):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        return z, ldj


@fault(11, "applies Wᵀ: the einsum's indices are swapped", r"Wᵀ|transpose|W\.T|W\^T")
class Conv1x1Transposed(Conv1x1Start):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        log_det = z.shape[2] * z.shape[3] * torch.linalg.slogdet(self.weight).logabsdet
        if not reverse:
            return torch.einsum("ji,bjhw->bihw", self.weight, z), ldj + log_det
        return torch.einsum("ji,bjhw->bihw", torch.linalg.inv(self.weight), z), ldj - log_det


@fault(11, "counts log|det W| once instead of once per pixel position", r"H ?[·*×x]? ?W|position|pixel")
class Conv1x1OnePosition(Conv1x1Start):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        log_det = torch.linalg.slogdet(self.weight).logabsdet
        if not reverse:
            return torch.einsum("ij,bjhw->bihw", self.weight, z), ldj + log_det
        return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(self.weight), z), ldj - log_det


@fault(11, "counts log|det W| once per value (C·H·W) instead of once per position", r"H ?[·*×x]? ?W|position|pixel")
class Conv1x1PerValue(Conv1x1Start):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        log_det = z[0].numel() * torch.linalg.slogdet(self.weight).logabsdet
        if not reverse:
            return torch.einsum("ij,bjhw->bihw", self.weight, z), ldj + log_det
        return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(self.weight), z), ldj - log_det


# From the global seed 0 that the tests set, the check's W has a negative determinant.
@fault(11, "takes torch.logdet of W, which is NaN for a negative determinant", r"negative|slogdet|logabsdet")
class Conv1x1Logdet(Conv1x1Start):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        log_det = z.shape[2] * z.shape[3] * torch.logdet(self.weight)
        if not reverse:
            return torch.einsum("ij,bjhw->bihw", self.weight, z), ldj + log_det
        return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(self.weight), z), ldj - log_det


@fault(11, "reverse adds the log-det as forward does", REVERSE_ADDS)
class Conv1x1ReverseAdds(Conv1x1Start):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        log_det = z.shape[2] * z.shape[3] * torch.linalg.slogdet(self.weight).logabsdet
        w = torch.linalg.inv(self.weight) if reverse else self.weight
        return torch.einsum("ij,bjhw->bihw", w, z), ldj + log_det


@fault(11, "reverse multiplies by Wᵀ as if W stayed a rotation", r"inv\(|inverse (matrix|of)|W⁻¹|orthogonal|rotation")
class Conv1x1ReverseTranspose(Conv1x1Start):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        log_det = z.shape[2] * z.shape[3] * torch.linalg.slogdet(self.weight).logabsdet
        if not reverse:
            return torch.einsum("ij,bjhw->bihw", self.weight, z), ldj + log_det
        return torch.einsum("ij,bjhw->bihw", self.weight.T, z), ldj - log_det


@fault(11, "reverse solves against torch.eye(c) created without a dtype", r"dtype")
class Conv1x1EyeDtype(Conv1x1Start):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        log_det = z.shape[2] * z.shape[3] * torch.linalg.slogdet(self.weight).logabsdet
        if not reverse:
            return torch.einsum("ij,bjhw->bihw", self.weight, z), ldj + log_det
        w_inv = torch.linalg.solve(self.weight, torch.eye(z.shape[1]))
        return torch.einsum("ij,bjhw->bihw", w_inv, z), ldj - log_det


@fault(11, "keeps an identity matrix as a plain tensor attribute", r"register|buffer")
class Conv1x1PlainAttribute(Conv1x1Start):
    def __init__(self, channels: int) -> None:
        super().__init__(channels)
        self.eye = torch.eye(channels)

    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        log_det = z.shape[2] * z.shape[3] * torch.linalg.slogdet(self.weight).logabsdet
        if not reverse:
            return torch.einsum("ij,bjhw->bihw", self.weight, z), ldj + log_det
        w_inv = torch.linalg.solve(self.weight, self.eye)
        return torch.einsum("ij,bjhw->bihw", w_inv, z), ldj - log_det


# Exercise 12: a Householder layer -----------------------------------------------------------------------------------
class HouseholderStart(nn.Module):
    """The statement's start of exercise 12: the reflection vectors; each answer writes matrix and forward."""

    def __init__(self, channels: int, reflections: int = 4) -> None:
        super().__init__()
        self.vectors = nn.Parameter(torch.randn(reflections, channels))

    def matrix(self) -> torch.Tensor:
        eye = torch.eye(self.vectors.shape[1], dtype=self.vectors.dtype)
        product = eye
        for v in self.vectors:
            product = product @ (eye - 2 * torch.outer(v, v) / v.dot(v))
        return product


@variant(12, "reflects the identity from the left, last vector first, with unit vectors; F.conv2d in forward")
class HouseholderReflectIdentity(HouseholderStart):
    def matrix(self) -> torch.Tensor:
        w = torch.eye(self.vectors.shape[1], dtype=self.vectors.dtype)
        for v in self.vectors.flip(0):
            u = v / v.norm()
            w = w - 2 * torch.outer(u, u @ w)
        return w

    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        w = self.matrix()
        return F.conv2d(z, (w.T if reverse else w)[:, :, None, None]), ldj


@fault(12, "matrix() returns the identity", r"identity")
class HouseholderIdentityMatrix(HouseholderStart):
    def matrix(self) -> torch.Tensor:
        return torch.eye(self.vectors.shape[1])

    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        w = self.matrix().T if reverse else self.matrix()
        return torch.einsum("ij,bjhw->bihw", w, z), ldj


@fault(12, "forward never applies the matrix", IDENTITY)
class HouseholderForwardIgnoresMatrix(HouseholderStart):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        return z, ldj


@fault(12, "multiplies the reflections in the reverse order", r"order")
class HouseholderReversedProduct(HouseholderStart):
    def matrix(self) -> torch.Tensor:
        eye = torch.eye(self.vectors.shape[1], dtype=self.vectors.dtype)
        product = eye
        for v in self.vectors:
            product = (eye - 2 * torch.outer(v, v) / v.dot(v)) @ product
        return product

    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        w = self.matrix().T if reverse else self.matrix()
        return torch.einsum("ij,bjhw->bihw", w, z), ldj


@fault(12, "forgets to divide by vᵀv", r"vᵀ ?v|v\.dot|normali|unit|orthogonal")
class HouseholderUnnormalised(HouseholderStart):
    def matrix(self) -> torch.Tensor:
        eye = torch.eye(self.vectors.shape[1], dtype=self.vectors.dtype)
        product = eye
        for v in self.vectors:
            product = product @ (eye - 2 * torch.outer(v, v))
        return product

    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        w = self.matrix().T if reverse else self.matrix()
        return torch.einsum("ij,bjhw->bihw", w, z), ldj


@fault(12, "uses I - v vᵀ / (vᵀ v), without the factor 2", r"factor|2 v|projection|reflection")
class HouseholderNoFactor2(HouseholderStart):
    def matrix(self) -> torch.Tensor:
        eye = torch.eye(self.vectors.shape[1], dtype=self.vectors.dtype)
        product = eye
        for v in self.vectors:
            product = product @ (eye - torch.outer(v, v) / v.dot(v))
        return product

    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        w = self.matrix().T if reverse else self.matrix()
        return torch.einsum("ij,bjhw->bihw", w, z), ldj


@fault(12, "creates torch.eye(c) in matrix() without a dtype", r"dtype")
class HouseholderEyeDtype(HouseholderStart):
    def matrix(self) -> torch.Tensor:
        eye = torch.eye(self.vectors.shape[1])
        product = eye
        for v in self.vectors:
            product = product @ (eye - 2 * torch.outer(v, v) / v.dot(v))
        return product

    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        w = self.matrix().T if reverse else self.matrix()
        return torch.einsum("ij,bjhw->bihw", w, z), ldj


@fault(12, "applies the transpose in forward and the matrix in reverse", r"Wᵀ|transpose|\.T\b")
class HouseholderForwardTransposed(HouseholderStart):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        w = self.matrix() if reverse else self.matrix().T
        return torch.einsum("ij,bjhw->bihw", w, z), ldj


@fault(12, "reverse applies the matrix again instead of its transpose", r"Wᵀ|transpose|\.T\b|orthogonal")
class HouseholderReverseSameMatrix(HouseholderStart):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        return torch.einsum("ij,bjhw->bihw", self.matrix(), z), ldj


@fault(
    12,
    "adds the log-norms of the vectors to ldj, though the layer preserves volume",
    r"volume|log-det is 0|ldj unchanged",
)
class HouseholderExtraLogDet(HouseholderStart):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        log_det = z.shape[2] * z.shape[3] * self.vectors.norm(dim=1).log().sum()
        if not reverse:
            return torch.einsum("ij,bjhw->bihw", self.matrix(), z), ldj + log_det
        return torch.einsum("ij,bjhw->bihw", self.matrix().T, z), ldj - log_det


@fault(12, "multiplies the reflections in a while loop that never moves on", NEVER_RETURNS)
class HouseholderEndlessLoop(HouseholderStart):
    def matrix(self) -> torch.Tensor:
        eye = torch.eye(self.vectors.shape[1], dtype=self.vectors.dtype)
        product, k = eye, 0
        while k < len(self.vectors):
            v = self.vectors[k]
            product = product @ (eye - 2 * torch.outer(v, v) / v.dot(v))
        return product

    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        w = self.matrix().T if reverse else self.matrix()
        return torch.einsum("ij,bjhw->bihw", w, z), ldj


# Layers written outside the exercises: an affine coupling ----------------------------------------------------------
class AffineCoupling(nn.Module):
    """A student's affine coupling: ``z' = (z + t) e^s`` where ``mask == 0``, ``(s, t)`` from the kept values."""

    def __init__(self, c_in: int, mask: torch.Tensor) -> None:
        super().__init__()
        self.network = GatedConvNet(c_in=c_in, hidden=8)
        self.register_buffer("mask", mask)

    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        s, t = self.network(z * self.mask).chunk(2, dim=1)
        s = torch.tanh(s) * (1 - self.mask)
        t = t * (1 - self.mask)
        if not reverse:
            return (z + t) * torch.exp(s), ldj + s.flatten(1).sum(dim=1)
        return z * torch.exp(-s) - t, ldj - s.flatten(1).sum(dim=1)


variant("layer", "an affine coupling written as the notebook's CouplingLayer")(AffineCoupling)


@fault("layer", "returns ldj unchanged: the log-det of the scale is missing", r"unchanged|missing|add the log")
class AffineNoLogDet(AffineCoupling):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        s, t = self.network(z * self.mask).chunk(2, dim=1)
        s, t = torch.tanh(s) * (1 - self.mask), t * (1 - self.mask)
        return ((z * torch.exp(-s) - t) if reverse else (z + t) * torch.exp(s)), ldj


@fault("layer", "subtracts sum(s) in forward and adds it in reverse", r"sign")
class AffineSignFlipped(AffineCoupling):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        s, t = self.network(z * self.mask).chunk(2, dim=1)
        s, t = torch.tanh(s) * (1 - self.mask), t * (1 - self.mask)
        if not reverse:
            return (z + t) * torch.exp(s), ldj - s.flatten(1).sum(dim=1)
        return z * torch.exp(-s) - t, ldj + s.flatten(1).sum(dim=1)


@fault("layer", "adds sum(s) to ldj twice", r"twice|two times|double")
class AffineLogDetTwice(AffineCoupling):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        s, t = self.network(z * self.mask).chunk(2, dim=1)
        s, t = torch.tanh(s) * (1 - self.mask), t * (1 - self.mask)
        if not reverse:
            ldj = ldj + s.flatten(1).sum(dim=1)
            return (z + t) * torch.exp(s), ldj + s.flatten(1).sum(dim=1)
        ldj = ldj - s.flatten(1).sum(dim=1)
        return z * torch.exp(-s) - t, ldj - s.flatten(1).sum(dim=1)


@fault("layer", "reverse returns ldj as it came", REVERSE_LDJ_UNCHANGED)
class AffineReverseKeepsLdj(AffineCoupling):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        s, t = self.network(z * self.mask).chunk(2, dim=1)
        s, t = torch.tanh(s) * (1 - self.mask), t * (1 - self.mask)
        if not reverse:
            return (z + t) * torch.exp(s), ldj + s.flatten(1).sum(dim=1)
        return z * torch.exp(-s) - t, ldj


@fault("layer", "reverse adds sum(s) as forward does", REVERSE_ADDS)
class AffineReverseAdds(AffineCoupling):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        s, t = self.network(z * self.mask).chunk(2, dim=1)
        s, t = torch.tanh(s) * (1 - self.mask), t * (1 - self.mask)
        out = z * torch.exp(-s) - t if reverse else (z + t) * torch.exp(s)
        return out, ldj + s.flatten(1).sum(dim=1)


@fault(
    "layer",
    "reverse subtracts the shift before dividing by the scale",
    r"opposite order|reverse order|divide by the scale, then subtract|exp\(-s\) ?- ?t",
)
class AffineReverseWrongOrder(AffineCoupling):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        s, t = self.network(z * self.mask).chunk(2, dim=1)
        s, t = torch.tanh(s) * (1 - self.mask), t * (1 - self.mask)
        if not reverse:
            return (z + t) * torch.exp(s), ldj + s.flatten(1).sum(dim=1)
        return (z - t) * torch.exp(-s), ldj - s.flatten(1).sum(dim=1)


@fault("layer", "sums the log-det with keepdim=True", KEEPDIM)
class AffineKeepdim(AffineCoupling):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        s, t = self.network(z * self.mask).chunk(2, dim=1)
        s, t = torch.tanh(s) * (1 - self.mask), t * (1 - self.mask)
        if not reverse:
            return (z + t) * torch.exp(s), ldj + s.sum(dim=(1, 2, 3), keepdim=True)
        return z * torch.exp(-s) - t, ldj - s.sum(dim=(1, 2, 3), keepdim=True)


@fault("layer", "sums the log-det over the whole batch with s.sum()", r"batch|sum\(\)")
class AffineBatchSum(AffineCoupling):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        s, t = self.network(z * self.mask).chunk(2, dim=1)
        s, t = torch.tanh(s) * (1 - self.mask), t * (1 - self.mask)
        if not reverse:
            return (z + t) * torch.exp(s), ldj + s.sum()
        return z * torch.exp(-s) - t, ldj - s.sum()


@fault("layer", "scales and shifts z in place", IN_PLACE)
class AffineInPlace(AffineCoupling):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        s, t = self.network(z * self.mask).chunk(2, dim=1)
        s, t = torch.tanh(s) * (1 - self.mask), t * (1 - self.mask)
        if not reverse:
            z += t
            z *= torch.exp(s)
            return z, ldj + s.flatten(1).sum(dim=1)
        z *= torch.exp(-s)
        z -= t
        return z, ldj - s.flatten(1).sum(dim=1)


@fault("layer", "adds the log-det to ldj in place", IN_PLACE)
class AffineLdjInPlace(AffineCoupling):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        s, t = self.network(z * self.mask).chunk(2, dim=1)
        s, t = torch.tanh(s) * (1 - self.mask), t * (1 - self.mask)
        if not reverse:
            ldj += s.flatten(1).sum(dim=1)
            return (z + t) * torch.exp(s), ldj
        ldj -= s.flatten(1).sum(dim=1)
        return z * torch.exp(-s) - t, ldj


@fault(
    "layer", "scales every value: the scale is not multiplied by (1 - mask)", r"\(1 ?- ?mask\)|mask keeps|kept values"
)
class AffineUnmaskedScale(AffineCoupling):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        s, t = self.network(z * self.mask).chunk(2, dim=1)
        s, t = torch.tanh(s), t * (1 - self.mask)
        if not reverse:
            return (z + t) * torch.exp(s), ldj + s.flatten(1).sum(dim=1)
        return z * torch.exp(-s) - t, ldj - s.flatten(1).sum(dim=1)


@fault("layer", "feeds the network all of z instead of z * mask", r"z ?\* ?mask|only the kept|kept values")
class AffineUnmaskedInput(AffineCoupling):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        s, t = self.network(z).chunk(2, dim=1)
        s, t = torch.tanh(s) * (1 - self.mask), t * (1 - self.mask)
        if not reverse:
            return (z + t) * torch.exp(s), ldj + s.flatten(1).sum(dim=1)
        return z * torch.exp(-s) - t, ldj - s.flatten(1).sum(dim=1)


@fault("layer", "detaches the network's output, so no gradient reaches the network", r"detach|no gradient")
class AffineDetached(AffineCoupling):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        s, t = self.network(z * self.mask).detach().chunk(2, dim=1)
        s, t = torch.tanh(s) * (1 - self.mask), t * (1 - self.mask)
        if not reverse:
            return (z + t) * torch.exp(s), ldj + s.flatten(1).sum(dim=1)
        return z * torch.exp(-s) - t, ldj - s.flatten(1).sum(dim=1)


@fault("layer", "keeps the mask as a plain tensor attribute", r"register|buffer")
class AffinePlainMask(AffineCoupling):
    def __init__(self, c_in: int, mask: torch.Tensor) -> None:
        nn.Module.__init__(self)
        self.network = GatedConvNet(c_in=c_in, hidden=8)
        self.mask = mask


@fault("layer", "puts dropout in the network", r"dropout|random")
class AffineDropout(AffineCoupling):
    def __init__(self, c_in: int, mask: torch.Tensor) -> None:
        super().__init__(c_in, mask)
        self.network = nn.Sequential(
            nn.Conv2d(c_in, 16, 3, padding=1), nn.ReLU(), nn.Dropout(0.2), nn.Conv2d(16, 2 * c_in, 3, padding=1)
        )


@fault("layer", "puts a BatchNorm2d (in training mode) in the network", r"batch ?norm|other samples|batch statistics")
class AffineBatchNorm(AffineCoupling):
    def __init__(self, c_in: int, mask: torch.Tensor) -> None:
        super().__init__(c_in, mask)
        self.network = nn.Sequential(
            nn.Conv2d(c_in, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 2 * c_in, 3, padding=1)
        )


@fault("layer", "halves the scale in a while loop whose counter never moves", NEVER_RETURNS)
class AffineEndlessLoop(AffineCoupling):
    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
        s, t = self.network(z * self.mask).chunk(2, dim=1)
        i = 0
        while i < 3:
            s = s * 0.5
        s, t = s * (1 - self.mask), t * (1 - self.mask)
        if not reverse:
            return (z + t) * torch.exp(s), ldj + s.flatten(1).sum(dim=1)
        return z * torch.exp(-s) - t, ldj - s.flatten(1).sum(dim=1)


# Layers written outside the exercises: an elementwise layer --------------------------------------------------------
@variant("layer", "a signed square z|z| with its derivative 2|z|", check=check_elementwise)
def signed_square(z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
    if not reverse:
        return z * z.abs(), ldj + torch.log(2 * z.abs()).flatten(1).sum(dim=1)
    root = z.sign() * z.abs().sqrt()
    return root, ldj - torch.log(2 * root.abs()).flatten(1).sum(dim=1)


@fault(
    "layer", "squares z, which loses the sign: not invertible", r"not invertible|same output", check=check_elementwise
)
def square(z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> Pair:
    if not reverse:
        return z**2, ldj + torch.log(2 * z.abs()).flatten(1).sum(dim=1)
    root = z.sqrt()
    return root, ldj - torch.log(2 * root).flatten(1).sum(dim=1)


# Layers written outside the exercises: a variational dequantization ------------------------------------------------
class MyVariationalDequantization(nn.Module):
    """A student's dequantization with learned noise: the uniform ``u`` goes through an affine map of its logit
    whose scale and shift a convolution computes from the image, back through a sigmoid, then ``(x + u) / L``,
    the alpha step and the logit. ``noise=`` fixes the uniform draw."""

    def __init__(self, alpha: float = 1e-5, levels: int = 256) -> None:
        super().__init__()
        self.alpha, self.levels = alpha, levels
        self.net = nn.Conv2d(1, 2, kernel_size=3, padding=1)

    def noise_flow(self, x: torch.Tensor, u: torch.Tensor) -> Pair:
        """The learned noise and the log-det of ``u -> noise``, per sample."""
        s, t = self.net(x / (self.levels - 1) * 2 - 1).chunk(2, dim=1)
        s = torch.tanh(s)
        logit = torch.log(u) - torch.log1p(-u)
        h = (logit + t) * torch.exp(s)
        log_det = -(torch.log(u) + torch.log1p(-u)) + s + F.logsigmoid(h) + F.logsigmoid(-h)
        return torch.sigmoid(h), log_det.flatten(1).sum(dim=1)

    def forward(
        self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False, noise: torch.Tensor | None = None
    ) -> Pair:
        dims = z[0].numel()
        if not reverse:
            x = z.to(ldj.dtype)
            u, log_det = self.noise_flow(x, torch.rand_like(x) if noise is None else noise.to(x))
            y = (x + u) / self.levels * (1 - self.alpha) + self.alpha / 2
            log_det = log_det - dims * math.log(self.levels) + dims * math.log(1 - self.alpha)
            log_det = log_det - (torch.log(y) + torch.log1p(-y)).flatten(1).sum(dim=1)
            return torch.log(y) - torch.log1p(-y), ldj + log_det
        y = torch.sigmoid(z)
        v = (y - self.alpha / 2) / (1 - self.alpha)
        log_det = dims * math.log(1 - self.alpha) - (torch.log(y) + torch.log1p(-y)).flatten(1).sum(dim=1)
        pixels = torch.floor(v * self.levels).clamp(0, self.levels - 1).to(torch.int32)
        return pixels, ldj - log_det + dims * math.log(self.levels)


variant("layer", "a variational dequantization with a conditional affine noise flow", check=check_dequantization)(
    MyVariationalDequantization
)


@fault(
    "layer", "leaves the scaling term -D log 256 out of the log-det", r"log ?256|scaling", check=check_dequantization
)
class DequantizationNoScaling(MyVariationalDequantization):
    def forward(
        self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False, noise: torch.Tensor | None = None
    ) -> Pair:
        if reverse:
            return super().forward(z, ldj, reverse=True)
        dims = z[0].numel()
        x = z.to(ldj.dtype)
        u, log_det = self.noise_flow(x, torch.rand_like(x) if noise is None else noise.to(x))
        y = (x + u) / self.levels * (1 - self.alpha) + self.alpha / 2
        log_det = log_det + dims * math.log(1 - self.alpha) - (torch.log(y) + torch.log1p(-y)).flatten(1).sum(dim=1)
        return torch.log(y) - torch.log1p(-y), ldj + log_det


@fault("layer", "adds D log 256 where it must subtract it", r"log ?256|scaling|sign", check=check_dequantization)
class DequantizationScalingSign(MyVariationalDequantization):
    def forward(
        self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False, noise: torch.Tensor | None = None
    ) -> Pair:
        if reverse:
            return super().forward(z, ldj, reverse=True)
        dims = z[0].numel()
        x = z.to(ldj.dtype)
        u, log_det = self.noise_flow(x, torch.rand_like(x) if noise is None else noise.to(x))
        y = (x + u) / self.levels * (1 - self.alpha) + self.alpha / 2
        log_det = log_det + dims * math.log(self.levels) + dims * math.log(1 - self.alpha)
        log_det = log_det - (torch.log(y) + torch.log1p(-y)).flatten(1).sum(dim=1)
        return torch.log(y) - torch.log1p(-y), ldj + log_det


@fault(
    "layer",
    "draws its own noise with torch.rand_like, ignoring noise=",
    r"noise|torch\.rand|random",
    check=check_dequantization,
)
class DequantizationIgnoresNoise(MyVariationalDequantization):
    def forward(
        self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False, noise: torch.Tensor | None = None
    ) -> Pair:
        if reverse:
            return super().forward(z, ldj, reverse=True)
        x = z.to(ldj.dtype)
        return super().forward(z, ldj, noise=torch.rand_like(x))


@fault("layer", "reverse never rounds down to integers", r"floor|integer|int32|round", check=check_dequantization)
class DequantizationNoFloor(MyVariationalDequantization):
    def forward(
        self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False, noise: torch.Tensor | None = None
    ) -> Pair:
        if not reverse:
            return super().forward(z, ldj, noise=noise)
        y = torch.sigmoid(z)
        v = (y - self.alpha / 2) / (1 - self.alpha)
        dims = z[0].numel()
        log_det = dims * math.log(1 - self.alpha) - (torch.log(y) + torch.log1p(-y)).flatten(1).sum(dim=1)
        return v * self.levels, ldj - log_det + dims * math.log(self.levels)


@fault(
    "layer",
    "the noise flow forgets the log-det of its closing sigmoid",
    r"sigmoid|changes with the input|data-dependent",
    check=check_dequantization,
)
class DequantizationNoSigmoidTerm(MyVariationalDequantization):
    def noise_flow(self, x: torch.Tensor, u: torch.Tensor) -> Pair:
        s, t = self.net(x / (self.levels - 1) * 2 - 1).chunk(2, dim=1)
        s = torch.tanh(s)
        logit = torch.log(u) - torch.log1p(-u)
        h = (logit + t) * torch.exp(s)
        return torch.sigmoid(h), (-(torch.log(u) + torch.log1p(-u)) + s).flatten(1).sum(dim=1)
