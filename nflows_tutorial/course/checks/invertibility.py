"""The properties that make a layer a flow: reverse undoes forward exactly, and the log-det is the right one.

Both name the fault from the numbers: a reverse that repeats forward or uses the other mask, integers that come
back rounded or past the last level, a log-det off by a factor, a constant, the kept values or a split's prior.
"""

from __future__ import annotations

import inspect
import math

import torch
from torch import nn

from ...flows.prior import standard_normal_log_prob
from .calls import Layer, call_layer
from .diagnosis import DATA_DEPENDENT, LEVELS, close, is_permutation, log_det_fault, round_trip_ldj_fault, side_by_side
from .properties import Probe, Verdict, mask_of
from .values import NEGLIGIBLE, autograd_log_det

__all__ = ["inverse", "log_det"]

# Samples of the example batch whose log-determinant is compared with autograd's.
AUTOGRAD_SAMPLES = 2


def _named_reverse_mistake(p: Probe, z_back: torch.Tensor) -> str:
    for description, wrong in p.mistakes.items():
        with torch.no_grad():
            z_forward = wrong(p.z, p.zero, **p.kwargs)[0]
            z_wrong = wrong(p.z_out, p.ldj_out, reverse=True)[0]
        if z_forward.shape != p.z_out.shape or not close(z_forward, p.z_out, p.tol):
            continue  # a mistake in forward: the student's forward is not that one
        if z_wrong.shape == z_back.shape and close(z_back, z_wrong, p.tol) and not close(z_wrong, p.z, p.tol):
            return description
    return ""


def _reverse_fault(p: Probe, z_back: torch.Tensor) -> str:
    named = _named_reverse_mistake(p, z_back)
    if named:
        return named
    if close(z_back, p.z_out, p.tol) and not close(p.z_out, p.z, p.tol):
        return "reverse returns its input unchanged: the reverse branch must undo forward"
    forward_again = p.run(p.z_out, p.zero)[0] if p.z_out.shape == p.z.shape else None
    if forward_again is not None and close(z_back, forward_again, p.tol):
        return "reverse applies forward again (adds where it must subtract, multiplies where it must divide)"
    mask = mask_of(p)
    if mask is not None and not close(z_back[mask], p.z[mask], p.tol):
        return "reverse changes the values forward keeps (mask == 1): reverse must use the same mask as forward"
    if is_permutation(z_back, p.z, p.tol):
        return "reverse puts the right values in the wrong positions" + side_by_side(z_back, p.z)
    if p.run(z_back, p.zero)[0].shape == p.z_out.shape and close(p.run(z_back, p.zero)[0], p.z_out, p.tol):
        return "forward is not invertible: two different inputs give the same output" + side_by_side(z_back, p.z)
    if mask is not None:
        return (
            "reverse does not undo the transformed values (mask == 0), though it keeps the others: compute s and t "
            "in reverse exactly as forward does, from z * mask (the kept values, which forward left unchanged), then "
            "undo forward's steps in the opposite order (z' = (z + t)·e^s is undone by z = z'·e^(-s) - t)"
        )
    return "reverse does not undo forward: apply the inverse steps in the opposite order" + side_by_side(z_back, p.z)


def _integer_inverse(p: Probe, z_back: torch.Tensor, ldj_back: torch.Tensor) -> Verdict:
    if z_back.is_floating_point():
        return Verdict(
            "inverse",
            False,
            f"reverse returns {z_back.dtype}",
            "reverse must round down to integers: torch.floor(...).to(torch.int32)",
        )
    alpha, levels = getattr(p.layer, "alpha", 1e-5), getattr(p.layer, "levels", 256)
    # A learned noise may land a hair outside [0, 1) (the alpha sliver VariationalDequantization documents);
    # such a value quantizes to the neighbouring integer, and is no fault of the reverse.
    u = (torch.sigmoid(p.z_out) - alpha / 2) / (1 - alpha) * levels - p.z.to(torch.float64)
    outside = (u < 0) | (u >= 1)
    differ = z_back.to(torch.int64) != p.z.to(torch.int64)
    wrong = int((differ & ~outside).sum())
    detail = f"{wrong} of {p.z.numel()} pixels come back different"
    if int((differ & outside).sum()):
        detail += f" ({int((differ & outside).sum())} more whose noise lies outside [0, 1) by the α sliver)"
    if wrong:
        rounded = (p.z.to(torch.float64) + u).round().clamp(0, levels - 1)
        if torch.equal(z_back.to(torch.float64), rounded):
            cause = "reverse rounds to the nearest integer; a pixel x covers [x, x + 1), so round down: torch.floor"
        else:
            cause = "reverse must give back the integers: sigmoid, undo the α step, times L, round down, clip to 0..L-1"
        return Verdict("inverse", False, detail, cause)
    cause = _integer_ends_fault(p, LEVELS) or _integer_ldj_fault(p, ldj_back)
    return Verdict("inverse", not cause, detail, cause, short="exact integers")


