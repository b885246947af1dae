"""What the commands share: argument types, option groups, how settings are spelled, and the model and data loaders."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import torch

from ..acceleration import accelerate
from ..flows.builders import MODEL_NAMES
from ..flows.model import ImageFlow
from ..io.checkpoint_files import CheckpointError
from ..io.checkpoints import load_pretrained
from ..io.mnist import ImageDataset, load_mnist
from ..runtime import default_device

__all__ = [
    "PROG",
    "Command",
    "UsageError",
    "MachineError",
    "say",
    "as_flag",
    "number",
    "positive_int",
    "non_negative_int",
    "positive_float",
    "devices",
    "duration",
    "seed",
    "table_format",
    "MAX_IMAGES",
    "MAX_IMPORTANCE_SAMPLES",
    "image_count",
    "importance_samples",
    "interpolation_steps",
    "png_path",
    "torch_device",
    "add_model",
    "chosen_models",
    "add_checkpoint_dir",
    "add_checkpoint_source",
    "add_compile",
    "add_quiet",
    "add_json",
    "add_report",
    "load_model",
    "load_split",
]

PROG = "nflows-tutorial"
T = TypeVar("T")


@dataclass(frozen=True)
class Command:
    """One sub-command: its name, its one-line help, the options it takes, and what it runs (returning the exit code)."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str | None = None


class UsageError(Exception):
    """A request that cannot be served as given: reported in one line, exit code 2."""


class MachineError(Exception):
    """The machine's state stops the job (a full disk, a read-only folder): reported in one line, exit code 1."""


def say(message: str) -> None:
    """Print a message for the user on standard error."""
    print(message, file=sys.stderr, flush=True)


def as_flag(name: str, value: object) -> str:
    """A setting named in a library message, as the command line spells it.

    Example:
        >>> as_flag("out_dir", ...), as_flag("resume", True), as_flag("precision", "32-true")
        ('--out-dir ...', '--resume', '--precision 32-true')
        >>> as_flag("download", False)
        '--offline was given'
    """
    if name == "download" and value is False:
        return "--offline was given"
    flag = "--" + name.replace("_", "-")
    if value is True:
        return flag
    return f"{flag} {'...' if value is ... else value}"


# Argument types ----------------------------------------------------------------------------------------
def number(convert: Callable[[str], T], accept: Callable[[T], bool], what: str) -> Callable[[str], T]:
    """An argparse type: ``convert`` the text, then refuse values ``accept`` rejects, naming ``what`` was expected."""

    def parse(text: str) -> T:
        refusal = f"expected {what}, got {text!r}"
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(refusal) from None
        if not accept(value):
            raise argparse.ArgumentTypeError(refusal)
        return value

    return parse


positive_int = number(int, lambda v: v >= 1, "a positive whole number")
non_negative_int = number(int, lambda v: v >= 0, "a whole number, 0 or more")
positive_float = number(float, lambda v: 0 < v < float("inf"), "a positive number")

_SEED_MAX = 2**32 - 1  # what numpy, and so Lightning's seed_everything, accept
seed = number(int, lambda v: 0 <= v <= _SEED_MAX, f"a seed, a whole number from 0 to {_SEED_MAX}")


def devices(text: str) -> int | str | list[int]:
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
    return positive_int(text)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_LONGEST = timedelta.max.total_seconds() // 2  # anything longer is a typo, and would overflow Lightning's clock


def duration(text: str) -> timedelta:
    """``90``/``90s``, ``30m``, ``2h``, ``1d``, ``2h15m``, or ``[[DD:]HH:]MM:SS`` as a time span.

    Example:
        >>> duration("2h15m") == duration("02:15:00") == timedelta(hours=2, minutes=15)
        True
    """
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


def table_format(text: str) -> str:
    """One of tabulate's table formats."""
    from tabulate import tabulate_formats

    if text not in tabulate_formats:
        raise argparse.ArgumentTypeError(f"unknown table format {text!r}; choose one of {', '.join(tabulate_formats)}")
    return text


#: The most images one grid holds. They are drawn or decoded in one batch, about half a megabyte of
#: memory each (2 GB for the lot) and, measured on a 2-core CPU, a tenth of a second each.
MAX_IMAGES = 4096
_AT_MOST_IMAGES = f"at most {MAX_IMAGES:,} ({{}} in one batch: about 2 GB of memory and minutes on a CPU)"
image_count = number(
    int, lambda v: 1 <= v <= MAX_IMAGES, "a positive number of images, " + _AT_MOST_IMAGES.format("they are drawn")
)

#: The most dequantization draws per image: the scoring time grows with each, so 256 already take 32
#: times as long as the published 8 (hours for the full splits on a CPU).
MAX_IMPORTANCE_SAMPLES = 256
importance_samples = number(
    int,
    lambda v: 1 <= v <= MAX_IMPORTANCE_SAMPLES,
    f"a positive number of importance samples, at most {MAX_IMPORTANCE_SAMPLES} (the time grows with each: "
    f"{MAX_IMPORTANCE_SAMPLES} take 32 times as long as the published 8, hours for the full splits on a CPU)",
)


def interpolation_steps(text: str) -> int:
    """The images of one interpolation row: 2 or more, since both ends are shown, and at most :data:`MAX_IMAGES`."""
    value = number(int, lambda v: v <= MAX_IMAGES, "a number of steps, " + _AT_MOST_IMAGES.format("a row is decoded"))(
        text
    )
    if value < 2:
        raise argparse.ArgumentTypeError(f"an interpolation needs at least 2 steps (its two ends), got {value}")
    return value


