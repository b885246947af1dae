"""Binary masks that tell a coupling layer which variables it keeps and which it transforms."""

from __future__ import annotations

import torch

__all__ = ["create_checkerboard_mask", "create_channel_mask"]


def create_checkerboard_mask(h: int, w: int, invert: bool = False) -> torch.Tensor:
    """Return a ``[1, 1, h, w]`` float mask with ``(i + j) mod 2`` at pixel ``(i, j)``.

    A value of 1 marks a pixel the coupling keeps (and feeds to its network), 0 one it transforms.
    ``invert=True`` swaps the two roles, which neighbouring coupling layers do in turn.

    Example:
        >>> create_checkerboard_mask(2, 3)
        tensor([[[[0., 1., 0.],
                  [1., 0., 1.]]]])
    """
    if h < 1 or w < 1:
        raise ValueError(f"a checkerboard mask needs a positive size, got h={h}, w={w}")
    rows = torch.arange(h).view(h, 1)
    cols = torch.arange(w).view(1, w)
    mask = ((rows + cols) % 2).to(torch.float32).view(1, 1, h, w)
    return 1 - mask if invert else mask


def create_channel_mask(c_in: int, invert: bool = False) -> torch.Tensor:
    """Return a ``[1, c_in, 1, 1]`` float mask with the first ``c_in // 2`` channels set to 1.

    Example:
        >>> create_channel_mask(4).flatten()
        tensor([1., 1., 0., 0.])
    """
    if c_in < 2:
        raise ValueError(f"a channel mask needs at least 2 channels to split, got c_in={c_in}")
    mask = (torch.arange(c_in) < c_in // 2).to(torch.float32).view(1, c_in, 1, 1)
    return 1 - mask if invert else mask
