"""How a training run stops when asked to: Ctrl-C and SIGTERM alike, as a :class:`~.errors.TrainingInterrupted`
that names the checkpoint to resume from, or says there is none yet."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from .errors import TrainingInterrupted

__all__ = ["interrupted_at", "stops_on_interrupt"]


class _TerminateAsInterrupt:
    """A SIGTERM handler that stops the run as Ctrl-C does, remembering that it was SIGTERM.

    While Lightning trains, its own handler calls this one after noting the signal, and Lightning
    stops at the end of the step: then this one only remembers.
    """

    def __init__(self) -> None:
        self.received = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.received = True
        if signal.getsignal(signal.SIGTERM) is self:
            raise KeyboardInterrupt


def interrupted_at(last: Path, signum: int) -> TrainingInterrupted:
    """The interrupt of a run whose resumable checkpoint would be ``last``, if it exists by now."""
    return TrainingInterrupted(last if last.is_file() else None, signum)


@contextmanager
def stops_on_interrupt(last: Path) -> Iterator[None]:
    """Run a training run's block so that Ctrl-C or SIGTERM comes out as :class:`~.errors.TrainingInterrupted`.

    Where SIGTERM would kill the process outright (its default), it is made to stop the block as
    Ctrl-C does for its duration, so that what the block holds (the run folder's lock) is released;
    while Lightning trains, it stops at the end of the step.
    """
    handler = _TerminateAsInterrupt()
    own = threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    previous = signal.signal(signal.SIGTERM, handler) if own else None
    try:
        yield
    except TrainingInterrupted:
        raise
    except KeyboardInterrupt:
        raise interrupted_at(last, signal.SIGTERM if handler.received else signal.SIGINT) from None
    finally:
        if own:
            signal.signal(signal.SIGTERM, previous)
