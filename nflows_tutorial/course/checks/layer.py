"""The layer check: run a layer through the course's contract and name the first fault in the student's terms."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from . import invertibility
from . import properties as prop
from .calls import CALL_TIME_LIMIT, Layer, call_layer, same, unregistered_tensors
from .properties import Probe, Verdict
from .values import randomized

__all__ = ["PROPERTIES", "Verdict", "LayerReport", "LayerCheckError", "inspect_layer", "check_layer"]

#: The properties checked, in the order they are checked; a report names the first that fails.
PROPERTIES = ("call", "shape", "repeatable", "batch", "kept", "values", "inverse", "log-det", "accumulates", "gradient")

# Largest Jacobian the log-det check builds (values per sample): a 1024 x 1024 matrix takes a second.
MAX_VALUES = 1024
#: Seconds one call of the layer may take before it is stopped as a layer that never returns.
TIME_LIMIT = CALL_TIME_LIMIT


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

    @property
    def fault(self) -> str:
        """The first failure, in the student's terms ("" when every property holds)."""
        first = next((v for v in self.verdicts if not v.passed), None)
        return "" if first is None else f"{first.name}: {first.cause}"

    def summary(self) -> str:
        """One line for a pass; for a failure the fault first, then every property measured."""
        if self.passed:
            return "[ok  ] your layer honours the contract: " + "; ".join(v.brief() for v in self.verdicts)
        return "\n".join([f"[FAIL] {self.fault}", *(f"  {v}" for v in self.verdicts)])

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        return f"LayerReport(passed={self.passed}, failed={self.failed!r})"


class LayerCheckError(AssertionError):
    """Raised by :func:`check_layer` when a property fails; its first line names the fault, ``report`` holds all."""

    def __init__(self, report: LayerReport) -> None:
        super().__init__(report.summary())
        self.report = report


def _check_example(example_input: torch.Tensor) -> None:
    """Refuse an example the checks cannot use: not a batch of at least 2, or too large for a Jacobian."""
    if not isinstance(example_input, torch.Tensor) or example_input.is_complex() or example_input.dtype == torch.bool:
        raise TypeError("example_input must be a float tensor [batch, ...] (or integer pixels for a dequantization)")
    if example_input.dim() < 2 or example_input.shape[0] < 2:
        raise ValueError(f"example_input needs a batch of at least 2 samples, got shape {list(example_input.shape)}")
    values = example_input[0].numel()
    if values > MAX_VALUES:
        raise ValueError(
            f"example_input has {values} values per sample, so its Jacobian would be {values} x {values}; "
            f"use a small example of at most {MAX_VALUES} values, e.g. torch.randn(4, 2, 4, 4)"
        )


def _as_float64(layer: Layer | None) -> Layer | None:
    """A float64 copy of a module (the caller's layer keeps its dtype); functions follow their input's dtype."""
    if isinstance(layer, nn.Module):
        return copy.deepcopy(layer).double()
    return layer


def _takes_noise(layer: Layer) -> bool:
    target = layer.forward if isinstance(layer, nn.Module) else layer
    try:
        return "noise" in inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False


