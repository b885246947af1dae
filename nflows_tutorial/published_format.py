"""A trained model in the format of the published checkpoints: ``{"state_dict", "result"}``, and the result's numbers."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path
from typing import Any

import torch

from .data import ImageDataset, load_mnist, make_loader
from .evaluation import evaluate_bpd, time_likelihood, time_sampling
from .files import atomic_write
from .model import ImageFlow

__all__ = ["final_test", "save_published", "EVAL_BATCH_SIZE"]

#: Images per batch when scoring and timing, as in the published results.
EVAL_BATCH_SIZE = 64


def final_test(
    model: ImageFlow,
    val_set: ImageDataset,
    *,
    limit: int | None,
    importance_samples: int,
    seed: int,
    timing_repeats: int,
    progress: bool,
) -> dict[str, Any]:
    """The published ``result`` entries: importance-sampled bpd on validation and test, and the speeds."""
    result: dict[str, Any] = {}
    for split, dataset in (("val", val_set), ("test", load_mnist("test"))):
        loader = make_loader(dataset, EVAL_BATCH_SIZE, limit=limit)
        bpd = evaluate_bpd(
            model, loader, importance_samples=importance_samples, seed=seed, progress=progress, desc=f"{split} bpd"
        )
        result[split] = [{"test_bpd": bpd}]
    if timing_repeats:
        result["time"] = time_likelihood(model, repeats=timing_repeats)
        result["samp_time"] = time_sampling(model, repeats=timing_repeats)
    return result


def save_published(model: ImageFlow, result: dict[str, Any], path: Path) -> None:
    """Write ``{"state_dict", "result"}`` atomically: a reader finds the old file or the whole new one."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_write(path) as tmp:
        try:
            torch.save({"state_dict": state, "result": result}, tmp)
        except RuntimeError as err:  # torch's writer reports a failed write (a full disk, say) this way
            free = shutil.disk_usage(path.parent).free
            raise OSError(
                errno.ENOSPC if free < 2**20 else errno.EIO,
                f"could not write the checkpoint ({str(err).splitlines()[0]})",
                str(path),
            ) from None
