"""The numbers of a trained flow: measured now or stored in a checkpoint, one :class:`Result`, and the table of both."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from ..flows.model import ImageFlow
from ..io.mnist import TEST_SIZE, VAL_SIZE, ImageDataset, load_mnist, make_loader
from ..io.registry import PUBLISHED_ORIGIN
from .bpd import evaluate_bpd
from .speed import count_parameters, time_likelihood, time_sampling

__all__ = [
    "EVAL_BATCH_SIZE",
    "Result",
    "final_test",
    "TABLE_COLUMNS",
    "results_row",
    "results_notes",
    "results_table",
]

# Row keys measured here, each paired with the key that holds the number stored in a published checkpoint.
TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("val_bpd", "stored_val_bpd", "Validation bpd"),
    ("test_bpd", "stored_test_bpd", "Test bpd"),
    ("inference_ms", "stored_inference_ms", "Inference ms / 64"),
    ("sampling_ms", "stored_sampling_ms", "Sampling ms / 64"),
)


#: Images per batch when scoring and timing, as in the published results.
EVAL_BATCH_SIZE = 64

_SPLIT_SIZES = {"val": VAL_SIZE, "test": TEST_SIZE}
# The course's own checkpoints were trained, scored and timed on a GPU (their tensors were saved on
# cuda:0) with 8 importance samples; their result dicts predate the run keys train_flow adds.
_ORIGINAL_DEVICE, _ORIGINAL_IMPORTANCE_SAMPLES = "cuda", 8


def _from_original_course(result: Mapping[str, Any]) -> bool:
    """Whether ``result`` holds the published numbers: as its loader says, else by the run keys it lacks."""
    if "origin" in result:
        return result["origin"] == PUBLISHED_ORIGIN
    return bool(result) and "global_step" not in result


def _scored_images(result: Mapping[str, Any], bpd: Mapping[str, float | None]) -> dict[str, int]:
    """Images per split behind a stored result's bpd: its run's ``images`` limit, else the whole split."""
    limit = result.get("images")
    if limit is not None and not isinstance(limit, int):  # a shape this code does not know: say nothing
        return {}
    return {
        split: _SPLIT_SIZES[split] if limit is None else min(int(limit), _SPLIT_SIZES[split])
        for split, value in bpd.items()
        if value is not None
    }


def _published_bpd(result: Mapping[str, Any], split: str) -> float | None:
    entries = result.get(split)
    if isinstance(entries, Sequence) and entries and isinstance(entries[0], Mapping) and "test_bpd" in entries[0]:
        return float(entries[0]["test_bpd"])
    return None


_Number = TypeVar("_Number", int, float, str)


def _entry(result: Mapping[str, Any], key: str, kind: Callable[[Any], _Number]) -> _Number | None:
    value = result.get(key)
    return None if value is None else kind(value)


@dataclass(frozen=True)
class Result:
    """The numbers of one flow: bits per dimension, speeds, and how they were had; ``None`` where not measured.

    ``inference_s`` and ``sampling_s`` are seconds per batch of 64, as published (``inference_ms``
    and ``sampling_ms`` give them in milliseconds, as the table prints them). ``images`` counts the
    images each split contributed, ``device`` is where the model ran.

    Example:
        >>> stored = Result.from_published({"val": [{"test_bpd": 1.08}], "test": [{"test_bpd": 1.07}], "time": 0.02})
        >>> stored.test_bpd, stored.inference_ms, stored.sampling_ms
        (1.07, 20.0, None)
        >>> stored.to_published()
        {'val': [{'test_bpd': 1.08}], 'test': [{'test_bpd': 1.07}], 'time': 0.02}
    """

    val_bpd: float | None = None
    test_bpd: float | None = None
    inference_s: float | None = None
    sampling_s: float | None = None
    params: int | None = None
    images: dict[str, int] = field(default_factory=dict, hash=False)
    importance_samples: int | None = None
    device: str | None = None

    @property
    def inference_ms(self) -> float | None:
        """Milliseconds to compute the likelihood of a batch of 64 images."""
        return None if self.inference_s is None else 1000 * self.inference_s

    @property
    def sampling_ms(self) -> float | None:
        """Milliseconds to draw a batch of 64 images."""
        return None if self.sampling_s is None else 1000 * self.sampling_s

    @classmethod
    def from_published(cls, result: Mapping[str, Any]) -> Result:
        """The numbers of a checkpoint's ``result`` dict; what it lacks (or holds in another shape) is ``None``.

        The published dicts keep bpd as ``{"val": [{"test_bpd": ...}], "test": [...]}`` and times in
        seconds per batch of 64 as ``time`` (likelihood, per importance sample) and ``samp_time``; the
        dicts :func:`~nflows_tutorial.training.train_flow` writes also hold ``params``,
        ``importance_samples`` and ``images`` (the run's limit: its numbers are on the first that many
        images of each split; ``None``, on all of them). The device is the dict's ``device`` where it
        records one; the course's own checkpoints were measured on a GPU with 8 importance samples.
        """
        original = _from_original_course(result)
        bpd = {split: _published_bpd(result, split) for split in ("val", "test")}
        return cls(
            val_bpd=bpd["val"],
            test_bpd=bpd["test"],
            inference_s=_entry(result, "time", float),
            sampling_s=_entry(result, "samp_time", float),
            params=_entry(result, "params", int),
            images=_scored_images(result, bpd),
            importance_samples=_entry(result, "importance_samples", int)
            or (_ORIGINAL_IMPORTANCE_SAMPLES if original else None),
            device=_entry(result, "device", str) or (_ORIGINAL_DEVICE if original else None),
        )

    def to_published(self) -> dict[str, Any]:
        """The published ``result`` entries of these numbers: bpd per split, seconds per batch of 64 (those measured)."""
        out: dict[str, Any] = {}
        for split, bpd in (("val", self.val_bpd), ("test", self.test_bpd)):
            if bpd is not None:
                out[split] = [{"test_bpd": bpd}]
        for key, seconds in (("time", self.inference_s), ("samp_time", self.sampling_s)):
            if seconds is not None:
                out[key] = seconds
        return out

    def row(self, name: str, stored: Result | None = None) -> dict[str, Any]:
        """A row of :func:`results_table` for model ``name``: these numbers beside the ``stored_*`` ones of ``stored``.

        The row also records the parameters, and how each side was had: the images per split, the
        importance samples and the device (``stored_images``, ``stored_importance_samples`` and
        ``stored_device`` for the stored numbers; ``None`` where not known).
        """
        stored = stored or Result()
        return {
            "model": name,
            **{key: getattr(self, key) for key, _, _ in TABLE_COLUMNS},
            "params": self.params,
            **{stored_key: getattr(stored, key) for key, stored_key, _ in TABLE_COLUMNS},
            "images": dict(self.images),
            "importance_samples": self.importance_samples,
            "device": self.device,
            "stored_images": dict(stored.images),
            "stored_importance_samples": stored.importance_samples,
            "stored_device": stored.device,
        }

    @classmethod
    def measure(
        cls,
        model: ImageFlow,
        datasets: Mapping[str, ImageDataset],
        *,
        limit: int | None = None,
        batch_size: int = EVAL_BATCH_SIZE,
        importance_samples: int = 8,
        seed: int | None = 42,
        repeats: int | None = 5,
        progress: bool = False,
        label: str | None = None,
    ) -> Result:
        """Score ``model`` on each split of ``datasets`` (``"val"`` and/or ``"test"``) and time it.

        The first ``limit`` images of each split are scored with :func:`evaluate_bpd`, ``batch_size``
        at a time; the speeds are medians of ``repeats`` timed batches of 64 (none if ``None``).
        ``label`` names the model in the progress bars.
        """
        bpd, images = {}, {}
        for split, dataset in datasets.items():
            if split not in ("val", "test"):
                raise ValueError(f"the table has validation and test columns; got a split named {split!r}")
            loader = make_loader(dataset, batch_size, limit=limit)
            images[split] = len(cast(Sized, loader.dataset))
            desc = f"{split} bpd" if label is None else f"{label} {split}"
            bpd[split] = evaluate_bpd(
                model, loader, importance_samples=importance_samples, seed=seed, progress=progress, desc=desc
            )
        inference_s = sampling_s = None
        if repeats is not None:
            inference_s = time_likelihood(model, repeats=repeats)
            sampling_s = time_sampling(model, repeats=repeats)
        return cls(
            val_bpd=bpd.get("val"),
            test_bpd=bpd.get("test"),
            inference_s=inference_s,
            sampling_s=sampling_s,
            params=count_parameters(model),
            images=images,
            importance_samples=importance_samples,
            device=str(model.device),
        )


def final_test(
    model: ImageFlow,
    val_set: ImageDataset,
    *,
    limit: int | None,
    importance_samples: int,
    seed: int,
    timing_repeats: int,
    progress: bool,
) -> Result:
    """The numbers a published checkpoint holds: importance-sampled bpd on validation and test, and the speeds.

    Images are scored in batches of 64 (the first ``limit`` of each split); the speeds are medians of
    ``timing_repeats`` timed batches, none if 0.
    """
    datasets = {"val": val_set, "test": load_mnist("test")}
    repeats = timing_repeats or None
    return Result.measure(
        model,
        datasets,
        limit=limit,
        importance_samples=importance_samples,
        seed=seed,
        repeats=repeats,
        progress=progress,
    )


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
    images each split contributed, the importance samples and the device (see :meth:`Result.row`).
    """
    measured = Result.measure(
        model,
        datasets,
        limit=limit,
        batch_size=batch_size,
        importance_samples=importance_samples,
        seed=seed,
        repeats=repeats,
        progress=progress,
        label=name,
    )
    return measured.row(name, Result.from_published(stored or {}))


