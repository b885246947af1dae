"""The Lightning pieces of a course training run: stop on a non-finite loss, resumable batches, atomic checkpoints."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO

from ..io.files import atomic_write
from ..io.mnist import ImageDataset
from .errors import NonFiniteLossError

__all__ = [
    "StopOnNonFiniteLoss",
    "ResumableBatches",
    "TrackTrainingData",
    "AtomicCheckpointIO",
    "checkpoint_callbacks",
    "LAST",
]

#: File name (without ``.ckpt``) of the checkpoint a run resumes from.
LAST = "last"


class StopOnNonFiniteLoss(pl.Callback):
    """Stop training, before the bad gradient reaches the weights, once the loss is NaN or infinite.

    Under several processes the decision is shared, so every process stops at the same step.
    ``last_checkpoint`` is named in the message when it exists (it predates the bad step).
    """

    def __init__(self, last_checkpoint: Path | None = None) -> None:
        self.last_checkpoint = last_checkpoint

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        value = loss.detach()
        bad = not bool(torch.isfinite(value).all())
        if not trainer.strategy.reduce_boolean_decision(bad, all=False):
            return
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        hints = [f"a lower learning rate ({{lr}}; it is {lr:g} at this step)"]
        if trainer.precision not in ("32-true", "64-true"):
            hints.append(f"full precision ({{precision}} instead of {trainer.precision})")
        saved = ""
        if self.last_checkpoint is not None and self.last_checkpoint.is_file():
            saved = f"; {self.last_checkpoint} holds the weights from before this step"
        raise NonFiniteLossError(
            f"the training loss became {float(value.float().mean())} at step {trainer.global_step} "
            f"(epoch {trainer.current_epoch}), so training stopped before that step could change the weights. "
            f"Try {' or '.join(hints)}{saved}",
            lr=...,
            precision="32-true",
        )


class ResumableBatches:
    """Training batches whose order is a function of the seed and the epoch, so a run can stop anywhere and go on.

    Every epoch draws a fresh permutation from ``(seed, epoch)``, deals it out among the training
    processes (process ``r`` of ``w`` takes every ``w``-th image from the ``r``-th on) and cuts it
    into full batches. Lightning stores :meth:`state_dict` in each checkpoint and hands it back on
    resume, and the interrupted epoch goes on with the batch after the last one trained on. The
    epoch, rank and process count are read from the trainer given to :meth:`follow`.
    """

    def __init__(self, dataset: ImageDataset, batch_size: int, seed: int) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.consumed = 0
        self._trainer: pl.Trainer | None = None
        self._resume: tuple[int, int] | None = None

    def follow(self, trainer: pl.Trainer) -> None:
        """Take the epoch, the process rank and the process count from ``trainer`` from now on."""
        self._trainer = trainer

    @property
    def epoch(self) -> int:
        """The trainer's current epoch (0 before :meth:`follow`)."""
        return 0 if self._trainer is None else self._trainer.current_epoch

    @property
    def rank(self) -> int:
        return 0 if self._trainer is None else self._trainer.global_rank

    @property
    def world_size(self) -> int:
        return 1 if self._trainer is None else self._trainer.world_size

    def __len__(self) -> int:
        return len(self.dataset) // self.world_size // self.batch_size

    def __iter__(self):
        # The epoch is read when iteration starts: on resume that is after Lightning restored it.
        epoch = self.epoch
        start = 0
        if self._resume is not None and self._resume[0] == epoch and self._resume[1] < len(self):
            start = self._resume[1]
        self._resume = None
        order = torch.randperm(len(self.dataset), generator=torch.Generator().manual_seed(self.seed + epoch))
        order = order[self.rank :: self.world_size]
        for b in range(start, len(self)):
            yield self.dataset.__getitems__(order[b * self.batch_size : (b + 1) * self.batch_size])

    def state_dict(self) -> dict[str, int]:
        """Where training stands in the data: the epoch and the batches of it already trained on."""
        return {"epoch": self.epoch, "consumed": self.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Make the next iteration start after the batches recorded in ``state``."""
        self._resume = (int(state["epoch"]), int(state["consumed"]))


class TrackTrainingData(pl.Callback):
    """Keep :class:`ResumableBatches` in step with the trainer, and make the dequantization noise of each
    step a function of the seed, the step and the process, so that a resumed run draws what an
    uninterrupted one would have drawn."""

    def __init__(self, batches: ResumableBatches, seed: int) -> None:
        self.batches = batches
        self.seed = seed

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.batches.follow(trainer)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step * trainer.world_size + trainer.global_rank
        torch.manual_seed(self.seed * 1_000_003 + step)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.batches.consumed = batch_idx + 1


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint writer that renames a finished temporary file into place.

    A run killed while saving leaves the previous ``last.ckpt`` intact instead of a truncated one.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(target) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


def checkpoint_callbacks(folder: Path, checkpoint_every: int | None) -> list[ModelCheckpoint]:
    """The best-``val_bpd`` checkpoint first, then the writers of ``last.ckpt``."""
    best = ModelCheckpoint(
        dirpath=folder,
        filename="best-{epoch}-{step}",
        monitor="val_bpd",
        mode="min",
        save_top_k=1,
        enable_version_counter=False,
    )
    # Two writers of last.ckpt: one after every epoch, one every `checkpoint_every` steps, so a run
    # killed mid-epoch loses at most that many steps.
    writers = [
        ModelCheckpoint(
            dirpath=folder, filename=LAST, save_top_k=1, save_on_train_epoch_end=True, enable_version_counter=False
        ),
    ]
    if checkpoint_every is not None:
        writers.append(
            ModelCheckpoint(
                dirpath=folder,
                filename=LAST,
                save_top_k=1,
                every_n_train_steps=checkpoint_every,
                enable_version_counter=False,
            )
        )
    return [best, *writers]
