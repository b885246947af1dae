"""Training a course flow with PyTorch Lightning: checkpoints to resume from, a final test, a published-format file."""

from __future__ import annotations

import errno
import importlib.util
import logging
import math
import os
import shutil
import signal
import tempfile
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from .builders import create_model
from .data import ImageDataset, load_mnist, make_loader
from .evaluation import count_parameters, evaluate_bpd, time_likelihood, time_sampling
from .model import ImageFlow
from .paths import project_dir
from .pretrained import REGISTRY, read_checkpoint

__all__ = [
    "train_flow",
    "TrainingError",
    "UnwritableOutputError",
    "NonFiniteLossError",
    "StopOnNonFiniteLoss",
    "ResumableBatches",
    "TrackTrainingData",
    "AtomicCheckpointIO",
    "default_out_dir",
    "run_paths",
    "check_writable",
    "make_trainer",
    "quiet_lightning",
]

GRADIENT_CLIP = 1.0
EVAL_BATCH_SIZE = 64
LAST = "last"
PARTIAL = ".part"


class TrainingError(RuntimeError):
    """Training cannot start, or cannot go on; the message says why and what to do."""


class UnwritableOutputError(TrainingError):
    """The output folder cannot be written, or has too little space: the machine's state, not the request."""


class NonFiniteLossError(TrainingError):
    """The training loss became NaN or infinite."""


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
        hints = [f"a lower learning rate (--lr; it is {lr:g} at this step)"]
        if trainer.precision not in ("32-true", "64-true"):
            hints.append(f"full precision (--precision 32-true instead of {trainer.precision})")
        saved = ""
        if self.last_checkpoint is not None and self.last_checkpoint.is_file():
            saved = f"; {self.last_checkpoint} holds the weights from before this step"
        raise NonFiniteLossError(
            f"the training loss became {float(value.float().mean())} at step {trainer.global_step} "
            f"(epoch {trainer.current_epoch}), so training stopped before that step could change the weights. "
            f"Try {' or '.join(hints)}{saved}"
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

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step * trainer.world_size + trainer.global_rank
        torch.manual_seed(self.seed * 1_000_003 + step)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.batches.consumed = batch_idx + 1


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint writer that renames a finished temporary file into place.

    A run killed while saving leaves the previous ``last.ckpt`` intact instead of a truncated one.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=PARTIAL, dir=target.parent)
        os.close(fd)
        try:
            super().save_checkpoint(checkpoint, tmp, storage_options)
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)


def default_out_dir() -> Path:
    """Where training runs go unless told otherwise: ``<project>/runs``."""
    return project_dir() / "runs"


