"""The checks of notebook 1's exercises: bits per dimension, the logit layer, quantization, log-mean-exp."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ...flows.dequantization import Dequantization
from ...flows.model import bits_per_dim
from .exercise import Steps, refuse_calls, seeded

__all__ = ["check_bits_per_dim", "check_logit_layer", "check_quantize", "check_log_mean_exp"]

LN2 = math.log(2)


def _is_package_bpd(value: object) -> bool:
    return value is bits_per_dim


def _is_package_dequantization(value: object) -> bool:
    """The package's dequantization layer: the class (or a subclass) or an instance, such as a notebook's ``layer``."""
    return isinstance(value, Dequantization) or (isinstance(value, type) and issubclass(value, Dequantization))


def check_bits_per_dim(my_bits_per_dim: Callable[[torch.Tensor, int], torch.Tensor], seed: int = 0) -> None:
    """Exercise 1: ``my_bits_per_dim(log_px, dims)`` against ``-log_px / (dims ln 2)`` for two image sizes."""
    steps = Steps(1)
    refuse_calls(steps, my_bits_per_dim, _is_package_bpd, frozenset(), "write the conversion yourself")
    log_px = -(torch.rand(4, generator=seeded(seed), dtype=torch.float64) * 3000 + 100)
    log_px[-1] = 250.0  # a density above 1: a positive log-likelihood, whose bits per dimension are negative
    for dims in (784, 3 * 32 * 32):
        yours = steps.guarded("my_bits_per_dim", my_bits_per_dim, log_px, dims)
        right = -log_px / (dims * LN2)
        mistakes = {
            "the sign is flipped: bits per dimension is the NEGATIVE log-likelihood in bits, -log_px / (dims ln 2)": (
                -right
            ),
            "your result is in nats per dimension: divide by ln 2 as well": right * LN2,
            "you multiply by ln 2 where you must divide by it": right * LN2**2,
            "your result uses log base 10; bits are base 2: divide the nats by ln 2": (
                right * math.log(10),
                right * LN2 / math.log(10),
            ),
            "your result is never negative: abs() drops the sign; a density above 1 has a positive log-likelihood "
            "(here 250), whose bits per dimension are negative: write -log_px / (dims ln 2)": right.abs(),
            "your result is per image: divide by the number of dimensions as well": right * dims,
            f"your result uses the notebook's D = 784 instead of the argument dims (here {dims})": (
                right * dims / 784 if dims != 784 else torch.full_like(right, math.nan)
            ),
            "you return one number for the whole batch: keep one value per image (no mean or sum over the batch)": (
                right.mean()
            ),
        }
        factors = {"dims": dims, "dims / the batch size": dims / len(log_px), "dims · ln 2": dims * LN2}
        steps.expect(f"{len(log_px)} log-likelihoods, dims={dims}", yours, right, 1e-6, mistakes, factors)
    uniform = torch.tensor([-784 * math.log(256)], dtype=torch.float64)
    yours = steps.guarded("my_bits_per_dim", my_bits_per_dim, uniform, 784)
    steps.expect("the uniform guess is 8 bits per pixel", yours, torch.tensor([8.0]), 1e-6, {})
    steps.done()


class _PackageLogit(torch.nn.Module):
    """The package's logit (forward) and sigmoid (reverse) as one layer, or one of the usual slips in writing it."""

    def __init__(self, alpha: float, slip: str = "") -> None:
        super().__init__()
        self.deq = Dequantization(alpha=0.0 if slip == "no alpha step" else alpha)
        self.alpha, self.slip = alpha, slip

    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        if reverse and self.slip == "alpha kept in reverse":
            return torch.sigmoid(z), ldj
        z_in, y = z, z * (1 - self.alpha) + self.alpha / 2 if not reverse else None
        z, ldj = self.deq.sigmoid(z, ldj) if reverse else self.deq.logit(z, ldj)
        if self.slip == "no alpha term":  # forward adds D log(1 - alpha), reverse subtracts it: leave it out
            ldj = ldj + (1 if reverse else -1) * z[0].numel() * math.log(1 - self.alpha)
        if y is not None:
            ldj = ldj + self._forward_slip(y, z_in)
        return z, ldj

    def _forward_slip(self, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """What the slip adds to the right log-det of forward, for ``y``, the input ``v`` after the alpha step."""
        terms = {
            "half derivative": lambda: torch.log1p(-y),  # -sum(log y) only, without -sum(log(1 - y))
            "logit term sign": lambda: 2 * (torch.log(y) + torch.log1p(-y)),
            "logit term of v": lambda: torch.log(y) + torch.log1p(-y) - torch.log(v) - torch.log1p(-v),
        }
        return terms[self.slip]().flatten(1).sum(dim=1) if self.slip in terms else torch.zeros_like(y[:, 0, 0, 0])


def check_logit_layer(
    my_logit_layer: Callable[..., tuple[torch.Tensor, torch.Tensor]], alpha: float = 1e-5, seed: int = 0
) -> None:
    """Exercise 2: the alpha step and logit as a layer, against the package's ``logit``/``sigmoid``."""
    steps = Steps(2)
    refuse_calls(
        steps,
        my_logit_layer,
        _is_package_dequantization,
        frozenset(),
        "write the α step and the logit with torch operations",
    )
    edges = torch.tensor([[[[0.0, 0.5, 1 - 1e-12]]]], dtype=torch.float64)
    out = steps.guarded("my_logit_layer", my_logit_layer, edges, torch.zeros(1, dtype=torch.float64))[0]
    if not torch.isfinite(out).all():
        steps.fail(
            "values at the edges of [0, 1)",
            f"your logit is {out.flatten().tolist()} at v = 0, 0.5 and 1 - 1e-12: the α step is missing; it scales "
            f"v into [α/2, 1 - α/2] first, y = (1 - α) v + α/2, so that the logit stays finite",
        )
    steps.ok("finite at the edges of [0, 1)")
    mistakes = {
        "forward skips the α step: y = (1 - α) v + α/2 comes before the logit": _PackageLogit(alpha, "no alpha step"),
        "the α step's log-det term D·log(1 - α) is missing": _PackageLogit(alpha, "no alpha term"),
        "the logit's log-det is -Σ(log y + log(1 - y)): the term log(1 - y) is missing": (
            _PackageLogit(alpha, "half derivative")
        ),
        "reverse applies the sigmoid but does not undo the α step after it: v = (y - α/2) / (1 - α)": (
            _PackageLogit(alpha, "alpha kept in reverse")
        ),
        "the sign of the logit's term is flipped: its log-det is -Σ(log y + log(1 - y)), negative of the sum": (
            _PackageLogit(alpha, "logit term sign")
        ),
        "the logit's log-det term uses v; the logit is taken of y = (1 - α) v + α/2, so it is -Σ(log y + log(1 - y))": (
            _PackageLogit(alpha, "logit term of v")
        ),
    }
    example = torch.rand(4, 1, 3, 3, generator=seeded(seed), dtype=torch.float64) * 0.98 + 0.01
    steps.layer("the layer contract", my_logit_layer, example, reference=_PackageLogit(alpha), mistakes=mistakes)
    steps.done()


def check_quantize(my_quantize: Callable[[torch.Tensor], torch.Tensor], seed: int = 0) -> None:
    """Exercise 3: logits from the package's dequantization come back to exactly the integers they came from."""
    steps = Steps(3)
    refuse_calls(
        steps,
        my_quantize,
        _is_package_dequantization,
        frozenset(),
        "write the sigmoid, the α step's inverse, the scaling and the rounding yourself",
    )
    gen = seeded(seed)
    x = torch.randint(0, 256, (8, 1, 8, 8), generator=gen, dtype=torch.int32)
    x[0, 0, 0, :2] = torch.tensor([0, 255], dtype=torch.int32)
    u = torch.rand(x.shape, generator=gen, dtype=torch.float64)
    u[0, 0, 1, :4] = torch.tensor([1e-9, 1 - 1e-9, 0.5, 1e-6], dtype=torch.float64)  # near the edges of a cell
    deq = Dequantization()
    logits = deq(x, torch.zeros(len(x), dtype=torch.float64), noise=u)[0]
    yours = steps.guarded("my_quantize", my_quantize, logits)
    if not isinstance(yours, torch.Tensor) or yours.dtype != torch.int32:
        got = yours.dtype if isinstance(yours, torch.Tensor) else type(yours).__name__
        steps.fail("integer pixels", f"my_quantize returns {got}; pixels are integers: convert with .to(torch.int32)")
    v = (torch.sigmoid(logits) - 0.5e-5) / (1 - 1e-5)
    mistakes = {
        "round() rounds half of the pixels up; use torch.floor to round down": torch.round(v * 256).clamp(0, 255),
        "the α step is not undone: after the sigmoid compute (y - α/2) / (1 - α)": torch.floor(
            torch.sigmoid(logits) * 256
        ),
        "the values are not multiplied by L = 256 before rounding down": torch.floor(v).clamp(0, 255),
        "you multiply by 255; there are L = 256 levels, each a cell of width 1/256: multiply by 256": (
            torch.floor(v * 255).clamp(0, 255)
        ),
        "the α step is only half undone: (y - α/2) must also be divided by (1 - α)": (
            torch.floor((torch.sigmoid(logits) - 0.5e-5) * 256).clamp(0, 255)
        ),
        "pixels near the edge of their cell come back one level off in float32: compute in the logits' dtype, "
        "float64 here (no .float())": torch.floor(
            ((torch.sigmoid(logits.float()) - 0.5e-5) / (1 - 1e-5) * 256).clamp(0, 255)
        ),
    }
    steps.expect("8 images of 8x8 back to integers", yours, x, 0, mistakes)
    extreme = torch.tensor([-40.0, 40.0], dtype=torch.float64)
    clip = {
        "logits of ±40 give values outside 0..255: clip the result (.clamp(0, 255))": (
            torch.tensor([-1, 256]),
            torch.tensor([0, 256]),
            torch.tensor([-1, 255]),
        )
    }
    steps.expect(
        "extreme logits land on 0 and 255",
        steps.guarded("my_quantize", my_quantize, extreme),
        torch.tensor([0, 255]),
        0,
        clip,
    )
    steps.done()


def check_log_mean_exp(my_log_mean_exp: Callable[[torch.Tensor], torch.Tensor], seed: int = 0) -> None:
    """Exercise 4: ``log(mean(exp(log_p)))`` over dimension 0, on values where exp underflows or overflows."""
    steps = Steps(4)
    cases = {
        "8 draws for 5 images": torch.randn(8, 5, generator=seeded(seed), dtype=torch.float64) * 3,
        "image-sized log-likelihoods": torch.tensor([[-700.0, -2000.0], [-705.0, -2100.0]], dtype=torch.float64),
        "large log-likelihoods": torch.tensor([[800.0, 1000.0], [805.0, 1010.0], [790.0, 999.0]], dtype=torch.float64),
        "one draw": torch.tensor([[-3.0, -900.0]], dtype=torch.float64),
    }
    for label, log_p in cases.items():
        yours = steps.guarded("my_log_mean_exp", my_log_mean_exp, log_p.clone())
        m = log_p.shape[0]
        right = torch.logsumexp(log_p, dim=0) - math.log(m)
        if isinstance(yours, torch.Tensor) and yours.shape == right.shape and not torch.isfinite(yours).all():
            steps.fail(
                label,
                f"your result is {yours.tolist()}, the right one {[round(v, 4) for v in right.tolist()]}: exp under- or "
                f"overflowed; shift each image's draws by their own maximum (log_p.max(dim=0)), not by one number for "
                f"the whole batch, and add it back after the log",
            )
        mistakes = {
            "log-sum-exp without the mean: subtract log M (M draws) to average": torch.logsumexp(log_p, dim=0),
            "you average the logs (mean of log p); average the probabilities: log of the mean of exp": log_p.mean(0),
            "you reduce over dimension 1 (the images); the draws are dimension 0": (
                torch.logsumexp(log_p, dim=1) - math.log(log_p.shape[1])
            ),
            "keepdim=True keeps dimension 0: return one value per image, shape [images]": right.unsqueeze(0),
            "the maximum is not added back: log mean exp(x) = max + log mean exp(x - max)": right - log_p.max(0).values,
            "you subtract M, the number of draws; the mean divides by M, which in log space subtracts log M": (
                torch.logsumexp(log_p, dim=0) - m
            ),
            "you divide the log-sum-exp by M; the mean divides inside the log, which in log space subtracts log M": (
                torch.logsumexp(log_p, dim=0) / m
            ),
            "M is the number of draws, dimension 0 of log_p (log_p.shape[0]), not the number of images": (
                torch.logsumexp(log_p, dim=0) - math.log(log_p.shape[1])
            ),
        }
        steps.expect(label, yours, right, 1e-9, mistakes)
    steps.done()
