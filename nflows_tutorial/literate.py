"""Reading the package from a notebook: highlighted source of its objects, and autograd checks of its maths."""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

__all__ = ["SourceView", "show_source", "autograd_log_det", "compare"]


@dataclass(frozen=True)
class SourceView:
    """Source text of one object with its origin; notebooks render it as highlighted HTML.

    ``repr`` gives the plain text (what a terminal or a text export shows).
    """

    title: str
    code: str

    def _repr_html_(self) -> str:
        # Inline styles (noclasses) so the colours survive in Colab, GitHub and exported HTML alike.
        body = highlight(self.code, PythonLexer(), HtmlFormatter(noclasses=True, style="friendly", nowrap=False))
        return f'<div style="font-size:0.85em"><b><code>{self.title}</code></b>{body}</div>'

    def __repr__(self) -> str:
        return f"# {self.title}\n{self.code}"


def show_source(obj: type | Callable[..., Any], *members: str) -> SourceView:
    """Source of a class, function or method of the package, for display in a notebook.

    With ``members`` (method names of a class) only those methods are shown, in the given order,
    so a long class can be read one idea at a time.

    Example:
        >>> from nflows_tutorial import SqueezeFlow
        >>> show_source(SqueezeFlow, "forward").title
        'nflows_tutorial.layers.multiscale.SqueezeFlow.forward'
    """
    name = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
    if not members:
        try:
            code = inspect.getsource(obj)
        except (TypeError, OSError) as err:
            raise TypeError(f"cannot show the source of {name}: {err}") from None
        return SourceView(name, textwrap.dedent(code))
    if not inspect.isclass(obj):
        raise TypeError(f"members can only be picked from a class; {name} is a {type(obj).__name__}")
    parts = []
    for member in members:
        if member not in vars(obj):
            defined = ", ".join(k for k, v in vars(obj).items() if inspect.isfunction(v))
            raise AttributeError(f"{name} defines no method {member!r}; it defines: {defined}")
        parts.append(textwrap.dedent(inspect.getsource(vars(obj)[member])))
    title = f"{name}.{members[0]}" if len(members) == 1 else f"{name}: {', '.join(members)}"
    return SourceView(title, "\n".join(parts))


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


def compare(
    label: str, ours: torch.Tensor | float, reference: torch.Tensor | float, atol: float = 1e-8, digits: int = 6
) -> float:
    """Print ``ours`` and ``reference`` (numbers, or tensors of a few values) and the largest difference between them.

    The difference is printed to eight decimals, so it reads the same on any machine when the two
    agree to well within ``atol`` (float64 checks agree to about 1e-10); an ``AssertionError`` names the label when they do not agree to
    ``atol``. Returns the largest absolute difference.
    """
    a = torch.as_tensor(ours, dtype=torch.float64).detach().cpu().flatten()
    b = torch.as_tensor(reference, dtype=torch.float64).detach().cpu().flatten()
    if a.shape != b.shape:
        raise ValueError(f"{label}: cannot compare {a.numel()} values with {b.numel()}")

    def show(values: torch.Tensor) -> str:
        # round(...) + 0.0 turns a rounded -0.0 into 0.0, which would otherwise print differently by machine.
        text = [f"{round(v, digits) + 0.0:.{digits}f}" for v in values.tolist()]
        return text[0] if len(text) == 1 else "[" + ", ".join(text) + "]"

    difference = float((a - b).abs().max()) if a.numel() else 0.0
    print(f"{label}: {show(a)} vs {show(b)}, difference {difference:.8f}")
    if not difference <= atol:
        raise AssertionError(f"{label}: the two differ by {difference:.3g}, more than the tolerance {atol:g}")
    return difference
