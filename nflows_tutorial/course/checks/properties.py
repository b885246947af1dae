"""The properties of the layer contract, one verdict each, with the fault named when one does not hold."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .calls import Layer, same
from .diagnosis import close, log_det_fault, output_fault
from .values import randomized

__all__ = ["Probe", "Verdict", "mask_of"]


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
    if keepdim and p.ldj_out.dim() < p.z.dim():
        return (
            f"ldj has shape {shape}: your log-det term has a dimension of size 1 left besides the batch (a sum over "
            f"some dimensions only, e.g. dim=(2, 3) without the channels), which broadcast against ldj [{batch}]; "
            f"sum over every dimension but the batch: s.flatten(1).sum(dim=1)"
        )
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
    if p.z_out.dtype != torch.float64:
        inputs = "integer pixels and ldj in float64" if p.integer else "a float64 input"
        keep = "compute in ldj's dtype (x.to(ldj.dtype))" if p.integer else "keep the input's dtype"
        cause = (
            f"your layer returns {p.z_out.dtype} values for {inputs}: {keep}, with no .float() and with every "
            f"tensor you create made in that dtype (dtype=z.dtype), or it loses precision a flow needs"
        )
        return Verdict("shape", False, detail + f", z' in {p.z_out.dtype}", cause)
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
    if p.integer:
        cause = (
            f"two calls with the same noise= give outputs up to {diff:.3g} apart: your layer ignores the noise it is "
            f"given; draw your own (torch.rand_like) only when noise is None"
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


def mask_of(p: Probe) -> torch.Tensor | None:
    mask = getattr(p.layer, "mask", None)
    if p.integer or p.dropped is not None or not isinstance(mask, torch.Tensor):
        return None
    try:
        return mask.to(torch.float64).expand_as(p.z) == 1
    except RuntimeError:
        return None


def kept(p: Probe) -> Verdict | None:
    mask = mask_of(p)
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
            "dimension (sum() with no dim, or dim=0), a count of the whole batch's values (z.numel() where one "
            "sample's, z[0].numel(), is meant), or statistics taken over the batch"
        )
    return Verdict("batch", holds, detail, "" if holds else cause)


def _modules(layer: Layer) -> list[nn.Module]:
    return list(layer.modules()) if isinstance(layer, nn.Module) else []


def _grads(output: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor | None]:
    """The gradient of ``output.sum()`` for each parameter, None where no path leads to it."""
    if not output.requires_grad:
        return [None] * len(params)
    return list(torch.autograd.grad(output.sum(), params, allow_unused=True, retain_graph=True))


def gradient(p: Probe) -> Verdict | None:
    if not isinstance(p.layer, nn.Module) or not any(True for _ in p.layer.parameters()):
        return None
    names, params = zip(*p.layer.named_parameters(), strict=True)
    with torch.enable_grad():
        z_out, ldj_out = p.layer(p.z, p.zero, **p.kwargs)
        if not (z_out.requires_grad or ldj_out.requires_grad):
            cause = "no gradient leaves your forward: it runs under torch.no_grad() or .detach()es its outputs, so training could never change the layer"
            return Verdict("gradient", False, "the output carries no gradient", cause)
        through_z, through_ldj = _grads(z_out.to(torch.float64), list(params)), _grads(ldj_out, list(params))
    reached = {n for n, gz, gl in zip(names, through_z, through_ldj, strict=True) if gz is not None or gl is not None}
    groups = [("", [n for n, _ in p.layer.named_parameters(recurse=False)])]
    groups += [
        (child, [f"{child}.{n}" for n, _ in module.named_parameters()]) for child, module in p.layer.named_children()
    ]
    for name, members in groups:
        if members and not reached & set(members):
            where = f"self.{name}" if name else "the layer's own parameters"
            cause = (
                f"no gradient reaches {where}: forward cuts it off (.detach(), torch.no_grad(), .item() or "
                f".numpy() on its output), so training could never change it"
            )
            return Verdict("gradient", False, f"{where}: no gradient", cause)
    cut = [n for n, gz, gl in zip(names, through_z, through_ldj, strict=True) if gz is None and gl is not None]
    if cut:
        cause = (
            f"no gradient reaches self.{cut[0]} through your output z, only through the log-det: the output is "
            f"computed from a detached copy (.detach(), .data or a tensor made from its values), so training would "
            f"learn a log-det that does not belong to the map it applies"
        )
        return Verdict("gradient", False, f"self.{cut[0]}: no gradient through z", cause)
    if all(g is None for g in through_ldj) and _log_det_follows_parameters(p.layer, p, ldj_out.detach()):
        cause = (
            "your log-det changes with the parameters but carries no gradient to them (.item(), float(), .detach() "
            "or torch.no_grad() on it): training could never learn the log-det term"
        )
        return Verdict("gradient", False, "the log-det carries no gradient", cause)
    return Verdict("gradient", True, "every submodule with parameters receives a gradient")


def _log_det_follows_parameters(layer: nn.Module, p: Probe, ldj: torch.Tensor) -> bool:
    """Whether the log-det changes when the parameters do (it does not in a volume-preserving layer)."""
    moved = randomized(copy.deepcopy(layer), scale=0.1, seed=3)
    with torch.no_grad():
        return not close(moved(p.z, p.zero, **p.kwargs)[1], ldj, p.tol)
