"""The ``nflows-tutorial`` command line: evaluate, train, sample, interpolate, download, exercises, slides, bench, site.

Each command module lists its commands in ``COMMANDS`` (:class:`~nflows_tutorial.cli.options.Command`:
name, help, options, run); :func:`main` runs the one asked for and reports an expected failure in
one line, with its exit code: 1 for the machine's state, 2 for a bad request, 130 for Ctrl-C.
"""

from __future__ import annotations

import argparse
import errno
import warnings
from collections.abc import Sequence
from typing import NoReturn

from ..course.site import SiteBuildError
from ..errors import SettingsError
from ..io.checkpoints import CheckpointError
from ..io.mnist import DataUnavailableError
from ..training.errors import NonFiniteLossError, TrainingError, UnwritableOutputError
from . import course, download, evaluate, images, train
from .options import PROG, MachineError, UsageError, as_flag, say

__all__ = ["main", "build_parser", "FAILED", "USAGE_ERROR", "INTERRUPTED"]

FAILED = 1
USAGE_ERROR = 2
INTERRUPTED = 130

_COMMAND_MODULES = (evaluate, train, images, download, course)

#: How a failure is reported: the first entry whose exception types match, and whose command matches
#: (``None``: any command), gives the exit code and the line, filled from :func:`_fields`.
_FAILURES: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str | None, int, str], ...] = (
    (KeyboardInterrupt, "train", INTERRUPTED, "training interrupted; continue it with --resume (same --out-dir)"),
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code: 0 done, 1 failed, 2 bad request, 130 interrupted."""
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning  # a warning is news for the user, not a stack location
        try:
            return args.run(args)
        except (Exception, KeyboardInterrupt) as err:
            code = _report(args.command, err)
            if code is None:  # a bug: its traceback is what a report needs
                raise
            return code
