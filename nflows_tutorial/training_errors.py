"""Why a training run cannot start or cannot go on."""

from __future__ import annotations

__all__ = ["TrainingError", "NonFiniteLossError"]


class TrainingError(RuntimeError):
    """Training cannot start, or cannot go on; the message says why and what to do."""


class NonFiniteLossError(TrainingError):
    """The training loss became NaN or infinite."""
