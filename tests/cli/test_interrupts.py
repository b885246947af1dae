"""Ctrl-C (SIGINT) and ``kill`` (SIGTERM) stop every command alike: exit 130 / 143 with one line, nothing
half-written, no temporary file and no process left running.

SIGINT is sent to a child that inherited it as ignored, as a command started by a background shell
(CI, ``nohup``) does: the command line must answer it all the same. Each command is interrupted at a
moment chosen to hurt (see :func:`support.cli.start_cli`): just before its first write into an output
file, during scoring, mid-download, while a measuring child runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from support.cli import ROOT, leftovers, run_cli, running_cli, wait_for
from support.http_fixtures import LoopbackServer

SIGNALS = ("SIGINT", "SIGTERM")
EXIT = {"SIGINT": 130, "SIGTERM": 143}
QUICK_EVAL = ["--limit", "8", "--batch-size", "8", "--importance-samples", "1", "--no-timing"]
TINY_TRAIN = [
    *("train", "--model", "simple", "--limit", "16", "--batch-size", "8", "--importance-samples", "1"),
    *("--no-timing", "--no-compile", "--accelerator", "cpu", "--quiet", "--epochs", "1000"),
]


def stopped(proc: subprocess.Popen, log: Path, signame: str, line: str) -> None:
    """``proc`` ended with the exit code of ``signame``, saying a line that starts ``line``, and no traceback; none of
    its processes is left."""
    code = proc.wait(timeout=300)
    out = log.read_text()
    assert code == EXIT[signame], out
    assert "Traceback" not in out, out
    assert any(said.startswith(line) for said in out.splitlines()), out
    assert leftovers(proc.pid) == [], f"processes left running: {leftovers(proc.pid)}"


def temporary_files(*folders: Path) -> list[Path]:
    """Files that a writer creates before renaming them into place."""
    return [p for folder in folders if folder.exists() for p in folder.rglob("*") if p.name.endswith((".part", ".tmp"))]


def written(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by its relative name, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def interrupt_while_writing(command: str, signame: str, out: Path, folder: Path, *args: str) -> None:
    """Run ``command --out OUT ARGS``, interrupted with ``signame`` just before its first write into ``folder``."""
    log = folder.parent / "log"
    interrupt = f"{signame}@write:{folder}{os.sep}"
    with running_cli(command, "--out", str(out), *args, log=log, interrupt=interrupt, ignore_sigint=True) as proc:
        stopped(proc, log, signame, f"nflows-tutorial {command}: interrupted")


# The command line itself -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("signame", SIGNALS)
def test_main_turns_both_signals_into_an_interrupt_and_puts_the_handlers_back(signame, capsys, monkeypatch):
    from nflows_tutorial import cli

    def run(args) -> int:
        os.kill(os.getpid(), getattr(signal, signame))
        return 0

    monkeypatch.setattr(cli.download, "COMMANDS", (dataclasses.replace(cli.download.COMMANDS[0], run=run),))
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    assert cli.main(["download", "--all"]) == EXIT[signame]
    assert capsys.readouterr().err.splitlines() == ["nflows-tutorial download: interrupted"]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def sigint_ignored(pid: int) -> bool:
    """Whether process ``pid`` ignores SIGINT (from ``/proc/PID/status``)."""
    status = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return bool(int(status["SigIgn"], 16) & 1 << (signal.SIGINT - 1))


def state(pid: int) -> str:
    """The state letter of process ``pid`` (R running, S sleeping, T stopped, Z zombie...)."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


@pytest.mark.subprocess
def test_a_child_of_the_tests_does_not_inherit_an_ignored_sigint(tmp_path):
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a background shell leaves it
    try:
        # Frozen just before the command line's main() runs: what it finds is what the helper gave it.
        with running_cli("--help", log=tmp_path / "log", interrupt="SIGSTOP@call:nflows_tutorial.cli:main") as proc:
            wait_for(lambda: state(proc.pid) == "T", proc, timeout=120)
            assert not sigint_ignored(proc.pid)
    finally:
        signal.signal(signal.SIGINT, previous)


# Every command ---------------------------------------------------------------------------------------------------------
@pytest.mark.subprocess
@pytest.mark.parametrize("signame", SIGNALS)
def test_train_stops_keeping_its_last_checkpoint_and_says_how_to_resume(signame, tmp_path, mnist_root):
    last = tmp_path / "simple" / "checkpoints" / "last.ckpt"
    log = tmp_path / "log"
    args = (*TINY_TRAIN, "--checkpoint-every", "1", "--out-dir", str(tmp_path))
    with running_cli(*args, log=log, ignore_sigint=True) as proc:
        wait_for(last.is_file, proc, timeout=600)
        proc.send_signal(getattr(signal, signame))
        stopped(proc, log, signame, "training interrupted; continue it with --resume")
    assert last.is_file() and temporary_files(tmp_path) == []


