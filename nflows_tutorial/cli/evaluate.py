"""``evaluate``: the results table of the pretrained models, measured on this machine."""

from __future__ import annotations

import argparse
import json

from .options import (
    MAX_IMPORTANCE_SAMPLES,
    Command,
    MachineError,
    add_checkpoint_source,
    add_model,
    add_report,
    chosen_models,
    importance_samples,
    load_model,
    load_split,
    positive_int,
    say,
    seed,
    torch_device,
)

__all__ = ["COMMANDS", "add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``evaluate`` command's options."""
    add_model(parser, several="evaluate")
    parser.add_argument(
        "--split", choices=("val", "test", "both"), default="both", help="which splits to score (default: both)"
    )
    parser.add_argument(
        "--importance-samples",
        type=importance_samples,
        default=8,
        help=f"dequantization draws averaged per image, at most {MAX_IMPORTANCE_SAMPLES} (default: 8, as published)",
    )
    parser.add_argument("--limit", type=positive_int, default=None, help="score only the first N images of each split")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="images per forward pass (default: 64)")
    parser.add_argument("--seed", type=seed, default=42, help="seed of the dequantization noise (default: 42)")
    add_report(parser, repeats=5, shown="the rows", progress="progress messages")
    parser.add_argument(
        "--allow-partial",
        action="store_true",
        help="exit 0 when some of the models asked for cannot be had, with the table of the others "
        "(by default any skipped model makes the exit code 1)",
    )
    add_checkpoint_source(parser)


def run(args: argparse.Namespace) -> int:
    """Score each model that can be had and print the rows; 1 when one was skipped (unless allowed) or none scored."""
    from ..analysis.results import results_notes, results_row, results_table

    splits = ("val", "test") if args.split == "both" else (args.split,)
    torch_device(args.device)  # a bad device is a usage error, found before any data is read
    datasets = {split: load_split(split, args) for split in splits}
    rows, skipped = [], []
    for name in chosen_models(args):
        try:
            model, stored = load_model(name, args)
        except MachineError as err:
            say(f"{name}: skipped, {err}")
            skipped.append(name)
            continue
        if not args.quiet:
            say(f"{name}: scoring {', '.join(datasets)} images, {args.importance_samples} importance samples each")
        rows.append(
            results_row(
                name,
                model,
                datasets,
                stored,
                limit=args.limit,
                batch_size=args.batch_size,
                importance_samples=args.importance_samples,
                seed=args.seed,
                repeats=args.repeats if args.timing else None,
                progress=not args.quiet,
            )
        )
    if args.json:
        print(json.dumps(rows, indent=2))
    elif rows:
        print(results_table(rows, fmt=args.format, notes=results_notes(rows)))
    if not rows:
        say("no model could be evaluated")
        return 1
    if skipped and not args.allow_partial:
        say(
            f"{' and '.join(skipped)} skipped, so the table lacks {len(skipped)} of the {len(rows) + len(skipped)} "
            "models asked for (exit code 1); --allow-partial accepts a partial table"
        )
        return 1
    return 0


COMMANDS = (
    Command(
        "evaluate",
        "the results table: bpd, speed and size of each model, beside the published numbers",
        add_arguments,
        run,
        description="Measure each model on this machine: validation and test bits per dimension "
        "(importance-sampled), time to score and to sample a batch of 64, parameter count; "
        "print them beside the numbers stored in the published checkpoints.",
    ),
)
