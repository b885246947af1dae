"""The ``nflows-tutorial`` command line: evaluate, train, sample, interpolate, download, bench."""

from __future__ import annotations

import argparse
import errno
import importlib
import importlib.util
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import fields
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["main", "build_parser", "USAGE_ERROR"]

USAGE_ERROR = 2
PROG = "nflows-tutorial"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block) and exit with :data:`USAGE_ERROR`."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _UsageError(Exception):
    """A request that cannot be served as given: reported in one line, exit code 2."""


class _MachineError(Exception):
    """The machine's state stops the job (a full disk, a read-only folder): reported in one line, exit code 1."""


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _as_flags(message: str) -> str:
    """A library message with the command line's words: ``out_dir=...`` becomes ``--out-dir ...``, ``resume=True`` ``--resume``."""
    message = re.sub(r"\b([a-z][a-z_]*)=True\b", lambda m: "--" + m[1].replace("_", "-"), message)
    return re.sub(r"\b([a-z][a-z_]*)=(?=\S)", lambda m: "--" + m[1].replace("_", "-") + " ", message)


# Argument types ----------------------------------------------------------------------------------------
def _number(convert: Callable[[str], Any], accept: Callable[[Any], bool], what: str) -> Callable[[str], Any]:
    """An argparse type: ``convert`` the text, then refuse values ``accept`` rejects, naming ``what`` was expected."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value

    return parse


_positive_int = _number(int, lambda v: v >= 1, "a positive whole number")
_non_negative_int = _number(int, lambda v: v >= 0, "a whole number, 0 or more")
_positive_float = _number(float, lambda v: 0 < v < float("inf"), "a positive number")


def _devices(text: str) -> int | str | list[int]:
    """``auto``, a device count, or a comma-separated list of device indices (``0,1``)."""
    if text == "auto":
        return text
    if "," in text:
        try:
            indices = [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            indices = []
        if not indices or min(indices) < 0:
            raise argparse.ArgumentTypeError(f"expected 'auto', a count or indices like 0,1; got {text!r}")
        return indices
    return _positive_int(text)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_LONGEST = timedelta.max.total_seconds() // 2  # anything longer is a typo, and would overflow Lightning's clock


def _duration(text: str) -> timedelta:
    """``90``/``90s``, ``30m``, ``2h``, ``1d``, ``2h15m``, or ``[[DD:]HH:]MM:SS`` as a time span."""
    text = text.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        seconds = float(text)
    elif re.fullmatch(r"(?:\d+(?:\.\d+)?[smhd])+", text):
        seconds = sum(float(number) * _UNITS[unit] for number, unit in re.findall(r"(\d+(?:\.\d+)?)([smhd])", text))
    elif re.fullmatch(r"\d+(:\d+){1,3}", text):
        seconds = 0.0
        for part, scale in zip(reversed(text.split(":")), (1, 60, 3600, 86400)):
            seconds += int(part) * scale
    else:
        raise argparse.ArgumentTypeError(f"expected a duration like 90s, 30m, 2h15m or DD:HH:MM:SS, got {text!r}")
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"the duration must be positive, got {text!r}")
    if seconds > _LONGEST:
        raise argparse.ArgumentTypeError(f"the duration {text!r} is longer than {_LONGEST // 86400:,.0f} days")
    return timedelta(seconds=seconds)


_SEED_MAX = 2**32 - 1  # what numpy, and so Lightning's seed_everything, accept


def _seed(text: str) -> int:
    """A random seed: a whole number from 0 to 2**32 - 1."""
    return _number(int, lambda v: 0 <= v <= _SEED_MAX, f"a seed, a whole number from 0 to {_SEED_MAX}")(text)


def _table_format(text: str) -> str:
    """One of tabulate's table formats."""
    from tabulate import tabulate_formats

    if text not in tabulate_formats:
        raise argparse.ArgumentTypeError(f"unknown table format {text!r}; choose one of {', '.join(tabulate_formats)}")
    return text


def _steps(text: str) -> int:
    value = _positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"an interpolation needs at least 2 steps (its two ends), got {value}")
    return value


