"""Naming a fault from the numbers a check measured: how a wrong value relates to the right one."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from .values import MAX_SHOWN, shown

__all__ = [
    "close",
    "log_det_fault",
    "output_fault",
    "value_fault",
    "round_trip_ldj_fault",
    "is_permutation",
    "side_by_side",
]

#: How a log-det fault that no simple relation explains begins.
DATA_DEPENDENT = "your log-det differs from the right one by an amount that changes with the input"

#: Levels of an 8-bit image: the scaling term of dequantization is ``-D log LEVELS``.
LEVELS = 256


def close(a: torch.Tensor, b: torch.Tensor, tol: float) -> bool:
    """``|a - b| <= tol * (1 + |b|)`` everywhere, shapes broadcast; NaN or a shape mismatch is never close."""
    try:
        return bool(((a - b).abs() <= tol * (1 + b.abs())).all())
    except RuntimeError:
        return False


def _ratio(ours: torch.Tensor, theirs: torch.Tensor, tol: float) -> float | None:
    """The one factor ``r`` with ``ours = r * theirs`` for every sample, if there is one."""
    if (theirs.abs() < 1e-6).any():
        return None
    r = (ours / theirs).mean().item()
    return r if math.isfinite(r) and close(ours, r * theirs, max(tol, 1e-7)) else None


def _offset_fault(offset: float, values: int) -> str:
    scaling = values * math.log(LEVELS)
    if abs(offset - 2 * scaling) < 1e-6 * (1 + scaling):
        return (
            f"your log-det is off by {offset:+.6f} = 2·D·log {LEVELS} for every sample (D = {values}): the scaling "
            f"term has the wrong sign; dividing by {LEVELS} shrinks each value, so its term is -D·log {LEVELS}"
        )
    if abs(abs(offset) - scaling) < 1e-6 * (1 + scaling):
        side = "missing" if offset > 0 else "counted twice or with the wrong sign"
        return (
            f"your log-det is off by {offset:+.6f} = {'-' if offset < 0 else ''}D·log {LEVELS} for every sample "
            f"(D = {values}): the scaling term -D·log {LEVELS} is {side}"
        )
    return (
        f"your log-det is off by the same constant {offset:+.6f} for every sample ({offset / values:+.3g} per "
        f"value): a constant term (one that does not depend on the input, like D·log(1 - α)) is missing, extra, "
        f"or has the wrong factor"
    )


def _ratio_fault(ratio: float, values: int, positions: int | None, batch: int, channels: int | None) -> str:
    """What a log-det that is ``ratio`` times the right one got wrong ("" if no usual slip gives that factor)."""
    if abs(ratio + 1) < 1e-6:
        return "the sign of your log-det is flipped: forward adds log|det J| (ldj + ...), reverse subtracts it"
    if abs(ratio - 2) < 1e-6:
        return "your log-det is twice the right one: the term is added twice"
    if abs(1 / ratio - round(1 / ratio)) < 1e-6 and round(1 / ratio) >= 2:
        k = round(1 / ratio)
        if k == values:
            also = " (or count once a term that holds at each of the H·W positions)" if k == positions else ""
            return (
                f"your log-det is the right one divided by {k}, the number of values per sample: you average "
                f"(mean) the per-value terms where the log-det sums them{also}"
            )
        if positions and k != positions and positions % k == 0:
            return (
                f"your log-det times {k} is the right one: a term that holds at every pixel position must be "
                f"counted H·W = {positions} times, and yours counts it {positions // k} (H or W alone?)"
            )
        where = f" (the {k} = H·W pixel positions)" if k == positions else ""
        return (
            f"your log-det times {k} is the right one{where}: a term that holds at every position is counted once; "
            f"multiply it by the number of positions"
        )
    if batch > 1 and abs(ratio - batch) < 1e-6:
        return (
            f"your log-det is {batch} times the right one, the batch size: the sum runs over the whole batch "
            f"(s.sum()); sum each sample's values only, s.flatten(1).sum(dim=1)"
        )
    if channels and channels > 1 and abs(ratio - channels) < 1e-6:
        return (
            f"your log-det is {channels} times the right one, the number of channels: a term that holds once per "
            f"pixel position (H·W times in all) is counted once per value (C·H·W times)"
        )
    if abs(ratio - round(ratio)) < 1e-6 and round(ratio) >= 3:
        return f"your log-det is {round(ratio)} times the right one: a term is counted {round(ratio)} times"
    return ""


def log_det_fault(
    ours: torch.Tensor,
    theirs: torch.Tensor,
    tol: float,
    values: int,
    positions: int | None = None,
    batch: int = 1,
    channels: int | None = None,
) -> str:
    """What is wrong with the log-determinants ``ours`` when ``theirs`` are right ("" if they agree).

    ``values`` is the number of values per sample, ``positions`` the number of pixel positions ``H * W``,
    ``batch`` the number of samples the layer saw at once, ``channels`` the number of channels ``C``.
    """
    if close(ours, theirs, tol):
        return ""
    if not torch.isfinite(ours).all():
        return f"your log-det is {shown(ours)} where the right one is finite: a log of 0 or of a negative number"
    zero = torch.zeros_like(theirs)
    if close(theirs, zero, tol):
        return (
            "your layer adds a log-det, but it preserves volume (the right log-det is 0 for every sample): "
            "remove the extra term and return ldj unchanged"
        )
    if close(ours, zero, tol):
        return "ldj is returned unchanged, but this layer changes volume: add the log of its Jacobian's determinant"
    ratio = _ratio(ours, theirs, tol)
    named = _ratio_fault(ratio, values, positions, batch, channels) if ratio is not None else ""
    if named:
        return named
    offsets = ours - theirs
    if ours.numel() > 1 and close(offsets, offsets.mean().expand_as(offsets), max(tol, 1e-9)):
        return _offset_fault(offsets.mean().item(), values)
    return (
        f"{DATA_DEPENDENT}: a data-dependent term is wrong; write down the Jacobian's diagonal (or its blocks) and "
        f"sum the logs of its absolute values"
    )


def round_trip_ldj_fault(ldj_forward: torch.Tensor, ldj_back: torch.Tensor, tol: float) -> str:
    """What reverse does wrong with ``ldj``, from its value after forward and after forward then reverse."""
    scale = tol * (1 + ldj_forward.abs().max().item())
    if close(ldj_back, torch.zeros_like(ldj_back), scale):
        return ""
    if close(ldj_back, ldj_forward, scale):
        return "reverse returns ldj unchanged: it must subtract the log-det that forward added"
    if close(ldj_back, 2 * ldj_forward, scale):
        return "reverse adds the log-det instead of subtracting it (ldj + ... where it needs ldj - ...)"
    if close(ldj_back, -ldj_forward, scale):
        return (
            "your layer returns its own log-det term in place of ldj plus (or minus) it: forward must return "
            "ldj + term and reverse ldj - term, so that the terms of a chain of layers add up"
        )
    return (
        f"after forward and reverse, ldj is {shown(ldj_back)} instead of 0: reverse must subtract exactly the "
        f"log-det forward added, computed from the same values"
    )


def is_permutation(yours: torch.Tensor, expected: torch.Tensor, tol: float) -> bool:
    """The same values per sample in another order (and not already equal)."""
    if yours.shape[0] != expected.shape[0] or yours[0].numel() != expected[0].numel() or close(yours, expected, tol):
        return False
    a = yours.flatten(1).sort(dim=1).values
    b = expected.flatten(1).sort(dim=1).values
    return close(a, b, tol)


def side_by_side(yours: torch.Tensor, expected: torch.Tensor, digits: int = 3) -> str:
    """The first sample of both tensors, printed when small enough to read."""
    if yours[0].numel() > MAX_SHOWN:
        return ""
    return f"\n    yours    {shown(yours[0], digits)}\n    expected {shown(expected[0], digits)}"


def output_fault(inputs: torch.Tensor, yours: torch.Tensor, expected: torch.Tensor, tol: float) -> str:
    """What is wrong with a layer's output ``yours`` when ``expected`` is right ("" if they agree)."""
    if yours.shape != expected.shape:
        return f"your output has shape {list(yours.shape)}, the right one {list(expected.shape)}"
    if close(yours, expected, tol):
        return ""
    bad = ~torch.isfinite(yours) & torch.isfinite(expected)
    if bad.any():
        at = inputs.reshape(yours.shape)[bad][:3] if inputs.numel() == yours.numel() else None
        where = f" for the input values {shown(at)}" if at is not None and at.is_floating_point() else ""
        return f"your output is {shown(yours[bad][:3])}{where}, where the right output is finite: a log of 0 or a division by 0"
    if inputs.shape == yours.shape and close(yours, inputs, tol):
        return "your layer returns its input unchanged: forward must transform z" + side_by_side(yours, expected)
    if is_permutation(yours, expected, tol):
        return "your output holds the right values in the wrong positions" + side_by_side(yours, expected)
    wrong = ~((yours - expected).abs() <= tol * (1 + expected.abs()))
    return (
        f"your output differs from the right one at {int(wrong.sum())} of {wrong.numel()} values, by up to "
        f"{(yours - expected).abs().max().item():.3g}" + side_by_side(yours, expected)
    )


