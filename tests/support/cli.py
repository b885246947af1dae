"""Running the command line as a user does: ``python -m nflows_tutorial ...`` in a fresh interpreter.

Run as a script (``python tests/support/cli.py ARGS``), this file is the child that :func:`start_cli`
starts: it sets SIGINT as asked (a background shell leaves it ignored), arms the interrupt asked for,
then runs ``nflows_tutorial`` as ``python -m`` does.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
_INTERRUPT_AT = "NFLOWS_TUTORIAL_TEST_INTERRUPT"
_SIGINT = "NFLOWS_TUTORIAL_TEST_SIGINT"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m nflows_tutorial ARGS`` in a fresh interpreter, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "nflows_tutorial", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=1200,
    )


def start_cli(
    *args: str, log: Path, interrupt: str | None = None, ignore_sigint: bool = False, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """Start ``python -m nflows_tutorial ARGS`` without waiting for it; its output goes to ``log``.

    The child leads a process group of its own (its id is the child's), so that whatever it starts can
    be found and ended with it (see :func:`running_cli`). Its SIGINT is Python's default whatever this
    process inherited, or ignored with ``ignore_sigint`` (as a command started in the background finds it).
    ``interrupt`` makes the child send itself a signal: ``"SIGINT@write:PATH"`` just before its first
    write into a file whose name starts with ``PATH`` (the file is open, nothing written yet), or
    ``"SIGTERM@call:MODULE:NAME"`` when the function ``MODULE.NAME`` is first called.
    """
    extra = {_INTERRUPT_AT: interrupt or "", _SIGINT: "ignored" if ignore_sigint else "default"}
    with open(log, "w") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, __file__, *args],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {}), **extra},
            start_new_session=True,  # a process group of its own (process_group= needs Python 3.11)
        )


def leftovers(group: int) -> list[int]:
    """The live (not zombie) processes of process group ``group``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it just ended
            continue
        state, _, pgrp = stat.rpartition(")")[2].split()[:3]
        if int(pgrp) == group and state != "Z":
            found.append(int(entry.name))
    return found


@contextmanager
def running_cli(*args: str, log: Path, **options: Any) -> Iterator[subprocess.Popen]:
    """:func:`start_cli` for the block; on leaving it, however, the child and its process group are killed and reaped."""
    proc = start_cli(*args, log=log, **options)
    try:
        yield proc
    finally:
        with suppress(ProcessLookupError):  # raised when no process of the group is left
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_for(condition: Any, proc: subprocess.Popen, timeout: float) -> None:
    """Wait until ``condition()`` is true; raise ``TimeoutError`` if it is not within ``timeout`` s or ``proc`` ends."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting (child exit code {proc.returncode})")
        time.sleep(0.05)


def _arm(request: str) -> None:
    """Send this process the signal ``request`` names at the moment it names (see :func:`start_cli`)."""
    name, _, moment = request.partition("@")
    kind, _, where = moment.partition(":")
    signum = signal.Signals[name]
    if kind == "call":
        module_name, _, attribute = where.rpartition(":")
        module = importlib.import_module(module_name)
        original = getattr(module, attribute)

        def interrupted(*args: Any, **kwargs: Any) -> Any:
            os.kill(os.getpid(), signum)  # a handled signal raises here; an ignored one lets the call go on
            return original(*args, **kwargs)

        setattr(module, attribute, interrupted)
        return
    armed = [True]

    def on_write(frame: FrameType, event: str, arg: Any) -> None:
        # A C call of ``write`` on a file object whose name is under ``where``: the file is open, still empty.
        target = getattr(getattr(arg, "__self__", None), "name", None)
        if event == "c_call" and getattr(arg, "__name__", "") == "write" and str(target).startswith(where):
            sys.setprofile(None)
            os.kill(os.getpid(), signum)

    def on_open(event: str, args: tuple[Any, ...]) -> None:
        # Profiling every call is slow: it starts when a file under ``where`` is first opened.
        if event == "open" and armed and str(args[0]).startswith(where):
            armed.clear()
            sys.setprofile(on_write)

    sys.addaudithook(on_open)


if __name__ == "__main__":
    import runpy

    ignored = os.environ.pop(_SIGINT, "default") == "ignored"
    signal.signal(signal.SIGINT, signal.SIG_IGN if ignored else signal.default_int_handler)
    sys.path[0] = str(ROOT)  # as ``python -m`` run from the checkout
    if request := os.environ.pop(_INTERRUPT_AT, ""):
        _arm(request)
    runpy.run_module("nflows_tutorial", run_name="__main__", alter_sys=True)
