"""Every environment variable the package and the notebooks read: its name, its meaning, and one accessor each.

========================================  ==========================================================
``PATH_DATASETS``                         folder holding ``MNIST/raw`` (default ``<project>/data``)
``PATH_CHECKPOINT``                       the checkpoint cache (default ``<project>/saved_models/tutorial11``)
``NFLOWS_TUTORIAL_CHECKPOINT_URL``        base URL of the published checkpoints (a mirror, say)
``NFLOWS_TUTORIAL_QUICK``                 ``1``: notebooks evaluate on small subsets and train briefly
``NFLOWS_TUTORIAL_COURSE_CHECKPOINTS``    folder of the course's own checkpoints, used where a published one cannot be had
========================================  ==========================================================
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "DATASETS_VARIABLE",
    "CHECKPOINT_VARIABLE",
    "URL_VARIABLE",
    "QUICK_VARIABLE",
    "COURSE_CHECKPOINTS_VARIABLE",
    "datasets_folder",
    "checkpoint_folder",
    "checkpoint_url_base",
    "quick_mode",
    "course_checkpoints_folder",
]

DATASETS_VARIABLE = "PATH_DATASETS"
CHECKPOINT_VARIABLE = "PATH_CHECKPOINT"
URL_VARIABLE = "NFLOWS_TUTORIAL_CHECKPOINT_URL"
QUICK_VARIABLE = "NFLOWS_TUTORIAL_QUICK"
COURSE_CHECKPOINTS_VARIABLE = "NFLOWS_TUTORIAL_COURSE_CHECKPOINTS"


def _folder(variable: str) -> Path | None:
    value = os.environ.get(variable, "").strip()
    return Path(value) if value else None


def datasets_folder() -> Path | None:
    """``$PATH_DATASETS``, the folder that holds ``MNIST/raw``; ``None`` when unset."""
    return _folder(DATASETS_VARIABLE)


def checkpoint_folder() -> Path | None:
    """``$PATH_CHECKPOINT``, the checkpoint cache; ``None`` when unset."""
    return _folder(CHECKPOINT_VARIABLE)


def checkpoint_url_base() -> str | None:
    """``$NFLOWS_TUTORIAL_CHECKPOINT_URL``, where to download published checkpoints from; ``None`` when unset."""
    return os.environ.get(URL_VARIABLE, "").strip() or None


def quick_mode() -> bool:
    """Whether ``$NFLOWS_TUTORIAL_QUICK`` is ``1``: notebooks evaluate on small subsets and train briefly.

    The test suite and CI run the notebooks this way; a full run (the stored outputs) leaves it unset.
    """
    return os.environ.get(QUICK_VARIABLE) == "1"


def course_checkpoints_folder() -> Path | None:
    """``$NFLOWS_TUTORIAL_COURSE_CHECKPOINTS``, the course's own checkpoints; ``None`` when unset."""
    return _folder(COURSE_CHECKPOINTS_VARIABLE)
