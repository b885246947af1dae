"""Runs that share a run folder, what a resumed run keeps, how an interrupted run advises, and batch sizes refused."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from nflows_tutorial.cli import main
from nflows_tutorial.flows.builders import create_model
from nflows_tutorial.io.checkpoint_files import CheckpointError
from nflows_tutorial.training import RunFolderInUseError, TrainerSettings, UnusableSettingsError, train_flow
from nflows_tutorial.training.resume import LearningRateChangeWarning
from nflows_tutorial.training.run_folder import run_paths
from nflows_tutorial.training.run_lock import LOCK_NAME, lock_owner, run_folder_lock

from support.cli import run_cli, start_cli

TINY: dict[str, Any] = dict(
    limit=16, batch_size=8, importance_samples=1, timing_repeats=0, compiled=False, progress=False
)
TINY_TRAIN = [
    *("train", "--model", "simple", "--limit", "24", "--batch-size", "8", "--importance-samples", "1"),
    *("--no-timing", "--accelerator", "cpu", "--quiet", "--no-compile"),
]


def no_data(*args, **kwargs):
    raise AssertionError("the data was read: the request should have been refused first")


def ended_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def write_lock(folder: Path, **owner) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_NAME
    lock.write_text(json.dumps({"host": socket.gethostname(), "started": "2024-01-01T00:00:00+00:00", **owner}))
    return lock


# The run folder's lock -----------------------------------------------------------------------------------------------
def test_a_run_into_a_folder_in_use_is_refused_naming_the_holder_and_nothing_there_is_deleted(tmp_path, monkeypatch):
    monkeypatch.setattr("nflows_tutorial.training.run.load_mnist", no_data)
    paths = run_paths("simple", tmp_path)
    paths["checkpoints"].mkdir(parents=True)
    paths["last"].write_bytes(b"the running run's checkpoint")
    with run_folder_lock(paths["run"]) as lock:
        held = lock.read_bytes()
        for request in (dict(overwrite=True), dict(resume=True), dict()):
            with pytest.raises(RunFolderInUseError) as caught:
                train_flow("simple", out_dir=tmp_path, **request, **TINY)
            message = str(caught.value)
            assert "\n" not in message
            assert (
                f"{paths['run']} is in use by another training run (PID {os.getpid()} on {socket.gethostname()}"
                in message
            )
            assert str(lock) in message and "choose another out_dir=..." in message
            assert caught.value.spelled(lambda name, value: "--" + name.replace("_", "-")).endswith("--out-dir")
            assert paths["last"].read_bytes() == b"the running run's checkpoint"
            assert lock.read_bytes() == held


def test_the_lock_names_its_process_and_goes_with_the_block_however_it_ends(tmp_path):
    folder = tmp_path / "simple"
    ended = []
    for ending in (None, RuntimeError, KeyboardInterrupt):
        try:
            with run_folder_lock(folder) as lock:
                owner = lock_owner(folder)
                assert (owner.pid, owner.host) == (os.getpid(), socket.gethostname()) and owner.started
                assert owner.is_alive()
                # O_EXCL: even the same process cannot take it twice
                with pytest.raises(RunFolderInUseError), run_folder_lock(folder):
                    pass
                assert lock.exists()
                ended.append(ending)
                if ending is not None:
                    raise ending
        except (RuntimeError, KeyboardInterrupt):
            pass
        assert not (folder / LOCK_NAME).exists(), ending
    assert ended == [None, RuntimeError, KeyboardInterrupt]


def test_a_stale_lock_is_replaced_and_a_live_or_unverifiable_one_is_kept(tmp_path):
    folder = tmp_path / "simple"
    write_lock(folder, pid=ended_pid())  # its process has ended
    with run_folder_lock(folder):
        assert lock_owner(folder).pid == os.getpid()
    write_lock(folder, pid=os.getpid(), process_start="1")  # the PID now belongs to another process
    with run_folder_lock(folder):
        assert lock_owner(folder).process_start != "1"
    remote = write_lock(folder, pid=ended_pid(), host="elsewhere.example")  # cannot be checked from here
    refused = f"on elsewhere.example.*if that run has ended, delete {remote}"
    with pytest.raises(RunFolderInUseError, match=refused), run_folder_lock(folder):
        pass
    assert remote.exists()
    remote.write_text("garbage")
    with pytest.raises(RunFolderInUseError, match="not a readable training lock"), run_folder_lock(folder):
        pass


def test_the_helper_processes_of_a_multi_process_run_work_under_the_first_ones_lock(tmp_path, monkeypatch):
    with run_folder_lock(tmp_path / "simple"):
        monkeypatch.setenv("LOCAL_RANK", "1")
        with run_folder_lock(tmp_path / "simple") as lock:
            assert lock is None


# Batch sizes no run can use -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("batch_size", "limit", "said"),
    [
        (60_000, None, "batch_size=60000 asks for more images per step than the training split holds (50,000)"),
        (60_000, 100_000, "the training split holds (50,000)"),
        (
            32,
            24,
            "batch_size=32 asks for more images per step than limit=24 leaves of the training split (24 of 50,000)",
        ),
    ],
)
def test_a_batch_larger_than_the_training_images_is_refused_before_anything_is_read_or_written(
    tmp_path, monkeypatch, batch_size, limit, said
):
    monkeypatch.setattr("nflows_tutorial.training.run.load_mnist", no_data)
    with pytest.raises(UnusableSettingsError) as caught:
        train_flow("simple", batch_size=batch_size, limit=limit, out_dir=tmp_path / "runs", progress=False)
    assert isinstance(caught.value, ValueError) and said in str(caught.value)
    assert not (tmp_path / "runs").exists()


def test_the_command_line_refuses_a_batch_larger_than_the_split_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("nflows_tutorial.training.run.load_mnist", no_data)
    code = main(
        [
            "train",
            "--model",
            "simple",
            "--batch-size",
            "60000",
            "--out-dir",
            str(tmp_path / "runs"),
            "--quiet",
            "--no-compile",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "--batch-size 60000 asks for more images per step than the training split holds (50,000)" in err
    assert not (tmp_path / "runs").exists()


# What a resumed run reads ---------------------------------------------------------------------------------------------
class RunsCode:
    """Unpickling this calls ``os.system``: what a malicious checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def bad_last_checkpoint(kind: str, last: Path, marker: Path) -> str:
    """Write a ``last.ckpt`` of the given kind; return what the refusal says about it."""
    last.parent.mkdir(parents=True, exist_ok=True)
    if kind == "another model":
        torch.save({"state_dict": create_model("vardeq").state_dict(), "optimizer_states": []}, last)
        return f"{last}: this checkpoint does not fit the 'simple' model"
    if kind == "truncated":
        torch.save({"state_dict": create_model("simple").state_dict()}, last)
        last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
        return f"{last} is not a readable PyTorch checkpoint, probably truncated"
    torch.save({"state_dict": {}, "payload": RunsCode(marker)}, last)
    return f"refusing to load {last}: it is unsafe, as it asks to run posix.system"


