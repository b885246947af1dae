"""Training a course flow with PyTorch Lightning: checkpoints to resume from, a final test, a published-format file."""

from __future__ import annotations

import logging
import os
import signal
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, TypeAlias

import pytorch_lightning as pl
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from torch.utils.data import DataLoader

from ..acceleration import accelerate
from ..analysis.results import EVAL_BATCH_SIZE, final_test
from ..flows.builders import check_model_name, create_model
from ..flows.model import ImageFlow
from ..io.checkpoint_files import read_checkpoint
from ..io.checkpoints import save_published
from ..io.mnist import ImageDataset, load_mnist, make_loader
from .callbacks import (
    AtomicCheckpointIO,
    ResumableBatches,
    StopOnNonFiniteLoss,
    TrackTrainingData,
    checkpoint_callbacks,
)
from .checks import as_timedelta, check_counts, check_settings
from .errors import TrainingError
from .resume import SetLearningRate, check_resumable, resumed_learning_rate
from .run_folder import check_writable, prepare_checkpoint_dir, run_paths, space_needed
from .run_lock import run_folder_lock
from .stopping import interrupted_at, stops_on_interrupt

__all__ = ["train_flow", "make_trainer", "TrainerSettings", "quiet_lightning"]

GRADIENT_CLIP = 1.0
#: Adam's learning rate when a new run is not given one.
DEFAULT_LR = 1e-3

#: The ``precision`` values ``pytorch_lightning.Trainer`` accepts as text: ``"32-true"`` (the course's
#: default), ``"bf16-mixed"``, ..., and the short aliases ``"64"``, ``"32"``, ``"16"``, ``"bf16"``.
Precision: TypeAlias = Literal[
    "64-true",
    "32-true",
    "16-true",
    "16-mixed",
    "bf16-true",
    "bf16-mixed",
    "transformer-engine",
    "transformer-engine-float16",
    "64",
    "32",
    "16",
    "bf16",
]


@dataclass(frozen=True)
class TrainerSettings:
    """Where and how precisely a run computes: handed to ``pytorch_lightning.Trainer`` as they are.

    For instance ``TrainerSettings(devices=2, strategy="ddp")`` trains on two devices of this machine,
    ``TrainerSettings(precision="bf16-mixed")`` in mixed precision.
    """

    accelerator: str = "auto"
    devices: int | str | list[int] = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    precision: Precision = "32-true"

    def __post_init__(self) -> None:
        check_counts(num_nodes=self.num_nodes)


