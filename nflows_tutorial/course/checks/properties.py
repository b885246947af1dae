"""The properties of the layer contract, one verdict each, with the fault named when one does not hold."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ...flows.prior import standard_normal_log_prob
from .calls import Layer, call_layer, same
from .diagnosis import close, is_permutation, log_det_fault, output_fault, round_trip_ldj_fault, side_by_side
from .values import NEGLIGIBLE, autograd_log_det

__all__ = ["Probe", "Verdict"]

# Samples of the example batch whose log-determinant is compared with autograd's.
AUTOGRAD_SAMPLES = 2


@dataclass(frozen=True)
class Verdict:
    """The outcome of one property: whether it holds, what was measured, and the fault if it does not."""

    name: str
    passed: bool
    detail: str
    cause: str = ""
    short: str = ""

    def brief(self) -> str:
        """The property's name, with its key number for a pass."""
        return f"{self.name} ({self.short})" if self.short else self.name

    def __str__(self) -> str:
        return f"[{'ok  ' if self.passed else 'FAIL'}] {self.name:<11} {self.detail}"


@dataclass
class Probe:
    """What the checks share: the float64 layer, the example, its forward output, and what is known to be right."""

    layer: Layer
    z: torch.Tensor
    kwargs: dict[str, Any]
    z_out: torch.Tensor
    ldj_out: torch.Tensor
    expected: tuple[torch.Tensor, torch.Tensor] | None = None
    tol: float = 1e-8
    mistakes: dict[str, Any] = field(default_factory=dict)
    dropped: torch.Tensor | None = None  # a split's factored-out values
    seconds: float | None = None  # the time limit of one call

    @property
    def integer(self) -> bool:
        return not self.z.is_floating_point()

    @property
    def zero(self) -> torch.Tensor:
        return torch.zeros(self.z.shape[0], dtype=torch.float64)

    @property
    def channels(self) -> int | None:
        return self.z.shape[1] if self.z.dim() == 4 else None

    @property
    def positions(self) -> int | None:
        return self.z.shape[-2] * self.z.shape[-1] if self.z.dim() == 4 else None

    def run(
        self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False, **extra: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        kwargs = {} if reverse else {**self.kwargs}
        if not reverse and "noise" in kwargs and z.shape[0] != self.z.shape[0]:
            kwargs["noise"] = extra.pop("noise")
        with torch.no_grad():
            return self.layer(z, ldj, reverse=reverse, **kwargs, **extra)


def _ldj_shape_cause(p: Probe) -> str:
    batch, shape = p.z.shape[0], list(p.ldj_out.shape)
    # A keepdim sum, [B, 1, 1, 1], broadcasts against ldj [B] into [B, 1, 1, B]: the batch size twice, ones between.
    keepdim = p.ldj_out.dim() > 1 and [n for n in p.ldj_out.shape if n != 1] == [batch, batch]
    if keepdim:
        return (
            f"ldj has shape {shape}: a sum with keepdim=True kept dimensions of size 1, which broadcast "
            f"against ldj [{batch}]; sum without keepdim, e.g. s.flatten(1).sum(dim=1)"
        )
    if p.ldj_out.dim() > 1:
        return (
            f"ldj has shape {shape}, one value per pixel: a forgotten sum; ldj holds one number per sample, "
            f"shape [{batch}]: sum the per-value terms over every dimension but the batch, s.flatten(1).sum(dim=1)"
        )
    return (
        f"ldj was summed over the batch too (shape {shape}, expected [{batch}]); sum over dimensions 1.. only, "
        f"e.g. s.flatten(1).sum(dim=1), not s.sum()"
    )


def _split_part(p: Probe) -> torch.Tensor | None:
    """The values a split set aside, if its output is the first (or last) channels of its input."""
    c = p.z_out.shape[1] if p.z_out.dim() == p.z.dim() else -1
    if p.z_out.dim() != p.z.dim() or p.z_out.shape[2:] != p.z.shape[2:]:
        return None
    if same(p.z_out, p.z[:, :c]):
        return p.z[:, c:]
    if same(p.z_out, p.z[:, -c:]):
        return p.z[:, :-c]
    return None


def shape(p: Probe) -> Verdict:
    batch = p.z.shape[0]
    detail = f"z {list(p.z.shape)} -> {list(p.z_out.shape)}, ldj {list(p.ldj_out.shape)}"
    if p.ldj_out.shape != (batch,):
        return Verdict("shape", False, detail, _ldj_shape_cause(p))
    if p.z_out.shape[0] != batch:
        return Verdict("shape", False, detail, f"your output has a batch of {p.z_out.shape[0]}, the input {batch}")
    if not p.z_out.is_floating_point():
        return Verdict("shape", False, detail, f"forward returns {p.z_out.dtype} values; a flow's latents are floats")
    kept, given = p.z_out[0].numel(), p.z[0].numel()
    if kept < given and not p.integer:
        p.dropped = _split_part(p)
        if p.dropped is None:
            cause = (
                f"forward keeps {kept} of {given} values per sample but they are not the first (or last) channels "
                f"of its input: a split keeps one half of the channels as they are (z.chunk(2, dim=1))"
            )
            return Verdict("shape", False, detail, cause)
        return Verdict("shape", True, detail + f" (a split: {given - kept} values per sample set aside)")
    cause = "an invertible layer keeps the number of values per sample; a reshape or a slice lost or duplicated values"
    return Verdict("shape", kept == given, detail, "" if kept == given else cause)


def _close_or_both_nan(a: torch.Tensor, b: torch.Tensor, tol: float) -> bool:
    both = a.isnan() & b.isnan()
    return close(a.masked_fill(both, 0.0), b.masked_fill(both, 0.0), tol)


def repeatable(p: Probe) -> Verdict:
    z_again, ldj_again = p.run(p.z, p.zero)
    diff = max(
        (z_again - p.z_out).nan_to_num(0.0).abs().max().item(),
        (ldj_again - p.ldj_out).nan_to_num(0.0).abs().max().item(),
    )
    holds = _close_or_both_nan(z_again, p.z_out, p.tol) and _close_or_both_nan(ldj_again, p.ldj_out, p.tol)
    cause = (
        f"two calls on the same input give outputs up to {diff:.3g} apart: the layer draws random numbers "
        f"(dropout, torch.rand) or holds a module in training mode that does; a layer is a fixed function of its input"
    )
    return Verdict("repeatable", holds, f"two calls differ by {diff:.2e}", "" if holds else cause)


def _named_mistake(p: Probe) -> str:
    for description, wrong in p.mistakes.items():
        with torch.no_grad():
            z_wrong, ldj_wrong = wrong(p.z, p.zero, **p.kwargs)
        if close(p.z_out, z_wrong, p.tol) and close(p.ldj_out, ldj_wrong, p.tol):
            return description
    return ""


def values(p: Probe) -> Verdict | None:
    if p.expected is None:
        return None
    z_right, ldj_right = p.expected
    fault = output_fault(p.z, p.z_out, z_right, p.tol) or log_det_fault(
        p.ldj_out, ldj_right, p.tol, p.z[0].numel(), p.positions, p.z.shape[0], p.channels
    )
    difference = (p.z_out - z_right).abs().max().item() if p.z_out.shape == z_right.shape else float("nan")
    detail = f"vs the right layer: max |z difference| {difference:.2e}, ldj {', '.join(f'{v:.6f}' for v in p.ldj_out[:2].tolist())} | right {', '.join(f'{v:.6f}' for v in ldj_right[:2].tolist())}"
    if fault:
        fault = _named_mistake(p) or fault
    return Verdict("values", not fault, detail, fault, short="" if fault else "same as the right layer")


def _mask_of(p: Probe) -> torch.Tensor | None:
    mask = getattr(p.layer, "mask", None)
    if p.integer or p.dropped is not None or not isinstance(mask, torch.Tensor):
        return None
    try:
        return mask.to(torch.float64).expand_as(p.z) == 1
    except RuntimeError:
        return None


def kept(p: Probe) -> Verdict | None:
    mask = _mask_of(p)
    if mask is None:
        return None
    change = (p.z_out - p.z)[mask].abs().max().item() if mask.any() else 0.0
    if not close(p.z_out[mask], p.z[mask], p.tol):
        cause = (
            f"forward changes the values the mask keeps (mask == 1) by up to {change:.3g}: multiply the scale and the "
            f"shift by (1 - mask), so that only the values where mask == 0 change"
        )
        return Verdict("kept", False, f"kept values change by up to {change:.2e}", cause)
    sample = p.z[:1]
    jac = torch.autograd.functional.jacobian(
        lambda v: p.layer(v.view_as(sample), p.zero[:1])[0].flatten(), sample.flatten()
    )
    free = ~mask[0].flatten()
    block = jac[free][:, free]
    cross = (block - torch.diag(torch.diagonal(block))).abs().max().item() if free.sum() > 1 else 0.0
    if cross > p.tol:
        cause = (
            f"the transformed values depend on each other (a derivative of {cross:.3g} between two of them): the "
            f"network must see only the kept values; feed it z * mask, not z"
        )
        return Verdict("kept", False, "transformed values depend on other transformed values", cause)
    return Verdict("kept", True, "kept values unchanged; each transformed value depends only on the kept ones")


def _named_reverse_mistake(p: Probe, z_back: torch.Tensor) -> str:
    for description, wrong in p.mistakes.items():
        with torch.no_grad():
            z_wrong = wrong(p.z_out, p.ldj_out, reverse=True)[0]
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
    mask = _mask_of(p)
    if mask is not None and not close(z_back[mask], p.z[mask], p.tol):
        return "reverse changes the values forward keeps (mask == 1): reverse must use the same mask as forward"
    if is_permutation(z_back, p.z, p.tol):
        return "reverse puts the right values in the wrong positions" + side_by_side(z_back, p.z)
    if p.run(z_back, p.zero)[0].shape == p.z_out.shape and close(p.run(z_back, p.zero)[0], p.z_out, p.tol):
        return "forward is not invertible: two different inputs give the same output" + side_by_side(z_back, p.z)
    if mask is not None:
        return (
            "reverse does not undo the transformed values (mask == 0): undo forward's steps in the opposite order "
            "(forward z' = (z + t)·e^s is undone by z = z'·e^(-s) - t), with s and t computed from the kept values"
        )
    return "reverse does not undo forward: apply the inverse steps in the opposite order" + side_by_side(z_back, p.z)


def _integer_inverse(p: Probe, z_back: torch.Tensor) -> Verdict:
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
    cause = "reverse must give back the integers: sigmoid, undo the α step, times L, round down, clip to 0..L-1"
    return Verdict("inverse", wrong == 0, detail, "" if wrong == 0 else cause, short="exact integers")


def inverse(p: Probe) -> Verdict:
    extra = {"z_split": p.dropped} if p.dropped is not None and "z_split" in _parameters(p.layer) else {}
    with torch.no_grad():
        outcome = call_layer(p.layer, p.z_out, p.ldj_out, reverse=True, seconds=p.seconds, **extra)
    if outcome.out is None:
        return Verdict("inverse", False, outcome.problem, outcome.cause)
    z_back, ldj_back = outcome.out
    if p.integer:
        return _integer_inverse(p, z_back)
    if z_back.shape != p.z.shape:
        detail = f"reverse gave shape {list(z_back.shape)}, the input was {list(p.z.shape)}"
        return Verdict("inverse", False, detail, "reverse must undo every reshape of forward, in the opposite order")
    if p.dropped is not None and not extra:
        z_back = torch.cat([z_back[:, : p.z_out.shape[1]], p.dropped], dim=1)
        ldj_back = p.zero
    error = (z_back - p.z).abs().max().item()
    detail = f"max |reverse(forward(z)) - z| = {error:.2e}, ldj after the round trip {ldj_back.abs().max().item():.2e}"
    fault = "" if close(z_back, p.z, p.tol) else _reverse_fault(p, z_back)
    fault = fault or round_trip_ldj_fault(p.ldj_out, ldj_back, p.tol)
    return Verdict("inverse", not fault, detail, fault, short=f"round-trip error {_small(error)}")


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
    error = (ours - theirs).abs().max().item()
    return Verdict("log-det", not fault, detail, fault, short=f"difference from {against} {_small(error)}")


def _autograd(p: Probe, i: int) -> torch.Tensor:
    zero = p.zero[:1]
    if p.integer:  # a dequantization: the Jacobian of the noise u -> z, the image fixed
        x = p.z[i : i + 1]
        return autograd_log_det(lambda u: p.layer(x, zero, noise=u)[0], p.kwargs["noise"][i : i + 1]).detach()
    return autograd_log_det(lambda v: p.layer(v, zero)[0], p.z[i : i + 1]).detach()


def accumulates(p: Probe) -> Verdict:
    start = 100.0 + torch.arange(p.z.shape[0], dtype=torch.float64)  # what earlier layers would have summed
    gained = p.run(p.z, start)[1] - start
    holds = close(gained, p.ldj_out, p.tol)
    if holds and not p.integer and p.dropped is None:
        ldj_rev = p.run(p.z_out, start + p.ldj_out, reverse=True)[1]
        holds = close(ldj_rev, start, p.tol * (1 + p.ldj_out.abs().max().item()))
    detail = f"from ldj = 100: forward adds {gained[0].item():.6f} (from 0: {p.ldj_out[0].item():.6f})"
    cause = (
        "ldj is overwritten instead of accumulated: a layer returns ldj + its own term (ldj = ldj + ...), never just "
        "its own term, so that the terms of a chain of layers add up"
    )
    return Verdict("accumulates", holds, detail, "" if holds else cause)


def batch(p: Probe) -> Verdict:
    alone = []
    for i in range(p.z.shape[0]):
        extra = {"noise": p.kwargs["noise"][i : i + 1]} if "noise" in p.kwargs else {}
        alone.append(p.run(p.z[i : i + 1], p.zero[:1], **extra))
    z_alone = torch.cat([a[0] for a in alone])
    ldj_alone = torch.cat([a[1].reshape(-1) for a in alone])
    z_diff = (z_alone - p.z_out).abs().max().item() if z_alone.shape == p.z_out.shape else float("inf")
    ldj_diff = (ldj_alone - p.ldj_out).abs().max().item() if ldj_alone.shape == p.ldj_out.shape else float("inf")
    detail = f"{p.z.shape[0]} samples at once vs one by one: max |z difference| {z_diff:.2e}, |ldj difference| {ldj_diff:.2e}"
    holds = _close_or_both_nan(p.z_out, z_alone, p.tol) and _close_or_both_nan(p.ldj_out, ldj_alone, p.tol)
    norms = [m for m in _modules(p.layer) if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    if norms:
        cause = f"a {type(norms[0]).__name__} in training mode normalises with statistics of the whole batch, so one sample's output depends on the others"
    else:
        cause = (
            "one sample's output depends on the other samples of the batch: a sum or mean over the batch "
            "dimension (sum() with no dim, or dim=0), or statistics taken over the batch"
        )
    return Verdict("batch", holds, detail, "" if holds else cause)


def _modules(layer: Layer) -> list[nn.Module]:
    return list(layer.modules()) if isinstance(layer, nn.Module) else []


def gradient(p: Probe) -> Verdict | None:
    if not isinstance(p.layer, nn.Module) or not any(True for _ in p.layer.parameters()):
        return None
    p.layer.zero_grad(set_to_none=True)
    with torch.enable_grad():
        z_out, ldj_out = p.layer(p.z, p.zero, **p.kwargs)
        loss = z_out.to(torch.float64).sum() + ldj_out.sum()
        if not loss.requires_grad:
            cause = "no gradient leaves your forward: it runs under torch.no_grad() or .detach()es its outputs, so training could never change the layer"
            return Verdict("gradient", False, "the output carries no gradient", cause)
        loss.backward()
    groups = [("", [q for n, q in p.layer.named_parameters(recurse=False)])]
    groups += [(name, list(child.parameters())) for name, child in p.layer.named_children()]
    for name, params in groups:
        if params and all(q.grad is None for q in params):
            where = f"self.{name}" if name else "the layer's own parameters"
            cause = (
                f"no gradient reaches {where}: forward cuts it off (.detach(), torch.no_grad(), .item() or "
                f".numpy() on its output), so training could never change it"
            )
            return Verdict("gradient", False, f"{where}: no gradient", cause)
    return Verdict("gradient", True, "every submodule with parameters receives a gradient")
