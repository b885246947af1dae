"""The folder of a training run: where its files go, whether it can hold them, what an earlier run left there."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ..flows.model import ImageFlow
from ..io.files import PARTIAL_SUFFIX
from ..io.paths import project_dir
from .callbacks import LAST
from .errors import TrainingError, UnwritableOutputError

__all__ = ["default_out_dir", "run_paths", "check_writable", "space_needed", "prepare_checkpoint_dir"]


def default_out_dir() -> Path:
    """Where training runs go unless told otherwise: ``<project>/runs``."""
    return project_dir() / "runs"


def run_paths(name: str, out_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """The files and folders of a training run of model ``name`` under ``out_dir``.

    ``published`` is the ``MNISTFlow_<name>.ckpt`` file that ``load_pretrained(name,
    checkpoint_dir=out_dir)`` reads; ``checkpoints`` holds Lightning's ``last.ckpt`` and the best
    ``val_bpd`` checkpoint; ``run / "logs"`` holds the CSV logs that :func:`~.logs.read_scalars` reads.
    """
    root = Path(out_dir) if out_dir is not None else default_out_dir()
    run = root / name
    return {
        "root": root,
        "run": run,
        "checkpoints": run / "checkpoints",
        "last": run / "checkpoints" / f"{LAST}.ckpt",
        "published": root / f"MNISTFlow_{name}.ckpt",
    }


def check_writable(
    folder: str | os.PathLike,
    need_bytes: int = 0,
    *,
    what: str = "training output",
    setting: str = "out_dir",
) -> None:
    """Fail early, with the reason, if ``folder`` cannot be created or written, or has less than ``need_bytes`` free.

    ``folder`` is created when missing and a small file is written, synced and removed there. The
    :class:`~.errors.UnwritableOutputError` says ``what`` could not be written and names ``setting``,
    the caller's parameter that chooses another folder: ``out_dir`` for a training run, spelled
    ``out_dir=...``, or a command line's own flag through its
    :meth:`~nflows_tutorial.errors.SettingsError.spelled`.
    """
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path) as probe:
            probe.write(b"\0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as err:
        raise UnwritableOutputError(
            f"cannot write {what} to {path} ({err.strerror or err}); choose a writable folder with {{{setting}}}",
            **{setting: ...},
        ) from None
    free = shutil.disk_usage(path).free
    if free < need_bytes:
        raise UnwritableOutputError(
            f"only {free / 2**20:.0f} MiB free in {path}, and this run needs about {need_bytes / 2**20:.0f} MiB "
            f"for its checkpoints and logs; free some space or choose another folder with {{{setting}}}",
            **{setting: ...},
        )


def space_needed(model: ImageFlow) -> int:
    # A Lightning checkpoint holds the weights and Adam's two moments; keep room for the last and best
    # checkpoints, one being rewritten, the published file, and the logs.
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return 12 * weights + 32 * 2**20


def prepare_checkpoint_dir(paths: dict[str, Path], resume: bool, overwrite: bool) -> Path | None:
    """Return the checkpoint to resume from (or ``None``), after checking the run folder agrees with the request."""
    for leftover in paths["checkpoints"].glob(f".*{PARTIAL_SUFFIX}"):  # from a run killed while saving
        leftover.unlink(missing_ok=True)
    existing = sorted(paths["checkpoints"].glob("*.ckpt"))
    if resume:
        if not paths["last"].is_file():
            raise TrainingError(
                f"nothing to resume: there is no {paths['last']}; start a new run without {{resume}}", resume=True
            )
        return paths["last"]
    if existing:
        if not overwrite:
            raise TrainingError(
                f"{paths['checkpoints']} already holds checkpoints of an earlier run; continue it with {{resume}}, "
                "or start again with {overwrite} (which deletes them), or choose another {out_dir}",
                resume=True,
                overwrite=True,
                out_dir=...,
            )
        for old in existing:
            old.unlink()
    return None
