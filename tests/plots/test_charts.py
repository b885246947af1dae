"""The charts plot the densities and curves they name: dequantization volumes, spikes, bounds, learning curves."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from matplotlib.collections import PolyCollection

from nflows_tutorial.flows.dequantization import dequantization_density
from nflows_tutorial.plots.charts import (
    plot_change_of_variables,
    plot_dequantization_histogram,
    plot_dequantization_volumes,
    plot_learning_curves,
    plot_scale_stabilisation,
    plot_spikes,
)


@pytest.mark.parametrize("prior", [[1.0] * 8, [0.075, 0.2, 0.4, 0.2, 0.075, 0.025, 0.0125, 0.0125], [3, 1, 0, 2]])
def test_dequantization_volumes_have_the_prior_as_area(prior):
    z = torch.linspace(-16, 16, 400_001, dtype=torch.float64)
    density, level = dequantization_density(prior, z)
    expected = torch.tensor(prior, dtype=torch.float64) / sum(prior)
    areas = torch.stack([torch.trapezoid(density * (level == v), z) for v in range(len(prior))])
    # Each level owns the area of its prior probability; the total is 1 (the seed's figure was not normalised).
    torch.testing.assert_close(areas, expected, atol=2e-3, rtol=0)
    assert torch.trapezoid(density, z).item() == pytest.approx(1.0, abs=1e-4)
    assert (level[1:] >= level[:-1]).all(), "levels must own consecutive slices of the axis"


def test_dequantization_volume_plot_shades_one_slice_per_value():
    fig = plot_dequantization_volumes(levels=8)
    slices = [c for c in fig.axes[0].collections if isinstance(c, PolyCollection)]
    assert len(slices) == 8
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [str(v) for v in range(8)]


def test_dequantization_density_rejects_bad_priors():
    with pytest.raises(ValueError, match="non-negative"):
        dequantization_density([0.5, -0.1, 0.6], torch.zeros(3))
    with pytest.raises(ValueError, match="positive sum"):
        dequantization_density([0, 0], torch.zeros(3))


def test_scale_plot_draws_identity_and_one_curve_per_bound():
    bounds = (0.5, 1.0, 2.0)
    fig = plot_scale_stabilisation(bounds)
    lines = fig.axes[0].lines
    assert len(lines) == 1 + len(bounds)
    for line, b in zip(lines[1:], bounds):
        assert abs(line.get_ydata()).max() <= b + 1e-6


def test_histogram_compares_with_uniform():
    fig = plot_dequantization_histogram(torch.rand(1000, generator=torch.Generator().manual_seed(0)), bins=10)
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert len(heights) == 10
    assert sum(heights) * 0.1 == pytest.approx(1.0)
    assert ax.lines[0].get_ydata()[0] == 1.0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        plot_dequantization_histogram(torch.tensor([0.5, 1.5]))
    edge = plot_dequantization_histogram(torch.tensor([-5e-6, 0.5, 1 + 5e-6]), bins=2)
    assert [p.get_height() for p in edge.axes[0].patches] == pytest.approx([2 / 3, 4 / 3])


def test_learning_curves_draw_each_logged_series():
    fig = plot_learning_curves({"run": {"train_bpd": [(50, 1.5), (100, 1.4)], "val_bpd": [(99, 1.3)]}})
    lines = fig.axes[0].lines
    assert [list(line.get_xdata()) for line in lines] == [[50, 100], [99]]
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["training", "validation"]
    with pytest.raises(ValueError, match="neither"):
        plot_learning_curves({"run": {"lr-Adam": [(0, 1e-3)]}})


def test_spikes_grow_as_they_narrow():
    fig = plot_spikes(levels=4, widths=(1.0, 0.1))
    heights = [max(p.get_height() for p in ax.patches) for ax in fig.axes]
    assert heights == pytest.approx([0.25, 2.5])


def test_change_of_variables_halves_the_density_and_keeps_the_area():
    ax_x, ax_f, ax_z = plot_change_of_variables().axes
    areas = []
    for ax in (ax_x, ax_z):
        # The one filled region of each density panel: its outline's largest height and its area.
        (x, y) = ax.collections[0].get_paths()[0].vertices.T
        areas.append(abs(0.5 * np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)))
        assert y.max() == pytest.approx(1.0 if ax is ax_x else 0.5)
    assert areas == pytest.approx([1.0, 1.0], abs=0.01)
    x, z = ax_f.lines[0].get_data()
    assert np.allclose(z, 2 * x - 1)
