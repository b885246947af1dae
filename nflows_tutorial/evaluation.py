"""Measuring a trained flow: bits per dimension on a data split, likelihood and sampling speed, the results table."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence, Sized
from typing import Any, cast

import torch

from .data import ImageDataset, make_loader
from .model import ImageFlow, bits_per_dim
from .seeding import seeded
from .timing import time_calls

__all__ = [
    "IMAGES_PER_PASS",
    "log_likelihood_in_passes",
    "evaluate_bpd",
    "time_likelihood",
    "time_sampling",
    "count_parameters",
    "stored_numbers",
    "results_row",
    "results_table",
    "TABLE_COLUMNS",
]

# Row keys measured here, each paired with the key that holds the number stored in a published checkpoint.
TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("val_bpd", "stored_val_bpd", "Validation bpd"),
    ("test_bpd", "stored_test_bpd", "Test bpd"),
    ("inference_ms", "stored_inference_ms", "Inference ms / 64"),
    ("sampling_ms", "stored_sampling_ms", "Sampling ms / 64"),
)


def _images(batch: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    return batch if isinstance(batch, torch.Tensor) else batch[0]


#: Most images pushed through the flow at once when importance samples are stacked on a batch: past
#: this the feature maps fall out of a CPU's caches (the README's speed section has the measurements).
IMAGES_PER_PASS = 64


def log_likelihood_in_passes(
    model: ImageFlow, imgs: torch.Tensor, importance_samples: int, images_per_pass: int = IMAGES_PER_PASS
) -> torch.Tensor:
    """The estimate of :meth:`ImageFlow.log_likelihood`, with several draws stacked into one pass.

    The ``importance_samples`` draws of the dequantization noise go through the network as copies of
    the batch stacked together, up to ``images_per_pass`` images per pass, which keeps a small batch
    from leaving the machine idle. Returns one log-likelihood in nats per image.
    """
    if importance_samples < 1:
        raise ValueError(f"importance_samples must be at least 1, got {importance_samples}")
    if images_per_pass < 1:
        raise ValueError(f"images_per_pass must be at least 1, got {images_per_pass}")
    batch = imgs.shape[0]
    draws_per_pass = max(1, images_per_pass // max(batch, 1))
    estimates = []
    for start in range(0, importance_samples, draws_per_pass):
        draws = min(draws_per_pass, importance_samples - start)
        stacked = imgs.repeat(draws, 1, 1, 1) if draws > 1 else imgs
        estimates.append(model.log_likelihood(stacked).view(draws, batch))
    return torch.logsumexp(torch.cat(estimates), dim=0) - math.log(importance_samples)


def evaluate_bpd(
    model: ImageFlow,
    loader: Iterable,
    importance_samples: int = 8,
    seed: int | None = 42,
    progress: bool = False,
    desc: str = "bpd",
) -> float:
    """Mean bits per dimension over every image the loader yields (each image counts once).

    Each image's likelihood is the importance-sampled estimate of :meth:`ImageFlow.log_likelihood`
    with ``importance_samples`` dequantization draws (see :func:`log_likelihood_in_passes`). With a
    ``seed`` the draws are reproducible and the caller's random state is left as it was.
    Runs under ``torch.inference_mode`` on the model's device, in eval mode; ``progress`` shows a
    bar labelled ``desc``.
    """
    if importance_samples < 1:
        raise ValueError(f"importance_samples must be at least 1, got {importance_samples}")
    device = model.device
    was_training = model.training
    total, count = 0.0, 0
    batches: Iterable = loader
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(loader, total=len(loader) if isinstance(loader, Sized) else None, desc=desc, leave=False)
    model.eval()
    try:
        with seeded(seed, device), torch.inference_mode():
            for batch in batches:
                imgs = _images(batch).to(device)
                bpd = bits_per_dim(log_likelihood_in_passes(model, imgs, importance_samples), model.dims)
                total += float(bpd.double().sum())
                count += imgs.shape[0]
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("the loader yielded no images, so there is nothing to evaluate")
    return total / count


def time_likelihood(model: ImageFlow, batch_size: int = 64, repeats: int = 5, warmup: int = 1) -> float:
    """Seconds to compute the likelihood of one batch of images (one dequantization draw each).

    This is the tutorial's "inference time". The median of ``repeats`` timed calls is returned,
    after ``warmup`` untimed ones, so a GPU warm-up or a busy moment does not count against a model.
    """
    gen = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (batch_size, *model.image_shape), generator=gen, dtype=torch.int32).to(model.device)
    with torch.inference_mode():
        return statistics.median(time_calls(lambda: model.log_likelihood(imgs), repeats, warmup, model.device))


def time_sampling(model: ImageFlow, batch_size: int = 64, repeats: int = 5, warmup: int = 1) -> float:
    """Seconds to draw one batch of ``batch_size`` images (median of ``repeats``, after ``warmup``)."""
    return statistics.median(time_calls(lambda: model.sample(batch_size), repeats, warmup, model.device))


def count_parameters(model: torch.nn.Module) -> int:
    """Number of learnable values in a model."""
    return sum(p.numel() for p in model.parameters())


def _stored_bpd(result: Mapping[str, Any], split: str) -> float | None:
    entries = result.get(split)
    if isinstance(entries, Sequence) and entries and isinstance(entries[0], Mapping) and "test_bpd" in entries[0]:
        return float(entries[0]["test_bpd"])
    return None


def stored_numbers(result: Mapping[str, Any]) -> dict[str, float | None]:
    """The numbers a checkpoint's ``result`` dict holds, under the ``stored_*`` keys of a table row.

    The published dicts keep bpd as ``{"val": [{"test_bpd": ...}], "test": [...]}`` and times in
    seconds per batch of 64 as ``time`` (likelihood, per importance sample) and ``samp_time``.
    Missing entries come back as ``None``.
    """

    def ms(key: str) -> float | None:
        value = result.get(key)
        return None if value is None else 1000.0 * float(value)

    return {
        "stored_val_bpd": _stored_bpd(result, "val"),
        "stored_test_bpd": _stored_bpd(result, "test"),
        "stored_inference_ms": ms("time"),
        "stored_sampling_ms": ms("samp_time"),
    }


def results_row(
    name: str,
    model: ImageFlow,
    datasets: Mapping[str, ImageDataset],
    stored: Mapping[str, Any] | None = None,
    *,
    limit: int | None = None,
    batch_size: int = 64,
    importance_samples: int = 8,
    seed: int | None = 42,
    repeats: int | None = 5,
    progress: bool = False,
) -> dict[str, Any]:
    """Measure one model for :func:`results_table`: a row with its numbers beside the ``stored`` ones.

    ``datasets`` maps ``"val"`` and/or ``"test"`` to a split, of which the first ``limit`` images
    are scored with :func:`evaluate_bpd`; ``repeats=None`` skips the speed measurements (their cells
    stay ``None``). ``stored`` is the checkpoint's ``result`` dict. The row also records how many
    images each split contributed, the importance samples and the device.
    """
    row: dict[str, Any] = {"model": name, "val_bpd": None, "test_bpd": None, "inference_ms": None, "sampling_ms": None}
    images = {}
    for split, dataset in datasets.items():
        if split not in ("val", "test"):
            raise ValueError(f"the table has validation and test columns; got a split named {split!r}")
        loader = make_loader(dataset, batch_size, limit=limit)
        images[split] = len(cast(Sized, loader.dataset))
        row[f"{split}_bpd"] = evaluate_bpd(
            model, loader, importance_samples, seed=seed, progress=progress, desc=f"{name} {split}"
        )
    if repeats is not None:
        row["inference_ms"] = 1000 * time_likelihood(model, repeats=repeats)
        row["sampling_ms"] = 1000 * time_sampling(model, repeats=repeats)
    row["params"] = count_parameters(model)
    row.update(stored_numbers(stored or {}))
    row.update(images=images, importance_samples=importance_samples, device=str(model.device))
    return row


def _cell(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def results_table(rows: Sequence[Mapping[str, Any]], fmt: str = "github") -> str:
    """Format result rows as the tutorial's comparison table, each measurement beside its stored value.

    A row is a dict with ``model``, ``val_bpd``, ``test_bpd``, ``inference_ms``, ``sampling_ms``,
    ``params`` and optionally the ``stored_*`` numbers of :func:`stored_numbers`; a missing or
    ``None`` value prints as ``-``. ``fmt`` is any ``tabulate`` table format.
    """
    from tabulate import tabulate

    headers = ["Model"]
    for _, _, title in TABLE_COLUMNS:
        headers += [title, "(stored)"]
    headers.append("Parameters")
    body = []
    for row in rows:
        line = [row["model"]]
        for key, stored_key, _ in TABLE_COLUMNS:
            digits = 4 if key.endswith("bpd") else 0
            line += [_cell(row.get(key), digits), _cell(row.get(stored_key), digits)]
        params = row.get("params")
        line.append("-" if params is None else f"{int(params):,}")
        body.append(line)
    return tabulate(body, headers=headers, tablefmt=fmt, disable_numparse=True, colalign=("left",) + ("right",) * 9)
