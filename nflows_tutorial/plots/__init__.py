"""The course's figures: diagrams, masks, dequantization volumes and image grids, drawn with matplotlib."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Patch, Rectangle

from ..flows import CouplingLayer, Dequantization, SplitFlow, SqueezeFlow, VariationalDequantization
from ..flows.model import ImageFlow

__all__ = [
    "LAYER_GID",
    "plot_flow_chain",
    "mask_legend_handles",
    "describe_layer",
    "plot_architecture",
    "plot_coupling_diagram",
    "dequantization_density",
    "plot_dequantization_volumes",
    "plot_scale_stabilisation",
    "plot_masks",
    "plot_squeeze",
    "plot_images",
    "plot_dequantization_histogram",
    "plot_image_panels",
    "plot_learning_curves",
    "plot_change_of_variables",
    "plot_spikes",
    "MAX_WIDTH",
]

# Every box that stands for one layer carries this gid, so a figure can be checked layer by layer.
LAYER_GID = "flow-layer"
#: Widest figure in inches: wider ones are scaled down on a laptop screen or a slide until their text is unreadable.
MAX_WIDTH = 10.0
_BOX_STYLE = "round,pad=0.02,rounding_size=0.08"
_BOX_LINEWIDTH = 1.2


def _box(ax, x: float, y: float, w: float, h: float, text: str, color: str, gid: str | None = None, size: float = 9):
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


def _arrow(ax, start: tuple[float, float], end: tuple[float, float], color: str = "0.2", text: str = "", **kw) -> None:
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


def _blank_axes(fig: Figure, xlim: tuple[float, float], ylim: tuple[float, float]):
    ax = fig.add_subplot()
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal")
    ax.axis("off")
    return ax


_KEPT, _TRANSFORMED = "#1f4e8c", "#cfe0f3"


def _mask_icon(ax, x: float, y: float, pattern: np.ndarray, cell: float = 0.11) -> None:
    """Draw a small mask pattern centred at ``(x, y)``: kept cells dark, transformed cells light."""
    rows, cols = pattern.shape
    for (r, c), kept in np.ndenumerate(pattern):
        ax.add_patch(
            Rectangle(
                (x + (c - cols / 2) * cell, y + (rows / 2 - r - 1) * cell),
                cell,
                cell,
                facecolor=_KEPT if kept else _TRANSFORMED,
                edgecolor="0.4",
                linewidth=0.4,
            )
        )


def mask_legend_handles() -> list[Patch]:
    """Legend entries for mask pictures: what the dark and the light cells mean."""
    return [
        Patch(facecolor=_KEPT, edgecolor="0.4", label="kept (input to the network)"),
        Patch(facecolor=_TRANSFORMED, edgecolor="0.4", label="transformed"),
    ]


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
    n = len(labels)
    if n == 0:
        raise ValueError("a flow chain needs at least one layer label")
    for what, given in (("notes", notes), ("colors", colors), ("masks", masks), ("branches", branches)):
        if given is not None and len(given) != n:
            raise ValueError(f"got {len(given)} {what} for {n} layers; give one per layer or none")
    if per_row < 1:
        raise ValueError(f"per_row must be positive, got {per_row}")
    step, w, h = 1.75, 1.45, 1.25 if masks is not None else 1.0
    row_gap = 3.0 if branches is not None and any(branches) else 2.4
    cols = min(n, per_row)
    rows = -(-n // per_row)
    # Snake layout: even rows run left to right, odd rows right to left; the chain turns at the ends.
    positions = []
    for i in range(n):
        r, c = divmod(i, per_row)
        positions.append((1.5 + (c if r % 2 == 0 else cols - 1 - c) * step, -r * row_gap))
    left, right = -0.3, 1.5 + (cols - 1) * step + 1.7
    width = min(MAX_WIDTH, 0.95 * (right + 1.5))
    has_branch = branches is not None and any(branches)
    top = 1.05 + (0.2 if masks is not None else 0)
    bottom = -(rows - 1) * row_gap - 1.35 - (0.8 if has_branch else 0) - (0.3 if masks is not None else 0)
    fig = Figure(figsize=(width, width * (top - bottom) / (right - left + 1.3)))
    ax = _blank_axes(fig, (left - 0.65, right + 0.65), (bottom, top))
    # The latent sits just after the last box, on whichever side the last row runs to.
    end_x = positions[-1][0] + (1.8 if (rows - 1) % 2 == 0 else -1.8)
    ax.text(left, 0, source, ha="center", va="center", fontsize=9)
    ax.text(end_x, positions[-1][1], target, ha="center", va="center", fontsize=10)
    for i, ((x, y), label) in enumerate(zip(positions, labels)):
        text_y = y - (0.15 if masks is not None and masks[i] is not None else 0)
        _box(ax, x, y, w, h, "", (colors or ["#dbe9f6"] * n)[i], gid=LAYER_GID)
        ax.text(x, text_y, label, ha="center", va="center", fontsize=7.5)
        if masks is not None and masks[i] is not None:
            _mask_icon(ax, x, y + h / 2 - 0.22, np.asarray(masks[i]))
        if notes is not None:
            ax.text(x, y - h / 2 - 0.17, notes[i], ha="center", va="center", fontsize=7, color="0.35")
        if branches is not None and branches[i]:
            _arrow(ax, (x, y - h / 2 - 0.32), (x, y - h / 2 - 0.95), color="#7a2a5a")
            ax.text(x + 0.12, y - h / 2 - 0.75, branches[i], ha="left", va="center", fontsize=8, color="#7a2a5a")
    anchors = [(left, 0.0, "end")] + [(x, y, "box") for x, y in positions] + [(end_x, positions[-1][1], "end")]
    for (xa, ya, ka), (xb, yb, kb) in itertools.pairwise(anchors):
        if ya == yb:
            sign = 1 if xb > xa else -1
            pad_a = 0.45 if ka == "end" else w / 2
            pad_b = 0.75 if kb == "end" else w / 2
            a, b = xa + sign * pad_a, xb - sign * pad_b
            _arrow(ax, (a, ya + 0.22), (b, yb + 0.22), color="#1f5fa8")
            _arrow(ax, (b, yb - 0.22), (a, ya - 0.22), color="#b4451f")
        else:  # the turn to the next row, straight down at the end of a row
            _arrow(ax, (xa + 0.2, ya - h / 2 - 0.3), (xb + 0.2, yb + h / 2), color="#1f5fa8")
            _arrow(ax, (xb - 0.2, yb + h / 2), (xa - 0.2, ya - h / 2 - 0.3), color="#b4451f")
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


def dequantization_density(
    prior: Sequence[float] | torch.Tensor, z: torch.Tensor, alpha: float = 1e-5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Density on the logit axis that uniform dequantization gives a discrete distribution ``prior``.

    ``prior`` holds one non-negative weight per level (normalised here, so it need not sum to 1);
    ``z`` is a 1-D grid of logits. Returns ``(density, level)``: the density at each ``z`` and the
    discrete value that owns it. Each level's area under the density equals its prior probability.
    """
    prior = torch.as_tensor(prior, dtype=torch.float64).flatten()
    if prior.numel() < 2 or (prior < 0).any() or prior.sum() <= 0:
        raise ValueError(f"prior must hold at least two non-negative weights with a positive sum, got {prior.tolist()}")
    prior = prior / prior.sum()
    layer = Dequantization(alpha=alpha, levels=prior.numel())
    grid = z.to(torch.float64).reshape(-1, 1, 1, 1)
    level, log_jac = layer(grid, torch.zeros(grid.shape[0], dtype=torch.float64), reverse=True)
    level = level.flatten().long()
    return log_jac.exp() * prior[level], level