def _integer_ends_fault(p: Probe, levels: int) -> str:
    """The last pixel value with noise near 1 must stay finite, and latents far in the tails must quantize to
    the first and last level, not past them (``levels``: those of 8-bit images, whatever the layer says)."""
    ends = torch.tensor([40.0, -40.0], dtype=torch.float64).view(2, *([1] * (p.z.dim() - 1))).expand(2, *p.z.shape[1:])
    bottom = torch.zeros((1, *p.z.shape[1:]), dtype=p.z.dtype)
    latent = p.run(bottom, p.zero[:1], noise=torch.zeros(bottom.shape, dtype=torch.float64))[0]
    if not torch.isfinite(latent).all():
        return (
            f"for the pixel 0 with noise 0 (torch.rand can draw it) your forward gives {latent.flatten()[0].item()}: "
            f"the α step, y = (1 - α) v + α/2, keeps the logit finite at the edges of [0, 1)"
        )
    top = torch.full((1, *p.z.shape[1:]), levels - 1, dtype=p.z.dtype)
    latent = p.run(top, p.zero[:1], noise=torch.full(top.shape, 0.999, dtype=torch.float64))[0]
    if not torch.isfinite(latent).all():
        return (
            f"for the pixel {levels - 1} with noise 0.999 your forward gives {latent.flatten()[0].item()}: (x + u) / L "
            f"must stay below 1, so divide by the number of levels, L = {levels}"
        )
    pixels = p.run(ends.contiguous(), p.zero[:2], reverse=True)[0]
    if int(pixels.max()) <= levels - 1 and int(pixels.min()) >= 0:
        return ""
    return (
        f"reverse turns latents of +40 and -40 into pixels {int(pixels.max())} and {int(pixels.min())}, outside "
        f"0..{levels - 1}: clip the result, .clamp(0, {levels - 1})"
    )


def _integer_ldj_fault(p: Probe, ldj_back: torch.Tensor) -> str:
    if close(ldj_back, p.ldj_out, p.tol * (1 + p.ldj_out.abs().max().item())):
        return "reverse returns ldj unchanged: it must subtract the log-det of the steps it undoes (sigmoid, scaling)"
    return ""


def inverse(p: Probe) -> Verdict:
    extra = {"z_split": p.dropped} if p.dropped is not None and "z_split" in _parameters(p.layer) else {}
    with torch.no_grad():
        outcome = call_layer(p.layer, p.z_out, p.ldj_out, reverse=True, seconds=p.seconds, **extra)
    if outcome.out is None:
        return Verdict("inverse", False, outcome.problem, outcome.cause)
    z_back, ldj_back = outcome.out
    if p.integer:
        return _integer_inverse(p, z_back, ldj_back)
    if z_back.dtype != p.z.dtype:
        cause = (
            f"reverse returns {z_back.dtype} values for {p.z.dtype} latents: keep the input's dtype (no .float(); "
            f"create every tensor in z's dtype), or the round trip loses precision"
        )
        return Verdict("inverse", False, f"reverse gave {z_back.dtype}", cause)
    if z_back.shape != p.z.shape:
        detail = f"reverse gave shape {list(z_back.shape)}, the input was {list(p.z.shape)}"
        return Verdict("inverse", False, detail, "reverse must undo every reshape of forward, in the opposite order")
    if p.dropped is not None and not extra:
        fault = _drawn_split_ldj_fault(p, z_back, ldj_back)
        if fault:
            return Verdict("inverse", False, "reverse's ldj for the values it draws", fault)
        z_back = torch.cat([z_back[:, : p.z_out.shape[1]], p.dropped], dim=1)
        ldj_back = p.zero
    error = (z_back - p.z).abs().max().item()
    detail = f"max |reverse(forward(z)) - z| = {error:.2e}, ldj after the round trip {ldj_back.abs().max().item():.2e}"
    fault = "" if close(z_back, p.z, p.tol) else _reverse_fault(p, z_back)
    fault = fault or round_trip_ldj_fault(p.ldj_out, ldj_back, p.tol)
    return Verdict("inverse", not fault, detail, fault, short=f"round-trip error {_small(error)}")


def _drawn_split_ldj_fault(p: Probe, z_back: torch.Tensor, ldj_back: torch.Tensor) -> str:
    """A split whose reverse draws the set-aside values itself must subtract their log N from ldj."""
    assert p.dropped is not None
    c = p.z_out.shape[1]
    drawn = z_back[:, c:] if z_back[:, :c].shape == p.z_out.shape and close(z_back[:, :c], p.z_out, p.tol) else None
    if drawn is None or drawn.shape != p.dropped.shape:
        return ""
    if close(ldj_back, p.ldj_out - standard_normal_log_prob(drawn), p.tol * (1 + p.ldj_out.abs().max().item())):
        return ""
    if close(ldj_back, p.ldj_out, p.tol):
        return "reverse returns ldj unchanged: it must subtract log N of the values it draws for the set-aside half"
    return ""  # another term, which the log-det property measures in forward


