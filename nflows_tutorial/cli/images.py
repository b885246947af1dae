"""``sample`` and ``interpolate``: image grids from a pretrained model, written as PNG files."""

from __future__ import annotations

import argparse

from ..training.run_folder import check_writable
from .options import (
    MAX_IMAGES,
    Command,
    UsageError,
    add_checkpoint_source,
    add_model,
    add_quiet,
    image_count,
    interpolation_steps,
    load_model,
    load_split,
    non_negative_int,
    png_path,
    positive_int,
    seed,
)

__all__ = ["COMMANDS", "add_sample_arguments", "run_sample", "add_interpolate_arguments", "run_interpolate"]


def _add_output(parser: argparse.ArgumentParser) -> None:
    """The options both commands end with: the PNG file, progress, and where the model comes from."""
    parser.add_argument("--out", type=png_path, required=True, help="PNG file to write")
    add_quiet(parser, "download progress")
    add_checkpoint_source(parser)


def add_sample_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``sample`` command's options."""
    add_model(parser)
    parser.add_argument(
        "-n", type=image_count, default=64, help=f"number of images, at most {MAX_IMAGES:,} (default: 64)"
    )
    parser.add_argument("--nrow", type=positive_int, default=8, help="images per row of the grid (default: 8)")
    parser.add_argument("--seed", type=seed, default=None, help="make the draw repeatable")
    _add_output(parser)


def run_sample(args: argparse.Namespace) -> int:
    """Draw images and write them as one grid; print the file's path."""
    from ..analysis.sampling import draw_samples, save_image_grid

    check_writable(args.out.parent, what=args.out.name, setting="out")
    model, _ = load_model(args.model, args)
    imgs = draw_samples(model, args.n, seed=args.seed)
    print(save_image_grid(imgs, args.out, nrow=args.nrow))
    return 0


def add_interpolate_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``interpolate`` command's options."""
    add_model(parser)
    parser.add_argument(
        "--pairs", type=positive_int, default=4, help="number of image pairs, one row each (default: 4)"
    )
    parser.add_argument(
        "--steps", type=interpolation_steps, default=8, help="images per row, both ends included (default: 8)"
    )
    parser.add_argument(
        "--split", choices=("train", "val", "test"), default="test", help="where the pairs come from (default: test)"
    )
    parser.add_argument("--first", type=non_negative_int, default=0, help="index of the first image used (default: 0)")
    parser.add_argument("--seed", type=seed, default=42, help="seed of the dequantization noise (default: 42)")
    _add_output(parser)


def run_interpolate(args: argparse.Namespace) -> int:
    """Decode the straight lines between pairs of images, one row each; print the file's path."""
    import torch

    from ..analysis.sampling import interpolate, save_image_grid

    if args.pairs * args.steps > MAX_IMAGES:
        raise UsageError(
            f"--pairs {args.pairs} with --steps {args.steps} make {args.pairs * args.steps:,} images; a grid holds at "
            f"most {MAX_IMAGES:,} (on a CPU each takes about a tenth of a second to decode)"
        )
    check_writable(args.out.parent, what=args.out.name, setting="out")
    dataset = load_split(args.split, args)
    needed = args.first + 2 * args.pairs
    if needed > len(dataset):
        raise UsageError(
            f"--first {args.first} with --pairs {args.pairs} needs {needed} images, "
            f"the {args.split} split has {len(dataset)}"
        )
    model, _ = load_model(args.model, args)
    torch.manual_seed(args.seed)
    images = dataset.images[args.first : needed].to(torch.int32)
    rows = [interpolate(model, images[2 * i], images[2 * i + 1], num_steps=args.steps) for i in range(args.pairs)]
    print(save_image_grid(torch.cat(rows), args.out, nrow=args.steps))
    return 0


COMMANDS = (
    Command("sample", "draw images from a model into a PNG grid", add_sample_arguments, run_sample),
    Command(
        "interpolate",
        "decode straight lines between the latents of image pairs into a PNG grid",
        add_interpolate_arguments,
        run_interpolate,
    ),
)