def _png(text: str) -> Path:
    path = Path(text)
    if path.suffix.lower() != ".png":
        raise argparse.ArgumentTypeError(f"the output is a PNG image: give a file name ending in .png, got {text!r}")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give the PNG file to write, e.g. {path / 'samples.png'}")
    return path


# Shared pieces ------------------------------------------------------------------------------------------
def _model_names() -> tuple[str, ...]:
    from ..flows.builders import MODEL_NAMES

    return MODEL_NAMES


def _add_checkpoint_source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=None,
        help="folder of MNISTFlow_<model>.ckpt files (default: $PATH_CHECKPOINT or saved_models/tutorial11)",
    )
    parser.add_argument(
        "--offline", action="store_true", help="never download: use only checkpoints and MNIST files already on disk"
    )
    parser.add_argument(
        "--device", default="auto", help="torch device to run on: auto (default), cpu, cuda, cuda:1, ..."
    )
    _add_compile(parser)


def _add_compile(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-compile",
        dest="compiled",
        action="store_false",
        help="run the accelerated path's pointwise kernels eagerly instead of through torch.compile "
        "(no compiler wait, slower)",
    )


def _device(text: str):
    import torch

    from ..runtime import default_device

    if text == "auto":
        return default_device()
    try:
        device = torch.device(text)
    except RuntimeError:
        raise _UsageError(f"unknown device {text!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "meta":
        raise _UsageError("the meta device holds no values, so no model can run on it; use --device cpu")
    if device.type == "cpu":
        return device
    backend = {"cuda": torch.cuda, "mps": getattr(torch.backends, "mps", None), "xpu": getattr(torch, "xpu", None)}
    if device.type not in backend:
        raise _UsageError(f"device {text!r} is not one this course runs on; use auto, cpu, cuda, mps or xpu")
    module = backend[device.type]
    if module is None or not module.is_available():
        raise _UsageError(
            f"device {text!r} was asked for, but this machine has no usable {device.type} device; use --device cpu"
        )
    count = module.device_count() if hasattr(module, "device_count") else 1
    if device.index is not None and device.index >= count:
        raise _UsageError(
            f"device {text!r} was asked for, but this machine has {count} {device.type} device(s); "
            f"use {device.type}:0 to {device.type}:{count - 1}"
        )
    return device


def _check_writable_output(path: Path) -> None:
    """Fail now, before any work, if ``path`` cannot be written (a read-only place, a file where a folder should be)."""
    import tempfile

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as err:
        raise _MachineError(
            f"cannot write {path} ({err.strerror or err}); choose a writable place with --out"
        ) from None


def _offline_words(message: str) -> str:
    """A data or checkpoint message in the command line's words: ``download=False`` is ``--offline`` there."""
    return message.replace("download=False", "--offline was given")


def _load(name: str, args: argparse.Namespace):
    """The accelerated pretrained model ``name`` and its stored result; a checkpoint problem in one line."""
    from ..acceleration import accelerate
    from ..io.checkpoints import CheckpointError, load_pretrained

    try:
        model, result = load_pretrained(
            name,
            checkpoint_dir=args.checkpoint_dir,
            download=not args.offline,
            device=_device(args.device),
            progress=not args.quiet,
        )
    except CheckpointError as err:
        # The long explanation (the ways out) is what `download` prints where it fails; here it takes one line.
        first, *more = _offline_words(str(err)).splitlines()
        folder = f" --checkpoint-dir {args.checkpoint_dir}" if args.checkpoint_dir else ""
        hint = f" (to fetch it, or see why it cannot be had: {PROG} download {name}{folder})"
        raise _MachineError(first + hint if more else first) from None
    return accelerate(model, compiled=args.compiled), result


def _dataset(split: str, args: argparse.Namespace):
    from ..io.mnist import DataUnavailableError, load_mnist

    try:
        return load_mnist(split, download=not args.offline)
    except DataUnavailableError as err:
        raise _MachineError(_offline_words(str(err))) from None


def _add_report(p: argparse.ArgumentParser, repeats: int, shown: str, progress: str) -> None:
    """The options of a command that reports bpd and speeds: timing, output format, progress."""
    p.add_argument(
        "--repeats",
        type=_positive_int,
        default=repeats,
        help=f"timed repetitions per speed measurement; the median is reported (default: {repeats})",
    )
    p.add_argument("--no-timing", dest="timing", action="store_false", help="skip the speed measurements")
    p.add_argument("--json", action="store_true", help=f"print {shown} as JSON instead of a table")
    p.add_argument("--format", type=_table_format, default="github", help="tabulate table format (default: github)")
    p.add_argument("--quiet", action="store_true", help=f"no {progress}")


# evaluate -------------------------------------------------------------------------------------------------
def _run_evaluate(args: argparse.Namespace) -> int:
    from ..analysis.results import results_row, results_table

    names = list(dict.fromkeys(args.model or _model_names()))
    splits = ("val", "test") if args.split == "both" else (args.split,)
    _device(args.device)  # a bad device is a usage error, found before any data is read
    datasets = {split: _dataset(split, args) for split in splits}
    rows = []
    for name in names:
        try:
            model, stored = _load(name, args)
        except _MachineError as err:
            _say(f"{name}: skipped, {err}")
            continue
        if not args.quiet:
            _say(f"{name}: scoring {', '.join(datasets)} images, {args.importance_samples} importance samples each")
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
        print(results_table(rows, fmt=args.format))
    if not rows:
        _say("no model could be evaluated")
        return 1
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="the results table: bpd, speed and size of each model, beside the published numbers",
        description="Measure each model on this machine: validation and test bits per dimension "
        "(importance-sampled), time to score and to sample a batch of 64, parameter count; "
        "print them beside the numbers stored in the published checkpoints.",
    )
    p.add_argument(
        "--model",
        nargs="+",
        action="extend",
        choices=_model_names(),
        metavar="NAME",
        help=f"models to evaluate, any of {', '.join(_model_names())} (default: all)",
    )
    p.add_argument(
        "--split", choices=("val", "test", "both"), default="both", help="which splits to score (default: both)"
    )
    p.add_argument(
        "--importance-samples",
        type=_positive_int,
        default=8,
        help="dequantization draws averaged per image (default: 8, as published)",
    )
    p.add_argument("--limit", type=_positive_int, default=None, help="score only the first N images of each split")
    p.add_argument("--batch-size", type=_positive_int, default=64, help="images per forward pass (default: 64)")
    p.add_argument("--seed", type=_seed, default=42, help="seed of the dequantization noise (default: 42)")
    _add_report(p, repeats=5, shown="the rows", progress="progress messages")
    _add_checkpoint_source(p)
    p.set_defaults(run=_run_evaluate)


