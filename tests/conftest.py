"""Fixtures of the unit tests: the published checkpoints, fetched as a user gets them, and an isolated cache per test;
and a check, at the end of the run, that no process a test started is still running.

MNIST (``mnist_root``) and quick mode come from the repository's top-level ``conftest.py``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import torch

PUBLISHED = ("simple", "vardeq")  # the checkpoints whose files and hashes are published
_PR_SET_CHILD_SUBREAPER = 36  # from <linux/prctl.h>


@pytest.fixture(scope="session")
def published_dir() -> Path:
    """The checkpoint cache (``$PATH_CHECKPOINT``, else ``saved_models/tutorial11``) holding the published
    ``simple`` and ``vardeq`` checkpoints, downloaded and verified by the package on first use from
    ``$NFLOWS_TUTORIAL_CHECKPOINT_URL`` (default: the published location).

    Skips the test, with one line saying how to provide them, where they cannot be had.
    """
    from nflows_tutorial.environment import URL_VARIABLE
    from nflows_tutorial.io.checkpoint_files import CheckpointError
    from nflows_tutorial.io.checkpoints import fetch_checkpoint
    from nflows_tutorial.io.download import sha256_of
    from nflows_tutorial.io.paths import checkpoint_dir
    from nflows_tutorial.io.registry import REGISTRY

    folder = checkpoint_dir()
    for name in PUBLISHED:
        try:
            path = fetch_checkpoint(name, folder, progress=False)
        except CheckpointError as err:
            files = " and ".join(REGISTRY[n].filename for n in PUBLISHED)
            pytest.skip(
                f"published checkpoints unavailable: {str(err).splitlines()[0]}. Set {URL_VARIABLE} to a "
                f"mirror serving {files}, or run 'python -m nflows_tutorial download simple vardeq'"
            )
        if sha256_of(path) != REGISTRY[name].sha256:
            pytest.skip(
                f"{path} is not the published {name!r} checkpoint (one you trained?); move it elsewhere, "
                "or point PATH_CHECKPOINT at another folder"
            )
    return folder


@pytest.fixture(autouse=True)
def _isolated_paths(tmp_path_factory, monkeypatch):
    """Every test caches checkpoints in a fresh folder and, unless it sets its own mirror, never reaches the network."""
    monkeypatch.setenv("PATH_CHECKPOINT", str(tmp_path_factory.mktemp("ckpt")))
    monkeypatch.setenv("NFLOWS_TUTORIAL_CHECKPOINT_URL", "http://127.0.0.1:9/unreachable/")
    torch.manual_seed(0)


# Processes that outlive the tests ------------------------------------------------------------------------------------
#: Helpers that an interpreter keeps for its whole life and ends at exit (torch's compile workers,
#: multiprocessing's resource tracker): started by a test, but ended with pytest, not left behind.
_ENDED_WITH_PYTEST = (
    "torch._inductor.compile_worker",
    "multiprocessing.resource_tracker",
    "multiprocessing.forkserver",
)
_GRACE_S = 10.0  # for a child that a test has told to stop (a notebook kernel shutting down) to end


def pytest_configure(config: pytest.Config) -> None:
    """Make pytest the reaper of its orphans (Linux), so that a process whose parent ended still counts as its own."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _descendants() -> dict[int, str]:
    """The live processes below this one (orphans included, being reparented here), with their command lines."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):  # a process that just ended
                state, ppid = (entry / "stat").read_text().rpartition(")")[2].split()[:2]
                if state != "Z":
                    parents[int(entry.name)] = int(ppid)
    found, frontier = set(), {os.getpid()}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    commands = {}
    for pid in found:
        with contextlib.suppress(OSError):
            commands[pid] = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    return {pid: command for pid, command in commands.items() if not any(h in command for h in _ENDED_WITH_PYTEST)}


def _reap() -> None:
    """Collect the exit status of this process's ended children (orphans reparented here among them)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when a process that a test started is still running: name it, then kill it."""
    if sys.platform != "linux":
        return
    deadline = time.monotonic() + _GRACE_S
    while (left := _descendants()) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _reap()
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        for pid, command in left.items():
            line = f"process {pid} outlived the tests and was killed: {command}"
            if reporter is not None:
                reporter.write_line(line, red=True)
            else:
                print(line, file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
