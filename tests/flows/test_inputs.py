"""What users send the Python API: integer images of any width that holds 0..255, and clear refusals of the rest."""

from __future__ import annotations

import pytest
import torch

from nflows_tutorial import create_model
from nflows_tutorial.analysis.sampling import draw_samples, image_grid


@pytest.fixture(scope="module")
def model():
    flow = create_model("simple")
    flow.compile_networks = False
    return flow.eval()


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.int32, torch.int64, torch.uint16])
def test_every_integer_type_that_holds_0_to_255_is_scored_alike(model, dtype):
    images = torch.tensor([0, 255], dtype=torch.int32).repeat_interleave(392).view(1, 1, 28, 28).repeat(2, 1, 1, 1)
    torch.manual_seed(3)
    reference = model.bits_per_dim(images)
    torch.manual_seed(3)
    scored = model.bits_per_dim(images.to(dtype))
    torch.testing.assert_close(scored, reference)
    assert torch.isfinite(scored).all()


def test_mnist_as_loaded_is_scored(model):
    zeros = torch.zeros(2, 1, 28, 28, dtype=torch.uint8)  # load_mnist(...).images are uint8 like this
    assert model.bits_per_dim(zeros).shape == (2,)


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda m: m.bits_per_dim(torch.zeros(2, 1, 28, 28, dtype=torch.int8)),
            "int8 tensor cannot hold the pixel values 0..255",
        ),
        (lambda m: m.bits_per_dim(torch.zeros(0, 1, 28, 28, dtype=torch.uint8)), "batch of 0 images"),
        (lambda m: m.bits_per_dim(torch.tensor(7)), r"images of shape \[batch, 1, 28, 28\], got \[\]"),
        (
            lambda m: m.bits_per_dim(torch.full((1, 1, 28, 28), 256)),
            "pixel values in 0..255, got values from 256 to 256",
        ),
        (lambda m: m.sample(0), "number of images to sample must be positive, got 0"),
        (lambda m: m.sample(-1), "number of images to sample must be positive, got -1"),
        (lambda m: m.sample((0, 1, 28, 28)), "must be positive, got 0"),
        (lambda m: draw_samples(m, 0), "must be positive, got 0"),
        (lambda m: m.sample(2, z_init=torch.full((2, 1, 28, 28), float("nan"))), "z_init holds NaN or infinite values"),
        (lambda m: m.sample(2, z_init=torch.full((2, 1, 28, 28), float("inf"))), "z_init holds NaN or infinite values"),
        (lambda m: m.sample(3, z_init=torch.zeros(2, 1, 28, 28)), r"z_init has shape \[2, 1, 28, 28\], but the sample"),
        (lambda m: image_grid(torch.zeros(0, 1, 28, 28)), r"non-empty batch of images .*got shape \[0, 1, 28, 28\]"),
    ],
)
def test_nonsense_gets_a_clear_error(model, call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call(model)


def test_a_finite_z_init_of_the_right_shape_decodes_to_pixels(model):
    images = model.sample(2, z_init=torch.zeros(2, 1, 28, 28))
    assert images.dtype == torch.int32 and images.shape == (2, 1, 28, 28)
    assert int(images.min()) >= 0 and int(images.max()) <= 255
