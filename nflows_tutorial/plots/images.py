"""Pictures of images and of what layers do to them: image grids, masks, the squeeze."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from ..analysis.sampling import image_grid
from ..flows import SqueezeFlow
from .diagrams import mask_legend_handles
from .style import KEPT, MAX_WIDTH, TRANSFORMED

__all__ = ["plot_images", "plot_image_panels", "plot_masks", "plot_squeeze"]

# Grey pixels between and around the images of a grid.
_PADDING = 2


def plot_images(
    images: torch.Tensor, nrow: int = 8, title: str | None = None, row_labels: Sequence[str] | None = None
) -> Figure:
    """Show integer images ``[N, 1, H, W]`` (values 0..255) as a grid with ``nrow`` images per row."""
    if images.dim() != 4 or images.shape[1] != 1:
        raise ValueError(f"plot_images expects single-channel images [N, 1, H, W], got {list(images.shape)}")
    canvas = image_grid(images, nrow=nrow, padding=_PADDING)[0]
    n, _, h, _ = images.shape
    cols = min(nrow, n)
    rows = -(-n // cols)
    fig = Figure(figsize=(1.0 * cols + (1.2 if row_labels else 0.2), 1.0 * rows + (0.5 if title else 0.2)))
    ax = fig.add_subplot()
    ax.imshow(canvas.numpy(), cmap="gray", vmin=0, vmax=255)
    ax.set_xticks([])
    ax.set_yticks([])
    if row_labels is not None:
        if len(row_labels) != rows:
            raise ValueError(f"got {len(row_labels)} row labels for {rows} rows")
        ax.set_yticks([_PADDING + r * (h + _PADDING) + h / 2 for r in range(rows)])
        ax.set_yticklabels(row_labels, fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_image_panels(panels: Mapping[str, torch.Tensor], ncol: int = 4, title: str | None = None) -> Figure:
    """Show several sets of integer images ``[N, 1, H, W]`` side by side, one titled panel per set.

    Each panel is a grid of ``ncol`` images per row, so sets of the same size line up and can be
    compared at a glance (e.g. samples of different models from the same seed).
    """
    if not panels:
        raise ValueError("give at least one set of images to show")
    for name, images in panels.items():
        if images.dim() != 4 or images.shape[1] != 1:
            raise ValueError(f"panel {name!r} must hold single-channel images [N, 1, H, W], got {list(images.shape)}")
    if ncol < 1:
        raise ValueError(f"ncol must be positive, got {ncol}")
    rows = max(-(-images.shape[0] // ncol) for images in panels.values())
    width = min(MAX_WIDTH, 0.75 * ncol * len(panels) + 0.3 * len(panels))
    fig = Figure(figsize=(width, width / len(panels) / ncol * rows + 0.6 + (0.3 if title else 0)))
    for i, (name, images) in enumerate(panels.items(), start=1):
        ax = fig.add_subplot(1, len(panels), i)
        # Grey images fill every panel to rows x ncol, so that a panel of fewer images lines up with the others.
        filler = torch.full((rows * ncol - images.shape[0], *images.shape[1:]), 128, dtype=images.dtype)
        canvas = image_grid(torch.cat([images.detach().cpu(), filler]), nrow=ncol, padding=_PADDING)[0]
        ax.imshow(canvas.numpy(), cmap="gray", vmin=0, vmax=255)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(name, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_masks(masks: Mapping[str, torch.Tensor]) -> Figure:
    """Show each mask as a picture: kept (1) dark, transformed (0) light, with a legend saying so.

    Spatial masks ``[1, 1, H, W]`` are drawn as an image, channel masks ``[1, C, 1, 1]`` as a
    row of ``C`` channel cells.
    """
    if not masks:
        raise ValueError("give at least one mask to draw")
    fig = Figure(figsize=(min(MAX_WIDTH, 2.6 * len(masks)), 3.2))
    for i, (name, mask) in enumerate(masks.items(), start=1):
        if mask.dim() != 4 or mask.shape[0] != 1:
            raise ValueError(f"mask {name!r} must have shape [1, C, H, W], got {list(mask.shape)}")
        ax = fig.add_subplot(1, len(masks), i)
        grid = mask[0, 0] if mask.shape[1] == 1 else mask[0, :, 0, 0].view(1, -1)
        ax.imshow(grid.cpu().numpy() > 0.5, cmap=ListedColormap([TRANSFORMED, KEPT]), vmin=0, vmax=1)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        if mask.shape[1] > 1:
            ax.set_xlabel("channel", fontsize=8)
            for c, value in enumerate(grid[0].tolist()):
                ax.text(c, 0, f"{value:.0f}", ha="center", va="center", fontsize=9, color="white" if value else "black")
    fig.legend(handles=mask_legend_handles(), loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def plot_squeeze(image: torch.Tensor) -> Figure:
    """Draw a ``[1, 1, H, W]`` image of numbers and the ``4`` channels that squeezing it gives."""
    if image.dim() != 4 or image.shape[:2] != (1, 1):
        raise ValueError(f"plot_squeeze draws one single-channel image [1, 1, H, W], got {list(image.shape)}")
    h, w = image.shape[-2:]
    squeeze = SqueezeFlow()
    squeezed, _ = squeeze(image, None)
    # Colour every number by the 2x2 block it starts in: squeezing the block ids shows where each went.
    blocks = (torch.arange(h).view(h, 1) // 2 * (w // 2) + torch.arange(w).view(1, w) // 2).view(1, 1, h, w)
    squeezed_blocks, _ = squeeze(blocks, None)
    fig = Figure(figsize=(9, 2.6))
    panels = [("input, 1 channel", image[0, 0], blocks[0, 0])]
    panels += [(f"channel {c}", squeezed[0, c], squeezed_blocks[0, c]) for c in range(4)]
    for i, (title, grid, block) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, 5, i)
        values = grid.cpu().numpy()
        ax.set_xlim(-0.55, values.shape[1] - 0.45)
        ax.set_ylim(values.shape[0] - 0.45, -0.55)
        ax.set_aspect("equal")
        ax.axis("off")
        for k in range(values.shape[0] + 1):
            ax.axhline(k - 0.5, color="0.3", linewidth=1)
        for k in range(values.shape[1] + 1):
            ax.axvline(k - 0.5, color="0.3", linewidth=1)
        for (r, c), v in np.ndenumerate(values):
            ax.text(c, r, f"{v:g}", ha="center", va="center", fontsize=11, color=f"C{int(block[r, c]) % 10}")
        ax.set_title(title, fontsize=9)
    fig.suptitle("Squeeze: every 2x2 block becomes one pixel with 4 channels", fontsize=10)
    fig.tight_layout()
    return fig
