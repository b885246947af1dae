"""Benchmarks: the plain and the accelerated path of each model side by side, on this machine."""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from ..analysis.speed import time_calls

__all__ = ["add_arguments", "run", "measure", "format_table"]

#: Sizes of the README's speed table: batch 128 for a training step, 64 for likelihood and sampling.
FULL = {"train_batch": 128, "eval_batch": 64, "repeats": 3}
TINY = {"train_batch": 8, "eval_batch": 4, "repeats": 1}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _best_of(repeats: int, fn: Callable[[], Any]) -> float:
    return min(time_calls(fn, repeats, warmup=1))


def _convolution_seconds(fn) -> float:
    """Time spent in convolutions during one call of ``fn``: the floor for any float32 path that keeps
    these convolutions."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return sum(e.self_cpu_time_total for e in prof.key_averages() if "convolution" in e.key) / 1e6


def measure(
    name: str, accelerated: bool, train_batch: int, eval_batch: int, repeats: int, compiled: bool = True
) -> dict[str, Any]:
    """Time one model on one path: training step, likelihood and sampling; peak memory of a training step.

    ``accelerated`` puts the model through :func:`~nflows_tutorial.acceleration.accelerate` (with
    ``compiled``). Meant to run in a fresh process (see :func:`run`), so that the memory high-water
    mark belongs to it.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from ..flows.builders import create_model
    from . import accelerate, compilation_works

    torch.manual_seed(0)
    model = create_model(name)
    if accelerated:
        accelerate(model, compiled=compiled)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_imgs = torch.randint(0, 256, (train_batch, *model.image_shape), dtype=torch.int32)
    eval_imgs = torch.randint(0, 256, (eval_batch, *model.image_shape), dtype=torch.int32)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model.bits_per_dim(train_imgs).mean().backward()
        optimizer.step()

    model.train()
    baseline = _rss_bytes()
    train_s = _best_of(repeats, train_step)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline
    train_conv_s = _convolution_seconds(train_step)
    model.eval()
    with torch.inference_mode():
        likelihood_s = _best_of(repeats, lambda: model.bits_per_dim(eval_imgs))
        likelihood_conv_s = _convolution_seconds(lambda: model.bits_per_dim(eval_imgs))
        sampling_s = _best_of(repeats, lambda: model.sample(eval_batch))
        with FlopCounterMode(display=False) as counter:
            model.bits_per_dim(eval_imgs)
    return {
        "model": name,
        "path": ("fast" if compiled and compilation_works() else "fast, eager kernels") if accelerated else "plain",
        "train_batch": train_batch,
        "train_images_per_s": train_batch / train_s,
        "train_peak_bytes": peak,
        "train_convolution_s": train_conv_s,
        "likelihood_s": likelihood_s,
        "likelihood_convolution_s": likelihood_conv_s,
        "sampling_s": sampling_s,
        "likelihood_gflop": counter.get_total_flops() / 1e9,
    }


