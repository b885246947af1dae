"""Timing a piece of work on this machine: repeated calls after warm-up, waiting for the GPU to finish."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["time_calls"]


def time_calls(fn: Callable[[], Any], repeats: int, warmup: int = 1, device: torch.device | str = "cpu") -> list[float]:
    """Wall seconds of each of ``repeats`` calls of ``fn()``, after ``warmup`` untimed calls.

    The untimed calls absorb one-off costs (allocator growth, kernel selection, compilation). On a
    CUDA ``device`` every timed call waits until the GPU has finished its work.

    Example:
        >>> len(time_calls(lambda: sum(range(100)), repeats=3))
        3
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be at least 1 and warmup at least 0, got repeats={repeats}, warmup={warmup}")
    device = torch.device(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return times