def run_paths(name: str, out_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """The files and folders of a training run of model ``name`` under ``out_dir``.

    ``published`` is the ``MNISTFlow_<name>.ckpt`` file that ``load_pretrained(name,
    checkpoint_dir=out_dir)`` reads; ``checkpoints`` holds Lightning's ``last.ckpt`` and the best
    ``val_bpd`` checkpoint; ``run / "logs"`` holds the TensorBoard or CSV logs.
    """
    root = Path(out_dir) if out_dir is not None else default_out_dir()
    run = root / name
    return {
        "root": root,
        "run": run,
        "checkpoints": run / "checkpoints",
        "last": run / "checkpoints" / f"{LAST}.ckpt",
        "published": root / REGISTRY[name].filename if name in REGISTRY else root / f"MNISTFlow_{name}.ckpt",
    }


def check_writable(folder: Path, need_bytes: int) -> None:
    """Fail early, with the reason, if ``folder`` cannot be created or written, or has less than ``need_bytes`` free."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder) as probe:
            probe.write(b"\0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as err:
        raise UnwritableOutputError(
            f"cannot write training output to {folder} ({err.strerror or err}); choose a writable folder with "
            f"--out-dir (or out_dir=...)"
        ) from None
    free = shutil.disk_usage(folder).free
    if free < need_bytes:
        raise UnwritableOutputError(
            f"only {free / 2**20:.0f} MiB free in {folder}, and this run needs about {need_bytes / 2**20:.0f} MiB "
            f"for its checkpoints and logs; free some space or choose another folder with --out-dir"
        )


def _space_needed(model: ImageFlow) -> int:
    # A Lightning checkpoint holds the weights and Adam's two moments; keep room for the last and best
    # checkpoints, one being rewritten, the published file, and the logs.
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return 12 * weights + 32 * 2**20


def _logger(folder: Path) -> CSVLogger | TensorBoardLogger:
    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        return TensorBoardLogger(save_dir=str(folder), name="logs", default_hp_metric=False)
    return CSVLogger(save_dir=str(folder), name="logs")


def _prepare_checkpoint_dir(paths: dict[str, Path], resume: bool, overwrite: bool) -> Path | None:
    """Return the checkpoint to resume from (or ``None``), after checking the run folder agrees with the request."""
    for leftover in paths["checkpoints"].glob(f".*{PARTIAL}"):  # from a run killed while saving
        leftover.unlink(missing_ok=True)
    existing = sorted(paths["checkpoints"].glob("*.ckpt"))
    if resume:
        if not paths["last"].is_file():
            raise TrainingError(
                f"nothing to resume: there is no {paths['last']}; start a new run without --resume"
            )
        return paths["last"]
    if existing:
        if not overwrite:
            raise TrainingError(
                f"{paths['checkpoints']} already holds checkpoints of an earlier run; continue it with --resume, "
                f"or start again with --overwrite (which deletes them), or choose another --out-dir"
            )
        for old in existing:
            old.unlink()
    return None


def _timedelta(max_time: timedelta | float | str | None) -> timedelta | str | None:
    if isinstance(max_time, (int, float)):
        if max_time <= 0:
            raise ValueError(f"max_time must be positive, got {max_time} seconds")
        return timedelta(seconds=max_time)
    return max_time


def _save_published(model: ImageFlow, result: dict[str, Any], path: Path) -> None:
    """Write ``{"state_dict", "result"}`` atomically: a reader finds the old file or the whole new one."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PARTIAL, dir=path.parent)
    os.close(fd)
    try:
        try:
            torch.save({"state_dict": state, "result": result}, tmp)
        except RuntimeError as err:  # torch's writer reports a failed write (a full disk, say) this way
            free = shutil.disk_usage(path.parent).free
            raise OSError(errno.ENOSPC if free < 2**20 else errno.EIO,
                          f"could not write the checkpoint ({str(err).splitlines()[0]})", str(path)) from None
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _checkpoint_callbacks(folder: Path, checkpoint_every: int | None) -> list[ModelCheckpoint]:
    """The best-``val_bpd`` checkpoint first, then the writers of ``last.ckpt``."""
    best = ModelCheckpoint(
        dirpath=folder, filename="best-{epoch}-{step}", monitor="val_bpd", mode="min", save_top_k=1,
        enable_version_counter=False,
    )
    # Two writers of last.ckpt: one after every epoch, one every `checkpoint_every` steps, so a run
    # killed mid-epoch loses at most that many steps.
    writers = [
        ModelCheckpoint(dirpath=folder, filename=LAST, save_top_k=1, save_on_train_epoch_end=True,
                        enable_version_counter=False),
    ]
    if checkpoint_every is not None:
        writers.append(ModelCheckpoint(dirpath=folder, filename=LAST, save_top_k=1,
                                       every_n_train_steps=checkpoint_every, enable_version_counter=False))
    return [best, *writers]


def _check_counts(**counts: int | None) -> None:
    for label, value in counts.items():
        if value is not None and value < 1:
            raise ValueError(f"{label} must be positive, got {value}")


def _final_test(
    model: ImageFlow, val_set: ImageDataset, *, limit: int | None, importance_samples: int, seed: int,
    timing_repeats: int, progress: bool,
) -> dict[str, Any]:
    """The published ``result`` entries: importance-sampled bpd on validation and test, and the speeds."""
    result: dict[str, Any] = {}
    for split, dataset in (("val", val_set), ("test", load_mnist("test"))):
        loader = make_loader(dataset, EVAL_BATCH_SIZE, limit=limit)
        bpd = evaluate_bpd(model, loader, importance_samples=importance_samples, seed=seed, progress=progress,
                           desc=f"{split} bpd")
        result[split] = [{"test_bpd": bpd}]
    if timing_repeats:
        result["time"] = time_likelihood(model, repeats=timing_repeats)
        result["samp_time"] = time_sampling(model, repeats=timing_repeats)
    return result


class _DropAdvertising(logging.Filter):
    """Drop Lightning's start-up advertisement for its cloud logger; keep every other message."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


_LIGHTNING_LOGGERS = ("lightning_fabric.utilities.rank_zero", "pytorch_lightning.utilities.rank_zero")


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Run a block with Lightning's advertising tip and its own deprecation warnings about torch's pytree
    silenced; errors, warnings about the run and progress messages still come through."""
    drop = _DropAdvertising()
    loggers = [logging.getLogger(name) for name in _LIGHTNING_LOGGERS]
    for logger in loggers:
        logger.addFilter(drop)
    try:
        with warnings.catch_warnings():
            # Lightning's own pytree helper uses a torch class that torch has deprecated: nothing a user can act on.
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                                    category=FutureWarning)
            yield
    finally:
        for logger in loggers:
            logger.removeFilter(drop)


