"""A user's mistakes and the machine's state on the command line: one line each, exit 2 for a bad request,
1 for the machine's state, 130 for Ctrl-C; and a model you trained is never replaced."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
import torch

from nflows_tutorial import cli
from nflows_tutorial.cli.options import duration
from nflows_tutorial.cli.train import announce_nodes
from nflows_tutorial.flows.builders import create_model
from nflows_tutorial.io.registry import REGISTRY

from support.cli import running_cli, wait_for
from support.helpers import permission_denied

ROOT = Path(__file__).resolve().parents[2]
SIMPLE = REGISTRY["simple"].filename
# A training run small enough for a shared 2-core machine.
TINY_TRAIN = [
    "train",
    "--model",
    "simple",
    "--limit",
    "16",
    "--batch-size",
    "8",
    "--importance-samples",
    "1",
    "--no-timing",
    "--no-compile",
    "--accelerator",
    "cpu",
    "--quiet",
]


def main(argv: list[str], capsys) -> tuple[int, list[str]]:
    """Run the command line in this process; return the exit code and the non-empty lines on stderr."""
    try:
        code = cli.main(argv)
    except SystemExit as stop:  # argparse's own errors
        code = stop.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, [line for line in err.splitlines() if line.strip()]


def one_line(argv: list[str], capsys, code: int) -> str:
    found, lines = main(argv, capsys)
    assert found == code, lines
    assert len(lines) == 1, lines
    return lines[0]


# Bad requests: exit 2 ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv, words",
    [
        (["bench", "--threads", "-1"], "expected a number of threads, 1 or more, got '-1'"),
        (["bench", "--threads", "0"], "expected a number of threads, 1 or more, got '0'"),
        (["train", "--model", "simple", "--max-time", "99999999999d"], "is longer than 500,000,000 days"),
        (["train", "--model", "simple", "--resume", "--overwrite"], "--overwrite: not allowed with argument --resume"),
        (["train", "--model", "simple", "--seed", str(2**64)], "a seed, a whole number from 0 to 4294967295"),
        (["sample", "--model", "simple", "--seed", "-1", "--out", "x.png"], "a seed, a whole number from 0"),
        (["evaluate", "--format", "excel"], "unknown table format 'excel'; choose one of"),
        (["train", "--model", "simple", "--format", "excel"], "unknown table format 'excel'"),
        (["sample", "--model", "simple", "--device", "meta", "--out", "x.png"], "meta device holds no values"),
        (["sample", "--model", "simple", "--device", "tpu", "--out", "x.png"], "unknown device 'tpu'"),
    ],
)
def test_bad_requests_are_one_line_and_exit_2(argv, words, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert words in one_line(argv, capsys, cli.USAGE_ERROR)


@pytest.mark.parametrize("device", ["mps", "xpu", "cuda:7"])
def test_an_absent_device_is_a_usage_error(device, capsys, tmp_path, monkeypatch):
    backend = {"mps": torch.backends.mps, "xpu": getattr(torch, "xpu", None), "cuda:7": torch.cuda}[device]
    if backend is not None and backend.is_available() and backend.device_count() > 7:
        pytest.skip(f"this machine has a {device} device, so asking for one is not an error here")
    monkeypatch.chdir(tmp_path)
    line = one_line(["sample", "--model", "simple", "--device", device, "--out", "x.png"], capsys, cli.USAGE_ERROR)
    assert f"device '{device}' was asked for" in line and "--device cpu" in line


def test_a_folder_named_as_the_output_image_is_a_usage_error(tmp_path, capsys):
    folder = tmp_path / "grid.png"
    folder.mkdir()
    line = one_line(["sample", "--model", "simple", "--out", str(folder)], capsys, cli.USAGE_ERROR)
    assert f"{folder} is a folder; give the PNG file to write" in line


def test_durations_take_the_common_forms():
    assert duration("2h15m") == duration("02:15:00") == timedelta(hours=2, minutes=15)
    assert duration("1d2h3m4s") == timedelta(days=1, hours=2, minutes=3, seconds=4)
    assert duration("1.5h") == timedelta(minutes=90)


def test_several_machines_without_a_meeting_point_is_a_usage_error(capsys, monkeypatch):
    for variable in ("MASTER_ADDR", "SLURM_NTASKS"):
        monkeypatch.delenv(variable, raising=False)
    line = one_line(["train", "--model", "simple", "--num-nodes", "2"], capsys, cli.USAGE_ERROR)
    assert "set MASTER_ADDR" in line and "NODE_RANK (0 to 1)" in line and "--devices" in line
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    monkeypatch.setenv("NODE_RANK", "0")
    announce_nodes(2)
    assert (
        capsys.readouterr().err == "waiting for all 2 machines to join at 10.0.0.1:29500 (node rank 0); Ctrl-C stops\n"
    )


# The machine's state: exit 1 -----------------------------------------------------------------------------------------
def test_an_output_image_in_a_read_only_place_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tempfile, "TemporaryFile", permission_denied)
    out = tmp_path / "grid.png"
    line = one_line(["sample", "--model", "simple", "--out", str(out)], capsys, 1)
    assert line == (
        f"nflows-tutorial sample: cannot write grid.png to {tmp_path} (Permission denied); "
        "choose a writable folder with --out ..."
    )


def test_a_logs_folder_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "simple").mkdir()
    (tmp_path / "simple" / "logs").write_text("not a folder")
    line = one_line([*TINY_TRAIN, "--out-dir", str(tmp_path)], capsys, 1)
    assert f"cannot write training output to {tmp_path / 'simple' / 'logs'}" in line and "--out-dir" in line


def test_a_read_only_logs_folder_is_one_line(tmp_path, capsys, monkeypatch):
    real = tempfile.TemporaryFile

    def read_only_logs(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).name == "logs":
            raise PermissionError(13, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only_logs)
    line = one_line([*TINY_TRAIN, "--out-dir", str(tmp_path)], capsys, 1)
    assert line.endswith("(Permission denied); choose a writable folder with --out-dir ...")


def test_a_read_only_cache_holding_a_damaged_file_is_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / SIMPLE).write_bytes(b"damaged")

    monkeypatch.setattr(os, "link", permission_denied)
    monkeypatch.setattr(os, "rename", permission_denied)
    line = one_line(
        ["sample", "--model", "simple", "--checkpoint-dir", str(tmp_path), "--out", str(tmp_path / "a.png")], capsys, 1
    )
    assert "failed verification" in line and "cannot be moved aside" in line and "PATH_CHECKPOINT" in line


def test_a_checkpoint_that_cannot_be_had_is_one_line_pointing_at_the_details(tmp_path, capsys):
    line = one_line(
        [
            "sample",
            "--model",
            "simple",
            "--offline",
            "--checkpoint-dir",
            str(tmp_path),
            "--out",
            str(tmp_path / "a.png"),
        ],
        capsys,
        1,
    )
    assert line.startswith(f"nflows-tutorial sample: No 'simple' checkpoint in {tmp_path}, and --offline was given.")
    assert line.endswith(
        f"(to fetch it, or see why it cannot be had: nflows-tutorial download simple --checkpoint-dir {tmp_path})"
    )


def test_mnist_missing_with_offline_is_one_line_in_the_command_lines_words(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH_DATASETS", str(tmp_path / "no-data"))
    line = one_line(["evaluate", "--model", "simple", "--offline", "--no-timing"], capsys, 1)
    assert line.startswith("nflows-tutorial evaluate: MNIST is not in ")
    assert "and --offline was given; place these files" in line


def test_a_short_mnist_train_file_is_one_line(tmp_path, capsys, monkeypatch):
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes(bytes.fromhex("00000803 000003e8 0000001c 0000001c") + bytes(784_000))
    (raw / "train-labels-idx1-ubyte").write_bytes(bytes.fromhex("00000801 000003e8") + bytes(1000))
    monkeypatch.setenv("PATH_DATASETS", str(tmp_path / "data"))
    line = one_line([*TINY_TRAIN, "--max-steps", "1", "--out-dir", str(tmp_path / "runs")], capsys, 1)
    assert "train-images-idx3-ubyte holds 1,000 entries where MNIST has 60,000" in line


def test_a_full_disk_while_the_final_checkpoint_is_written_is_one_line(tmp_path, capsys, monkeypatch, mnist_root):
    real_save = torch.save

    def disk_full_for_the_published_file(obj, path, *args, **kwargs):
        if isinstance(path, (str, os.PathLike)) and Path(path).name.startswith(f".{SIMPLE}."):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_full_for_the_published_file)
    code, lines = main([*TINY_TRAIN, "--max-steps", "1", "--out-dir", str(tmp_path)], capsys)
    assert code == 1
    (line,) = [line for line in lines if line.startswith("training stopped")]
    assert "could not write the checkpoint" in line and str(tmp_path / SIMPLE) in line and "--resume" in line
    assert not (tmp_path / SIMPLE).exists()
    assert not list(tmp_path.glob(f".{SIMPLE}.*"))  # no temporary file left behind


# Ctrl-C ---------------------------------------------------------------------------------------------------------------
@pytest.mark.subprocess
def test_ctrl_c_in_train_exits_130_without_a_traceback(tmp_path, mnist_root):
    last = tmp_path / "simple" / "checkpoints" / "last.ckpt"
    log = tmp_path / "train.log"
    args = (*TINY_TRAIN, "--epochs", "1000", "--checkpoint-every", "1", "--out-dir", str(tmp_path))
    with running_cli(*args, log=log) as proc:
        wait_for(last.is_file, proc, timeout=600)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=300) == 130, log.read_text()
    err = log.read_text()
    assert "Traceback" not in err
    assert any(line.startswith("training interrupted; continue it with --resume") for line in err.splitlines()), err


# A model you trained --------------------------------------------------------------------------------------------------
@pytest.mark.subprocess
def test_sampling_twice_from_a_folder_holding_your_model_keeps_it(tmp_path, published_dir):
    own = tmp_path / "runs"
    own.mkdir()
    torch.save({"state_dict": create_model("simple").state_dict(), "result": {}}, own / SIMPLE)
    before = (own / SIMPLE).read_bytes()
    env = {**os.environ, "NFLOWS_TUTORIAL_CHECKPOINT_URL": published_dir.as_uri() + "/"}  # the mirror is there
    for out in ("a.png", "b.png"):
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "nflows_tutorial",
                "sample",
                "--model",
                "simple",
                "-n",
                "1",
                "--no-compile",
                "--checkpoint-dir",
                str(own),
                "--out",
                str(tmp_path / out),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert run.returncode == 0, run.stderr
        assert run.stderr.strip() == (
            f"nflows-tutorial: warning: using {own / SIMPLE}: it is not the published 'simple' "
            "checkpoint, but it fits the model, so it is taken as your own, and the numbers stored with it "
            "are yours (move it elsewhere to get the published one)"
        )
    assert sorted(p.name for p in own.iterdir()) == [SIMPLE]
    assert (own / SIMPLE).read_bytes() == before