def _cell(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def results_table(rows: Sequence[Mapping[str, Any]], fmt: str = "github", notes: Sequence[str] = ()) -> str:
    """Format result rows as the tutorial's comparison table, each measurement beside its stored value.

    A row is a dict with ``model``, ``val_bpd``, ``test_bpd``, ``inference_ms``, ``sampling_ms``,
    ``params`` and optionally the ``stored_*`` numbers, as :meth:`Result.row` makes it; a missing or
    ``None`` value prints as ``-``. ``fmt`` is any ``tabulate`` table format. ``notes`` (such as
    :func:`results_notes` writes) follow the table, one a line, after an empty line.
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
    table = tabulate(body, headers=headers, tablefmt=fmt, disable_numparse=True, colalign=("left",) + ("right",) * 9)
    # The empty line ends the table: a Markdown reader would take a line right under it for a row.
    return "\n\n".join([table, "\n".join(notes)]) if notes else table


def _images_words(images: Mapping[str, int]) -> str:
    """``{"val": 256, "test": 256}`` as "the first 256 images of each split", and so on."""
    if not images:
        return "no images"
    counts = set(images.values())
    whole = all(count == _SPLIT_SIZES.get(split) for split, count in images.items())
    if len(images) == 1:
        ((split, count),) = images.items()
        return f"all {count:,} images of the {split} split" if whole else f"the first {count:,} {split} images"
    if whole and len(counts) == 1:
        return f"all {counts.pop():,} images of each split"
    if len(counts) == 1:
        return f"the first {counts.pop():,} images of each split"
    return "the first " + " and ".join(f"{count:,} {split}" for split, count in images.items()) + " images"


def _device_words(device: str | None, here: bool) -> str:
    """Where timings were taken: this machine's device, or the one a checkpoint's numbers were measured on."""
    if device is None:
        return "where the checkpoint was trained (its device is not recorded)"
    kind = {"cpu": "CPU", "cuda": "GPU", "mps": "Apple GPU", "xpu": "Intel GPU"}.get(device.split(":")[0], device)
    return (
        f"on this machine's {kind} ({device})" if here else f"on a {kind} ({device}), where the checkpoint was trained"
    )


def _across(rows: Sequence[Mapping[str, Any]], words: Callable[[Mapping[str, Any]], str]) -> str:
    """What ``words`` says of the rows: once if it says the same of each, else model by model."""
    said = {str(row["model"]): words(row) for row in rows}
    if len(set(said.values())) == 1:
        return next(iter(said.values()))
    return "; ".join(f"{model} {text}" for model, text in said.items())


def _samples_words(count: int | None) -> str:
    return "" if count is None else f", {count} importance sample{'s' if count != 1 else ''} each"


def _any(rows: Sequence[Mapping[str, Any]], *keys: str) -> bool:
    return any(row.get(key) is not None for row in rows for key in keys)


def results_notes(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Lines saying what the numbers of :func:`results_table` are: the images and device behind each side.

    The rows are those of :meth:`Result.row` (``images``, ``importance_samples``, ``device`` and
    their ``stored_*`` counterparts): the bits per dimension measured here may be on fewer images
    than the stored ones, and the timings on another device. A side without numbers gets no line.
    """

    def scored(prefix: str) -> Callable[[Mapping[str, Any]], str]:
        def words(row: Mapping[str, Any]) -> str:
            images = _images_words(row.get(f"{prefix}images") or {})
            return f"on {images}{_samples_words(row.get(f'{prefix}importance_samples'))}"

        return words

    def timed(prefix: str) -> Callable[[Mapping[str, Any]], str]:
        return lambda row: _device_words(row.get(f"{prefix}device"), here=not prefix)

    notes = []
    for prefix, side in (("", "measured here"), ("stored_", "stored")):
        if _any(rows, f"{prefix}val_bpd", f"{prefix}test_bpd"):
            notes.append(f"Bits per dimension {side}: {_across(rows, scored(prefix))}.")
    for prefix, side in (("", "measured here"), ("stored_", "stored")):
        if _any(rows, f"{prefix}inference_ms", f"{prefix}sampling_ms"):
            notes.append(f"Milliseconds {side}: {_across(rows, timed(prefix))}.")
    return notes
