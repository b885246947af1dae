"""The numbers of a trained flow: measured now, stored in a checkpoint, and the comparison table of both."""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Sized
from typing import Any, cast

from ..flows.model import ImageFlow
from ..io.mnist import ImageDataset, load_mnist, make_loader
from .bpd import evaluate_bpd
from .speed import count_parameters, time_likelihood, time_sampling

__all__ = ["EVAL_BATCH_SIZE", "final_test", "TABLE_COLUMNS", "stored_numbers", "results_row", "results_table"]

# Row keys measured here, each paired with the key that holds the number stored in a published checkpoint.
TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("val_bpd", "stored_val_bpd", "Validation bpd"),
    ("test_bpd", "stored_test_bpd", "Test bpd"),
    ("inference_ms", "stored_inference_ms", "Inference ms / 64"),
    ("sampling_ms", "stored_sampling_ms", "Sampling ms / 64"),
)


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
