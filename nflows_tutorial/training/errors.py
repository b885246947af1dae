"""Why a training run cannot start or cannot go on."""

from __future__ import annotations

from ..errors import SettingsError

__all__ = ["TrainingError", "UnwritableOutputError", "NonFiniteLossError"]


class TrainingError(SettingsError, RuntimeError):
    """Training cannot start, or cannot go on; the message says why and what to do, naming the settings that help."""


class UnwritableOutputError(TrainingError):
    """The output folder cannot be written, or has too little space: the machine's state, not the request."""


class NonFiniteLossError(TrainingError):
    """The training loss became NaN or infinite."""
