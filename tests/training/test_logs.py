"""Learning curves are read back from the CSV tables Lightning's logger writes into a run's log folder."""

from __future__ import annotations

import math

import pytest
from pytorch_lightning.loggers import CSVLogger

from nflows_tutorial.training.logs import LogError, read_scalars


def log_run(save_dir, *calls: tuple[int, dict[str, float]]) -> None:
    """Log ``(step, metrics)`` calls through a real ``CSVLogger``, as one start of a run (one ``version_*``)."""
    logger = CSVLogger(save_dir=str(save_dir), name="logs")
    for step, metrics in calls:
        logger.log_metrics(metrics, step=step)
    logger.finalize("success")


def test_the_csv_logs_of_a_resumed_run_are_merged(tmp_path):
    # What a trainer logs: the training loss and the epoch, the validation bpd and the epoch, the learning rate alone.
    log_run(
        tmp_path,
        (0, {"lr-Adam": 1e-3}),
        (49, {"train_bpd": 1.5, "epoch": 0}),
        (99, {"train_bpd": 1.375, "epoch": 0}),
        (389, {"val_bpd": 1.25, "epoch": 0}),
    )
    log_run(tmp_path, (99, {"train_bpd": 1.25, "epoch": 0}), (779, {"val_bpd": 1.125, "epoch": 1}))
    assert sorted(p.parent.name for p in (tmp_path / "logs").glob("*/metrics.csv")) == ["version_0", "version_1"]
    scalars = read_scalars(tmp_path)
    assert scalars["train_bpd"] == [(49, 1.5), (99, 1.25)], "a step logged again after a resume keeps the later value"
    assert scalars["val_bpd"] == [(389, 1.25), (779, 1.125)]
    assert scalars["lr-Adam"] == [(0, 1e-3)]
    assert set(scalars) == {"train_bpd", "val_bpd", "lr-Adam"}, "the step and epoch columns place values, not scalars"


def test_non_finite_values_are_left_out(tmp_path):
    log_run(tmp_path, (9, {"train_bpd": 2.0}), (19, {"train_bpd": math.nan}), (29, {"train_bpd": math.inf}))
    assert read_scalars(tmp_path / "logs") == {"train_bpd": [(9, 2.0)]}


def test_csv_logs_are_read(tmp_path):
    folder = tmp_path / "logs" / "version_0"
    folder.mkdir(parents=True)
    (folder / "metrics.csv").write_text("epoch,step,train_bpd,val_bpd\n0,49,1.5,\n0,389,,1.25\n")
    assert read_scalars(tmp_path / "logs") == {"train_bpd": [(49, 1.5)], "val_bpd": [(389, 1.25)]}


def test_a_folder_without_logs_says_what_it_expected(tmp_path):
    with pytest.raises(LogError, match=r"no training logs under .*version_\*/metrics\.csv"):
        read_scalars(tmp_path)
