"""The checks of notebook 3's exercises: importance-sampled bpd, interpolation, the 1x1 convolution, Householder."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ...analysis.sampling import interpolate
from ...flows.model import ImageFlow
from ...flows.prior import standard_normal_log_prob
from .exercise import Steps, refuse_calls, seeded

__all__ = ["check_importance_bpd", "check_interpolate", "check_invertible_conv", "check_householder"]


def _draws(
    model: ImageFlow, imgs: torch.Tensor, m: int, seed: int, repeated: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """``[M, batch]`` log-determinants and prior log-densities of single draws, with the noise a student's loop
    (or one repeated batch) draws."""
    torch.manual_seed(seed)
    with torch.no_grad():
        if repeated:
            z, ldj = model.encode(imgs.repeat(m, *([1] * (imgs.dim() - 1))))
            return ldj.view(m, -1).cpu().double(), standard_normal_log_prob(z).view(m, -1).cpu().double()
        pairs = [model.encode(imgs) for _ in range(m)]
    ldj = torch.stack([ldj for _, ldj in pairs]).cpu().double()
    return ldj, torch.stack([standard_normal_log_prob(z) for z, _ in pairs]).cpu().double()


def _importance_mistakes(
    ldj: torch.Tensor,
    prior: torch.Tensor,
    imgs: torch.Tensor,
    estimate: Callable[[torch.Tensor], torch.Tensor],
    to_bpd: float,
) -> dict[str, torch.Tensor | tuple[torch.Tensor, ...]]:
    """The usual slips of exercise 9, each as the bpd it gives on the draws ``ldj + prior`` (M x images)."""
    log_p = ldj + prior
    right, m = estimate(log_p), log_p.shape[0]
    return {
        "you average the bpd of the M draws (the mean outside the log); average the likelihoods: log-mean-exp of "
        "the M log-likelihoods, then convert": -log_p.mean(0) * to_bpd,
        "log-sum-exp without the mean: subtract log M": -torch.logsumexp(log_p, 0) * to_bpd,
        "your M draws are all the same draw: model.encode draws fresh noise on each call, so call it once per "
        "draw": estimate(log_p[:1].expand_as(log_p)),
        "the prior's log-density is missing: log p(x + u) = log N(z) + ldj": estimate(ldj),
        "the log-determinant is missing: log p(x + u) = log N(z) + ldj": estimate(prior),
        "your result is in nats per dimension: multiply by log2(e) (divide by ln 2)": right * math.log(2),
        "the sign is flipped: bpd is the negative log-likelihood in bits": -right,
        "you return one number for the batch: keep one bpd per image": right.mean(),
        "you add log M; the mean divides by M, which in log space subtracts log M": (
            -(torch.logsumexp(log_p, 0) + math.log(m)) * to_bpd
        ),
        "the prior's log-density is subtracted: log p(x + u) = log N(z) + ldj": estimate(ldj - prior),
        "the prior's log-density is averaged over the values; it is their sum, one number per image": estimate(
            ldj + prior / imgs[0].numel()
        ),
        "the log-sum-exp runs over dimension 1 (the images); the M draws are dimension 0": (
            -(torch.logsumexp(log_p, 1) - math.log(log_p.shape[1])) * to_bpd,
            -(torch.logsumexp(log_p, 1) - math.log(m)) * to_bpd,
        ),
    }


def check_importance_bpd(
    my_importance_bpd: Callable[[ImageFlow, torch.Tensor, int], torch.Tensor],
    model: ImageFlow,
    imgs: torch.Tensor,
    seed: int = 0,
) -> None:
    """Exercise 9: bpd from ``M`` draws averaged inside the log, with the noise of the student's own draws."""
    steps = Steps(9)
    refuse_calls(
        steps,
        my_importance_bpd,
        lambda v: False,
        frozenset({"log_likelihood", "bits_per_dim"}),
        "build the estimate from model.encode and standard_normal_log_prob",
    )
    to_bpd = math.log2(math.e) / imgs[0].numel()
    for m in (1, 8):
        torch.manual_seed(seed)
        with torch.no_grad():
            yours = steps.guarded("my_importance_bpd", my_importance_bpd, model, imgs, m)
        mine = torch.as_tensor(yours).detach().cpu().double()

        def estimate(terms: torch.Tensor) -> torch.Tensor:
            return -(torch.logsumexp(terms, 0) - math.log(m)) * to_bpd  # noqa: B023

        def distance(log_p: torch.Tensor) -> float:
            bpd = estimate(log_p)
            return (bpd - mine).abs().max().item() if bpd.shape == mine.shape else math.inf  # noqa: B023

        # The check redraws the student's noise: one encode per draw, or else one encode of the batch repeated M times.
        ldj, prior = _draws(model, imgs, m, seed, repeated=False)
        if m > 1 and distance(ldj + prior) > 1e-5:
            ldj, prior = min(
                _draws(model, imgs, m, seed, repeated=True), (ldj, prior), key=lambda d: distance(d[0] + d[1])
            )
        log_p = ldj + prior
        right = estimate(log_p)
        mistakes = _importance_mistakes(ldj, prior, imgs, estimate, to_bpd)
        factors = {"the batch size": len(imgs), "M": m, "the values of the whole batch, imgs.numel()": imgs.numel()}
        steps.expect(f"M={m}, the same noise as your draws", mine, right, 1e-5, mistakes, factors)
    steps.done()