@pytest.mark.parametrize("kind", ["another model", "truncated", "code"])
def test_resume_refuses_a_last_checkpoint_that_is_not_this_runs_in_one_line(tmp_path, monkeypatch, kind):
    monkeypatch.setattr("nflows_tutorial.training.run.load_mnist", no_data)
    last, marker = run_paths("simple", tmp_path)["last"], tmp_path / "code-ran"
    said = bad_last_checkpoint(kind, last, marker)
    with pytest.raises(CheckpointError) as caught:
        train_flow("simple", out_dir=tmp_path, resume=True, **TINY)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("cannot resume this run: ") and said in message
    assert message.endswith(
        "start afresh with overwrite=True (which deletes the run's checkpoints), or choose another out_dir=..."
    )
    assert "will likely succeed" not in message and "`weights_only` set to `False`" not in message
    assert not marker.exists() and last.exists()
    assert not (last.parent.parent / LOCK_NAME).exists()


@pytest.mark.subprocess
def test_train_resume_from_a_pickle_that_runs_code_says_so_in_one_line(tmp_path):
    last, marker = run_paths("simple", tmp_path)["last"], tmp_path / "code-ran"
    said = bad_last_checkpoint("code", last, marker)
    result = run_cli(*TINY_TRAIN, "--resume", "--out-dir", str(tmp_path))
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert said in result.stderr and "--overwrite" in result.stderr and "will likely succeed" not in result.stderr
    assert not marker.exists()


def stored_lr(last: Path) -> tuple[float, float]:
    group = torch.load(last, map_location="cpu", weights_only=True)["optimizer_states"][0]["param_groups"][0]
    return group["initial_lr"], group["lr"]


