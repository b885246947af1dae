"""Images from a trained flow: latent interpolation between two test images, and the PNG grid writer."""

from __future__ import annotations

import pytest
import torch

from nflows_tutorial.analysis.sampling import interpolate, save_image_grid
from nflows_tutorial.io.checkpoints import load_pretrained
from nflows_tutorial.io.mnist import load_mnist


@pytest.mark.parametrize("name", ["simple", "vardeq"])
def test_interpolation_runs_from_the_first_image_to_the_second(name, published_dir, mnist_root):
    model, _ = load_pretrained(name, checkpoint_dir=published_dir, download=False, device="cpu")
    images = load_mnist("test").images[:2].to(torch.int32)
    path = interpolate(model, images[0], images[1], num_steps=4)
    assert path.shape == (4, 1, 28, 28) and path.dtype == torch.int32
    # Encoding then decoding gives the image back, up to one grey level where float32 rounds.
    assert (path[0] - images[0]).abs().max() <= 1 and (path[-1] - images[1]).abs().max() <= 1
    assert not torch.equal(path[1], path[0])


def test_save_image_grid_refuses_other_formats(tmp_path):
    with pytest.raises(ValueError, match=r"\.png"):
        save_image_grid(torch.zeros(2, 1, 28, 28, dtype=torch.int32), tmp_path / "grid.svg")