# train ------------------------------------------------------------------------------------------------------
def _run_train(args: argparse.Namespace) -> int:
    from ..analysis.results import results_table, stored_numbers
    from ..training.run import (
        NonFiniteLossError,
        TrainerSettings,
        TrainingError,
        UnwritableOutputError,
        run_paths,
        train_flow,
    )

    if args.num_nodes > 1:
        _announce_nodes(args.num_nodes)
    try:
        _, result = train_flow(
            args.model,
            compiled=args.compiled,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            max_steps=args.max_steps,
            max_time=args.max_time,
            limit=args.limit,
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
    except NonFiniteLossError as err:
        _say(f"training stopped: {_as_flags(str(err))}")
        return 1
    except UnwritableOutputError as err:
        raise _MachineError(_as_flags(str(err))) from None
    except TrainingError as err:
        raise _UsageError(_as_flags(str(err))) from None
    except OSError as err:
        # Checkpoints are renamed into place only when complete, so the last one on disk is intact.
        problem = "the disk filled up" if err.errno in (errno.ENOSPC, errno.EDQUOT) else (err.strerror or str(err))
        _say(
            f"training stopped: {problem} ({err.filename or 'while writing'}); free some space or choose another "
            f"--out-dir, then continue with --resume"
        )
        return 1
    except KeyboardInterrupt:
        _say("training interrupted; continue it with --resume (same --out-dir)")
        return 130
    if not result:  # a secondary process of a multi-process run: the first one reports
        return 0
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    numbers = stored_numbers(result)
    row = {
        "model": args.model,
        "val_bpd": numbers["stored_val_bpd"],
        "test_bpd": numbers["stored_test_bpd"],
        "inference_ms": numbers["stored_inference_ms"],
        "sampling_ms": numbers["stored_sampling_ms"],
        "params": result["params"],
    }
    print(results_table([row], fmt=args.format))
    print(f"trained {result['global_step']} steps; wrote {run_paths(args.model, args.out_dir)['published']}")
    return 0


def _announce_nodes(num_nodes: int) -> None:
    """Say what a multi-machine run waits for, or refuse one that nothing has set up."""
    if "MASTER_ADDR" not in os.environ and "SLURM_NTASKS" not in os.environ:
        raise _UsageError(
            f"--num-nodes {num_nodes} trains on {num_nodes} machines, but nothing says where they meet: on each machine "
            f"set MASTER_ADDR (the first machine's address), MASTER_PORT and NODE_RANK (0 to {num_nodes - 1}), or run "
            "under SLURM; on one machine, use --devices instead"
        )
    where = f"{os.environ.get('MASTER_ADDR', 'the SLURM head node')}:{os.environ.get('MASTER_PORT', '(default port)')}"
    _say(
        f"waiting for all {num_nodes} machines to join at {where} (node rank {os.environ.get('NODE_RANK', '?')}); "
        "Ctrl-C stops"
    )


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model with PyTorch Lightning",
        description="Train one of the course's flows as the tutorial did (Adam 1e-3, learning rate x0.99 "
        "per epoch, gradient clipping 1.0, batch 128, best validation bpd kept), test it with "
        "importance sampling, and write MNISTFlow_<model>.ckpt in the published format.",
    )
    p.add_argument(
        "--model", required=True, choices=_model_names(), metavar="NAME", help=f"one of {', '.join(_model_names())}"
    )
    p.add_argument("--epochs", type=_positive_int, default=200, help="maximum number of epochs (default: 200)")
    p.add_argument("--batch-size", type=_positive_int, default=128, help="training images per step (default: 128)")
    p.add_argument("--lr", type=_positive_float, default=1e-3, help="Adam learning rate (default: 1e-3)")
    p.add_argument("--max-steps", type=_positive_int, default=None, help="stop after this many optimizer steps")
    p.add_argument(
        "--max-time", type=_duration, default=None, help="stop after this long: 90s, 30m, 2h15m or DD:HH:MM:SS"
    )
    p.add_argument("--limit", type=_positive_int, default=None, help="use only the first N images of each split")
    p.add_argument("--accelerator", default="auto", help="Lightning accelerator: auto (default), cpu, gpu, ...")
    p.add_argument(
        "--devices", type=_devices, default="auto", help="device count or indices, e.g. 2 or 0,1 (default: auto)"
    )
    p.add_argument("--strategy", default="auto", help="Lightning strategy, e.g. ddp, ddp_spawn (default: auto)")
    p.add_argument("--num-nodes", type=_positive_int, default=1, help="machines taking part (default: 1)")
    p.add_argument("--precision", default="32-true", help="Lightning precision, e.g. 32-true (default), bf16-mixed")
    fresh_or_not = p.add_mutually_exclusive_group()
    fresh_or_not.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    fresh_or_not.add_argument(
        "--overwrite", action="store_true", help="start afresh, deleting the checkpoints of an earlier run"
    )
    p.add_argument(
        "--out-dir", type=Path, default=None, help="folder for runs and trained checkpoints (default: runs/)"
    )
    p.add_argument(
        "--checkpoint-every",
        type=_positive_int,
        default=200,
        help="also write last.ckpt every N steps, not only after each epoch (default: 200)",
    )
    p.add_argument(
        "--importance-samples", type=_positive_int, default=8, help="draws per image in the final test (default: 8)"
    )
    p.add_argument("--seed", type=_seed, default=42, help="seed for weights, shuffling and noise (default: 42)")
    _add_report(p, repeats=3, shown="the result", progress="progress bar")
    _add_compile(p)
    p.set_defaults(run=_run_train)


