"""The image figures place every image, mask and squeezed value where it belongs."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from nflows_tutorial import SqueezeFlow, create_channel_mask, create_checkerboard_mask
from nflows_tutorial.plots.images import plot_image_panels, plot_images, plot_masks, plot_squeeze


def test_masks_are_drawn_as_their_patterns():
    masks = {"checkerboard": create_checkerboard_mask(4, 6), "channel": create_channel_mask(4)}
    fig = plot_masks(masks)
    assert len(fig.axes) == 2
    drawn = [ax.images[0].get_array() for ax in fig.axes]
    assert drawn[0].tolist() == masks["checkerboard"][0, 0].tolist()
    assert drawn[1].tolist() == [[1.0, 1.0, 0.0, 0.0]]
    with pytest.raises(ValueError, match="at least one"):
        plot_masks({})


def test_mask_figure_has_a_kept_and_transformed_legend():
    fig = plot_masks({"checkerboard": create_checkerboard_mask(4, 4)})
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["kept (input to the network)", "transformed"]


def test_squeeze_figure_shows_the_squeezed_channels():
    image = torch.arange(1, 17).view(1, 1, 4, 4)
    fig = plot_squeeze(image)
    assert len(fig.axes) == 5
    squeezed, _ = SqueezeFlow()(image, None)
    for c, ax in enumerate(fig.axes[1:]):
        assert sorted(int(t.get_text()) for t in ax.texts) == sorted(squeezed[0, c].flatten().tolist())


def test_image_grid_places_every_image():
    images = torch.stack([torch.full((1, 5, 5), 10 * k) for k in range(6)]).to(torch.int32)
    fig = plot_images(images, nrow=4, row_labels=["a", "b"])
    canvas = fig.axes[0].images[0].get_array()
    assert canvas.shape == (2 * 7 + 2, 4 * 7 + 2)
    assert canvas[2, 2] == 0 and canvas[2 + 7, 2 + 7] == 50 and canvas[2 + 7, 2 + 2 * 7] == 128
    assert list(fig.axes[0].get_yticks()) == [2 + 2.5, 2 + 7 + 2.5], "each row label at the middle of its row"
    with pytest.raises(ValueError, match="single-channel"):
        plot_images(torch.zeros(2, 3, 5, 5))
    with pytest.raises(ValueError, match="got 1 row labels for 2 rows"):
        plot_images(images, nrow=4, row_labels=["a"])
    with pytest.raises(ValueError, match="nrow must be positive"):
        plot_images(images, nrow=0)
    with pytest.raises(ValueError, match="non-empty"):
        plot_images(torch.zeros(0, 1, 5, 5))


def test_image_panels_show_every_set():
    fig = plot_image_panels({"a": torch.full((4, 1, 5, 5), 10), "b": torch.full((2, 1, 5, 5), 200)}, ncol=2)
    assert [ax.get_title() for ax in fig.axes] == ["a", "b"]
    assert fig.axes[1].images[0].get_array()[2, 2] == 200
    with pytest.raises(ValueError, match="single-channel"):
        plot_image_panels({"a": torch.zeros(2, 3, 5, 5)})
    with pytest.raises(ValueError, match="ncol must be positive, got 0"):
        plot_image_panels({"a": torch.zeros(2, 1, 5, 5)}, ncol=0)


def test_panels_of_fewer_images_line_up_with_grey_cells():
    fig = plot_image_panels({"four": torch.full((4, 1, 5, 5), 10), "one": torch.full((1, 1, 5, 5), 200)}, ncol=3)
    full, short = (ax.images[0].get_array() for ax in fig.axes)
    assert full.shape == short.shape == (2 * 7 + 2, 3 * 7 + 2)
    assert short[2, 2] == 200 and (short[2:7, 9:14] == 128).all() and (short[9:14, 2:7] == 128).all()
    assert full[9, 2] == 10 and full[9, 9] == 128