#: Factors a slip in a formula often multiplies a result by, named as a student would write them.
COMMON_FACTORS = {"ln 2": math.log(2), "ln 10": math.log(10), "ln 2 / ln 10": math.log(2) / math.log(10), "2": 2.0}


def _factor_name(ratio: float, factors: Mapping[str, float]) -> str:
    for name, value in {**factors, **COMMON_FACTORS}.items():
        if value and abs(ratio - value) < 1e-6 * abs(value):
            return f" = {name}"
        if value and abs(ratio - 1 / value) < 1e-6 / abs(value):
            return f" = 1 / ({name})"
    return ""


def value_fault(
    yours: torch.Tensor, right: torch.Tensor, tol: float, factors: Mapping[str, float] | None = None
) -> str:
    """How a wrong result ``yours`` relates to the ``right`` one (same shape): what a student can look for.

    ``factors`` names the quantities of the exercise (``{"dims": 784}``), so that a result off by one of them
    says which.
    """
    yours, right = yours.double(), right.double()
    bad = ~torch.isfinite(yours) & torch.isfinite(right)
    if bad.any():
        return (
            f"your result is {shown(yours[bad][:3])} where the right one is {shown(right[bad][:3])}: an exp "
            f"under- or overflowed (stay in log space), or a log of 0 or a division by 0"
        )
    if bool((yours == yours.round()).all()) and not bool((right == right.round()).all()):
        return (
            "your result holds whole numbers only, where the right one does not: // (floor division), int() or an "
            "integer dtype rounds; divide with / and keep floats"
        )
    ratio = _ratio(yours.flatten(), right.flatten(), tol) if yours.numel() > 1 else None
    if ratio is not None and abs(ratio + 1) < 1e-6:
        return "your result has the wrong sign: it is minus the right one"
    if ratio is not None:
        named = _factor_name(ratio, factors or {})
        return (
            f"your result is the right one times {ratio:.6g}{named} for every value: a factor of the formula is wrong"
        )
    offsets = (yours - right).flatten()
    if offsets.numel() > 1 and close(offsets, offsets.mean().expand_as(offsets), max(tol, 1e-9)):
        offset = offsets.mean().item()
        named = _factor_name(abs(offset), factors or {})
        return f"your result is the right one {offset:+.6g}{named} for every value: a constant term is wrong or missing"
    worst = (yours - right).abs().max().item()
    return f"your result differs from the right one by up to {worst:.4g}"
