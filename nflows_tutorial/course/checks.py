"""Checking the course's maths and a student's layers: autograd log-determinants, values side by side, the layer contract."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import torch
from torch import nn

__all__ = [
    "autograd_log_det",
    "randomized",
    "PROPERTIES",
    "Verdict",
    "LayerReport",
    "LayerCheckError",
    "check_layer",
    "check_values",
]

Layer = Callable[..., tuple[torch.Tensor, torch.Tensor]]

#: The properties checked, in the order they are checked; a report names the first that fails.
PROPERTIES = ("call", "shape", "inverse", "log-det", "accumulates", "batch")

# Largest Jacobian the log-det check builds (values per sample): a 1024 x 1024 matrix takes a second.
MAX_VALUES = 1024
# Samples of the example batch whose log-determinant is compared with autograd's.
AUTOGRAD_SAMPLES = 2


def autograd_log_det(fn: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor) -> torch.Tensor:
    """``log|det J|`` of ``fn`` at one sample ``z`` (batch size 1), with the Jacobian built by autograd.

    ``fn`` must map ``z`` to a tensor with as many values as ``z``; the result is a 0-d tensor to
    compare with the log-determinant a layer reports for the same input.
    """
    if z.shape[0] != 1:
        raise ValueError(f"autograd_log_det takes one sample (batch size 1), got a batch of {z.shape[0]}")
    out_size = fn(z).numel()
    if out_size != z.numel():
        raise ValueError(f"fn maps {z.numel()} values to {out_size}; a Jacobian determinant needs a square map")
    jac = torch.autograd.functional.jacobian(lambda flat: fn(flat.view_as(z)).flatten(), z.flatten())
    return torch.linalg.slogdet(jac).logabsdet


@dataclass(frozen=True)
class Verdict:
    """The outcome of one property: whether it holds, what was measured, and the usual cause if not."""

    name: str
    passed: bool
    detail: str
    cause: str = ""

    @classmethod
    def of(cls, name: str, holds: bool, detail: str, cause: str) -> Verdict:
        """The verdict on property ``name``; ``cause`` is kept only where it does not hold."""
        return cls(name, holds, detail, "" if holds else cause)

    def __str__(self) -> str:
        mark = "ok  " if self.passed else "FAIL"
        return f"[{mark}] {self.name:<11} {self.detail}"


@dataclass(repr=False)
class LayerReport:
    """All verdicts of one check; ``failed`` names the first property that fails (None: all hold)."""

    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def failed(self) -> str | None:
        return next((v.name for v in self.verdicts if not v.passed), None)

    @property
    def passed(self) -> bool:
        return self.failed is None

    def summary(self) -> str:
        """One line: the verdict, and for a failure the usual cause."""
        if self.passed:
            return "The layer honours the contract: " + ", ".join(v.name for v in self.verdicts) + "."
        first = next(v for v in self.verdicts if not v.passed)
        return f"First failure: {first.name}. Usual cause: {first.cause}"

    def __str__(self) -> str:
        return "\n".join([*map(str, self.verdicts), self.summary()])

    def __repr__(self) -> str:  # a notebook echoes the returned report below the printed one: keep it short
        return f"LayerReport(passed={self.passed}, failed={self.failed!r})"


class LayerCheckError(AssertionError):
    """Raised by :func:`check_layer` (with ``strict=True``) when a property fails; holds the report."""

    def __init__(self, report: LayerReport) -> None:
        super().__init__(report.summary())
        self.report = report


def _close(a: torch.Tensor, b: torch.Tensor, tol: float) -> bool:
    return bool(((a - b).abs() <= tol * (1 + b.abs())).all())


def _as_float64(layer: Layer) -> Layer:
    """A float64 copy of a module (the caller's layer keeps its dtype); functions follow their input's dtype."""
    if isinstance(layer, nn.Module):
        return copy.deepcopy(layer).double()
    return layer


def _call(
    layer: Layer, z: torch.Tensor, ldj: torch.Tensor, reverse: bool
) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, str]:
    """Run one direction; return its output, or ``None`` and what went wrong (an unfinished exercise still raises)."""
    direction = "reverse" if reverse else "forward"
    try:
        out = layer(z, ldj, reverse=reverse)
    except NotImplementedError:
        raise
    except (RuntimeError, TypeError, ValueError, IndexError) as err:
        return None, f"{direction} raised {type(err).__name__}: {err}"
    if not (isinstance(out, tuple) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out)):
        return None, f"{direction} returned {type(out).__name__}, not a pair of tensors (z, ldj)"
    return out, ""


def _shape_verdict(z: torch.Tensor, z_out: torch.Tensor, ldj_out: torch.Tensor) -> Verdict:
    batch = z.shape[0]
    detail = f"z {list(z.shape)} -> {list(z_out.shape)}, ldj {list(ldj_out.shape)}"
    if ldj_out.dim() > 1:
        cause = (
            f"a forgotten sum: ldj must hold one number per sample, shape [{batch}]; sum the per-value "
            f"log-determinants over every dimension but the batch, e.g. s.flatten(1).sum(dim=1)"
        )
        return Verdict("shape", False, detail, cause)
    if ldj_out.shape != (batch,):
        cause = (
            f"ldj was summed over the batch too (shape {list(ldj_out.shape)}, expected [{batch}]); sum over "
            f"dimensions 1.. only, e.g. s.flatten(1).sum(dim=1), not s.sum()"
        )
        return Verdict("shape", False, detail, cause)
    holds = z_out.shape[0] == batch and z_out[0].numel() == z[0].numel()
    cause = (
        "an invertible layer keeps the batch size and the number of values per sample; "
        "a reshape or a slice lost or duplicated values"
    )
    return Verdict.of("shape", holds, detail, cause)


def _inverse_verdict(layer: Layer, z: torch.Tensor, z_out: torch.Tensor, ldj_out: torch.Tensor, tol: float) -> Verdict:
    out, problem = _call(layer, z_out, ldj_out, reverse=True)
    if out is None:
        return Verdict("inverse", False, problem, "the reverse branch must return (z, ldj) like the forward one")
    z_back, ldj_back = out
    if z_back.shape != z.shape:
        detail = f"reverse gave shape {list(z_back.shape)}, the input was {list(z.shape)}"
        return Verdict("inverse", False, detail, "reverse must undo every reshape of forward, in the opposite order")
    error = (z_back - z).abs().max().item()
    ldj_error = ldj_back.abs().max().item()
    detail = f"max |reverse(forward(z)) - z| = {error:.2e}, ldj after the round trip {ldj_error:.2e} (float64)"
    if not _close(z_back, z, tol):
        cause = (
            "reverse does not undo forward: apply the inverse operations in the opposite order (subtract what "
            "forward added, divide by what it multiplied) and compute them from values forward left unchanged"
        )
        return Verdict("inverse", False, detail, cause)
    holds = _close(ldj_back, torch.zeros_like(ldj_back), tol * (1 + ldj_out.abs().max().item()))
    cause = "reverse must subtract the log-determinant that forward added, so a round trip brings ldj back to its start"
    return Verdict.of("inverse", holds, detail, cause)


def _log_det_verdict(layer: Layer, z: torch.Tensor, tol: float) -> Verdict:
    zero = torch.zeros(1, dtype=z.dtype)
    reported, by_autograd = [], []
    for i in range(min(AUTOGRAD_SAMPLES, z.shape[0])):
        sample = z[i : i + 1]
        with torch.no_grad():
            reported.append(layer(sample, zero)[1].reshape(-1)[0])
        by_autograd.append(autograd_log_det(lambda v: layer(v, zero)[0], sample).detach())
    ours, theirs = torch.stack(reported), torch.stack(by_autograd)
    detail = (
        "layer "
        + ", ".join(f"{v:.6f}" for v in ours.tolist())
        + " | autograd "
        + ", ".join(f"{v:.6f}" for v in theirs.tolist())
    )
    if _close(ours, theirs, tol):
        return Verdict("log-det", True, detail)
    if _close(-ours, theirs, tol):
        cause = "the sign is flipped: forward adds log|det J| (ldj + ...), reverse subtracts it"
    elif _close(ours, torch.zeros_like(ours), tol):
        cause = "ldj is returned unchanged, but this layer changes volume: add the log of its Jacobian's determinant"
    else:
        cause = (
            "a term is missing or has the wrong factor: write down the Jacobian's diagonal (or its blocks) "
            "and sum the logs of its absolute values over every value of a sample"
        )
    return Verdict("log-det", False, detail, cause)


def _accumulates_verdict(
    layer: Layer, z: torch.Tensor, z_out: torch.Tensor, ldj_out: torch.Tensor, tol: float
) -> Verdict:
    start = 100.0 + torch.arange(z.shape[0], dtype=z.dtype)  # what earlier layers would have summed
    with torch.no_grad():
        ldj_fwd = layer(z, start)[1]
        ldj_rev = layer(z_out, start + ldj_out, reverse=True)[1]
    gained = ldj_fwd - start
    detail = f"from ldj = {start[0].item():.0f}: forward adds {gained[0].item():.6f} (from 0: {ldj_out[0].item():.6f})"
    holds = _close(gained, ldj_out, tol) and _close(ldj_rev, start, tol * (1 + ldj_out.abs().max().item()))
    cause = (
        "ldj is overwritten instead of accumulated: a layer returns ldj + its own term (ldj = ldj + ...), "
        "never just its own term, so that the terms of a chain of layers add up"
    )
    return Verdict.of("accumulates", holds, detail, cause)


def _batch_verdict(layer: Layer, z: torch.Tensor, z_out: torch.Tensor, ldj_out: torch.Tensor, tol: float) -> Verdict:
    zero = torch.zeros(1, dtype=z.dtype)
    with torch.no_grad():
        alone = [layer(z[i : i + 1], zero) for i in range(z.shape[0])]
    z_alone = torch.cat([a[0] for a in alone])
    ldj_alone = torch.cat([a[1].reshape(-1) for a in alone])
    z_diff = (z_alone - z_out).abs().max().item()
    ldj_diff = (ldj_alone - ldj_out).abs().max().item()
    detail = f"{z.shape[0]} samples at once vs one by one: max |z difference| {z_diff:.2e}, max |ldj difference| {ldj_diff:.2e}"
    holds = _close(z_out, z_alone, tol) and _close(ldj_out, ldj_alone, tol)
    cause = (
        "samples of a batch influence each other: a sum or mean over the batch dimension (sum() with no dim, "
        "or dim=0), or statistics taken over the batch; every operation must act on each sample alone"
    )
    return Verdict.of("batch", holds, detail, cause)


def _check_example(example_input: torch.Tensor) -> None:
    """Refuse an example the checks cannot use: not a float batch of at least 2, or too large for a Jacobian."""
    if not isinstance(example_input, torch.Tensor) or not example_input.is_floating_point():
        raise TypeError("example_input must be a float tensor [batch, ...], e.g. torch.randn(4, 2, 4, 4)")
    if example_input.dim() < 2 or example_input.shape[0] < 2:
        raise ValueError(f"example_input needs a batch of at least 2 samples, got shape {list(example_input.shape)}")
    values = example_input[0].numel()
    if values > MAX_VALUES:
        raise ValueError(
            f"example_input has {values} values per sample, so its Jacobian would be {values} x {values}; "
            f"use a small example of at most {MAX_VALUES} values, e.g. torch.randn(4, 2, 4, 4)"
        )


def check_layer(
    layer: Layer, example_input: torch.Tensor, *, tol: float = 1e-8, strict: bool = True, verbose: bool = True
) -> LayerReport:
    """Check that ``layer`` honours the course's layer contract on ``example_input`` (a float batch).

    The contract: ``layer(z, ldj, reverse=False)`` returns ``(z', ldj + log|det dz'/dz|)`` with one
    ldj value per sample, and ``reverse=True`` undoes it exactly. In float64, the check tests in turn
    ``call`` (a pair of tensors comes back), ``shape`` (batch size and values per sample kept, ldj of
    shape ``[batch]``), ``inverse`` (the round-trip error is printed), ``log-det`` (the layer's ldj
    next to autograd's ``slogdet`` of the Jacobian), ``accumulates`` (ldj is added to, not reset)
    and ``batch`` (a batch gives what its samples give one by one). The report (printed when
    ``verbose``) names the first failing property and what usually causes it; with ``strict`` a
    failure raises :class:`LayerCheckError` after printing. Modules are checked on a float64 copy.

    Example:
        >>> from nflows_tutorial import SqueezeFlow
        >>> check_layer(SqueezeFlow(), torch.randn(3, 1, 4, 4), verbose=False).passed
        True
    """
    _check_example(example_input)
    layer64 = _as_float64(layer)
    z = example_input.detach().to(torch.float64)
    report = LayerReport()

    def finish() -> LayerReport:
        if verbose:
            print(report)
        if strict and not report.passed:
            raise LayerCheckError(report)
        return report

    with torch.no_grad():
        out, problem = _call(layer64, z, torch.zeros(z.shape[0], dtype=z.dtype), reverse=False)
    if out is None:
        cause = (
            "a layer takes (z, ldj, reverse=False) and returns the pair (z, ldj); a shape error inside it "
            "often means ldj [batch] met an unsummed per-value term (sum it with .flatten(1).sum(dim=1))"
        )
        report.verdicts.append(Verdict("call", False, problem, cause))
        return finish()
    z_out, ldj_out = out
    report.verdicts.append(Verdict("call", True, "forward returns (z, ldj)"))
    checks = (
        lambda: _shape_verdict(z, z_out, ldj_out),
        lambda: _inverse_verdict(layer64, z, z_out, ldj_out, tol),
        lambda: _log_det_verdict(layer64, z, tol),
        lambda: _accumulates_verdict(layer64, z, z_out, ldj_out, tol),
        lambda: _batch_verdict(layer64, z, z_out, ldj_out, tol),
    )
    for check in checks:
        verdict = check()
        report.verdicts.append(verdict)
        if not verdict.passed:
            break
    return finish()


Module = TypeVar("Module", bound=nn.Module)


def randomized(module: Module, scale: float = 0.2, seed: int = 1) -> Module:
    """Add Gaussian noise of standard deviation ``scale`` to every parameter of ``module`` (in place) and return it.

    A fresh coupling's conditioner ends in a zero convolution, so the layer starts as the identity and
    a check on it would prove little; after this no parameter is zero. ``seed`` makes the noise repeatable
    without touching the global random state.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device) * scale)
    return module


