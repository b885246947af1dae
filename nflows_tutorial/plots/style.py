"""What every course figure shares: the widest a figure may be, and the two colours of a mask picture."""

from __future__ import annotations

__all__ = ["MAX_WIDTH", "KEPT", "TRANSFORMED"]

#: Widest figure in inches: wider ones are scaled down on a laptop screen or a slide until their text is unreadable.
MAX_WIDTH = 10.0
#: Colour of a mask cell that is kept (an input of the coupling's network).
KEPT = "#1f4e8c"
#: Colour of a mask cell that the coupling transforms.
TRANSFORMED = "#cfe0f3"
