"""Checking numbers: values side by side, log-determinants by autograd, layers given random parameters."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

__all__ = ["autograd_log_det", "randomized", "check_values", "shown", "NEGLIGIBLE", "MAX_SHOWN"]


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


#: The most values :func:`shown` prints; a larger tensor is described by its shape.
MAX_SHOWN = 64


def shown(t: torch.Tensor, digits: int = 6) -> str:
    """Up to :data:`MAX_SHOWN` values as nested lists, floats rounded to ``digits`` decimals; else the shape."""
    if t.numel() > MAX_SHOWN:
        return f"tensor of shape {list(t.shape)}"

    def text(v: float) -> str:
        # round(...) + 0.0 turns a rounded -0.0 into 0.0, which would otherwise print differently by machine.
        return f"{round(v, digits) + 0.0:.{digits}f}" if t.is_floating_point() else str(int(v))

    def nested(values: list | float) -> str:
        if isinstance(values, list):
            return "[" + ", ".join(nested(v) for v in values) + "]"
        return text(values)

    return nested(t.tolist())


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
        f"[{'ok  ' if ok else 'FAIL'}] {label}: yours {shown(got, digits)} | expected {shown(want, digits)} "
        f"| max difference {difference}"
    )
    if not ok:
        raise AssertionError(f"{label}: yours differs from the expected value by up to {worst:.3g}")