def check_interpolate(
    my_interpolate: Callable[[ImageFlow, torch.Tensor, torch.Tensor, int], torch.Tensor],
    model: ImageFlow,
    img1: torch.Tensor,
    img2: torch.Tensor,
    seed: int = 0,
) -> None:
    """Exercise 10: the decoded frames match the package's ``interpolate`` under the same seed."""
    steps = Steps(10)
    steps_n = 6
    torch.manual_seed(seed)
    yours = steps.guarded("my_interpolate", my_interpolate, model, img1, img2, steps_n)
    torch.manual_seed(seed)
    right = interpolate(model, img1, img2, steps_n)
    expected_shape = [steps_n, *img1.shape]
    if not isinstance(yours, torch.Tensor) or list(yours.shape) != expected_shape:
        got = list(yours.shape) if isinstance(yours, torch.Tensor) else type(yours).__name__
        steps.fail("frames", f"your result is {got}; it must hold {steps_n} images: shape {expected_shape}")
    yours, right = yours.cpu().to(torch.int64), right.cpu().to(torch.int64)
    ends = (img1.cpu().to(torch.int64), img2.cpu().to(torch.int64))
    for k in range(1, steps_n - 1):
        for name, end in zip(("img1", "img2"), ends, strict=True):
            if torch.equal(yours[k], end):
                steps.fail(
                    "frames between the ends",
                    f"frame {k} is a copy of {name}: decode the mixed latents (1 - t) z1 + t z2",
                )
    t = torch.linspace(0, 1, steps_n, dtype=torch.float64).view(-1, *([1] * img1.dim()))
    blend = ((1 - t) * ends[0] + t * ends[1]).round().to(torch.int64)
    if (yours[1:-1] - blend[1:-1]).abs().double().mean() < 1:
        steps.fail(
            "frames between the ends",
            "your frames blend the two images' pixels; the exercise mixes their latents: encode both, mix "
            "(1 - t) z1 + t z2, and decode each mixture",
        )
    if (yours[0] - ends[1]).abs().sum() < (yours[0] - ends[0]).abs().sum():
        steps.fail("direction", "your frames run from img2 to img1: t = 0 must give img1")
    for k in range(steps_n):
        off = ((yours[k] - right[k]).abs() > 8).float().mean().item()
        if off > 0.01:
            steps.fail(
                f"frame {k}",
                f"{off:.0%} of frame {k}'s pixels differ by more than 8 levels from the frame the package decodes at "
                f"t = {k}/{steps_n - 1}: the frames must decode (1 - t) z1 + t z2 with t = 0, 1/{steps_n - 1}, ..., 1",
            )
    steps.ok(f"{steps_n} frames, each within 8 grey levels of the package's frame on 99% of its pixels")
    steps.done()


class _Conv1x1(nn.Module):
    """``z' = W z`` at every pixel with a fixed matrix, and ``H W log|det W|``; ``undo`` names what reverse applies."""

    weight: torch.Tensor

    def __init__(
        self, weight: torch.Tensor, undo: str = "inverse", term: str = "logabsdet", fixed_log_det: float | None = None
    ) -> None:
        super().__init__()
        self.register_buffer("weight", weight.detach().clone())
        self.undo, self.term, self.fixed_log_det = undo, term, fixed_log_det

    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        log_det = getattr(torch.linalg.slogdet(self.weight), self.term) * z.shape[2] * z.shape[3]
        if self.fixed_log_det is not None:
            log_det = torch.full_like(ldj, self.fixed_log_det)
        undo = {
            "inverse": torch.linalg.inv,
            "transpose": torch.t,
            "same": lambda w: w,
            "inverse transposed": lambda w: torch.linalg.inv(w).T,
        }[self.undo]
        w = undo(self.weight) if reverse else self.weight
        z = F.conv2d(z, w[:, :, None, None])
        return z, ldj - log_det if reverse else ldj + log_det


