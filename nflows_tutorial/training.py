"""Training a course flow with PyTorch Lightning: checkpoints to resume from, a final test, a published-format file."""

from __future__ import annotations

import importlib.util
import math
import os
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.exceptions import MisconfigurationException
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

from .builders import create_model
from .data import load_mnist, make_loader
from .evaluation import count_parameters, evaluate_bpd, time_likelihood, time_sampling
from .model import ImageFlow
from .paths import project_dir
from .pretrained import REGISTRY, read_checkpoint

__all__ = [
    "train_flow",
    "TrainingError",
    "NonFiniteLossError",
    "StopOnNonFiniteLoss",
    "default_out_dir",
    "run_paths",
    "check_writable",
]

GRADIENT_CLIP = 1.0
EVAL_BATCH_SIZE = 64
LAST = "last"


class TrainingError(RuntimeError):
    """Training cannot start, or cannot go on; the message says why and what to do."""


class NonFiniteLossError(TrainingError):
    """The training loss became NaN or infinite."""


class StopOnNonFiniteLoss(pl.Callback):
    """Stop training, before the bad gradient reaches the weights, once the loss is NaN or infinite.

    Under several processes the decision is shared, so every process stops at the same step.
    """

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        value = loss.detach()
        bad = not bool(torch.isfinite(value).all())
        if trainer.strategy.reduce_boolean_decision(bad, all=False):
            raise NonFiniteLossError(
                f"the training loss became {float(value.float().mean())} at step {trainer.global_step} "
                f"(epoch {trainer.current_epoch}); the weights were not updated with it. Try a lower learning rate "
                f"(--lr), full precision (--precision 32-true) if you trained in reduced precision, or resuming "
                f"from the last checkpoint (--resume), which was written before this step"
            )


def default_out_dir() -> Path:
    """Where training runs go unless told otherwise: ``<project>/runs``."""
    return project_dir() / "runs"


def run_paths(name: str, out_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """The files and folders of a training run of model ``name`` under ``out_dir``.

    ``published`` is the ``MNISTFlow_<name>.ckpt`` file that ``load_pretrained(name,
    checkpoint_dir=out_dir)`` reads; ``checkpoints`` holds Lightning's ``last.ckpt`` and the best
    ``val_bpd`` checkpoint; ``logs`` holds the TensorBoard or CSV logs.
    """
    root = Path(out_dir) if out_dir is not None else default_out_dir()
    run = root / name
    return {
        "root": root,
        "run": run,
        "checkpoints": run / "checkpoints",
        "last": run / "checkpoints" / f"{LAST}.ckpt",
        "logs": run,
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
        raise TrainingError(
            f"cannot write training output to {folder} ({err.strerror or err}); choose a writable folder with "
            f"--out-dir (or out_dir=...)"
        ) from None
    free = shutil.disk_usage(folder).free
    if free < need_bytes:
        raise TrainingError(
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
    existing = sorted(paths["checkpoints"].glob("*.ckpt")) if paths["checkpoints"].is_dir() else []
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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        torch.save({"state_dict": state, "result": result}, tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


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
    ``result``; speeds are medians of ``timing_repeats`` timed batches of 64), which ``load_pretrained(name, checkpoint_dir=out_dir, download=False)`` reads.

    ``accelerator``, ``devices``, ``strategy``, ``num_nodes`` and ``precision`` go straight to
    ``pytorch_lightning.Trainer`` (e.g. ``devices=2, strategy="ddp"``). In a multi-process run
    only the first process tests and writes the published file; the others return an empty result.
    """
    if isinstance(name_or_model, str):
        name = name or name_or_model
        model = create_model(name_or_model)
    else:
        model = name_or_model
        if name is None:
            raise ValueError("give the run a name (name=...) when passing a model instance")
    for label, value in (("epochs", epochs), ("batch_size", batch_size), ("importance_samples", importance_samples),
                         ("num_nodes", num_nodes), ("timing_repeats", timing_repeats)):
        if value < 1:
            raise ValueError(f"{label} must be positive, got {value}")
    for label, value in (("max_steps", max_steps), ("limit", limit), ("checkpoint_every", checkpoint_every)):
        if value is not None and value < 1:
            raise ValueError(f"{label} must be positive, got {value}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number, got {lr}")
    if limit is not None and limit < batch_size:
        raise ValueError(
            f"limit ({limit}) is smaller than batch_size ({batch_size}), and incomplete training batches are "
            f"dropped, so there would be nothing to train on; raise limit or lower batch_size"
        )
    model.lr = lr

    paths = run_paths(name, out_dir)
    check_writable(paths["checkpoints"], _space_needed(model))
    ckpt_path = _prepare_checkpoint_dir(paths, resume, overwrite)

    pl.seed_everything(seed, verbose=False)
    train_set, val_set = load_mnist("train"), load_mnist("val")
    train_loader = make_loader(train_set, batch_size, shuffle=True, drop_last=True, limit=limit, seed=seed)
    val_loader = make_loader(val_set, EVAL_BATCH_SIZE, limit=limit)

    best = ModelCheckpoint(
        dirpath=paths["checkpoints"], filename="best-{epoch}-{step}", monitor="val_bpd", mode="min",
        save_top_k=1, enable_version_counter=False,
    )
    # Two writers of last.ckpt: one after every epoch, one every `checkpoint_every` steps, so a run
    # killed mid-epoch loses at most that many steps.
    last_callbacks = [
        ModelCheckpoint(dirpath=paths["checkpoints"], filename=LAST, save_top_k=1, save_on_train_epoch_end=True,
                        enable_version_counter=False),
    ]
    if checkpoint_every is not None:
        last_callbacks.append(
            ModelCheckpoint(dirpath=paths["checkpoints"], filename=LAST, save_top_k=1,
                            every_n_train_steps=checkpoint_every, enable_version_counter=False)
        )
    logger = _logger(paths["logs"])
    try:
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
            callbacks=[StopOnNonFiniteLoss(), best, *last_callbacks, LearningRateMonitor("epoch")],
            logger=logger,
            enable_progress_bar=progress,
            enable_model_summary=progress,
            log_every_n_steps=min(50, len(train_loader)),
            num_sanity_val_steps=0,
        )
    except (ValueError, TypeError, RuntimeError, MisconfigurationException) as err:
        raise TrainingError(f"Lightning cannot set up this run: {err}") from None

    trainer.fit(model, train_loader, val_loader, ckpt_path=str(ckpt_path) if ckpt_path else None)
    if not trainer.is_global_zero:
        return model, {}
    if trainer.interrupted:
        raise TrainingError(f"training was interrupted; continue it with --resume (from {paths['last']})")

    if best.best_model_path and Path(best.best_model_path).is_file():
        model.load_state_dict(read_checkpoint(best.best_model_path)["state_dict"])
    model.eval()
    test_set = load_mnist("test")
    result: dict[str, Any] = {}
    for split, dataset in (("val", val_set), ("test", test_set)):
        loader = make_loader(dataset, EVAL_BATCH_SIZE, limit=limit)
        bpd = evaluate_bpd(model, loader, importance_samples=importance_samples, seed=seed, progress=progress)
        result[split] = [{"test_bpd": bpd}]
    result["time"] = time_likelihood(model, repeats=timing_repeats)
    result["samp_time"] = time_sampling(model, repeats=timing_repeats)
    result.update(
        global_step=trainer.global_step, epochs=trainer.current_epoch, params=count_parameters(model),
        importance_samples=importance_samples, images=limit,
    )
    _save_published(model, result, paths["published"])
    return model, result
