"""The scalars a training run logged (loss, validation bpd, learning rate), read back from its log folder.

A run of :func:`nflows_tutorial.training.train_flow` logs through Lightning's TensorBoard logger when
``tensorboard`` is installed and through its CSV logger otherwise; both are read here without
TensorBoard itself, so learning curves can be drawn on any machine that holds the run folder.
"""

from __future__ import annotations

import csv
import math
import os
import struct
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

__all__ = ["read_scalars", "LogError"]


class LogError(RuntimeError):
    """A run folder holds no readable logs; the message names the folder and what was looked for."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield ``(field number, wire type, value)`` of one protocol-buffer message (the wire format, no schema).

    A varint field (wire type 0) gives an ``int``, every other field its raw ``bytes``.
    """
    pos = 0
    value: int | bytes
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protocol-buffer wire type {wire}")
        yield number, wire, value


def _tfevents_scalars(path: Path) -> list[tuple[str, int, float]]:
    # A TFRecord file: per record a length (uint64), its CRC, the bytes, their CRC. Each record is an
    # `Event` (field 2: step, 5: Summary); a Summary repeats `Value` (1: tag, 2: simple_value as float32).
    data = path.read_bytes()
    pos, out = 0, []
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, pos)
        record = data[pos + 12 : pos + 12 + length]
        pos += 12 + length + 4
        step, values = 0, []
        for number, _, value in _fields(record):
            if number == 2 and isinstance(value, int):
                step = value
            elif number == 5 and isinstance(value, bytes):
                for vnum, _, entry in _fields(value):
                    if vnum != 1 or not isinstance(entry, bytes):
                        continue
                    tag, scalar = None, None
                    for enum, wire, item in _fields(entry):
                        if not isinstance(item, bytes):
                            continue
                        if enum == 1:
                            tag = item.decode()
                        elif enum == 2 and wire == 5:
                            (scalar,) = struct.unpack("<f", item)
                    if tag is not None and scalar is not None:
                        values.append((tag, scalar))
        out += [(tag, step, scalar) for tag, scalar in values]
    return out


def _csv_scalars(path: Path) -> list[tuple[str, int, float]]:
    out = []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            step = int(row.get("step") or 0)
            for tag, text in row.items():
                if tag in ("step", "epoch") or not text:
                    continue
                out.append((tag, step, float(text)))
    return out


def read_scalars(run_dir: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """Every logged scalar of a training run, by tag: ``{"val_bpd": [(step, value), ...], ...}``.

    ``run_dir`` is the run folder (``<out_dir>/<model>``, holding ``logs/version_*``) or its
    ``logs`` folder. All versions (one per start or resume of the run) are merged; a step logged
    twice keeps the later value, and each list is sorted by step.
    """
    root = Path(run_dir)
    logs = root / "logs" if (root / "logs").is_dir() else root
    files = sorted(logs.glob("version_*/events.out.tfevents.*")) + sorted(logs.glob("version_*/metrics.csv"))
    if not files:
        raise LogError(
            f"no training logs under {logs}: expected logs/version_*/ with a TensorBoard events file or a "
            f"metrics.csv, as train_flow writes them; pass the folder of a training run"
        )
    by_tag: dict[str, dict[int, float]] = defaultdict(dict)
    # Versions in the order they were written, so a resumed run's values replace an interrupted one's.
    for path in sorted(files, key=lambda p: (int(p.parent.name.split("_")[-1]), p.name)):
        rows = _csv_scalars(path) if path.suffix == ".csv" else _tfevents_scalars(path)
        for tag, step, value in rows:
            if math.isfinite(value):
                by_tag[tag][step] = value
    return {tag: sorted(points.items()) for tag, points in by_tag.items()}