def test_resume_with_another_learning_rate_applies_it_and_says_so(tmp_path, mnist_root):
    common = dict(out_dir=tmp_path, checkpoint_every=1, settings=TrainerSettings(accelerator="cpu"), **TINY)
    last = run_paths("simple", tmp_path)["last"]
    train_flow("simple", max_steps=2, **common)  # one epoch of two steps: the rate has decayed once
    began, reached = stored_lr(last)
    assert began == 1e-3 and reached == pytest.approx(0.99e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LearningRateChangeWarning)
        train_flow("simple", resume=True, lr=1e-3, max_steps=3, **common)  # the run's own: the schedule goes on
    assert stored_lr(last) == (began, reached)
    with pytest.warns(LearningRateChangeWarning) as caught:
        train_flow("simple", resume=True, lr=1e-5, max_steps=4, **common)
    assert [str(w.message) for w in caught if w.category is LearningRateChangeWarning] == [
        "resuming at the learning rate asked for, 1e-05, in place of the run's own 0.00099 (it began at 0.001); "
        "it decays x0.99 per epoch from here"
    ]
    assert stored_lr(last) == (1e-5, pytest.approx(0.99e-5))  # set at step 3, decayed at the end of the epoch


# An interrupted run's advice ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("checkpoint_written", [False, True])
def test_an_interrupted_run_advises_resuming_only_when_there_is_a_checkpoint(
    tmp_path, mnist_root, monkeypatch, capsys, checkpoint_written
):
    paths = run_paths("simple", tmp_path)
    locked = []

    def interrupted(run):
        locked.append((paths["run"] / LOCK_NAME).exists())
        if checkpoint_written:
            paths["last"].write_bytes(b"a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr("nflows_tutorial.training.run._fit", interrupted)
    code = main([*TINY_TRAIN, "--out-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 130 and err.count("\n") == 1
    if checkpoint_written:
        assert err == "training interrupted; continue it with --resume (same --out-dir)\n"
    else:
        assert "--resume" not in err and "nothing to resume" in err
    assert locked == [True] and not (paths["run"] / LOCK_NAME).exists()


def wait_for(condition, proc, log: Path, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"training ended (code {proc.returncode}) too early:\n{log.read_text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting after {timeout} s:\n{log.read_text()}")
        time.sleep(0.05)


@pytest.mark.subprocess
def test_a_second_run_or_an_overwrite_into_a_folder_in_use_is_refused_and_sigterm_frees_it(tmp_path):
    paths = run_paths("simple", tmp_path)
    log = tmp_path / "first.log"
    first = start_cli(*TINY_TRAIN, "--epochs", "1000", "--checkpoint-every", "1", "--out-dir", str(tmp_path), log=log)
    try:
        wait_for(paths["last"].is_file, first, log)
        for extra in ([], ["--overwrite"]):
            second = run_cli(*TINY_TRAIN, "--max-steps", "1", *extra, "--out-dir", str(tmp_path))
            assert second.returncode == 1, second.stderr
            assert second.stderr.count("\n") == 1 and "Traceback" not in second.stderr
            assert f"is in use by another training run (PID {first.pid} on " in second.stderr
            assert "choose another --out-dir" in second.stderr
            assert first.poll() is None and paths["last"].is_file()
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=120) == 128 + signal.SIGTERM
    finally:
        first.kill()
        first.wait()
    assert "training interrupted; continue it with --resume" in log.read_text()
    assert not (paths["run"] / LOCK_NAME).exists() and paths["last"].is_file()


@pytest.mark.subprocess
def test_sigterm_before_the_first_checkpoint_does_not_advise_resuming(tmp_path):
    paths = run_paths("simple", tmp_path)
    log = tmp_path / "run.log"
    args = ("--limit", "8000", "--epochs", "1000", "--checkpoint-every", "100000", "--out-dir", str(tmp_path))
    proc = start_cli(*TINY_TRAIN, *args, log=log)
    try:
        wait_for((paths["run"] / "logs").is_dir, proc, log)
        time.sleep(2)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    said = log.read_text().strip().splitlines()[-1]
    assert code == 128 + signal.SIGTERM, log.read_text()
    assert "--resume" not in said and "nothing to resume" in said
    assert not paths["last"].exists() and not (paths["run"] / LOCK_NAME).exists()
