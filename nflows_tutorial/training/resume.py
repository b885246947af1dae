"""What a resumed run takes from its ``last.ckpt``: the file is checked before Lightning reads it, and a
learning rate asked for anew replaces the stored one, with a warning that says so."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from ..flows.model import ImageFlow
from ..io.checkpoint_files import CheckpointError, load_state_dict_checked, read_checkpoint

__all__ = ["LearningRateChangeWarning", "SetLearningRate", "check_resumable", "resumed_learning_rate"]

# What Lightning needs, beyond the weights, to go on where a run stopped.
_TRAINING_STATE = ("optimizer_states", "lr_schedulers", "loops", "global_step")


class LearningRateChangeWarning(UserWarning):
    """A resumed run trains on at the learning rate asked for, not at the one its checkpoint holds."""


def _unresumable(reason: str) -> CheckpointError:
    return CheckpointError(
        f"cannot resume this run: {reason.rstrip('.')}; start afresh with {{overwrite}} (which deletes the run's "
        "checkpoints), or choose another {out_dir}",
        overwrite=True,
        out_dir=...,
    )


def check_resumable(path: Path, model: ImageFlow, name: str) -> dict[str, Any]:
    """Read ``path`` weights-only and return it, if it is a training checkpoint of ``model`` (a ``name`` model).

    Raises :class:`~nflows_tutorial.io.checkpoints.CheckpointError` in one line naming the file and
    what is wrong with it: unsafe, truncated or not a checkpoint, of another model, or without the
    optimizer and loop state that resuming needs. ``model`` is left holding the file's weights.
    """
    try:
        ckpt = read_checkpoint(path)
    except CheckpointError as err:
        raise _unresumable(str(err)) from None
    try:
        load_state_dict_checked(model, ckpt["state_dict"], name)
    except CheckpointError as err:
        raise _unresumable(f"{path}: {err}") from None
    missing = [key for key in _TRAINING_STATE if key not in ckpt]
    if missing:
        raise _unresumable(
            f"{path} holds weights but not the training state a run goes on from ({', '.join(missing)} missing; "
            "a published-format file?)"
        )
    return ckpt


def _learning_rates(ckpt: dict[str, Any]) -> tuple[float, float]:
    """The learning rate the checkpoint's run began with and the one it had reached."""
    group = ckpt["optimizer_states"][0]["param_groups"][0]
    return float(group.get("initial_lr", group["lr"])), float(group["lr"])


def resumed_learning_rate(ckpt: dict[str, Any], asked: float | None, gamma: float) -> float | None:
    """The learning rate to set on resuming from ``ckpt``: ``None`` to keep the stored schedule.

    ``asked`` ``None``, or the rate the run began with (a command repeated with its resume flag),
    keeps it. Any other value replaces the current rate from the resumed step on, decaying by
    ``gamma`` per epoch from there, with a :class:`LearningRateChangeWarning` that says so.
    """
    began, reached = _learning_rates(ckpt)
    if asked is None or math.isclose(asked, began, rel_tol=1e-9):
        return None
    warnings.warn(
        f"resuming at the learning rate asked for, {asked:g}, in place of the run's own {reached:g} (it began at "
        f"{began:g}); it decays x{gamma:g} per epoch from here",
        LearningRateChangeWarning,
        stacklevel=3,
    )
    return asked


class SetLearningRate(pl.Callback):
    """Once Lightning has restored the optimizer and its schedule, set the learning rate to ``lr``.

    The schedule decays from ``lr`` on, and ``lr`` is recorded as the rate the run began with, so a
    later resume that asks for it again keeps the schedule.
    """

    def __init__(self, lr: float) -> None:
        self.lr = lr

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] = self.lr
        for config in trainer.lr_scheduler_configs:
            config.scheduler.base_lrs = [self.lr] * len(config.scheduler.base_lrs)