#: Differences below this print as such: float64 round-off (about 1e-13 here) differs from machine to machine.
NEGLIGIBLE = 1e-10


def _shown(t: torch.Tensor, digits: int) -> str:
    """Up to eight values, floats rounded to ``digits`` decimals; a larger tensor by its shape."""
    if t.numel() > 8:
        return f"tensor of shape {list(t.shape)}"
    if t.is_floating_point():
        # round(...) + 0.0 turns a rounded -0.0 into 0.0, which would otherwise print differently by machine.
        text = [f"{round(v, digits) + 0.0:.{digits}f}" for v in t.flatten().tolist()]
    else:
        text = [str(int(v)) for v in t.flatten().tolist()]
    return text[0] if t.dim() == 0 else "[" + ", ".join(text) + "]"


def check_values(
    label: str, yours: torch.Tensor | float, expected: torch.Tensor | float, tol: float = 1e-6, digits: int = 6
) -> None:
    """Print ``yours`` next to ``expected`` and raise ``AssertionError`` unless they agree in shape and value.

    Values agree when ``|yours - expected| <= tol * (1 + |expected|)`` everywhere (integers compare as floats);
    ``tol=0`` asks for equality. Floats print rounded to ``digits`` decimals and a difference under
    :data:`NEGLIGIBLE` as such, so a check reads the same on every machine. This is the check of the notebooks'
    derivations and of the exercises whose answer is a number or a tensor rather than a layer.

    Example:
        >>> check_values("log 2", torch.tensor(2.0).log(), 0.693147, tol=1e-6)
        [ok  ] log 2: yours 0.693147 | expected 0.693147 | max difference 1.79e-07
    """
    got, want = torch.as_tensor(yours).detach().cpu(), torch.as_tensor(expected).detach().cpu()
    if got.numel() == want.numel() == 1:
        got, want = got.reshape(()), want.reshape(())
    if got.shape != want.shape:
        print(f"[FAIL] {label}: yours has shape {list(got.shape)}, expected {list(want.shape)}")
        raise AssertionError(f"{label}: shape {list(got.shape)}, expected {list(want.shape)}")
    diff = (got.double() - want.double()).abs()
    worst = diff.max().item() if diff.numel() else 0.0
    ok = bool((diff <= tol * (1 + want.double().abs())).all())
    difference = "0" if worst == 0 else "below 1e-10" if worst < NEGLIGIBLE else f"{worst:.2e}"
    print(
        f"[{'ok  ' if ok else 'FAIL'}] {label}: yours {_shown(got, digits)} | expected {_shown(want, digits)} "
        f"| max difference {difference}"
    )
    if not ok:
        raise AssertionError(f"{label}: yours differs from the expected value by up to {worst:.3g}")