# sample, interpolate ----------------------------------------------------------------------------------------------
def _run_sample(args: argparse.Namespace) -> int:
    from ..analysis.sampling import draw_samples, save_image_grid

    _check_writable_output(args.out)
    model, _ = _load(args.model, args)
    imgs = draw_samples(model, args.n, seed=args.seed)
    print(save_image_grid(imgs, args.out, nrow=args.nrow))
    return 0


def _run_interpolate(args: argparse.Namespace) -> int:
    import torch

    from ..analysis.sampling import interpolate, save_image_grid

    _check_writable_output(args.out)
    dataset = _dataset(args.split, args)
    needed = args.first + 2 * args.pairs
    if needed > len(dataset):
        raise _UsageError(
            f"--first {args.first} with --pairs {args.pairs} needs {needed} images, "
            f"the {args.split} split has {len(dataset)}"
        )
    model, _ = _load(args.model, args)
    torch.manual_seed(args.seed)
    images = dataset.images[args.first : needed].to(torch.int32)
    rows = [interpolate(model, images[2 * i], images[2 * i + 1], num_steps=args.steps) for i in range(args.pairs)]
    print(save_image_grid(torch.cat(rows), args.out, nrow=args.steps))
    return 0


def _add_sample(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="draw images from a model into a PNG grid")
    p.add_argument(
        "--model", required=True, choices=_model_names(), metavar="NAME", help=f"one of {', '.join(_model_names())}"
    )
    p.add_argument("-n", type=_positive_int, default=64, help="number of images (default: 64)")
    p.add_argument("--nrow", type=_positive_int, default=8, help="images per row of the grid (default: 8)")
    p.add_argument("--seed", type=_seed, default=None, help="make the draw repeatable")
    p.add_argument("--out", type=_png, required=True, help="PNG file to write")
    p.add_argument("--quiet", action="store_true", help="no download progress")
    _add_checkpoint_source(p)
    p.set_defaults(run=_run_sample)

    p = sub.add_parser("interpolate", help="decode straight lines between the latents of image pairs into a PNG grid")
    p.add_argument(
        "--model", required=True, choices=_model_names(), metavar="NAME", help=f"one of {', '.join(_model_names())}"
    )
    p.add_argument("--pairs", type=_positive_int, default=4, help="number of image pairs, one row each (default: 4)")
    p.add_argument("--steps", type=_steps, default=8, help="images per row, both ends included (default: 8)")
    p.add_argument(
        "--split", choices=("train", "val", "test"), default="test", help="where the pairs come from (default: test)"
    )
    p.add_argument("--first", type=_non_negative_int, default=0, help="index of the first image used (default: 0)")
    p.add_argument("--seed", type=_seed, default=42, help="seed of the dequantization noise (default: 42)")
    p.add_argument("--out", type=_png, required=True, help="PNG file to write")
    p.add_argument("--quiet", action="store_true", help="no download progress")
    _add_checkpoint_source(p)
    p.set_defaults(run=_run_interpolate)


