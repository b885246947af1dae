"""Every course figure fits the width of a laptop screen or a slide."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import torch
from matplotlib.figure import Figure

from nflows_tutorial import MODEL_NAMES, create_checkerboard_mask, create_model
from nflows_tutorial.plots.charts import plot_change_of_variables, plot_learning_curves, plot_spikes
from nflows_tutorial.plots.diagrams import plot_architecture, plot_coupling_diagram, plot_flow_chain
from nflows_tutorial.plots.images import plot_image_panels, plot_masks, plot_squeeze
from nflows_tutorial.plots.style import MAX_WIDTH


def _figures() -> dict[str, Figure]:
    return {
        **{f"architecture {name}": plot_architecture(create_model(name)) for name in MODEL_NAMES},
        "chain": plot_flow_chain([f"f{i}" for i in range(15)]),
        "masks": plot_masks({str(i): create_checkerboard_mask(8, 8) for i in range(6)}),
        "change of variables": plot_change_of_variables(),
        "spikes": plot_spikes(widths=(1, 0.5, 0.2, 0.1, 0.05)),
        "panels": plot_image_panels({str(i): torch.zeros(16, 1, 28, 28) for i in range(4)}, ncol=8),
        "curves": plot_learning_curves({str(i): {"val_bpd": [(1, 2.0), (2, 1.5)]} for i in range(4)}),
        "coupling": plot_coupling_diagram(),
        "squeeze": plot_squeeze(torch.arange(1, 17).view(1, 1, 4, 4)),
    }


def test_no_figure_is_wider_than_the_limit():
    widths = {name: fig.get_size_inches()[0] for name, fig in _figures().items()}
    assert max(widths.values()) <= MAX_WIDTH, widths
