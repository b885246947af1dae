"""How fast a flow runs and how much it holds: timed calls, likelihood and sampling speed, parameters, activations."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from ..flows.model import ImageFlow

__all__ = ["time_calls", "time_likelihood", "time_sampling", "count_parameters", "activation_bytes"]


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


def time_likelihood(model: ImageFlow, batch_size: int = 64, repeats: int = 5, warmup: int = 1) -> float:
    """Seconds to compute the likelihood of one batch of images (one dequantization draw each).

    This is the tutorial's "inference time". The median of ``repeats`` timed calls is returned,
    after ``warmup`` untimed ones, so a GPU warm-up or a busy moment does not count against a model.
    """
    gen = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (batch_size, *model.image_shape), generator=gen, dtype=torch.int32).to(model.device)
    with torch.inference_mode():
        return statistics.median(time_calls(lambda: model.log_likelihood(imgs), repeats, warmup, model.device))


def time_sampling(model: ImageFlow, batch_size: int = 64, repeats: int = 5, warmup: int = 1) -> float:
    """Seconds to draw one batch of ``batch_size`` images (median of ``repeats``, after ``warmup``)."""
    return statistics.median(time_calls(lambda: model.sample(batch_size), repeats, warmup, model.device))


def count_parameters(model: torch.nn.Module) -> int:
    """Number of learnable values in a model."""
    return sum(p.numel() for p in model.parameters())


def activation_bytes(model: ImageFlow, imgs: torch.Tensor) -> int:
    """Bytes of the distinct tensors autograd keeps from the forward pass of a training step on ``imgs``
    for its backward pass (what grows with the batch; the peak adds the backward pass's own buffers)."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.bits_per_dim(imgs)
    return sum(storages.values())
