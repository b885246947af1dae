"""Reading the package from a notebook: the highlighted source of its objects."""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

__all__ = ["SourceView", "show_source"]


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
        'nflows_tutorial.flows.multiscale.SqueezeFlow.forward'
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
