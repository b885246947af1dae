"""Switches the course reads from the environment."""

from __future__ import annotations

import os
import warnings

__all__ = ["QUICK_VARIABLE", "quick_mode"]

QUICK_VARIABLE = "NFLOWS_TUTORIAL_QUICK"
_OLD_QUICK_VARIABLE = "NFLOWS_TUTORIAL_FAST"


def quick_mode() -> bool:
    """Whether ``$NFLOWS_TUTORIAL_QUICK`` is ``1``: notebooks evaluate on small subsets and train briefly.

    The test suite and CI run the notebooks this way; a full run (the stored outputs) leaves it unset.
    The variable's former name, ``NFLOWS_TUTORIAL_FAST``, still works and says that it is deprecated.
    """
    value = os.environ.get(QUICK_VARIABLE)
    if value is None and _OLD_QUICK_VARIABLE in os.environ:
        warnings.warn(
            f"{_OLD_QUICK_VARIABLE} is deprecated: set {QUICK_VARIABLE}=1 instead",
            FutureWarning,
            stacklevel=2,
        )
        value = os.environ[_OLD_QUICK_VARIABLE]
    return value == "1"