def _run_name(name_or_model: str | ImageFlow, name: str | None) -> str:
    if isinstance(name_or_model, str):
        return name or name_or_model
    if name is None:
        raise ValueError("give the run a name (name=...) when passing a model instance")
    return name


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
            warnings.filterwarnings(
                "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning
            )
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
    checkpoint_every: int | None = 200,
    progress: bool = True,
    settings: TrainerSettings = TrainerSettings(),
    extra_callbacks: Sequence[pl.Callback] = (),
) -> tuple[pl.Trainer, ModelCheckpoint]:
    """The Lightning ``Trainer`` of a course run, and its callback that keeps the best-``val_bpd`` checkpoint.

    ``paths`` come from :func:`~.run_folder.run_paths`. The trainer clips gradients to norm 1, stops
    at ``epochs`` (or ``max_steps`` / ``max_time``), keeps ``last.ckpt`` for resuming, logs to
    ``paths["run"] / "logs"`` (a ``metrics.csv`` per start) and stops on a non-finite loss.
    ``settings`` say on which devices and in which precision; ``extra_callbacks`` join the course's own.
    """
    best, *writers = checkpoint_callbacks(paths["checkpoints"], checkpoint_every)
    try:
        with quiet_lightning():
            trainer = pl.Trainer(
                **asdict(settings),
                default_root_dir=str(paths["run"]),
                max_epochs=epochs,
                max_steps=-1 if max_steps is None else max_steps,
                max_time=as_timedelta(max_time),
                gradient_clip_val=GRADIENT_CLIP,
                callbacks=[
                    StopOnNonFiniteLoss(paths["last"]),
                    TrackTrainingData(train_batches, seed),
                    best,
                    *writers,
                    LearningRateMonitor("epoch"),
                    *extra_callbacks,
                ],
                logger=CSVLogger(save_dir=str(paths["run"]), name="logs"),
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
    lr: float | None = None,
    max_steps: int | None = None,
    max_time: timedelta | float | str | None = None,
    limit: int | None = None,
    settings: TrainerSettings = TrainerSettings(),
    resume: bool = False,
    overwrite: bool = False,
    out_dir: str | os.PathLike | None = None,
    seed: int = 42,
    importance_samples: int = 8,
    checkpoint_every: int | None = 200,
    timing_repeats: int = 3,
    progress: bool = True,
    accelerated: bool = True,
    compiled: bool = True,
) -> tuple[ImageFlow, dict[str, Any]]:
    """Train a flow as the course does and return ``(model, result)``.

    Adam (``lr``, default 1e-3) with the learning rate multiplied by 0.99 after every epoch, gradients
    clipped to norm 1, ``batch_size`` images per step from the 50,000 training images (a larger batch
    is refused), the 10,000 validation images checked after every epoch. ``limit`` keeps only the first images of every split (for
    quick runs); ``max_steps`` / ``max_time`` stop early.

    Under ``out_dir / name`` Lightning keeps ``checkpoints/last.ckpt`` (written every
    ``checkpoint_every`` steps and after every epoch; ``resume=True`` continues from it with the
    optimizer and scheduler state, at the stored learning rate unless ``lr`` asks for another than the
    run began with: then at ``lr``, with a warning), the best-``val_bpd`` checkpoint and the logs. One
    run at a time uses ``out_dir / name``: while a live run holds its lock file, another raises
    :class:`~.errors.RunFolderInUseError` and changes nothing there. After training the
    best weights are tested with ``importance_samples`` draws on the validation and test splits, and
    ``out_dir / MNISTFlow_<name>.ckpt`` is written in the published format (``state_dict`` and
    ``result``; speeds are medians of ``timing_repeats`` timed batches of 64, none if 0), which
    ``load_pretrained(name, checkpoint_dir=out_dir, download=False)`` reads.

    ``settings`` (:class:`TrainerSettings`) go straight to ``pytorch_lightning.Trainer``, for instance
    ``TrainerSettings(devices=2, strategy="ddp")``. In a multi-process run only the first process
    tests and writes the published file; the others return an empty result.
    ``accelerated`` puts the model through :func:`~nflows_tutorial.acceleration.accelerate` (same
    numbers; ``compiled`` as there): for training when the run computes on the CPU, where the kernels
    save time and memory, and for the final test. The returned model stays accelerated.

    Ctrl-C or SIGTERM stops the run with :class:`~.errors.TrainingInterrupted`, which says whether
    there is a checkpoint to resume from.
    """
    request = _Request(**locals())  # the arguments above, by name
    _check_request(request)
    paths = run_paths(_run_name(request.name_or_model, request.name), request.out_dir)
    check_writable(paths["run"], 0)
    with stops_on_interrupt(paths["last"]), run_folder_lock(paths["run"]):
        run = _prepare(request, paths)
        _fit(run)
        if not run.trainer.is_global_zero:
            return run.model, {}
        return run.model, _finish(run)


@dataclass(frozen=True)
class _Request:
    """The arguments of one :func:`train_flow` call."""

    name_or_model: str | ImageFlow
    name: str | None
    epochs: int
    batch_size: int
    lr: float | None
    max_steps: int | None
    max_time: timedelta | float | str | None
    limit: int | None
    settings: TrainerSettings
    resume: bool
    overwrite: bool
    out_dir: str | os.PathLike | None
    seed: int
    importance_samples: int
    checkpoint_every: int | None
    timing_repeats: int
    progress: bool
    accelerated: bool
    compiled: bool


@dataclass(frozen=True)
class _Run:
    """A run ready to train: what :func:`_prepare` hands to :func:`_fit` and :func:`_finish`."""

    request: _Request
    model: ImageFlow
    paths: dict[str, Path]
    train_batches: ResumableBatches
    val_set: ImageDataset
    val_loader: DataLoader
    trainer: pl.Trainer
    best: ModelCheckpoint
    resume_from: Path | None


