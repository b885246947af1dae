"""Latent paths for interpolation: both end at the two latents; the spherical one keeps a prior-like norm."""

from __future__ import annotations

import pytest
import torch

from nflows_tutorial.analysis.sampling import latent_path


@pytest.mark.parametrize("path", ["linear", "spherical"])
def test_a_path_starts_and_ends_at_the_two_latents(path):
    gen = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(2, 8, 7, 7, generator=gen, dtype=torch.float64)
    points = latent_path(z1, z2, 6, path)
    assert points.shape == (6, 8, 7, 7)
    torch.testing.assert_close(points[0], z1)
    torch.testing.assert_close(points[-1], z2)


def test_the_linear_midpoint_is_short_and_the_spherical_one_is_not():
    gen = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(2, 784, generator=gen, dtype=torch.float64)
    linear = latent_path(z1, z2, 3, "linear")[1].norm()
    spherical = latent_path(z1, z2, 3, "spherical")[1].norm()
    ends = (z1.norm() + z2.norm()) / 2
    # Independent Gaussian latents are nearly orthogonal, so the linear midpoint has about 1/sqrt(2) of their norm.
    assert linear / ends == pytest.approx(2**-0.5, abs=0.05)
    assert spherical == pytest.approx(ends.item(), rel=1e-9)


def test_a_path_needs_a_known_kind_and_two_steps():
    z = torch.zeros(3)
    with pytest.raises(ValueError, match="linear"):
        latent_path(z, z, 4, "straight")
    with pytest.raises(ValueError, match="at least 2"):
        latent_path(z, z, 1)
