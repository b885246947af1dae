"""``train``: train one of the course's flows and write its checkpoint in the published format."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

from .options import (
    Command,
    UsageError,
    add_compile,
    add_model,
    add_report,
    as_flag,
    devices,
    duration,
    importance_samples,
    positive_float,
    positive_int,
    say,
    seed,
)

__all__ = ["COMMANDS", "add_arguments", "run", "announce_nodes"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``train`` command's options."""
    add_model(parser)
    parser.add_argument("--epochs", type=positive_int, default=200, help="maximum number of epochs (default: 200)")
    parser.add_argument("--batch-size", type=positive_int, default=128, help="training images per step (default: 128)")
    parser.add_argument(
        "--lr",
        type=positive_float,
        default=None,
        help="Adam learning rate (default: 1e-3; with --resume, the run's own, and another value than the run "
        "began with replaces it from there on)",
    )
    parser.add_argument("--max-steps", type=positive_int, default=None, help="stop after this many optimizer steps")
    parser.add_argument(
        "--max-time", type=duration, default=None, help="stop after this long: 90s, 30m, 2h15m or DD:HH:MM:SS"
    )
    parser.add_argument("--limit", type=positive_int, default=None, help="use only the first N images of each split")
    parser.add_argument("--accelerator", default="auto", help="Lightning accelerator: auto (default), cpu, gpu, ...")
    parser.add_argument(
        "--devices", type=devices, default="auto", help="device count or indices, e.g. 2 or 0,1 (default: auto)"
    )
    parser.add_argument("--strategy", default="auto", help="Lightning strategy, e.g. ddp, ddp_spawn (default: auto)")
    parser.add_argument("--num-nodes", type=positive_int, default=1, help="machines taking part (default: 1)")
    parser.add_argument(
        "--precision", default="32-true", help="Lightning precision, e.g. 32-true (default), bf16-mixed"
    )
    fresh_or_not = parser.add_mutually_exclusive_group()
    fresh_or_not.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    fresh_or_not.add_argument(
        "--overwrite", action="store_true", help="start afresh, deleting the checkpoints of an earlier run"
    )
    parser.add_argument(
        "--out-dir", type=Path, default=None, help="folder for runs and trained checkpoints (default: runs/)"
    )
    parser.add_argument(
        "--checkpoint-every",
        type=positive_int,
        default=200,
        help="also write last.ckpt every N steps, not only after each epoch (default: 200)",
    )
    parser.add_argument(
        "--importance-samples",
        type=importance_samples,
        default=8,
        help="draws per image in the final test (default: 8)",
    )
    parser.add_argument("--seed", type=seed, default=42, help="seed for weights, shuffling and noise (default: 42)")
    add_report(parser, repeats=3, shown="the result", progress="progress bar")
    add_compile(parser)


def run(args: argparse.Namespace) -> int:
    """Train, then print the run's numbers and where its checkpoint went.

    An interrupted run says in one line whether it can be resumed, and exits with 128 + the signal's number.
    """
    from ..analysis.results import results_table
    from ..training import TrainingInterrupted
    from ..training.run_folder import run_paths

    if args.num_nodes > 1:
        announce_nodes(args.num_nodes)
    try:
        result = _train(args)
    except TrainingInterrupted as stop:
        say(stop.advice(as_flag))
        return 128 + stop.signum
    if not result:  # a secondary process of a multi-process run: the first one reports
        return 0
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(results_table([_table_row(args.model, result)], fmt=args.format))
    print(f"trained {result['global_step']} steps; wrote {run_paths(args.model, args.out_dir)['published']}")
    return 0


def _train(args: argparse.Namespace) -> dict[str, Any]:
    """Run :func:`~nflows_tutorial.training.train_flow` as the options say and return its result."""
    from ..training import TrainerSettings, train_flow

    _, result = train_flow(
        args.model,
        compiled=args.compiled,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        max_steps=args.max_steps,
        max_time=args.max_time,
        limit=args.limit,
        # The settings' field names are the flags' destinations.
        settings=TrainerSettings(**{field.name: getattr(args, field.name) for field in fields(TrainerSettings)}),
        resume=args.resume,
        overwrite=args.overwrite,
        out_dir=args.out_dir,
        seed=args.seed,
        importance_samples=args.importance_samples,
        checkpoint_every=args.checkpoint_every,
        timing_repeats=args.repeats if args.timing else 0,
        progress=not args.quiet,
    )
    return result


def _table_row(name: str, result: dict[str, Any]) -> dict[str, Any]:
    """The results-table row of a finished run: the numbers its published-format ``result`` holds."""
    from ..analysis.results import Result

    return Result.from_published(result).row(name)


def announce_nodes(num_nodes: int) -> None:
    """Say what a multi-machine run waits for, or refuse one that nothing has set up."""
    if "MASTER_ADDR" not in os.environ and "SLURM_NTASKS" not in os.environ:
        raise UsageError(
            f"--num-nodes {num_nodes} trains on {num_nodes} machines, but nothing says where they meet: on each machine "
            f"set MASTER_ADDR (the first machine's address), MASTER_PORT and NODE_RANK (0 to {num_nodes - 1}), or run "
            "under SLURM; on one machine, use --devices instead"
        )
    where = f"{os.environ.get('MASTER_ADDR', 'the SLURM head node')}:{os.environ.get('MASTER_PORT', '(default port)')}"
    say(
        f"waiting for all {num_nodes} machines to join at {where} (node rank {os.environ.get('NODE_RANK', '?')}); "
        "Ctrl-C stops"
    )


COMMANDS = (
    Command(
        "train",
        "train a model with PyTorch Lightning",
        add_arguments,
        run,
        description="Train one of the course's flows as the tutorial did (Adam 1e-3, learning rate x0.99 "
        "per epoch, gradient clipping 1.0, batch 128, best validation bpd kept), test it with "
        "importance sampling, and write MNISTFlow_<model>.ckpt in the published format.",
    ),
)
