"""Why a training run cannot start or cannot go on."""

from __future__ import annotations

__all__ = ["TrainingError", "UnwritableOutputError", "NonFiniteLossError"]


class TrainingError(RuntimeError):
    """Training cannot start, or cannot go on; the message says why and what to do."""


class UnwritableOutputError(TrainingError):
    """The output folder cannot be written, or has too little space: the machine's state, not the request."""


class NonFiniteLossError(TrainingError):
    """The training loss became NaN or infinite."""
