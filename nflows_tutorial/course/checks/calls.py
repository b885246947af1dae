"""Calling a student's layer safely: a time limit, inputs changed in place, tensors of the wrong dtype."""

from __future__ import annotations

import re
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = [
    "CALL_TIME_LIMIT",
    "Layer",
    "CheckTimeout",
    "Outcome",
    "time_limit",
    "call_layer",
    "same",
    "unregistered_tensors",
]

Layer = Callable[..., tuple[torch.Tensor, torch.Tensor]]

_DTYPE_ERROR = re.compile(r"dtype|Double|Float|Half|scalar type", re.IGNORECASE)


class CheckTimeout(Exception):
    """Raised inside a check when the code under test runs past its time limit."""


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`CheckTimeout` in the block after ``seconds`` (only where SIGALRM exists, in the main thread).

    A loop that never ends in a student's layer would otherwise hang the notebook or the grader; an alarm
    interrupts Python code between two bytecodes, which is where such loops spin.
    """
    if seconds is None or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise CheckTimeout(f"did not return within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal shapes and values, with NaN equal to NaN."""
    if a.shape != b.shape:
        return False
    if a.is_floating_point():
        return bool(((a == b) | (a.isnan() & b.isnan())).all())
    return bool((a == b).all())


def unregistered_tensors(layer: object) -> list[tuple[str, torch.Tensor]]:
    """Tensors held as plain attributes of a module (``self.w = tensor``): ``.to()`` and ``.double()`` skip them."""
    if not isinstance(layer, nn.Module):
        return []
    found = []
    for prefix, module in layer.named_modules():
        for name, value in vars(module).items():
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                found.append((f"self.{prefix + '.' if prefix else ''}{name}", value))
    return found


# A RuntimeError of tensors whose shapes do not fit together.
_SHAPE_ERROR = re.compile(
    r"size of tensor|must match the size|shape|mat1 and mat2|expected input|channels", re.IGNORECASE
)


def _dtype_cause(layer: object, dtype: torch.dtype) -> str:
    plain = [(name, t) for name, t in unregistered_tensors(layer) if t.dtype != dtype]
    if plain:
        name, tensor = plain[0]
        attribute = name.rsplit(".", 1)[-1]
        return (
            f"{name} is a plain tensor attribute, so the check's {dtype} copy of your layer still holds it in "
            f"{tensor.dtype} (.double() and .to() convert only parameters and buffers): register it with "
            f"self.register_buffer({attribute!r}, tensor)"
        )
    return (
        f"a tensor your layer creates has another dtype than its input, which is {dtype} in the check: create "
        f"it in the input's dtype, e.g. torch.eye(c, dtype=z.dtype) or torch.zeros_like(z)"
    )


@dataclass
class Outcome:
    """One call of a layer: its output, or what went wrong and the usual cause."""

    out: tuple[torch.Tensor, torch.Tensor] | None
    problem: str = ""
    cause: str = ""


def _changed_in_place(z: torch.Tensor, z_before: torch.Tensor, ldj: torch.Tensor, ldj_before: torch.Tensor) -> str:
    if not same(z, z_before):
        return "changes its input z in place (z += ..., z[...] = ..., z.mul_(...))"
    if not same(ldj, ldj_before):
        return "changes the ldj it was given in place (ldj += ...)"
    return ""


#: Seconds one call of a layer may take before it is stopped as a layer that never returns.
CALL_TIME_LIMIT = 20.0


def call_layer(
    layer: Layer,
    z: torch.Tensor,
    ldj: torch.Tensor,
    reverse: bool,
    seconds: float | None = CALL_TIME_LIMIT,
    **kwargs: Any,
) -> Outcome:
    """Run one direction of ``layer`` and report a crash, a timeout, a wrong return or an input changed in place.

    ``NotImplementedError`` (an unfinished exercise) propagates, so that a stub fails loudly.
    """
    direction = "reverse" if reverse else "forward"
    z_before, ldj_before = z.clone(), ldj.clone()
    try:
        with time_limit(seconds):
            out = layer(z, ldj, reverse=reverse, **kwargs)
    except NotImplementedError:
        raise
    except CheckTimeout as err:
        cause = "a loop that never ends (a while loop whose condition never changes?); every layer is a fixed formula"
        return Outcome(None, f"{direction} {err}", cause)
    except Exception as err:  # any crash inside student code is reported, with its type and message
        problem = f"{direction} raised {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        if _DTYPE_ERROR.search(str(err)):
            return Outcome(None, problem, _dtype_cause(layer, z.dtype if z.is_floating_point() else ldj.dtype))
        if _SHAPE_ERROR.search(str(err)):
            hint = (
                "a shape error in a layer often means ldj [batch] met an unsummed per-value term (sum it with "
                ".flatten(1).sum(dim=1)), or the layer was built for another number of channels or image size"
            )
        else:
            hint = f"call your layer yourself, layer(z, torch.zeros(len(z)){', reverse=True' if reverse else ''}, to see the line"
        return Outcome(None, problem, f"your {problem}: {hint}")
    if not (isinstance(out, tuple) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out)):
        what = type(out).__name__ if not isinstance(out, tuple) else f"a tuple of {len(out)}"
        return Outcome(None, f"{direction} returned {what}, not a pair of tensors", "return the pair (z, ldj)")
    changed = _changed_in_place(z, z_before, ldj, ldj_before)
    if changed:
        cause = (
            f"your {direction} {changed}: the caller still needs the tensor it passed (a flow runs reverse on "
            f"it, a check compares with it); compute a new tensor instead: z = z + ..., ldj = ldj + ..."
        )
        return Outcome(None, f"{direction} {changed}", cause)
    return Outcome(out)