def _start(
    layer: Layer, z: torch.Tensor, reference: Layer | None, seconds: float | None
) -> tuple[Probe | None, Verdict]:
    """The first call: the layer runs, returns ``(z, ldj)``, holds no stray tensors; the probe for the rest."""
    plain = [name for name, _ in unregistered_tensors(layer)]
    if plain:
        cause = (
            f"{plain[0]} is a plain tensor attribute: .to(), .double() and state_dict() skip it; register it with "
            f"self.register_buffer({plain[0].rsplit('.', 1)[-1]!r}, tensor) (or make it an nn.Parameter if it is learned)"
        )
        return None, Verdict(
            "call", False, f"{len(plain)} tensor attribute(s) not registered: {', '.join(plain)}", cause
        )
    kwargs: dict[str, torch.Tensor] = {}
    if not z.is_floating_point():
        if not _takes_noise(layer):
            cause = (
                "to be checked, a dequantization layer takes noise= (the u in [0, 1) it adds), as Dequantization does"
            )
            return None, Verdict("call", False, "integer input, but the layer takes no noise= argument", cause)
        kwargs["noise"] = torch.rand(z.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    ldj = torch.zeros(z.shape[0], dtype=torch.float64)
    with torch.no_grad():
        outcome = call_layer(layer, z, ldj, reverse=False, seconds=seconds, **kwargs)
    if outcome.out is None:
        return None, Verdict("call", False, outcome.problem, outcome.cause)
    probe = Probe(layer, z, kwargs, *outcome.out)
    if reference is not None:
        with torch.no_grad():
            probe.expected = reference(z, ldj, **kwargs)
    return probe, Verdict("call", True, "forward returns (z, ldj)")


IDENTITY_NOTE = (
    "; your layer starts as the identity (its parameters are zero where it begins), so it is checked on a copy "
    "with random parameters"
)


def _starts_as_identity(probe: Probe) -> bool:
    """A layer with parameters that returns its input and a zero log-det."""
    layer = probe.layer
    has_parameters = isinstance(layer, nn.Module) and any(True for _ in layer.parameters())
    unchanged = probe.z_out.shape == probe.z.shape and same(probe.z_out, probe.z)
    return has_parameters and unchanged and bool((probe.ldj_out == 0).all())


def inspect_layer(
    layer: Layer,
    example_input: torch.Tensor,
    *,
    reference: Layer | None = None,
    mistakes: Mapping[str, Layer] | None = None,
    tol: float = 1e-8,
    time_limit_s: float | None = TIME_LIMIT,
) -> LayerReport:
    """Check ``layer`` against the course's layer contract on ``example_input`` and return every verdict.

    The contract: ``layer(z, ldj, reverse=False)`` returns ``(z', ldj + log|det dz'/dz|)`` with one ldj value
    per sample, and ``reverse=True`` undoes it exactly. In float64 (modules on a float64 copy), in turn:
    ``call`` (a pair of tensors, no input changed in place, no unregistered tensor attributes), ``shape``,
    ``repeatable`` (the same input gives the same output), ``values`` (the same output as ``reference``, a
    layer known to be right, when one is given; ``mistakes`` maps a fault's description to a layer making
    it, so that a match is named), ``kept`` (a layer with a ``mask`` leaves the kept values alone and its
    transformed values depend on no other transformed value), ``inverse``, ``log-det`` (against autograd's
    ``slogdet`` of the Jacobian), ``accumulates`` (ldj is added to, not reset), ``batch`` (samples do not
    influence each other) and ``gradient`` (every submodule with parameters receives a gradient). Integer
    pixels as input check a dequantization layer (its ``noise=`` argument is fixed, and its log-det taken
    with respect to the noise); a layer whose output holds fewer values is checked as a split onto the prior.
    """
    _check_example(example_input)
    layer64 = copy.deepcopy(layer).double() if isinstance(layer, nn.Module) else layer
    z = example_input.detach()
    z = z.to(torch.float64) if z.is_floating_point() else z
    report = LayerReport()
    probe, verdict = _start(layer64, z, _as_float64(reference), time_limit_s)
    if probe is not None and reference is None and _starts_as_identity(probe):
        # A zero-initialised last layer makes a fresh coupling the identity, on which every property holds
        # trivially; its faults show once the parameters are not zero.
        assert isinstance(layer64, nn.Module)  # a layer with parameters
        probe, verdict = _start(randomized(layer64), z, None, time_limit_s)
        verdict = replace(verdict, detail=verdict.detail + IDENTITY_NOTE)
    report.verdicts.append(verdict)
    if probe is None:
        return report
    probe.tol, probe.seconds = tol, time_limit_s
    probe.mistakes = {k: _as_float64(v) for k, v in (mistakes or {}).items()}
    for check in _properties(probe):
        measured = _run_property(check, probe)
        if measured is not None:
            report.verdicts.append(measured)
            if not measured.passed:
                break
    return report


def _run_property(check: Callable[[Probe], Verdict | None], probe: Probe) -> Verdict | None:
    """One property's verdict; a crash of the layer while it is measured fails that property, named."""
    try:
        return check(probe)
    except NotImplementedError:
        raise
    except Exception as err:  # the student's layer crashed on an input this property needs
        name = check.__name__.replace("_", "-")
        problem = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        cause = f"your layer raised {problem} when called for this check (e.g. on one sample alone, or from ldj = 100)"
        return Verdict(name, False, f"raised {problem}", cause)


def _properties(probe: Probe) -> list[Callable[[Probe], Verdict | None]]:
    return [
        prop.shape,
        prop.repeatable,
        prop.batch,
        prop.kept,
        prop.values,
        invertibility.inverse,
        invertibility.log_det,
        prop.accumulates,
        prop.gradient,
    ]


def check_layer(
    layer: Layer,
    example_input: torch.Tensor,
    *,
    reference: Layer | None = None,
    mistakes: Mapping[str, Layer] | None = None,
    tol: float = 1e-8,
    time_limit_s: float | None = TIME_LIMIT,
) -> None:
    """Print the verdict of :func:`inspect_layer` (one line when the layer passes) and raise if it fails.

    A failure raises :class:`LayerCheckError`, whose first line names what is wrong in the layer.

    Example:
        >>> from nflows_tutorial import SqueezeFlow
        >>> check_layer(SqueezeFlow(), torch.randn(3, 1, 4, 4))  # doctest: +ELLIPSIS
        [ok  ] your layer honours the contract: call; shape;...
    """
    report = inspect_layer(
        layer, example_input, reference=reference, mistakes=mistakes, tol=tol, time_limit_s=time_limit_s
    )
    print(report)
    if not report.passed:
        raise LayerCheckError(report)