def plot_dequantization_volumes(
    prior: Sequence[float] | torch.Tensor | None = None,
    levels: int = 8,
    z_range: tuple[float, float] = (-4.0, 4.0),
    title: str | None = None,
) -> Figure:
    """Shade the slice of the logit axis that each discrete value owns under uniform dequantization.

    ``prior`` defaults to uniform over ``levels`` values. The shaded areas sum to 1 over the whole
    axis; the outermost two slices continue beyond ``z_range``.
    """
    prior = torch.ones(levels) if prior is None else torch.as_tensor(prior, dtype=torch.float64)
    grid = torch.linspace(z_range[0], z_range[1], 2001, dtype=torch.float64)
    density_t, level_t = dequantization_density(prior, grid)
    z, density, level = grid.numpy(), density_t.numpy(), level_t.numpy()
    fig = Figure(figsize=(7, 3.2))
    ax = fig.add_subplot()
    edges = []
    for v in np.unique(level):
        idx = np.flatnonzero(level == v)
        # Extend each slice to the first point of the next one so that neighbours touch.
        idx = np.append(idx, idx[-1] + 1) if idx[-1] + 1 < len(z) else idx
        ax.fill_between(z[idx], density[idx], color=f"C{v % 10}", alpha=0.55, linewidth=0, label=str(v))
        edges.append(z[idx[0]])
    ax.plot(z, density, color="black", linewidth=1)
    ax.set_xticks(edges[1:])
    ax.set_xticklabels([f"{round(e, 1) + 0.0:.1f}" for e in edges[1:]], fontsize=8)
    ax.set_xlim(*z_range)
    ax.set_ylim(0, density.max() * 1.1)
    ax.set_xlabel("z (after the logit)")
    ax.set_ylabel("density")
    ax.set_title(title or f"Continuous volumes of {len(np.unique(level))} discrete values", fontsize=10)
    ax.legend(title="value", fontsize=7, title_fontsize=8, ncol=2, loc="upper right")
    fig.tight_layout()
    return fig


