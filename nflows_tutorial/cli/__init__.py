"""The ``nflows-tutorial`` command line: evaluate, train, sample, interpolate, download, exercises, slides, bench, site.

Each command module lists its commands in ``COMMANDS`` (:class:`~nflows_tutorial.cli.options.Command`:
name, help, options, run); :func:`main` runs the one asked for and reports an expected failure in
one line, with its exit code: 1 for the machine's state, 2 for a bad request, 130 for Ctrl-C (SIGINT)
and 143 for SIGTERM, which every command treats alike: the work stops at once (training: at the end of
the step), files being written are discarded (they are renamed into place only when complete), and
child processes end with it.
"""

from __future__ import annotations

import argparse
import errno
import signal
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import NoReturn

from ..course.site import SiteBuildError
from ..errors import SettingsError
from ..io.checkpoint_files import CheckpointError
from ..io.mnist import DataUnavailableError
from ..training.errors import NonFiniteLossError, TrainingError, UnwritableOutputError
from . import course, download, evaluate, images, train
from .options import PROG, MachineError, UsageError, as_flag, say

__all__ = ["main", "build_parser", "FAILED", "USAGE_ERROR", "INTERRUPTED", "TERMINATED"]

FAILED = 1
USAGE_ERROR = 2
INTERRUPTED = 128 + signal.SIGINT
TERMINATED = 128 + signal.SIGTERM

_COMMAND_MODULES = (evaluate, train, images, download, course)

#: How a failure is reported: the first entry whose exception types match, and whose command matches
#: (``None``: any command), gives the exit code and the line, filled from :func:`_fields`.
_FAILURES: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str | None, int, str], ...] = (
    (KeyboardInterrupt, None, INTERRUPTED, "{where}: interrupted"),
    (NonFiniteLossError, None, FAILED, "training stopped: {text}"),
    # The machine's state, not the request.
    (
        (MachineError, UnwritableOutputError, CheckpointError, DataUnavailableError, SiteBuildError),
        None,
        FAILED,
        "{where}: {text}",
    ),
    ((UsageError, ValueError, TrainingError), None, USAGE_ERROR, "{where}: error: {text}"),
    # Checkpoints are renamed into place only when complete, so the last one on disk is intact.
    (
        OSError,
        "train",
        FAILED,
        "training stopped: {problem} ({file}); free some space or choose another --out-dir, then continue with --resume",
    ),
    # Any other command: a full disk, a read-only folder, a file where a folder goes.
    (OSError, None, FAILED, "{where}: {reason}{in_file}"),
)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block) and exit with :data:`USAGE_ERROR`."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, one sub-command per job."""
    parser = _Parser(prog=PROG, description="Deep normalizing flows on MNIST: the course's jobs without a notebook.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for module in _COMMAND_MODULES:
        for command in module.COMMANDS:
            p = sub.add_parser(command.name, help=command.help, description=command.description)
            command.add_arguments(p)
            p.set_defaults(run=command.run)
    return parser


def _fields(command: str, err: BaseException) -> dict[str, str]:
    """The words a line of :data:`_FAILURES` is filled with."""
    text = err.spelled(as_flag) if isinstance(err, SettingsError) else str(err)
    found = {"where": f"{PROG} {command}", "text": text, "reason": text, "problem": text, "file": "", "in_file": ""}
    if isinstance(err, OSError):
        found["reason"] = found["problem"] = err.strerror or text
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            found["problem"] = "the disk filled up"
        found["file"] = err.filename or "while writing"
        found["in_file"] = f" ({err.filename})" if err.filename else ""
    return found


def _report(command: str, err: BaseException) -> int | None:
    """Say in one line why ``command`` failed and return its exit code; ``None`` for an error no entry expects."""
    for kinds, only_for, code, line in _FAILURES:
        if isinstance(err, kinds) and only_for in (None, command):
            say(line.format(**_fields(command, err)))
            return code
    return None


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    say(f"{PROG}: warning: {message}")


@contextmanager
def _interrupts() -> Iterator[list[int]]:
    """Within the block, SIGINT and SIGTERM both raise ``KeyboardInterrupt``; yields the list of signals received.

    A container stop or ``kill`` sends SIGTERM, which by default ends Python without running any
    ``finally``: temporary files stay behind and child processes are orphaned. A shell that starts a
    command in the background makes it inherit SIGINT as ignored; Ctrl-C must stop it all the same.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield received
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        # Called by a handler that stops at a safe point of its own (Lightning's, while training): only remember.
        if signal.getsignal(signum) is interrupt:
            raise KeyboardInterrupt

    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum in previous:
        signal.signal(signum, interrupt)
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code: 0 done, 1 failed, 2 bad request, 130 / 143 interrupted."""
    with _interrupts() as received, warnings.catch_warnings():
        args = build_parser().parse_args(argv)
        warnings.showwarning = _one_line_warning  # a warning is news for the user, not a stack location
        try:
            code = args.run(args)
        except (Exception, KeyboardInterrupt) as err:
            reported = _report(args.command, err)
            if reported is None:  # a bug: its traceback is what a report needs
                raise
            code = reported
    # An interrupt, whoever reported it, exits with the code of the signal that came first.
    return TERMINATED if code == INTERRUPTED and received[:1] == [signal.SIGTERM] else code
