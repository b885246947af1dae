"""Charts of densities and curves: the change of variables, dequantization, the scale bound, learning curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from ..flows.dequantization import dequantization_density
from .style import MAX_WIDTH

__all__ = [
    "plot_change_of_variables",
    "plot_spikes",
    "plot_dequantization_volumes",
    "plot_scale_stabilisation",
    "plot_dequantization_histogram",
    "plot_learning_curves",
]


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


#: Tag, legend label and line style of each curve :func:`plot_learning_curves` draws.
_LEARNING_CURVES: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("train_bpd", "training", {"color": "C0", "alpha": 0.8, "linewidth": 1}),
    ("val_bpd", "validation", {"color": "C3", "marker": "o", "markersize": 4, "linewidth": 1.5}),
)


def plot_learning_curves(runs: Mapping[str, Mapping[str, Sequence[tuple[int, float]]]]) -> Figure:
    """Training and validation bits per dimension against the optimisation step, one panel per run.

    ``runs`` maps a label to the scalars of one run, as :func:`nflows_tutorial.training.logs.read_scalars`
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