def plot_scale_stabilisation(bounds: Sequence[float] = (0.5, 1.0, 2.0, 4.0), s_max: float = 8.0) -> Figure:
    """Plot ``s -> tanh(s / b) * b`` for each bound ``b = exp(a)``, against the identity."""
    s = torch.linspace(-s_max, s_max, 401)
    fig = Figure(figsize=(5.5, 3.6))
    ax = fig.add_subplot()
    ax.plot(s, s, color="0.6", linestyle="--", linewidth=1, label="no stabilisation")
    for b in bounds:
        ax.plot(s, torch.tanh(s / b) * b, linewidth=1.8, label=rf"$e^a = {b:g}$")
    ax.set_xlabel("raw network output $s$")
    ax.set_ylabel("log-scale used by the coupling")
    ax.set_ylim(-s_max / 1.6, s_max / 1.6)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(r"Soft bound $e^{a}\tanh(s / e^{a})$", fontsize=10)
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
        ax.imshow(grid.cpu().numpy() > 0.5, cmap=ListedColormap([_TRANSFORMED, _KEPT]), vmin=0, vmax=1)
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


def plot_images(
    images: torch.Tensor, nrow: int = 8, title: str | None = None, row_labels: Sequence[str] | None = None
) -> Figure:
    """Show integer images ``[N, 1, H, W]`` (values 0..255) as a grid with ``nrow`` images per row."""
    if images.dim() != 4 or images.shape[1] != 1:
        raise ValueError(f"plot_images expects single-channel images [N, 1, H, W], got {list(images.shape)}")
    n, _, h, w = images.shape
    cols = min(nrow, n)
    rows = -(-n // cols)
    canvas = torch.full((rows * (h + 2) + 2, cols * (w + 2) + 2), 128.0)
    for k, img in enumerate(images.detach().cpu().float()):
        r, c = divmod(k, cols)
        canvas[2 + r * (h + 2) : 2 + r * (h + 2) + h, 2 + c * (w + 2) : 2 + c * (w + 2) + w] = img[0]
    fig = Figure(figsize=(1.0 * cols + (1.2 if row_labels else 0.2), 1.0 * rows + (0.5 if title else 0.2)))
    ax = fig.add_subplot()
    ax.imshow(canvas.numpy(), cmap="gray", vmin=0, vmax=255)
    ax.set_xticks([])
    ax.set_yticks([])
    if row_labels is not None:
        if len(row_labels) != rows:
            raise ValueError(f"got {len(row_labels)} row labels for {rows} rows")
        ax.set_yticks([2 + r * (h + 2) + h / 2 for r in range(rows)])
        ax.set_yticklabels(row_labels, fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_dequantization_histogram(noise: torch.Tensor, bins: int = 50, title: str | None = None) -> Figure:
    """Histogram of dequantization noise values ``u`` in ``[0, 1)`` against the uniform density 1.

    Values a hair outside the unit interval (within ``1e-3``, as the alpha margin of variational
    dequantization allows) are counted in the outermost bins.
    """
    flat = noise.detach().flatten().cpu().double()
    if flat.numel() == 0 or flat.min() < -1e-3 or flat.max() > 1 + 1e-3:
        raise ValueError("noise must be a non-empty tensor of values in [0, 1]")
    values = flat.clamp(0, 1).numpy()
    fig = Figure(figsize=(5.5, 3.4))
    ax = fig.add_subplot()
    ax.hist(values, bins=bins, range=(0, 1), density=True, color="C0", alpha=0.7, label="learned $q(u|x)$")
    ax.axhline(1.0, color="C3", linestyle="--", linewidth=1.5, label="uniform $U[0, 1)$")
    ax.set_xlim(0, 1)
    ax.set_xlabel("dequantization noise $u$")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    ax.set_title(title or "Where the learned dequantization puts its noise", fontsize=10)
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
    rows = max(-(-images.shape[0] // ncol) for images in panels.values())
    width = min(MAX_WIDTH, 0.75 * ncol * len(panels) + 0.3 * len(panels))
    fig = Figure(figsize=(width, width / len(panels) / ncol * rows + 0.6 + (0.3 if title else 0)))
    for i, (name, images) in enumerate(panels.items(), start=1):
        ax = fig.add_subplot(1, len(panels), i)
        _, _, h, w = images.shape
        canvas = torch.full((rows * (h + 2) + 2, ncol * (w + 2) + 2), 128.0)
        for k, img in enumerate(images.detach().cpu().float()):
            r, c = divmod(k, ncol)
            canvas[2 + r * (h + 2) : 2 + r * (h + 2) + h, 2 + c * (w + 2) : 2 + c * (w + 2) + w] = img[0]
        ax.imshow(canvas.numpy(), cmap="gray", vmin=0, vmax=255)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(name, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


#: Tag, legend label and line style of each curve :func:`plot_learning_curves` draws.
_LEARNING_CURVES: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("train_bpd", "training", {"color": "C0", "alpha": 0.8, "linewidth": 1}),
    ("val_bpd", "validation", {"color": "C3", "marker": "o", "markersize": 4, "linewidth": 1.5}),
)


def plot_learning_curves(runs: Mapping[str, Mapping[str, Sequence[tuple[int, float]]]]) -> Figure:
    """Training and validation bits per dimension against the optimisation step, one panel per run.

    ``runs`` maps a label to the scalars of one run, as :func:`nflows_tutorial.run_logs.read_scalars`
    returns them (``train_bpd`` and ``val_bpd`` are drawn; either may be missing).
    """
    if not runs:
        raise ValueError("give at least one run's logged scalars")
    fig = Figure(figsize=(min(MAX_WIDTH, 4.6 * len(runs)), 3.2))
    for i, (label, scalars) in enumerate(runs.items(), start=1):
        ax = fig.add_subplot(1, len(runs), i)
        drawn = False
        for tag, name, style in _LEARNING_CURVES:
            points = scalars.get(tag) or []
            if points:
                steps, values = zip(*points)
                ax.plot(steps, values, label=name, **style)
                drawn = True
        if not drawn:
            raise ValueError(f"run {label!r} logged neither train_bpd nor val_bpd")
        ax.set_xlabel("optimisation step")
        ax.set_ylabel("bits per dimension (one draw)")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_change_of_variables() -> Figure:
    """The change of variables in one dimension: a monotone map, the density it starts from and the one it gives.

    ``z = f(x) = 2 x - 1`` stretches the interval ``[0, 1]``, where ``x`` is uniform, to ``[-1, 1]``:
    the same probability is spread over twice the length, so the density halves, ``p_z = p_x / |f'|``.
    """
    fig = Figure(figsize=(9, 2.8))
    ax_x, ax_f, ax_z = (fig.add_subplot(1, 3, i) for i in (1, 2, 3))
    x = np.linspace(-1.2, 1.2, 481)
    p_x = ((x >= 0) & (x <= 1)).astype(float)
    ax_x.fill_between(x, p_x, step="mid", color="C0", alpha=0.5)
    ax_x.set_title(r"$p_x(x)$: uniform on $[0, 1]$, area 1", fontsize=9)
    ax_x.set_xlabel("$x$")
    ax_f.plot(x, 2 * x - 1, color="0.2")
    ax_f.axvspan(0, 1, color="C0", alpha=0.15)
    ax_f.axhspan(-1, 1, color="C1", alpha=0.15)
    ax_f.set_title(r"$z = f(x) = 2x - 1$, slope $|f'| = 2$", fontsize=9)
    ax_f.set_xlabel("$x$")
    ax_f.set_ylabel("$z$")
    p_z = ((x >= -1) & (x <= 1)).astype(float) / 2
    ax_z.fill_between(x, p_z, step="mid", color="C1", alpha=0.5)
    ax_z.set_title(r"$p_z(z) = p_x(x) / |f'|$: height 1/2, area 1", fontsize=9)
    ax_z.set_xlabel("$z$")
    for ax in (ax_x, ax_z):
        ax.set_ylim(0, 1.15)
        ax.set_xlim(-1.2, 1.2)
    ax_f.set_xlim(-0.2, 1.2)
    ax_f.set_ylim(-1.4, 1.4)
    fig.tight_layout()
    return fig


def plot_spikes(levels: int = 6, widths: Sequence[float] = (1.0, 0.25, 0.05)) -> Figure:
    """Why a continuous density must not be fitted to integers directly: ever narrower spikes on the data.

    One panel per width ``w``: a density made of boxes of width ``w`` centred on ``levels`` integer
    values. Each box holds ``1 / levels`` of the mass, so its height, and with it the "likelihood" of
    every data point, grows like ``1 / w`` without bound.
    """
    fig = Figure(figsize=(min(MAX_WIDTH, 3.2 * len(widths)), 2.6))
    for i, w in enumerate(widths, start=1):
        ax = fig.add_subplot(1, len(widths), i)
        height = 1 / (levels * w)
        for k in range(levels):
            ax.bar(k, height, width=w, color="C3", alpha=0.6)
        ax.plot(range(levels), [height] * levels, "k.", markersize=5)
        ax.set_title(f"width {w:g}: density {height:.2f} at each point", fontsize=9)
        ax.set_xlabel("pixel value")
        ax.set_xlim(-0.7, levels - 0.3)
    fig.axes[0].set_ylabel("density")
    fig.tight_layout()
    return fig