# download -----------------------------------------------------------------------------------------------------------
def _run_download(args: argparse.Namespace) -> int:
    from ..io.checkpoints import IncompleteDownloadError, download_checkpoints

    if args.all == bool(args.names):
        raise _UsageError("name the checkpoints to download, or pass --all (not both)")
    unknown = [name for name in args.names if name not in _model_names()]
    if unknown:
        raise _UsageError(f"unknown model {unknown[0]!r}; choose from {', '.join(_model_names())}")
    try:
        fetched, failed = download_checkpoints(args.names or None, args.checkpoint_dir, not args.quiet), {}
    except IncompleteDownloadError as err:
        fetched, failed = err.fetched, err.failed
    for name, path in fetched.items():
        print(f"{name}: {path}")
    for name, reason in failed.items():
        _say(f"{name}: failed, {reason}")
    return 1 if failed else 0


def _add_download(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("download", help="fetch published checkpoints into the checkpoint folder")
    p.add_argument("names", nargs="*", metavar="NAME", help=f"checkpoints to fetch: any of {', '.join(_model_names())}")
    p.add_argument("--all", action="store_true", help="fetch every published checkpoint")
    p.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=None,
        help="where to put them (default: $PATH_CHECKPOINT or saved_models/tutorial11)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_download)


# exercises, slides: teaching material built from the notebooks (logic in exercises.py, slides.py) --------------
def _run_teaching(args: argparse.Namespace) -> int:
    try:
        module = importlib.import_module(f"nflows_tutorial.course.{args.command}")
    except ModuleNotFoundError as err:
        raise _UsageError(f"{args.command} needs {err.name}; install it with: pip install -e '.[test]'") from None
    return module.run(args)


def _add_teaching(sub: argparse._SubParsersAction) -> None:
    for name, what in (
        ("exercises", "student copies of the notebooks: solutions replaced by stubs, their outputs cleared"),
        ("slides", "one reveal.js deck per notebook, viewable offline"),
    ):
        p = sub.add_parser(name, help=f"write {what}", description=f"Write {what}.")
        p.add_argument("--out", type=Path, required=True, help="folder to write into (created when missing)")
        p.add_argument(
            "--notebooks",
            type=Path,
            default=None,
            help="folder of the course notebooks (default: notebooks/ of this checkout)",
        )
        p.set_defaults(run=_run_teaching)


# bench (an optional module, loaded only if present) --------------------------------------------------------------
def _add_bench(sub: argparse._SubParsersAction) -> None:
    if importlib.util.find_spec("nflows_tutorial.acceleration.bench") is None:
        return
    # A broken bench module must not take the other commands down: it becomes a command that says why.
    try:
        bench = importlib.import_module("nflows_tutorial.acceleration.bench")
        summary = (bench.__doc__ or "Benchmarks").strip().splitlines()[0].rstrip(".")
        p = sub.add_parser("bench", help=summary[:1].lower() + summary[1:], description=summary + ".")
        bench.add_arguments(p)
        p.set_defaults(run=bench.run)
        return
    except Exception as err:
        reason = f"{type(err).__name__}: {err}"

    def unavailable(_: argparse.Namespace) -> int:
        _say(f"bench is unavailable here ({reason})")
        return 1

    p = sub.choices.get("bench") or sub.add_parser("bench", help="(unavailable here)")
    p.set_defaults(run=unavailable)


# site --------------------------------------------------------------------------------------------------
def _add_site(sub: argparse._SubParsersAction) -> None:
    from ..course import site

    p = sub.add_parser("site", help="build the course website (README, notebooks, API) into a folder")
    site.add_arguments(p)
    p.set_defaults(run=site.run)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, one sub-command per job."""
    parser = _Parser(prog=PROG, description="Deep normalizing flows on MNIST: the course's jobs without a notebook.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for add in (_add_evaluate, _add_train, _add_sample, _add_download, _add_teaching, _add_bench, _add_site):
        add(sub)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    _say(f"{PROG}: warning: {message}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code: 0 done, 1 failed, 2 bad request, 130 interrupted."""
    import warnings

    args = build_parser().parse_args(argv)
    from ..io.checkpoints import CheckpointError
    from ..io.mnist import DataUnavailableError

    handler: Callable[[argparse.Namespace], int] = args.run
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning  # a warning is news for the user, not a stack location
        try:
            return handler(args)
        except (_UsageError, ValueError) as err:
            _say(f"{PROG} {args.command}: error: {err}")
            return USAGE_ERROR
        except (_MachineError, CheckpointError, DataUnavailableError) as err:
            _say(f"{PROG} {args.command}: {err}")
            return 1
        except OSError as err:  # the machine's state: a full disk, a read-only folder, a file where a folder goes
            where = f" ({err.filename})" if err.filename else ""
            _say(f"{PROG} {args.command}: {err.strerror or err}{where}")
            return 1
        except KeyboardInterrupt:
            _say(f"{PROG} {args.command}: interrupted")
            return 130
