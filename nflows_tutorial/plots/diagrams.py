"""Diagrams of flows: a chain of layers, a model's architecture read from its layers, one coupling layer."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Patch, Rectangle

from ..flows import CouplingLayer, Dequantization, SplitFlow, SqueezeFlow, VariationalDequantization
from ..flows.model import ImageFlow
from .style import KEPT, MAX_WIDTH, TRANSFORMED

__all__ = [
    "LAYER_GID",
    "plot_flow_chain",
    "mask_legend_handles",
    "describe_layer",
    "plot_architecture",
    "plot_coupling_diagram",
]

# Every box that stands for one layer carries this gid, so a figure can be checked layer by layer.
LAYER_GID = "flow-layer"
_BOX_STYLE = "round,pad=0.02,rounding_size=0.08"
_BOX_LINEWIDTH = 1.2
# Distance between the centres of neighbouring boxes of a chain.
_CHAIN_STEP = 1.75
_FORWARD, _INVERSE, _BRANCH = "#1f5fa8", "#b4451f", "#7a2a5a"


def _box(
    ax: Axes, x: float, y: float, w: float, h: float, text: str, color: str, gid: str | None = None, size: float = 9
) -> FancyBboxPatch:
    """Draw a rounded box centred at ``(x, y)`` with ``text`` inside it."""
    patch = FancyBboxPatch(
        (x - w / 2, y - h / 2),
        w,
        h,
        facecolor=color,
        edgecolor="0.25",
        boxstyle=_BOX_STYLE,
        linewidth=_BOX_LINEWIDTH,
    )
    if gid is not None:
        patch.set_gid(gid)
    ax.add_patch(patch)
    ax.text(x, y, text, ha="center", va="center", fontsize=size)
    return patch


def _arrow(
    ax: Axes, start: tuple[float, float], end: tuple[float, float], color: str = "0.2", text: str = "", **kw: Any
) -> None:
    ax.annotate(
        text,
        xy=end,
        xytext=start,
        ha="center",
        va="center",
        fontsize=8,
        color=color,
        arrowprops=dict(arrowstyle="->", color=color, lw=1.3, shrinkA=0, shrinkB=0, **kw),
    )


def _blank_axes(fig: Figure, xlim: tuple[float, float], ylim: tuple[float, float]) -> Axes:
    ax = fig.add_subplot()
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal")
    ax.axis("off")
    return ax


def _mask_icon(ax: Axes, x: float, y: float, pattern: np.ndarray, cell: float = 0.11) -> None:
    """Draw a small mask pattern centred at ``(x, y)``: kept cells dark, transformed cells light."""
    rows, cols = pattern.shape
    for (r, c), kept in np.ndenumerate(pattern):
        ax.add_patch(
            Rectangle(
                (x + (c - cols / 2) * cell, y + (rows / 2 - r - 1) * cell),
                cell,
                cell,
                facecolor=KEPT if kept else TRANSFORMED,
                edgecolor="0.4",
                linewidth=0.4,
            )
        )


def mask_legend_handles() -> list[Patch]:
    """Legend entries for mask pictures: what the dark and the light cells mean."""
    return [
        Patch(facecolor=KEPT, edgecolor="0.4", label="kept (input to the network)"),
        Patch(facecolor=TRANSFORMED, edgecolor="0.4", label="transformed"),
    ]


def _snake_layout(
    n: int, per_row: int, row_gap: float, masks: bool, branches: bool
) -> tuple[list[tuple[float, float]], tuple[float, float, float, float]]:
    """Centres of ``n`` boxes in rows of ``per_row``, and the ``(left, right, bottom, top)`` of the drawing.

    Even rows run left to right, odd rows right to left, so the chain turns at the ends of the rows.
    ``masks`` and ``branches`` make room for mask pictures above and branch arrows below the boxes.
    """
    cols = min(n, per_row)
    rows = -(-n // per_row)
    positions = []
    for i in range(n):
        r, c = divmod(i, per_row)
        positions.append((1.5 + (c if r % 2 == 0 else cols - 1 - c) * _CHAIN_STEP, -r * row_gap))
    left, right = -0.3, 1.5 + (cols - 1) * _CHAIN_STEP + 1.7
    top = 1.05 + (0.2 if masks else 0)
    bottom = -(rows - 1) * row_gap - 1.35 - (0.8 if branches else 0) - (0.3 if masks else 0)
    return positions, (left, right, bottom, top)


def _chain_box(
    ax: Axes,
    centre: tuple[float, float],
    size: tuple[float, float],
    label: str,
    color: str,
    mask: np.ndarray | None,
    note: str | None,
    branch: str | None,
) -> None:
    """One layer of a chain: its box and label, with its mask picture, note and branch arrow where given."""
    (x, y), (w, h) = centre, size
    _box(ax, x, y, w, h, "", color, gid=LAYER_GID)
    ax.text(x, y - (0.15 if mask is not None else 0), label, ha="center", va="center", fontsize=7.5)
    if mask is not None:
        _mask_icon(ax, x, y + h / 2 - 0.22, np.asarray(mask))
    if note is not None:
        ax.text(x, y - h / 2 - 0.17, note, ha="center", va="center", fontsize=7, color="0.35")
    if branch:
        _arrow(ax, (x, y - h / 2 - 0.32), (x, y - h / 2 - 0.95), color=_BRANCH)
        ax.text(x + 0.12, y - h / 2 - 0.75, branch, ha="left", va="center", fontsize=8, color=_BRANCH)


def _chain_arrows(ax: Axes, anchors: Sequence[tuple[float, float, str]], size: tuple[float, float]) -> None:
    """Forward arrows above inverse ones between consecutive anchors ``(x, y, kind)``, kind "box" or "end"."""
    w, h = size
    for (xa, ya, ka), (xb, yb, kb) in itertools.pairwise(anchors):
        if ya == yb:
            sign = 1 if xb > xa else -1
            pad_a = 0.45 if ka == "end" else w / 2
            pad_b = 0.75 if kb == "end" else w / 2
            a, b = xa + sign * pad_a, xb - sign * pad_b
            _arrow(ax, (a, ya + 0.22), (b, yb + 0.22), color=_FORWARD)
            _arrow(ax, (b, yb - 0.22), (a, ya - 0.22), color=_INVERSE)
        else:  # the turn to the next row, straight down at the end of a row
            _arrow(ax, (xa + 0.2, ya - h / 2 - 0.3), (xb + 0.2, yb + h / 2), color=_FORWARD)
            _arrow(ax, (xb - 0.2, yb + h / 2), (xa - 0.2, ya - h / 2 - 0.3), color=_INVERSE)


def _check_chain(n: int, per_row: int, **per_layer: Sequence[Any] | None) -> None:
    """Raise a ValueError unless there are ``n > 0`` layers, one entry per layer in each given list, ``per_row > 0``."""
    if n == 0:
        raise ValueError("a flow chain needs at least one layer label")
    for what, given in per_layer.items():
        if given is not None and len(given) != n:
            raise ValueError(f"got {len(given)} {what} for {n} layers; give one per layer or none")
    if per_row < 1:
        raise ValueError(f"per_row must be positive, got {per_row}")


def _per_layer(given: Sequence[Any] | None, n: int) -> Sequence[Any]:
    return [None] * n if given is None else given


def plot_flow_chain(
    labels: Sequence[str],
    notes: Sequence[str] | None = None,
    source: str = "$x$",
    target: str = r"$z \sim \mathcal{N}(0, I)$",
    title: str | None = None,
    colors: Sequence[str] | None = None,
    masks: Sequence[np.ndarray | None] | None = None,
    branches: Sequence[str | None] | None = None,
    per_row: int = 6,
) -> Figure:
    """Draw a chain of invertible layers from ``source`` to ``target``, one box per label.

    Forward arrows (data to latent) run above the inverse ones (latent to data). A long chain snakes
    over several rows of at most ``per_row`` boxes, so the figure stays at most :data:`MAX_WIDTH`
    inches wide. ``notes`` are printed under each box (e.g. the shape it outputs); ``masks`` put a
    small picture of a layer's mask in its box (kept dark, transformed light, with a legend);
    ``branches`` label an arrow that leaves a box downwards (e.g. half of the values going to the prior).
    """
    _check_chain(len(labels), per_row, notes=notes, colors=colors, masks=masks, branches=branches)
    n = len(labels)
    has_branch = branches is not None and any(branches)
    size = (1.45, 1.25 if masks is not None else 1.0)
    positions, (left, right, bottom, top) = _snake_layout(
        n, per_row, 3.0 if has_branch else 2.4, masks is not None, has_branch
    )
    width = min(MAX_WIDTH, 0.95 * (right + 1.5))
    fig = Figure(figsize=(width, width * (top - bottom) / (right - left + 1.3)))
    ax = _blank_axes(fig, (left - 0.65, right + 0.65), (bottom, top))
    # The latent sits just after the last box, on whichever side the last row runs to.
    end = (positions[-1][0] + (1.8 if (n - 1) // per_row % 2 == 0 else -1.8), positions[-1][1])
    ax.text(left, 0, source, ha="center", va="center", fontsize=9)
    ax.text(*end, target, ha="center", va="center", fontsize=10)
    layers = zip(positions, labels, colors or ["#dbe9f6"] * n, *(_per_layer(g, n) for g in (masks, notes, branches)))
    for centre, label, color, mask, note, branch in layers:
        _chain_box(ax, centre, size, label, color, mask, note, branch)
    _chain_arrows(ax, [(left, 0.0, "end")] + [(x, y, "box") for x, y in positions] + [(*end, "end")], size)
    ax.text(
        (left + right) / 2,
        top - 0.15,
        r"forward $f$: data $\to$ latent, log-determinants add up (blue);"
        r"  inverse $f^{-1}$: latent $\to$ data, sampling (red)",
        ha="center",
        fontsize=8,
        color="0.25",
    )
    if masks is not None and any(m is not None for m in masks):
        ax.legend(
            handles=mask_legend_handles(),
            loc="lower center",
            bbox_to_anchor=(0.5, -0.02),
            ncol=2,
            fontsize=7,
            frameon=False,
            title="mask",
            title_fontsize=7,
        )
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def describe_layer(layer: torch.nn.Module) -> str:
    """A short multi-line label for one layer of a course model, read from the layer itself."""
    if isinstance(layer, VariationalDequantization):
        return f"variational\ndequantization\n({len(layer.flows)} couplings)"
    if isinstance(layer, Dequantization):
        return "uniform\ndequantization"
    if isinstance(layer, CouplingLayer):
        kind = "checker" if layer.mask.shape[1] == 1 and layer.mask.shape[-1] > 1 else "channel"
        hidden = getattr(layer.network, "nn", [None])[0]
        width = f"\nhidden {hidden.out_channels}" if isinstance(hidden, torch.nn.Conv2d) else ""
        return f"coupling\n{kind}{width}"
    if isinstance(layer, SqueezeFlow):
        return "squeeze"
    if isinstance(layer, SplitFlow):
        return "split"
    return type(layer).__name__


@torch.no_grad()
def _layer_output_shapes(model: ImageFlow) -> list[tuple[int, ...]]:
    z = torch.zeros(1, *model.image_shape, dtype=torch.int32, device=model.device)
    ldj = torch.zeros(1, device=model.device)
    shapes = []
    for layer in model.flows:
        z, ldj = layer(z, ldj)
        shapes.append(tuple(z.shape[1:]))
    return shapes


def plot_architecture(model: ImageFlow, title: str | None = None) -> Figure:
    """Draw ``model.flows`` as a chain: one box per layer, labelled from the layer, with its output shape."""
    layers = list(model.flows)
    shapes = _layer_output_shapes(model)
    palette = {"dequant": "#f6e3c6", "coupling": "#dbe9f6", "squeeze": "#d9f0d3", "split": "#f3d6e6"}

    def color(layer: torch.nn.Module) -> str:
        if isinstance(layer, Dequantization):
            return palette["dequant"]
        if isinstance(layer, SqueezeFlow):
            return palette["squeeze"]
        if isinstance(layer, SplitFlow):
            return palette["split"]
        return palette["coupling"]

    def mask(layer: torch.nn.Module) -> np.ndarray | None:
        if not isinstance(layer, CouplingLayer):
            return None
        m = layer.mask.detach().cpu()
        # A checkerboard's top-left 2x2 corner shows which of the two patterns it is; a channel mask is a row.
        return (m[0, 0, :2, :2] if m.shape[1] == 1 else m[0, :, 0, 0].view(1, -1)).numpy() > 0.5

    return plot_flow_chain(
        [describe_layer(layer) for layer in layers],
        notes=["x".join(map(str, s)) for s in shapes],
        source=r"$x$" + "\n" + "x".join(map(str, model.image_shape)),
        title=title,
        colors=[color(layer) for layer in layers],
        masks=[mask(layer) for layer in layers],
        branches=[r"half $\to \mathcal{N}(0, I)$" if isinstance(layer, SplitFlow) else None for layer in layers],
    )


def plot_coupling_diagram() -> Figure:
    """Draw the computation of one affine coupling layer, forward direction."""
    fig = Figure(figsize=(8.5, 3.4))
    ax = _blank_axes(fig, (-0.2, 10.4), (-0.4, 3.8))
    _box(ax, 0.7, 1.7, 1.2, 0.8, r"$z$", "#eeeeee", size=12)
    _box(ax, 2.8, 3.0, 1.7, 0.8, r"kept: $m \odot z$", "#dbe9f6")
    _box(ax, 2.8, 0.4, 1.9, 0.8, r"free: $(1-m) \odot z$", "#f6e3c6")
    _box(ax, 5.2, 3.0, 1.8, 0.8, "conditioner\nnetwork", "#e4dbf3")
    _box(
        ax,
        5.2,
        1.7,
        2.2,
        0.8,
        r"$s = e^{a}\tanh(s/e^{a})$" + "\n" + r"$s, t \leftarrow (1-m)\,s,\ (1-m)\,t$",
        "#e4dbf3",
        size=7.5,
    )
    _box(ax, 7.6, 0.4, 1.9, 0.8, r"$(z + t)\,e^{s}$", "#f6e3c6")
    _box(ax, 9.5, 1.7, 1.4, 0.8, r"$z'$" + "\n" + r"LDJ $+\sum s$", "#eeeeee")
    _arrow(ax, (1.3, 1.95), (1.95, 2.8))
    _arrow(ax, (1.3, 1.45), (1.85, 0.6))
    _arrow(ax, (3.65, 3.0), (4.3, 3.0))
    _arrow(ax, (5.2, 2.6), (5.2, 2.1))
    _arrow(ax, (5.9, 1.3), (7.0, 0.8), text="")
    _arrow(ax, (3.75, 0.4), (6.65, 0.4))
    _arrow(ax, (8.55, 0.6), (9.1, 1.3))
    _arrow(ax, (3.65, 3.25), (9.3, 2.1), connectionstyle="arc3,rad=-0.25")
    ax.text(7.9, 2.85, "kept half\npasses unchanged", ha="center", fontsize=8, color="0.35")
    return fig
