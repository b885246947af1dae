"""``download``: fetch published checkpoints into the checkpoint folder."""

from __future__ import annotations

import argparse

from ..flows.builders import MODEL_NAMES
from .options import Command, UsageError, add_checkpoint_dir, add_quiet, as_flag, say

__all__ = ["COMMANDS", "add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``download`` command's options."""
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"checkpoints to fetch: any of {', '.join(MODEL_NAMES)}"
    )
    parser.add_argument("--all", action="store_true", help="fetch every published checkpoint")
    add_checkpoint_dir(parser, "where to put them")
    add_quiet(parser, "progress bar")


def run(args: argparse.Namespace) -> int:
    """Fetch the checkpoints asked for; list each one fetched, and why each other one failed (then exit 1)."""
    from ..io.checkpoint_files import CheckpointError
    from ..io.checkpoints import IncompleteDownloadError, checkpoint_folder_checked, download_checkpoints

    if args.all == bool(args.names):
        raise UsageError("name the checkpoints to download, or pass --all (not both)")
    try:
        checkpoint_folder_checked(args.checkpoint_dir)
    except CheckpointError as err:
        # A file given as --checkpoint-dir is a bad request; $PATH_CHECKPOINT naming a file is the machine's state.
        if args.checkpoint_dir is None:
            raise
        raise UsageError(err.spelled(as_flag)) from None
    try:
        fetched, failed = download_checkpoints(args.names or None, args.checkpoint_dir, not args.quiet), {}
    except IncompleteDownloadError as err:
        fetched, failed = err.fetched, err.failed
    for name, path in fetched.items():
        print(f"{name}: {path}")
    for name, reason in failed.items():
        say(f"{name}: failed, {reason.spelled(as_flag)}")
    return 1 if failed else 0


COMMANDS = (Command("download", "fetch published checkpoints into the checkpoint folder", add_arguments, run),)
