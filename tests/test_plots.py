"""The course figures draw what they claim, headless."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from nflows_tutorial import (
    MODEL_NAMES,
    CouplingLayer,
    SqueezeFlow,
    create_channel_mask,
    create_checkerboard_mask,
    create_model,
    plots,
)


def layer_boxes(fig: Figure) -> list:
    return [p for ax in fig.axes for p in ax.patches if p.get_gid() == plots.LAYER_GID]


def texts(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_architecture_has_one_box_per_layer_with_its_output_shape(name):
    model = create_model(name)
    fig = plots.plot_architecture(model)
    assert len(layer_boxes(fig)) == len(model.flows)
    shapes = [t for t in texts(fig) if "x" in t and t.replace("x", "").isdigit()]
    assert shapes[-1] == "x".join(map(str, model.latent_shape))
    labels = [plots.describe_layer(layer) for layer in model.flows]
    assert labels[0].startswith("uniform" if name == "simple" else "variational")
    assert sum(label.startswith("coupling") for label in labels) == sum(
        isinstance(layer, CouplingLayer) for layer in model.flows
    )


def test_flow_chain_checks_its_notes():
    assert len(layer_boxes(plots.plot_flow_chain(["a", "b", "c"]))) == 3
    with pytest.raises(ValueError, match="one note per layer"):
        plots.plot_flow_chain(["a", "b"], notes=["only one"])
    with pytest.raises(ValueError, match="at least one"):
        plots.plot_flow_chain([])


@pytest.mark.parametrize("prior", [[1.0] * 8, [0.075, 0.2, 0.4, 0.2, 0.075, 0.025, 0.0125, 0.0125], [3, 1, 0, 2]])
def test_dequantization_volumes_have_the_prior_as_area(prior):
    z = torch.linspace(-16, 16, 400_001, dtype=torch.float64)
    density, level = plots.dequantization_density(prior, z)
    expected = torch.tensor(prior, dtype=torch.float64) / sum(prior)
    areas = torch.stack([torch.trapezoid(density * (level == v), z) for v in range(len(prior))])
    # Each level owns the area of its prior probability; the total is 1 (the seed's figure was not normalised).
    torch.testing.assert_close(areas, expected, atol=2e-3, rtol=0)
    assert torch.trapezoid(density, z).item() == pytest.approx(1.0, abs=1e-4)
    assert (level[1:] >= level[:-1]).all(), "levels must own consecutive slices of the axis"


def test_dequantization_volume_plot_shades_one_slice_per_value():
    fig = plots.plot_dequantization_volumes(levels=8)
    slices = [c for c in fig.axes[0].collections if isinstance(c, PolyCollection)]
    assert len(slices) == 8
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [str(v) for v in range(8)]


def test_dequantization_density_rejects_bad_priors():
    with pytest.raises(ValueError, match="non-negative"):
        plots.dequantization_density([0.5, -0.1, 0.6], torch.zeros(3))
    with pytest.raises(ValueError, match="positive sum"):
        plots.dequantization_density([0, 0], torch.zeros(3))


def test_scale_plot_draws_identity_and_one_curve_per_bound():
    bounds = (0.5, 1.0, 2.0)
    fig = plots.plot_scale_stabilisation(bounds)
    lines = fig.axes[0].lines
    assert len(lines) == 1 + len(bounds)
    for line, b in zip(lines[1:], bounds):
        assert abs(line.get_ydata()).max() <= b + 1e-6


def test_masks_are_drawn_as_their_patterns():
    masks = {"checkerboard": create_checkerboard_mask(4, 6), "channel": create_channel_mask(4)}
    fig = plots.plot_masks(masks)
    assert len(fig.axes) == 2
    drawn = [ax.images[0].get_array() for ax in fig.axes]
    assert drawn[0].tolist() == masks["checkerboard"][0, 0].tolist()
    assert drawn[1].tolist() == [[1.0, 1.0, 0.0, 0.0]]
    with pytest.raises(ValueError, match="at least one"):
        plots.plot_masks({})


def test_squeeze_figure_shows_the_squeezed_channels():
    image = torch.arange(1, 17).view(1, 1, 4, 4)
    fig = plots.plot_squeeze(image)
    assert len(fig.axes) == 5
    squeezed, _ = SqueezeFlow()(image, None)
    for c, ax in enumerate(fig.axes[1:]):
        assert sorted(int(t.get_text()) for t in ax.texts) == sorted(squeezed[0, c].flatten().tolist())


def test_image_grid_places_every_image():
    images = torch.stack([torch.full((1, 5, 5), 10 * k) for k in range(6)]).to(torch.int32)
    fig = plots.plot_images(images, nrow=4, row_labels=["a", "b"])
    canvas = fig.axes[0].images[0].get_array()
    assert canvas.shape == (2 * 7 + 2, 4 * 7 + 2)
    assert canvas[2, 2] == 0 and canvas[2 + 7, 2 + 7] == 50 and canvas[2 + 7, 2 + 2 * 7] == 128
    with pytest.raises(ValueError, match="single-channel"):
        plots.plot_images(torch.zeros(2, 3, 5, 5))


def test_histogram_compares_with_uniform():
    fig = plots.plot_dequantization_histogram(torch.rand(1000, generator=torch.Generator().manual_seed(0)), bins=10)
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert len(heights) == 10
    assert sum(heights) * 0.1 == pytest.approx(1.0)
    assert ax.lines[0].get_ydata()[0] == 1.0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        plots.plot_dequantization_histogram(torch.tensor([0.5, 1.5]))
    edge = plots.plot_dequantization_histogram(torch.tensor([-5e-6, 0.5, 1 + 5e-6]), bins=2)
    assert [p.get_height() for p in edge.axes[0].patches] == pytest.approx([2 / 3, 4 / 3])