@pytest.mark.subprocess
@pytest.mark.parametrize("signame", SIGNALS)
def test_evaluate_stops_during_scoring(signame, tmp_path, published_dir, mnist_root):
    log = tmp_path / "log"
    args = ("evaluate", "--model", "simple", "--offline", "--checkpoint-dir", str(published_dir), *QUICK_EVAL)
    interrupt = f"{signame}@call:nflows_tutorial.analysis.results:evaluate_bpd"
    with running_cli(*args, log=log, interrupt=interrupt, ignore_sigint=True) as proc:
        stopped(proc, log, signame, "nflows-tutorial evaluate: interrupted")
    assert "Validation bpd" not in log.read_text()  # no table of numbers never measured
    assert temporary_files(published_dir, tmp_path) == []


@pytest.mark.subprocess
@pytest.mark.parametrize("signame", SIGNALS)
def test_sample_leaves_no_image_and_no_temporary_file(signame, tmp_path, published_dir):
    out = tmp_path / "out"
    source = ("--model", "simple", "--offline", "--checkpoint-dir", str(published_dir), "-n", "4")
    interrupt_while_writing("sample", signame, out / "grid.png", out, *source)
    assert not out.exists() or written(out) == {}


@pytest.mark.subprocess
@pytest.mark.parametrize("signame", SIGNALS)
def test_download_stopped_mid_transfer_leaves_no_partial_file(signame, tmp_path, published_dir):
    folder, log = tmp_path / "cache", tmp_path / "log"
    with LoopbackServer() as server:
        server.add("MNISTFlow_simple.ckpt", published_dir / "MNISTFlow_simple.ckpt", fault="stall")
        env = {"NFLOWS_TUTORIAL_CHECKPOINT_URL": server.url}
        args = ("download", "simple", "--checkpoint-dir", str(folder), "--quiet")
        with running_cli(*args, log=log, env=env, ignore_sigint=True) as proc:
            # Half the file has arrived and the server has gone silent: the download is mid-transfer.
            wait_for(lambda: any(p.stat().st_size for p in temporary_files(folder)), proc, timeout=120)
            proc.send_signal(getattr(signal, signame))
            stopped(proc, log, signame, "nflows-tutorial download: interrupted")
    assert written(folder) == {}


@pytest.fixture(scope="module")
def complete(tmp_path_factory) -> Callable[[str], dict[str, bytes]]:
    """What an uninterrupted ``exercises`` or ``slides`` writes, by file name (each command run once)."""
    done: dict[str, dict[str, bytes]] = {}

    def of(command: str) -> dict[str, bytes]:
        if command not in done:
            out = tmp_path_factory.mktemp(command)
            result = run_cli(command, "--out", str(out))
            assert result.returncode == 0, result.stderr
            done[command] = written(out)
        return done[command]

    return of


@pytest.mark.subprocess
@pytest.mark.parametrize("signame", SIGNALS)
@pytest.mark.parametrize("command", ["exercises", "slides"])
def test_course_material_is_never_left_half_written(command, signame, tmp_path, complete):
    out = tmp_path / "out"
    interrupt_while_writing(command, signame, out, out)
    whole = complete(command)
    partial = [name for name, data in written(out).items() if whole.get(name) != data]
    assert partial == [], f"files not as a complete run writes them: {partial}"


@pytest.mark.subprocess
@pytest.mark.parametrize("signame", SIGNALS)
def test_site_is_never_left_half_written(signame, tmp_path):
    pytest.importorskip("sphinx")
    out = tmp_path / "out"
    interrupt_while_writing("site", signame, out, out)
    assert temporary_files(out) == []
    assert [name for name, data in written(out).items() if not data] == [], "empty (half-written) files"


@pytest.mark.subprocess
@pytest.mark.parametrize("signame", SIGNALS)
def test_bench_ends_its_measuring_child_with_it(signame, tmp_path):
    log = tmp_path / "log"
    with running_cli("bench", "--tiny", "--model", "simple", "--no-compile", log=log, ignore_sigint=True) as proc:
        wait_for(lambda: len(leftovers(proc.pid)) > 1, proc, timeout=300)  # the measuring child runs
        proc.send_signal(getattr(signal, signame))  # to bench alone, as ``kill`` sends it
        stopped(proc, log, signame, "nflows-tutorial bench: interrupted")


# The run as a whole ----------------------------------------------------------------------------------------------------
LEAKY_TEST = """
import subprocess, sys
from pathlib import Path

def test_leaves_processes_behind(tmp_path):
    here = Path(__file__).parent
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    (here / "child").write_text(str(child.pid))
    # A grandchild whose parent ends at once: an orphan.
    subprocess.run(["sh", "-c", f"sleep 600 & echo $! > {here / 'orphan'}"], check=True)
"""


@pytest.mark.subprocess
def test_a_run_fails_when_a_test_leaves_a_process_running(tmp_path):
    (tmp_path / "test_leaky.py").write_text(LEAKY_TEST)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    try:
        # The suite's conftest as a plugin, on a test file of its own.
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "conftest", "-q", "-p", "no:cacheprovider", "test_leaky.py"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        pids = [int((tmp_path / name).read_text()) for name in ("child", "orphan")]
        assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout + result.stderr
        for pid in pids:
            assert f"process {pid} outlived the tests and was killed" in result.stdout, result.stdout
            assert not Path(f"/proc/{pid}").exists() or state(pid) == "Z"
    finally:
        for name in ("child", "orphan"):
            if (tmp_path / name).exists():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int((tmp_path / name).read_text()), signal.SIGKILL)
