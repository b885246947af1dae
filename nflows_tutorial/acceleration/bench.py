"""Benchmarks: the plain and the accelerated path of each model side by side, on this machine."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..analysis.speed import time_calls
from ..flows.builders import MODEL_NAMES, check_model_name

__all__ = ["measure", "benchmark", "format_table"]

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
    ``compiled``). Meant to run in a fresh process (see :func:`benchmark`), so that the memory high-water
    mark belongs to it.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from ..flows.builders import create_model
    from . import accelerate

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
        "path": _path_name(accelerated, compiled),
        "train_batch": train_batch,
        "train_images_per_s": train_batch / train_s,
        "train_peak_bytes": peak,
        "train_convolution_s": train_conv_s,
        "likelihood_s": likelihood_s,
        "likelihood_convolution_s": likelihood_conv_s,
        "sampling_s": sampling_s,
        "likelihood_gflop": counter.get_total_flops() / 1e9,
    }


def _path_name(accelerated: bool, compiled: bool) -> str:
    """How the output names a path: ``plain``, ``accelerated``, or ``accelerated, eager kernels``."""
    from . import compilation_works

    if not accelerated:
        return "plain"
    return "accelerated" if compiled and compilation_works() else "accelerated, eager kernels"


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


def _child(name: str, accelerated: bool, sizes: dict[str, int], threads: int | None, compiled: bool) -> dict[str, Any]:
    set_threads = f"torch.set_num_threads({threads}); " if threads else ""
    code = (
        "import json, sys, torch; from nflows_tutorial.acceleration.bench import measure; "
        f"{set_threads}"
        f"print(json.dumps(measure({name!r}, {accelerated}, compiled={compiled}, **{sizes!r})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        path = "accelerated" if accelerated else "plain"
        raise RuntimeError(f"bench of {name} ({path}) failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def benchmark(
    models: Sequence[str] = MODEL_NAMES, tiny: bool = False, threads: int | None = None, compiled: bool = True
) -> dict[str, Any]:
    """Time the plain and the accelerated path of each of ``models``, each in a fresh process.

    Returns ``{"machine": ..., "rows": [...]}``: the machine's description and ceilings, and per
    model the :func:`measure` numbers of both paths. ``tiny`` uses tiny batches and one repeat
    (it proves the bench runs); ``threads`` sets torch's CPU threads; ``compiled=False`` runs the
    accelerated path's kernels eagerly.
    """
    for name in models:
        check_model_name(name)
    sizes = TINY if tiny else FULL
    rows = []
    for name in models:
        plain = _child(name, False, sizes, threads, False)
        accelerated = _child(name, True, sizes, threads, compiled)
        rows.append({"model": name, "plain": plain, "accelerated": accelerated})
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "threads": threads or torch.get_num_threads(),
        "torch": torch.__version__,
        "matmul_gflops": _matmul_gflops(),
        "loader_images_per_s": _loader_images_per_s(sizes["train_batch"]),
        "sizes": sizes,
    }
    return {"machine": machine, "rows": rows}


def format_table(rows: list[dict[str, Any]], machine: dict[str, Any]) -> str:
    """The benchmark (:func:`benchmark`'s rows and machine) as a text table: plain, accelerated and their ratio."""
    from tabulate import tabulate

    def pair(row, key, fmt="{:.2f}", scale=1.0, higher_is_better=False, ratio_word=""):
        p, a = row["plain"][key] * scale, row["accelerated"][key] * scale
        ratio = a / p if higher_is_better else p / a
        return f"{fmt.format(p)} -> {fmt.format(a)} ({ratio:.2f}x{ratio_word})"

    table = []
    for r in rows:
        accelerated = r["accelerated"]
        table.append(
            [
                r["model"],
                pair(r, "train_images_per_s", fmt="{:.0f}", higher_is_better=True),
                f"{accelerated['train_convolution_s']:.2f} of "
                f"{accelerated['train_batch'] / accelerated['train_images_per_s']:.2f}",
                pair(r, "train_peak_bytes", scale=1 / 2**30, higher_is_better=True, ratio_word=" the memory"),
                pair(r, "likelihood_s"),
                f"{accelerated['likelihood_convolution_s']:.2f} of {accelerated['likelihood_s']:.2f}",
                pair(r, "sampling_s"),
                f"{accelerated['likelihood_gflop'] / accelerated['likelihood_s']:.0f}",
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
    accelerated_path = rows[0]["accelerated"]["path"] if rows else "accelerated"
    footer = (
        f"plain -> {accelerated_path} (speed-up); convolution seconds are the accelerated path's; "
        f"{machine['cpu']}, {machine['threads']} threads, torch {machine['torch']}; "
        f"matmul ceiling {machine['matmul_gflops']:.0f} GFLOP/s; "
        + (f"data loader {loader:,.0f} images/s" if loader else "data loader: MNIST not on disk")
    )
    return tabulate(table, headers=headers, tablefmt="github") + "\n" + footer
