"""What a training step keeps in memory: the tensors autograd saves from the forward pass."""

from __future__ import annotations

import torch

from .model import ImageFlow

__all__ = ["activation_bytes"]


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