def _small(error: float) -> str:
    """An error as it reads the same on every machine: float64 round-off differs between CPUs."""
    return "below 1e-10" if error < NEGLIGIBLE else f"{error:.1e}"


def _parameters(layer: Layer) -> set[str]:
    target = layer.forward if isinstance(layer, nn.Module) else layer
    try:
        return set(inspect.signature(target).parameters)
    except (TypeError, ValueError):
        return set()


def log_det(p: Probe) -> Verdict:
    count = min(AUTOGRAD_SAMPLES, p.z.shape[0])
    ours = p.ldj_out[:count]
    if p.dropped is not None:
        theirs, against = standard_normal_log_prob(p.dropped[:count]), "log N(set-aside values)"
    else:
        theirs, against = torch.stack([_autograd(p, i) for i in range(count)]), "autograd"
    detail = f"layer {', '.join(f'{v:.6f}' for v in ours.tolist())} | {against} {', '.join(f'{v:.6f}' for v in theirs.tolist())}"
    fault = log_det_fault(ours, theirs, p.tol, p.z[0].numel(), p.positions, channels=p.channels)
    if fault and p.dropped is not None:
        fault = _split_log_det_fault(p, ours, theirs) or fault
    elif fault.startswith(DATA_DEPENDENT) and p.integer:
        fault = _noise_flow_log_det_fault(p, ours) or fault
    elif fault.startswith(DATA_DEPENDENT) and (mask := mask_of(p)) is not None:
        fault = _masked_log_det_fault(p, mask, ours, theirs)
    error = (ours - theirs).abs().max().item()
    return Verdict("log-det", not fault, detail, fault, short=f"difference from {against} {_small(error)}")


def _split_log_det_fault(p: Probe, ours: torch.Tensor, theirs: torch.Tensor) -> str:
    """A split's term against log N of the values it sets aside: missing, averaged, or of the kept values."""
    assert p.dropped is not None
    count, aside = len(ours), p.dropped[0].numel()
    if close(ours, torch.zeros_like(ours), p.tol):
        return (
            "ldj is returned unchanged: a split must add log N(z_split), the standard normal log-density of the "
            "values it sets aside, summed per sample"
        )
    if close(ours * aside, theirs, p.tol):
        return f"your term is log N averaged over the {aside} values set aside: sum it over them (one sum per sample)"
    if close(ours, standard_normal_log_prob(p.z_out[:count]), p.tol):
        return "your term is log N of the values you keep; it belongs to the values set aside (z_split)"
    return ""


def _noise_flow_log_det_fault(p: Probe, ours: torch.Tensor) -> str:
    """A variational dequantization whose log-det holds only the terms of the plain dequantization it ends in."""
    alpha = getattr(p.layer, "alpha", 1e-5)
    y = torch.sigmoid(p.z_out[: len(ours)])
    values = y[0].numel()
    plain = values * (math.log(1 - alpha) - math.log(LEVELS)) - (torch.log(y) + torch.log1p(-y)).flatten(1).sum(dim=1)
    if not close(ours, plain, p.tol * 100):
        return ""
    return (
        "your log-det holds only the terms of the logit, the α step and the scaling by 1/L: the noise flow's own "
        "log-det (its couplings and its closing sigmoid, which make -log q(u|x)) is missing"
    )


def _masked_log_det_fault(p: Probe, mask: torch.Tensor, ours: torch.Tensor, theirs: torch.Tensor) -> str:
    """The log-det of a masked layer (``mask``: its kept values) against its Jacobian's diagonal: the scale summed,
    or the usual slips listed."""
    count, free = len(ours), ~mask[: len(ours)]
    # The kept property has shown that a transformed value depends on no other transformed value, so one
    # gradient of their sum gives the Jacobian's diagonal at every transformed position.
    z = p.z[:count].clone().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(p.layer(z, p.zero[:count])[0][free].sum(), z)
    scale = (grad.abs() * free).flatten(1).sum(dim=1)
    free = free.flatten(1)
    if close(ours, scale, p.tol) or close(ours, scale + (~free).sum(dim=1), p.tol):
        return "your log-det sums the scale e^s; the log-det of z' = (z + t)·e^s sums its log, s"
    gap = ", ".join(f"{v:+.4f}" for v in (ours - theirs).tolist())
    return (
        f"your log-det is off by {gap} (an amount that changes with the input): in a masked layer only the "
        f"transformed values (mask == 0) count: sum s·(1 - mask), not s over every value; sum the s that scales z "
        f"(after any bound such as tanh), and s itself, not e^s"
    )


def _autograd(p: Probe, i: int) -> torch.Tensor:
    zero = p.zero[:1]
    if p.integer:  # a dequantization: the Jacobian of the noise u -> z, the image fixed
        x = p.z[i : i + 1]
        return autograd_log_det(lambda u: p.layer(x, zero, noise=u)[0], p.kwargs["noise"][i : i + 1]).detach()
    return autograd_log_det(lambda v: p.layer(v, zero)[0], p.z[i : i + 1]).detach()