def png_path(text: str) -> Path:
    """The PNG file an image grid goes to: a name ending in ``.png`` that is not a folder."""
    path = Path(text)
    if path.suffix.lower() != ".png":
        raise argparse.ArgumentTypeError(f"the output is a PNG image: give a file name ending in .png, got {text!r}")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give the PNG file to write, e.g. {path / 'samples.png'}")
    return path


def torch_device(text: str) -> torch.device:
    """The device ``--device`` names (``auto``: the best one here); :class:`UsageError` if this machine lacks it."""
    if text == "auto":
        return default_device()
    try:
        device = torch.device(text)
    except RuntimeError:
        raise UsageError(f"unknown device {text!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "meta":
        raise UsageError("the meta device holds no values, so no model can run on it; use --device cpu")
    if device.type == "cpu":
        return device
    backend = {"cuda": torch.cuda, "mps": getattr(torch.backends, "mps", None), "xpu": getattr(torch, "xpu", None)}
    if device.type not in backend:
        raise UsageError(f"device {text!r} is not one this course runs on; use auto, cpu, cuda, mps or xpu")
    module: Any = backend[device.type]
    if module is None or not module.is_available():
        raise UsageError(
            f"device {text!r} was asked for, but this machine has no usable {device.type} device; use --device cpu"
        )
    count = module.device_count() if hasattr(module, "device_count") else 1
    if device.index is not None and device.index >= count:
        raise UsageError(
            f"device {text!r} was asked for, but this machine has {count} {device.type} device(s); "
            f"use {device.type}:0 to {device.type}:{count - 1}"
        )
    return device


# Option groups -----------------------------------------------------------------------------------------
def add_model(parser: argparse.ArgumentParser, several: str | None = None) -> None:
    """``--model``: one model, required; or, with ``several`` (what is done to them), any of them, all by default."""
    if several is None:
        parser.add_argument(
            "--model", required=True, choices=MODEL_NAMES, metavar="NAME", help=f"one of {', '.join(MODEL_NAMES)}"
        )
        return
    parser.add_argument(
        "--model",
        nargs="+",
        action="extend",
        choices=MODEL_NAMES,
        metavar="NAME",
        help=f"models to {several}, any of {', '.join(MODEL_NAMES)} (default: all)",
    )


def chosen_models(args: argparse.Namespace) -> list[str]:
    """The models a ``--model`` option added with ``several`` names, each once, in the order given."""
    return list(dict.fromkeys(args.model or MODEL_NAMES))


def add_checkpoint_dir(parser: argparse.ArgumentParser, role: str) -> None:
    """``--checkpoint-dir``: the checkpoint cache, ``role`` saying what the command does with it."""
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=None,
        help=f"{role} (default: $PATH_CHECKPOINT or saved_models/tutorial11)",
    )


def add_checkpoint_source(parser: argparse.ArgumentParser) -> None:
    """Where a command finds its pretrained model and runs it: checkpoint folder, network, device, compilation."""
    add_checkpoint_dir(parser, "folder of MNISTFlow_<model>.ckpt files")
    parser.add_argument(
        "--offline", action="store_true", help="never download: use only checkpoints and MNIST files already on disk"
    )
    parser.add_argument(
        "--device", default="auto", help="torch device to run on: auto (default), cpu, cuda, cuda:1, ..."
    )
    add_compile(parser)


def add_compile(parser: argparse.ArgumentParser) -> None:
    """``--no-compile``: the accelerated path's kernels run eagerly (``args.compiled`` is then false)."""
    parser.add_argument(
        "--no-compile",
        dest="compiled",
        action="store_false",
        help="run the accelerated path's pointwise kernels eagerly instead of through torch.compile "
        "(no compiler wait, slower)",
    )


def add_quiet(parser: argparse.ArgumentParser, silenced: str) -> None:
    """``--quiet``: no ``silenced`` (the progress output the command would print)."""
    parser.add_argument("--quiet", action="store_true", help=f"no {silenced}")


def add_json(parser: argparse.ArgumentParser, shown: str) -> None:
    """``--json``: print ``shown`` as JSON instead of a table."""
    parser.add_argument("--json", action="store_true", help=f"print {shown} as JSON instead of a table")


def add_report(parser: argparse.ArgumentParser, repeats: int, shown: str, progress: str) -> None:
    """The options of a command that reports bpd and speeds: timing, output format, progress."""
    parser.add_argument(
        "--repeats",
        type=positive_int,
        default=repeats,
        help=f"timed repetitions per speed measurement; the median is reported (default: {repeats})",
    )
    parser.add_argument("--no-timing", dest="timing", action="store_false", help="skip the speed measurements")
    add_json(parser, shown)
    parser.add_argument("--format", type=table_format, default="github", help="tabulate table format (default: github)")
    add_quiet(parser, progress)


# Loaders -----------------------------------------------------------------------------------------------
def load_model(name: str, args: argparse.Namespace) -> tuple[ImageFlow, dict[str, Any]]:
    """The accelerated pretrained model ``name`` and its stored result; a checkpoint problem in one line."""
    try:
        model, result = load_pretrained(
            name,
            checkpoint_dir=args.checkpoint_dir,
            download=not args.offline,
            device=torch_device(args.device),
            progress=not args.quiet,
        )
    except CheckpointError as err:
        # The long explanation (the ways out) is what `download` prints where it fails; here it takes one line.
        first, *more = err.spelled(as_flag).splitlines()
        folder = f" --checkpoint-dir {args.checkpoint_dir}" if args.checkpoint_dir else ""
        hint = f" (to fetch it, or see why it cannot be had: {PROG} download {name}{folder})"
        raise MachineError(first + hint if more else first) from None
    return accelerate(model, compiled=args.compiled), result


def load_split(split: str, args: argparse.Namespace) -> ImageDataset:
    """The MNIST ``split``, downloaded if missing unless ``--offline`` was given."""
    return load_mnist(split, download=not args.offline)