def check_invertible_conv(my_invertible_1x1_conv: type[nn.Module], seed: int = 0) -> None:
    """Exercise 11: ``MyInvertible1x1Conv(4)`` with a non-orthogonal weight against ``F.conv2d`` with that weight."""
    steps = Steps(11)
    layer = steps.guarded("MyInvertible1x1Conv(4)", my_invertible_1x1_conv, 4)
    weight = getattr(layer, "weight", None)
    if not isinstance(weight, nn.Parameter) or weight.shape != (4, 4):
        steps.fail("the weight", "keep the statement's self.weight, a 4 x 4 nn.Parameter")
    example = torch.randn(3, 4, 3, 5, generator=seeded(seed + 1))
    with torch.no_grad():
        ldj_before = steps.guarded("your layer", layer, example, torch.zeros(3, dtype=torch.float64))[1].double()
        weight.add_(0.3 * torch.randn(4, 4, generator=seeded(seed)))  # no longer a rotation: log|det W| != 0
    w = weight.detach().double()
    mistakes = {
        "your layer applies Wᵀ at each pixel: z'[i] = Σ_j W[i, j] z[j] uses W itself": _Conv1x1(w.T),
        "reverse applies Wᵀ, which undoes W only when W is orthogonal, and the check's W is not: use "
        "torch.linalg.inv(W)": _Conv1x1(w, undo="transpose"),
        "your log-det uses slogdet's sign (its first output); log|det W| is its second, .logabsdet": (
            _Conv1x1(w, term="sign")
        ),
        "reverse applies W⁻¹ᵀ: the inverse of z' = W z is z = W⁻¹ z', torch.linalg.inv(W) itself": (
            _Conv1x1(w, undo="inverse transposed")
        ),
        "reverse applies W again: it must apply its inverse, torch.linalg.inv(W)": _Conv1x1(w, undo="same"),
        "your log-det stays what it was before the check changed self.weight (computed once, in __init__?): "
        "compute log|det W| from self.weight in forward, since training changes the weight": _Conv1x1(
            w, fixed_log_det=ldj_before[0].item()
        ),
    }
    steps.layer("the layer contract", layer, example, reference=_Conv1x1(w), mistakes=mistakes)
    steps.done()


def _householder_product(
    vectors: torch.Tensor, order: int = 1, factor: float = 2.0, normalise: bool = True, by_length: bool = False
) -> torch.Tensor:
    eye = torch.eye(vectors.shape[1], dtype=vectors.dtype)
    product = eye
    for v in list(vectors)[::order]:
        norm = v.norm() if by_length else v.dot(v) if normalise else 1
        product = product @ (eye - factor * torch.outer(v, v) / norm)
    return product


def check_householder(my_householder: type[nn.Module], seed: int = 0) -> None:
    """Exercise 12: ``matrix()`` against the product of reflections rebuilt from the vectors, then the layer."""
    steps = Steps(12)
    layer = steps.guarded("MyHouseholder(4)", my_householder, 4)
    with torch.no_grad():
        layer.vectors.copy_(torch.randn(layer.vectors.shape, generator=seeded(seed + 100)))
        start = steps.guarded("matrix()", layer.matrix).clone()
        layer.vectors.copy_(torch.randn(layer.vectors.shape, generator=seeded(seed)))
        yours = steps.guarded("matrix()", layer.matrix)
    if torch.equal(start, yours) and not torch.equal(yours, torch.eye(len(yours), dtype=yours.dtype)):
        steps.fail(
            "changed vectors",
            "matrix() gives the same matrix after self.vectors change: build it from self.vectors each time it is "
            "called (not once, in __init__), with the outer product torch.outer(v, v) (on a 1-D v, v @ v.T is the "
            "number vᵀv)",
        )
    v = layer.vectors.detach()
    right = _householder_product(v)
    mistakes = {
        "matrix() returns the identity: multiply the reflections I - 2 v vᵀ / (vᵀ v), one per vector": torch.eye(4),
        "your product runs in the reverse order: H_1 H_2 ... H_k, the first vector's reflection on the left": (
            _householder_product(v, order=-1)
        ),
        "a reflection divides by vᵀ v: I - 2 v vᵀ / (vᵀ v) (without it the matrix is not orthogonal)": (
            _householder_product(v, normalise=False)
        ),
        "a reflection needs the factor 2: I - v vᵀ / (vᵀ v) projects, and a projection cannot be inverted": (
            _householder_product(v, factor=1.0)
        ),
        "a reflection divides by vᵀ v, the squared length; you divide by the length ‖v‖": _householder_product(
            v, by_length=True
        ),
        "you take the columns of self.vectors; each row is one vector v_k (for v in self.vectors)": (
            _householder_product(v.T)
        ),
    }
    steps.expect("matrix() vs the product rebuilt from your vectors", yours, right, 1e-5, mistakes)
    example = torch.randn(3, 4, 3, 3, generator=seeded(seed + 1))
    w = _householder_product(v.double())
    layer_mistakes = {
        "forward applies the transpose of matrix(): forward uses W = matrix(), reverse its transpose": _Conv1x1(w.T),
        "reverse applies matrix() again: it must apply the transpose, the inverse of an orthogonal matrix": (
            _Conv1x1(w, undo="same")
        ),
    }
    steps.layer("the layer contract", layer, example, reference=_Conv1x1(w), mistakes=layer_mistakes)
    steps.done()
