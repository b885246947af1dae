"""Learning curves are read back from a run's logs, TensorBoard or CSV, without TensorBoard installed."""

from __future__ import annotations

import struct

import pytest

from nflows_tutorial.training.logs import LogError, read_scalars


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    key = _varint(number << 3 | wire)
    return key + (_varint(len(payload)) + payload if wire == 2 else payload)


def _event(step: int, tag: str, value: float) -> bytes:
    """One TFRecord holding an Event with one scalar, as TensorBoard writes it (CRCs are not checked here)."""
    summary_value = _field(1, 2, tag.encode()) + _field(2, 5, struct.pack("<f", value))
    event = (
        _field(1, 1, struct.pack("<d", 1.0)) + _field(2, 0, _varint(step)) + _field(5, 2, _field(1, 2, summary_value))
    )
    return struct.pack("<Q", len(event)) + b"\0" * 4 + event + b"\0" * 4


def test_tensorboard_logs_of_a_resumed_run_are_merged(tmp_path):
    first = tmp_path / "logs" / "version_0"
    second = tmp_path / "logs" / "version_1"
    first.mkdir(parents=True)
    second.mkdir(parents=True)
    (first / "events.out.tfevents.1.host").write_bytes(
        _event(49, "train_bpd", 1.5) + _event(389, "val_bpd", 1.25) + _event(99, "train_bpd", 1.375)
    )
    (second / "events.out.tfevents.2.host").write_bytes(_event(99, "train_bpd", 1.25) + _event(779, "val_bpd", 1.125))
    scalars = read_scalars(tmp_path)
    assert scalars["train_bpd"] == [(49, 1.5), (99, 1.25)], "a step logged again after a resume keeps the later value"
    assert scalars["val_bpd"] == [(389, 1.25), (779, 1.125)]


def test_csv_logs_are_read(tmp_path):
    folder = tmp_path / "logs" / "version_0"
    folder.mkdir(parents=True)
    (folder / "metrics.csv").write_text("epoch,step,train_bpd,val_bpd\n0,49,1.5,\n0,389,,1.25\n")
    assert read_scalars(tmp_path / "logs") == {"train_bpd": [(49, 1.5)], "val_bpd": [(389, 1.25)]}


def test_a_folder_without_logs_says_what_it_expected(tmp_path):
    with pytest.raises(LogError, match="no training logs under .*version_"):
        read_scalars(tmp_path)