def make_trainer(
    paths: dict[str, Path],
    train_batches: ResumableBatches,
    *,
    seed: int = 42,
    epochs: int = 200,
    max_steps: int | None = None,
    max_time: timedelta | float | str | None = None,
    accelerator: str = "auto",
    devices: int | str | list[int] = "auto",
    strategy: str = "auto",
    num_nodes: int = 1,
    precision: str = "32-true",
    checkpoint_every: int | None = 200,
    progress: bool = True,
) -> tuple[pl.Trainer, ModelCheckpoint]:
    """The Lightning ``Trainer`` of a course run, and its callback that keeps the best-``val_bpd`` checkpoint.

    ``paths`` come from :func:`run_paths`. The trainer clips gradients to norm 1, stops at
    ``epochs`` (or ``max_steps`` / ``max_time``), keeps ``last.ckpt`` for resuming, logs to
    ``paths["run"] / "logs"`` and stops on a non-finite loss.
    """
    best, *callbacks = _checkpoint_callbacks(paths["checkpoints"], checkpoint_every)
    try:
        with quiet_lightning():
            trainer = pl.Trainer(
                default_root_dir=str(paths["run"]),
                accelerator=accelerator,
                devices=devices,
                strategy=strategy,
                num_nodes=num_nodes,
                precision=precision,
                max_epochs=epochs,
                max_steps=-1 if max_steps is None else max_steps,
                max_time=_timedelta(max_time),
                gradient_clip_val=GRADIENT_CLIP,
                callbacks=[
                    StopOnNonFiniteLoss(paths["last"]), TrackTrainingData(train_batches, seed), best, *callbacks,
                    LearningRateMonitor("epoch"),
                ],
                logger=_logger(paths["run"]),
                plugins=[AtomicCheckpointIO()],
                enable_progress_bar=progress,
                enable_model_summary=progress,
                log_every_n_steps=min(50, len(train_batches)),
                num_sanity_val_steps=0,
            )
    except (ValueError, TypeError, RuntimeError, MisconfigurationException) as err:
        raise TrainingError(f"Lightning cannot set up this run: {err}") from None
    return trainer, best


