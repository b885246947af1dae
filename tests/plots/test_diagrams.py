"""The diagrams draw one box per layer, with its shape, mask and branch, and arrows both ways."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import itertools

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from nflows_tutorial import MODEL_NAMES, CouplingLayer, create_model
from nflows_tutorial.plots.diagrams import (
    LAYER_GID,
    describe_layer,
    mask_legend_handles,
    plot_architecture,
    plot_coupling_diagram,
    plot_flow_chain,
)
from nflows_tutorial.plots.style import KEPT, TRANSFORMED


def layer_boxes(fig: Figure) -> list:
    return [p for ax in fig.axes for p in ax.patches if p.get_gid() == LAYER_GID]


def texts(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def box_centre(box) -> tuple[float, float]:
    return box.get_x() + box.get_width() / 2, box.get_y() + box.get_height() / 2


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_architecture_has_one_box_per_layer_with_its_output_shape(name):
    model = create_model(name)
    fig = plot_architecture(model)
    assert len(layer_boxes(fig)) == len(model.flows)
    shapes = [t for t in texts(fig) if "x" in t and t.replace("x", "").isdigit()]
    assert shapes[-1] == "x".join(map(str, model.latent_shape))
    labels = [describe_layer(layer) for layer in model.flows]
    assert labels[0].startswith("uniform" if name == "simple" else "variational")
    assert sum(label.startswith("coupling") for label in labels) == sum(
        isinstance(layer, CouplingLayer) for layer in model.flows
    )


def test_flow_chain_checks_its_notes():
    assert len(layer_boxes(plot_flow_chain(["a", "b", "c"]))) == 3
    with pytest.raises(ValueError, match="got 1 notes for 2 layers"):
        plot_flow_chain(["a", "b"], notes=["only one"])
    with pytest.raises(ValueError, match="at least one"):
        plot_flow_chain([])
    with pytest.raises(ValueError, match="per_row must be positive, got 0"):
        plot_flow_chain(["a"], per_row=0)


def test_long_chain_snakes_over_rows_and_ends_at_the_latent():
    fig = plot_flow_chain([f"f{i}" for i in range(8)], per_row=3, target="latent")
    centres = [box_centre(box) for box in layer_boxes(fig)]
    rows = [[x for x, y in centres if y == row_y] for row_y in sorted({y for _, y in centres}, reverse=True)]
    assert [len(row) for row in rows] == [3, 3, 2]
    assert rows[0] == sorted(rows[0]) and rows[1] == sorted(rows[1], reverse=True) and rows[2] == sorted(rows[2])
    assert rows[1][0] == rows[0][-1], "the chain turns down at the end of a row"
    latent = next(t for t in fig.axes[0].texts if t.get_text() == "latent")
    assert latent.get_position()[1] == centres[-1][1] and latent.get_position()[0] > centres[-1][0]
    arrows = [t for t in fig.axes[0].texts if getattr(t, "arrow_patch", None) is not None]
    assert len(arrows) == 2 * (len(centres) + 1), "one forward and one inverse arrow per link, source to latent"


def _mask_icons(fig: Figure) -> list[list[str]]:
    """The colours of the small mask pictures, one list per box, in drawing order."""
    icons, current = [], []
    for patch in fig.axes[0].patches:
        if isinstance(patch, Rectangle) and patch.get_width() < 0.2:
            current.append(to_hex(patch.get_facecolor()))
        elif patch.get_gid() == LAYER_GID:
            if current:
                icons.append(current)
            current = []
    if current:
        icons.append(current)
    return icons


@pytest.mark.parametrize("name", ["simple", "vardeq"])
def test_architecture_shows_the_checkerboard_alternating(name):
    model = create_model(name)
    icons = _mask_icons(plot_architecture(model))
    assert len(icons) == 8 and all(len(icon) == 4 for icon in icons)
    for a, b in itertools.pairwise(icons):
        assert all(x != y for x, y in zip(a, b)), "consecutive couplings must show inverted checkerboards"
    legend = [t.get_text() for t in plot_architecture(model).axes[0].get_legend().get_texts()]
    assert legend == ["kept (input to the network)", "transformed"]


def test_multiscale_diagram_sends_half_of_the_split_to_the_prior():
    fig = plot_architecture(create_model("multiscale"))
    branch = [t for t in texts(fig) if "N}(0, I)" in t and "half" in t]
    assert len(branch) == 1
    arrows = [a for a in fig.axes[0].texts if getattr(a, "arrow_patch", None) is not None]
    split_box = layer_boxes(fig)[6]  # dequantization, 2 couplings, squeeze, 2 couplings, split
    x_split = split_box.get_x() + split_box.get_width() / 2
    downward = [a for a in arrows if a.xy[0] == pytest.approx(x_split) and a.xy[1] < a.xyann[1]]
    assert downward, "an arrow must leave the split box downwards, towards the prior"
    icons = _mask_icons(fig)
    assert [len(icon) for icon in icons] == [4, 4, 4, 4, 8, 8, 8, 8], "checkerboards first, then channel masks"


def test_labels_of_a_diagram_do_not_overlap():
    for name in MODEL_NAMES:
        fig = plot_architecture(create_model(name))
        renderer = FigureCanvasAgg(fig).get_renderer()
        boxes = [
            t.get_window_extent(renderer)
            for t in fig.axes[0].texts
            if t.get_text().strip() and getattr(t, "arrow_patch", None) is None
        ]
        overlaps = [(i, j) for i in range(len(boxes)) for j in range(i) if boxes[i].overlaps(boxes[j])]
        assert not overlaps, f"{name}: overlapping labels {overlaps}"


def test_mask_legend_names_the_dark_and_the_light_cells():
    handles = mask_legend_handles()
    assert [h.get_label() for h in handles] == ["kept (input to the network)", "transformed"]
    assert [to_hex(h.get_facecolor()) for h in handles] == [KEPT, TRANSFORMED]


def test_coupling_diagram_shows_both_halves_and_the_log_determinant():
    fig = plot_coupling_diagram()
    drawn = texts(fig)
    assert r"kept: $m \odot z$" in drawn and r"free: $(1-m) \odot z$" in drawn
    assert any(r"LDJ $+\sum s$" in t for t in drawn)
    assert any(r"e^{a}\tanh(s/e^{a})" in t for t in drawn), "the scale bound must appear in the diagram"
    assert sum(getattr(t, "arrow_patch", None) is not None for t in fig.axes[0].texts) == 8
