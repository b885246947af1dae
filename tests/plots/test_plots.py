"""The course figures draw what they claim, headless."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import itertools

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
    with pytest.raises(ValueError, match="got 1 notes for 2 layers"):
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


def _figures() -> dict[str, Figure]:
    return {
        **{f"architecture {name}": plots.plot_architecture(create_model(name)) for name in MODEL_NAMES},
        "chain": plots.plot_flow_chain([f"f{i}" for i in range(15)]),
        "masks": plots.plot_masks({str(i): create_checkerboard_mask(8, 8) for i in range(6)}),
        "change of variables": plots.plot_change_of_variables(),
        "spikes": plots.plot_spikes(widths=(1, 0.5, 0.2, 0.1, 0.05)),
        "panels": plots.plot_image_panels({str(i): torch.zeros(16, 1, 28, 28) for i in range(4)}, ncol=8),
        "curves": plots.plot_learning_curves({str(i): {"val_bpd": [(1, 2.0), (2, 1.5)]} for i in range(4)}),
        "coupling": plots.plot_coupling_diagram(),
        "squeeze": plots.plot_squeeze(torch.arange(1, 17).view(1, 1, 4, 4)),
    }


def test_no_figure_is_wider_than_the_limit():
    widths = {name: fig.get_size_inches()[0] for name, fig in _figures().items()}
    assert max(widths.values()) <= plots.MAX_WIDTH, widths


def _mask_icons(fig: Figure) -> list[list[str]]:
    """The colours of the small mask pictures, one list per box, in drawing order."""
    from matplotlib.colors import to_hex
    from matplotlib.patches import Rectangle

    icons, current = [], []
    for patch in fig.axes[0].patches:
        if isinstance(patch, Rectangle) and patch.get_width() < 0.2:
            current.append(to_hex(patch.get_facecolor()))
        elif patch.get_gid() == plots.LAYER_GID:
            if current:
                icons.append(current)
            current = []
    if current:
        icons.append(current)
    return icons


@pytest.mark.parametrize("name", ["simple", "vardeq"])
def test_architecture_shows_the_checkerboard_alternating(name):
    model = create_model(name)
    icons = _mask_icons(plots.plot_architecture(model))
    assert len(icons) == 8 and all(len(icon) == 4 for icon in icons)
    for a, b in itertools.pairwise(icons):
        assert all(x != y for x, y in zip(a, b)), "consecutive couplings must show inverted checkerboards"
    legend = [t.get_text() for t in plots.plot_architecture(model).axes[0].get_legend().get_texts()]
    assert legend == ["kept (input to the network)", "transformed"]


def test_multiscale_diagram_sends_half_of_the_split_to_the_prior():
    fig = plots.plot_architecture(create_model("multiscale"))
    branch = [t for t in texts(fig) if "N}(0, I)" in t and "half" in t]
    assert len(branch) == 1
    arrows = [a for a in fig.axes[0].texts if getattr(a, "arrow_patch", None) is not None]
    split_box = layer_boxes(fig)[6]  # dequantization, 2 couplings, squeeze, 2 couplings, split
    x_split = split_box.get_x() + split_box.get_width() / 2
    downward = [a for a in arrows if a.xy[0] == pytest.approx(x_split) and a.xy[1] < a.xyann[1]]
    assert downward, "an arrow must leave the split box downwards, towards the prior"
    icons = _mask_icons(fig)
    assert [len(icon) for icon in icons] == [4, 4, 4, 4, 8, 8, 8, 8], "checkerboards first, then channel masks"


def test_mask_figure_has_a_kept_and_transformed_legend():
    fig = plots.plot_masks({"checkerboard": create_checkerboard_mask(4, 4)})
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["kept (input to the network)", "transformed"]


def test_labels_of_a_diagram_do_not_overlap():
    for name in MODEL_NAMES:
        fig = plots.plot_architecture(create_model(name))
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        renderer = FigureCanvasAgg(fig).get_renderer()
        boxes = [
            t.get_window_extent(renderer)
            for t in fig.axes[0].texts
            if t.get_text().strip() and getattr(t, "arrow_patch", None) is None
        ]
        overlaps = [(i, j) for i in range(len(boxes)) for j in range(i) if boxes[i].overlaps(boxes[j])]
        assert not overlaps, f"{name}: overlapping labels {overlaps}"


def test_learning_curves_draw_each_logged_series():
    fig = plots.plot_learning_curves({"run": {"train_bpd": [(50, 1.5), (100, 1.4)], "val_bpd": [(99, 1.3)]}})
    lines = fig.axes[0].lines
    assert [list(line.get_xdata()) for line in lines] == [[50, 100], [99]]
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["training", "validation"]
    with pytest.raises(ValueError, match="neither"):
        plots.plot_learning_curves({"run": {"lr-Adam": [(0, 1e-3)]}})


def test_image_panels_show_every_set():
    fig = plots.plot_image_panels({"a": torch.full((4, 1, 5, 5), 10), "b": torch.full((2, 1, 5, 5), 200)}, ncol=2)
    assert [ax.get_title() for ax in fig.axes] == ["a", "b"]
    assert fig.axes[1].images[0].get_array()[2, 2] == 200
    with pytest.raises(ValueError, match="single-channel"):
        plots.plot_image_panels({"a": torch.zeros(2, 3, 5, 5)})


def test_spikes_grow_as_they_narrow():
    fig = plots.plot_spikes(levels=4, widths=(1.0, 0.1))
    heights = [max(p.get_height() for p in ax.patches) for ax in fig.axes]
    assert heights == pytest.approx([0.25, 2.5])