def train_flow(
    name_or_model: str | ImageFlow,
    *,
    name: str | None = None,
    epochs: int = 200,
    batch_size: int = 128,
    lr: float = 1e-3,
    max_steps: int | None = None,
    max_time: timedelta | float | str | None = None,
    limit: int | None = None,
    accelerator: str = "auto",
    devices: int | str | list[int] = "auto",
    strategy: str = "auto",
    num_nodes: int = 1,
    precision: str = "32-true",
    resume: bool = False,
    overwrite: bool = False,
    out_dir: str | os.PathLike | None = None,
    seed: int = 42,
    importance_samples: int = 8,
    checkpoint_every: int | None = 200,
    timing_repeats: int = 3,
    progress: bool = True,
) -> tuple[ImageFlow, dict[str, Any]]:
    """Train a flow as the course does and return ``(model, result)``.

    Adam (``lr``) with the learning rate multiplied by 0.99 after every epoch, gradients clipped to
    norm 1, ``batch_size`` images per step from the 50,000 training images, the 10,000 validation
    images checked after every epoch. ``limit`` keeps only the first images of every split (for
    quick runs); ``max_steps`` / ``max_time`` stop early.

    Under ``out_dir / name`` Lightning keeps ``checkpoints/last.ckpt`` (written every
    ``checkpoint_every`` steps and after every epoch; ``resume=True`` continues from it with the
    optimizer and scheduler state), the best-``val_bpd`` checkpoint and the logs. After training the
    best weights are tested with ``importance_samples`` draws on the validation and test splits, and
    ``out_dir / MNISTFlow_<name>.ckpt`` is written in the published format (``state_dict`` and
    ``result``; speeds are medians of ``timing_repeats`` timed batches of 64, none if 0), which
    ``load_pretrained(name, checkpoint_dir=out_dir, download=False)`` reads.

    ``accelerator``, ``devices``, ``strategy``, ``num_nodes`` and ``precision`` go straight to
    ``pytorch_lightning.Trainer`` (e.g. ``devices=2, strategy="ddp"``). In a multi-process run
    only the first process tests and writes the published file; the others return an empty result.
    """
    _check_counts(epochs=epochs, batch_size=batch_size, importance_samples=importance_samples, num_nodes=num_nodes,
                  max_steps=max_steps, limit=limit, checkpoint_every=checkpoint_every)
    if timing_repeats < 0:
        raise ValueError(f"timing_repeats must be 0 (no timing) or more, got {timing_repeats}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number, got {lr}")
    if limit is not None and limit < batch_size:
        raise ValueError(
            f"limit ({limit}) is smaller than batch_size ({batch_size}), and incomplete training batches are "
            f"dropped, so there would be nothing to train on; raise limit or lower batch_size"
        )
    # Seed first: the initial weights are drawn when the model is built.
    pl.seed_everything(seed, verbose=False)
    if isinstance(name_or_model, str):
        name = name or name_or_model
        model = create_model(name_or_model)
    elif name is None:
        raise ValueError("give the run a name (name=...) when passing a model instance")
    else:
        model = name_or_model
    model.lr = lr

    paths = run_paths(name, out_dir)
    check_writable(paths["checkpoints"], _space_needed(model))
    check_writable(paths["run"] / "logs", 0)
    ckpt_path = _prepare_checkpoint_dir(paths, resume, overwrite)

    train_set, val_set = load_mnist("train"), load_mnist("val")
    if limit is not None:
        train_set = train_set.subset(slice(0, limit))
    train_batches = ResumableBatches(train_set, batch_size, seed)
    val_loader = make_loader(val_set, EVAL_BATCH_SIZE, limit=limit)

    trainer, best = make_trainer(
        paths, train_batches, seed=seed, epochs=epochs, max_steps=max_steps, max_time=max_time,
        accelerator=accelerator, devices=devices, strategy=strategy, num_nodes=num_nodes, precision=precision,
        checkpoint_every=checkpoint_every, progress=progress,
    )
    sigint = signal.getsignal(signal.SIGINT)
    try:
        with quiet_lightning():
            trainer.fit(model, train_batches, val_loader, ckpt_path=str(ckpt_path) if ckpt_path else None)
    except SystemExit:
        # Lightning answers Ctrl-C by saving what it can and calling sys.exit(1): make it an interrupt again.
        if not trainer.interrupted:
            raise
        raise KeyboardInterrupt from None
    finally:
        if sigint is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, sigint)  # Lightning ignores further Ctrl-C after the first
    if not trainer.is_global_zero:
        return model, {}
    if best.best_model_path and Path(best.best_model_path).is_file():
        model.load_state_dict(read_checkpoint(best.best_model_path)["state_dict"])
    model.eval()
    result = _final_test(model, val_set, limit=limit, importance_samples=importance_samples, seed=seed,
                         timing_repeats=timing_repeats, progress=progress)
    result.update(
        global_step=trainer.global_step, epochs=trainer.current_epoch, processes=trainer.world_size,
        params=count_parameters(model), importance_samples=importance_samples, images=limit,
    )
    _save_published(model, result, paths["published"])
    return model, result