def _matmul_gflops() -> float:
    """Measured float32 matrix-multiply rate of this machine: the practical ceiling for convolutions."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    seconds = _best_of(3, lambda: a @ b)
    return 2 * 1024**3 / seconds / 1e9


def _loader_images_per_s(batch: int) -> float | None:
    from ..io.mnist import DataUnavailableError, load_mnist, make_loader

    try:
        train = load_mnist("train", download=False)
    except DataUnavailableError:
        return None
    loader = make_loader(train, batch_size=batch, shuffle=True, seed=0)
    start, seen = time.perf_counter(), 0
    for imgs, _ in loader:
        seen += imgs.shape[0]
    return seen / (time.perf_counter() - start)


def _thread_count(text: str) -> int:
    """A number of CPU threads: a whole number, 1 or more."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a number of threads, 1 or more, got {text!r}")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``bench`` options to a command-line parser."""
    parser.add_argument("--model", nargs="+", default=["simple", "vardeq", "multiscale"], help="models to time")
    parser.add_argument("--tiny", action="store_true", help="tiny batches, one repeat: proves the bench runs (CI)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    parser.add_argument(
        "--threads", type=_thread_count, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument(
        "--no-compile",
        dest="compiled",
        action="store_false",
        help="accelerated path with eager pointwise kernels instead of compiled ones",
    )


def _child(name: str, accelerated: bool, sizes: dict[str, int], threads: int | None, compiled: bool) -> dict[str, Any]:
    set_threads = f"torch.set_num_threads({threads}); " if threads else ""
    code = (
        "import json, sys, torch; from nflows_tutorial.bench import measure; "
        f"{set_threads}"
        f"print(json.dumps(measure({name!r}, {accelerated}, compiled={compiled}, **{sizes!r})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench of {name} ({'fast' if accelerated else 'plain'}) failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print the table (or JSON). Returns the exit code."""
    from ..flows.builders import check_model_name

    try:
        for name in args.model:
            check_model_name(name)
    except ValueError as err:
        print(f"bench: {err}", file=sys.stderr)
        return 2
    sizes = TINY if args.tiny else FULL
    rows = []
    for name in args.model:
        plain = _child(name, False, sizes, args.threads, False)
        fast = _child(name, True, sizes, args.threads, args.compiled)
        rows.append({"model": name, "plain": plain, "fast": fast})
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "threads": args.threads or torch.get_num_threads(),
        "torch": torch.__version__,
        "matmul_gflops": _matmul_gflops(),
        "loader_images_per_s": _loader_images_per_s(sizes["train_batch"]),
        "sizes": sizes,
    }
    if args.json:
        print(json.dumps({"machine": machine, "rows": rows}, indent=2))
        return 0
    print(format_table(rows, machine))
    return 0


def format_table(rows: list[dict[str, Any]], machine: dict[str, Any]) -> str:
    """The benchmark as a text table: plain, fast and their ratio per measurement."""
    from tabulate import tabulate

    def pair(row, key, fmt="{:.2f}", scale=1.0, higher_is_better=False, ratio_word=""):
        p, f = row["plain"][key] * scale, row["fast"][key] * scale
        ratio = f / p if higher_is_better else p / f
        return f"{fmt.format(p)} -> {fmt.format(f)} ({ratio:.2f}x{ratio_word})"

    table = []
    for r in rows:
        fast = r["fast"]
        table.append(
            [
                r["model"],
                pair(r, "train_images_per_s", fmt="{:.0f}", higher_is_better=True),
                f"{fast['train_convolution_s']:.2f} of {fast['train_batch'] / fast['train_images_per_s']:.2f}",
                pair(r, "train_peak_bytes", scale=1 / 2**30, higher_is_better=True, ratio_word=" the memory"),
                pair(r, "likelihood_s"),
                f"{fast['likelihood_convolution_s']:.2f} of {fast['likelihood_s']:.2f}",
                pair(r, "sampling_s"),
                f"{fast['likelihood_gflop'] / fast['likelihood_s']:.0f}",
            ]
        )
    sizes = machine["sizes"]
    headers = [
        "model",
        f"train images/s (batch {sizes['train_batch']})",
        "of which convolutions, s",
        "peak GiB, train step",
        f"likelihood s / {sizes['eval_batch']}",
        "of which convolutions, s",
        f"sampling s / {sizes['eval_batch']}",
        "likelihood GFLOP/s",
    ]
    loader = machine["loader_images_per_s"]
    fast_path = rows[0]["fast"]["path"] if rows else "fast"
    footer = (
        f"plain -> {fast_path} (speed-up); convolution seconds are the fast path's; "
        f"{machine['cpu']}, {machine['threads']} threads, torch {machine['torch']}; "
        f"matmul ceiling {machine['matmul_gflops']:.0f} GFLOP/s; "
        + (f"data loader {loader:,.0f} images/s" if loader else "data loader: MNIST not on disk")
    )
    return tabulate(table, headers=headers, tablefmt="github") + "\n" + footer
