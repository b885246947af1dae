"""Checks of a training run's settings: ones no run can use are refused before anything is read or written."""

from __future__ import annotations

import math
from datetime import timedelta

from ..io.mnist import TRAIN_SIZE
from .errors import UnusableSettingsError

__all__ = ["check_counts", "check_settings", "as_timedelta"]


def as_timedelta(max_time: timedelta | float | str | None) -> timedelta | str | None:
    """``max_time`` as Lightning takes it: a number of seconds becomes a ``timedelta``, text stays as it is."""
    if isinstance(max_time, (int, float)):
        if max_time <= 0:
            raise ValueError(f"max_time must be positive, got {max_time} seconds")
        return timedelta(seconds=max_time)
    return max_time


def check_counts(**counts: int | None) -> None:
    """Refuse a count below 1, naming it; ``None`` (not given) passes."""
    for label, value in counts.items():
        if value is not None and value < 1:
            raise ValueError(f"{label} must be positive, got {value}")


def check_settings(lr: float | None, limit: int | None, batch_size: int, timing_repeats: int) -> None:
    """Refuse settings no run can use, naming the parameter."""
    if timing_repeats < 0:
        raise ValueError(f"timing_repeats must be 0 (no timing) or more, got {timing_repeats}")
    if lr is not None and not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number, got {lr}")
    _check_batch_size(batch_size, limit)


def _check_batch_size(batch_size: int, limit: int | None) -> None:
    """Refuse a batch larger than the training images it is cut from: no full batch, no step, a useless run."""
    if limit is not None and limit < TRAIN_SIZE:
        if batch_size > limit:
            raise UnusableSettingsError(
                f"{{batch_size}} asks for more images per step than {{limit}} leaves of the training split ({limit:,} "
                f"of {TRAIN_SIZE:,}), and an incomplete batch is dropped, so nothing would be trained: choose a batch "
                f"size of at most {limit:,}, or a larger limit",
                batch_size=batch_size,
                limit=limit,
            )
    elif batch_size > TRAIN_SIZE:
        raise UnusableSettingsError(
            f"{{batch_size}} asks for more images per step than the training split holds ({TRAIN_SIZE:,}), and an "
            f"incomplete batch is dropped, so nothing would be trained: choose a batch size of at most {TRAIN_SIZE:,}",
            batch_size=batch_size,
        )
