"""Training a course flow with PyTorch Lightning: the run, its folder, its callbacks, its logs and its errors."""

from .errors import (
    NonFiniteLossError,
    RunFolderInUseError,
    TrainingError,
    TrainingInterrupted,
    UnusableSettingsError,
    UnwritableOutputError,
)
from .run import TrainerSettings, make_trainer, train_flow

__all__ = [
    "train_flow",
    "make_trainer",
    "TrainerSettings",
    "TrainingError",
    "UnusableSettingsError",
    "UnwritableOutputError",
    "RunFolderInUseError",
    "NonFiniteLossError",
    "TrainingInterrupted",
]
