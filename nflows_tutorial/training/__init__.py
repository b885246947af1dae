"""Training a course flow with PyTorch Lightning: the run, its folder, its callbacks, its logs and its errors."""

from . import errors
from .errors import *  # noqa: F403  (every error a run can end in: errors.__all__)
from .run import TrainerSettings, make_trainer, train_flow

__all__ = ["train_flow", "make_trainer", "TrainerSettings", *errors.__all__]