def _check_request(r: _Request) -> None:
    """Refuse, before anything is read or written, a request no run can serve."""
    if isinstance(r.name_or_model, str):
        check_model_name(r.name_or_model)
    check_counts(epochs=r.epochs, batch_size=r.batch_size, importance_samples=r.importance_samples)
    check_counts(max_steps=r.max_steps, limit=r.limit, checkpoint_every=r.checkpoint_every)
    check_settings(r.lr, r.limit, r.batch_size, r.timing_repeats)


def _prepare(r: _Request, paths: dict[str, Path]) -> _Run:
    """Build the model, check its run folder and the checkpoint to resume from, load the data, set up the trainer."""
    pl.seed_everything(r.seed, verbose=False)  # first: the initial weights are drawn when the model is built
    name = _run_name(r.name_or_model, r.name)
    model = create_model(r.name_or_model) if isinstance(r.name_or_model, str) else r.name_or_model
    model.lr = DEFAULT_LR if r.lr is None else r.lr

    check_writable(paths["checkpoints"], space_needed(model))
    check_writable(paths["run"] / "logs", 0)
    resume_from = prepare_checkpoint_dir(paths, r.resume, r.overwrite)
    new_lr = None
    if resume_from is not None:
        new_lr = resumed_learning_rate(check_resumable(resume_from, model, name), r.lr, model.lr_gamma)

    train_set, val_set = load_mnist("train"), load_mnist("val")
    if r.limit is not None:
        train_set = train_set.subset(slice(0, r.limit))
    train_batches = ResumableBatches(train_set, r.batch_size, r.seed)
    val_loader = make_loader(val_set, EVAL_BATCH_SIZE, limit=r.limit)

    trainer, best = make_trainer(
        paths,
        train_batches,
        seed=r.seed,
        epochs=r.epochs,
        max_steps=r.max_steps,
        max_time=r.max_time,
        checkpoint_every=r.checkpoint_every,
        progress=r.progress,
        settings=r.settings,
        extra_callbacks=() if new_lr is None else (SetLearningRate(new_lr),),
    )
    if r.accelerated and trainer.strategy.root_device.type == "cpu":
        accelerate(model, compiled=r.compiled)  # CPU kernels: a GPU run trains faster on the networks' own forward
    return _Run(
        request=r,
        model=model,
        paths=paths,
        train_batches=train_batches,
        val_set=val_set,
        val_loader=val_loader,
        trainer=trainer,
        best=best,
        resume_from=resume_from,
    )


def _fit(run: _Run) -> None:
    """Train, from the checkpoint to resume from if any; Ctrl-C comes out as ``KeyboardInterrupt``, a SIGTERM
    that Lightning stopped on as :class:`~.errors.TrainingInterrupted`."""
    trainer = run.trainer
    resume_from = str(run.resume_from) if run.resume_from else None
    sigint = signal.getsignal(signal.SIGINT)
    try:
        with quiet_lightning():
            trainer.fit(run.model, run.train_batches, run.val_loader, ckpt_path=resume_from)
    except SystemExit:
        # Lightning answers Ctrl-C by saving what it can and calling sys.exit(1), and SIGTERM with its own
        # SystemExit: make either an interrupt again.
        if not trainer.interrupted:
            raise
        if trainer.received_sigterm:
            raise interrupted_at(run.paths["last"], signal.SIGTERM) from None
        raise KeyboardInterrupt from None
    finally:
        if sigint is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, sigint)  # Lightning ignores further Ctrl-C after the first


def _finish(run: _Run) -> dict[str, Any]:
    """Test the best weights, write the published-format file and return its ``result``."""
    r, model, trainer = run.request, run.model, run.trainer
    if run.best.best_model_path and Path(run.best.best_model_path).is_file():
        model.load_state_dict(read_checkpoint(run.best.best_model_path)["state_dict"])
    model.eval()
    if r.accelerated:
        accelerate(model, compiled=r.compiled)  # for the final test, on the device Lightning left the model on
    measured = final_test(
        model,
        run.val_set,
        limit=r.limit,
        importance_samples=r.importance_samples,
        seed=r.seed,
        timing_repeats=r.timing_repeats,
        progress=r.progress,
    )
    result = {
        **measured.to_published(),
        "global_step": trainer.global_step,
        "epochs": trainer.current_epoch,
        "processes": trainer.world_size,
        "params": measured.params,
        "importance_samples": r.importance_samples,
        "images": r.limit,
    }
    save_published(model, result, run.paths["published"])
    return result
