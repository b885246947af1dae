"""The scalars a training run logged (loss, validation bpd, learning rate), read back from its log folder.

A run of :func:`nflows_tutorial.training.train_flow` logs through Lightning's CSV logger, into
``logs/version_*/metrics.csv``: a plain table that any machine holding the run folder can read.
"""

from __future__ import annotations

import csv
import math
import os
from collections import defaultdict
from pathlib import Path

__all__ = ["read_scalars", "LogError"]


class LogError(RuntimeError):
    """A run folder holds no readable logs; the message names the folder and what was looked for."""


def _csv_scalars(path: Path) -> list[tuple[str, int, float]]:
    out = []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            step = int(row.get("step") or 0)
            for tag, text in row.items():
                # Lightning adds the step and the epoch to every row: they place a value, they are not one.
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
    files = list(logs.glob("version_*/metrics.csv"))
    if not files:
        raise LogError(
            f"no training logs under {logs}: expected logs/version_*/metrics.csv, as train_flow writes them; "
            f"pass the folder of a training run"
        )
    by_tag: dict[str, dict[int, float]] = defaultdict(dict)
    # Versions in the order they were written, so a resumed run's values replace an interrupted one's.
    for path in sorted(files, key=lambda p: int(p.parent.name.split("_")[-1])):
        for tag, step, value in _csv_scalars(path):
            if math.isfinite(value):
                by_tag[tag][step] = value
    return {tag: sorted(points.items()) for tag, points in by_tag.items()}
