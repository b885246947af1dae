"""Every invertible layer of the package passes the students' layer check, and round-trips in float32 too."""

from __future__ import annotations

import math

import pytest
import torch

from nflows_tutorial import (
    CouplingLayer,
    Dequantization,
    GatedConvNet,
    SplitFlow,
    SqueezeFlow,
    VariationalDequantization,
    create_channel_mask,
    create_checkerboard_mask,
)
from nflows_tutorial.course.checks import inspect_layer, randomized


class Logit(torch.nn.Module):
    """The alpha-scaled logit of dequantization as a bijection on (0, 1) (sigmoid in reverse)."""

    def __init__(self):
        super().__init__()
        self.deq = Dequantization()

    def forward(self, z, ldj, reverse=False):
        return self.deq.sigmoid(z, ldj) if reverse else self.deq.logit(z, ldj)


class Conditioned(torch.nn.Module):
    """A coupling that also sees a fixed conditioning image (as in variational dequantization)."""

    def __init__(self, layer, cond):
        super().__init__()
        self.layer = layer
        self.register_buffer("cond", cond)

    def forward(self, z, ldj, reverse=False):
        return self.layer(z, ldj, reverse=reverse, cond=self.cond.to(z).expand(z.shape[0], -1, -1, -1))


def checkerboard_coupling(c=1, h=6, w=6, invert=False):
    return CouplingLayer(GatedConvNet(c, hidden=8, c_out=2 * c), create_checkerboard_mask(h, w, invert), c)


def channel_coupling(c=4, invert=False):
    return CouplingLayer(GatedConvNet(c, hidden=8), create_channel_mask(c, invert), c)


# name -> (layer factory, input shape, input sampler)
BIJECTIONS = {
    "coupling_checkerboard": (lambda: checkerboard_coupling(), (1, 6, 6), "normal"),
    "coupling_checkerboard_inverted": (lambda: checkerboard_coupling(invert=True), (1, 6, 6), "normal"),
    "coupling_channel": (lambda: channel_coupling(), (4, 3, 3), "normal"),
    "coupling_channel_inverted": (lambda: channel_coupling(invert=True), (4, 3, 3), "normal"),
    "coupling_conditioned": (
        lambda: Conditioned(
            CouplingLayer(GatedConvNet(2, hidden=8, c_out=2), create_checkerboard_mask(6, 6), 1),
            torch.rand(1, 1, 6, 6) * 2 - 1,
        ),
        (1, 6, 6),
        "normal",
    ),
    "squeeze": (SqueezeFlow, (2, 4, 6), "normal"),
    "logit": (Logit, (1, 5, 5), "unit"),
}


def draw(shape, kind, dtype, batch=3):
    torch.manual_seed(2)
    x = torch.randn(batch, *shape, dtype=dtype)
    return torch.rand(batch, *shape, dtype=dtype) * 0.98 + 0.01 if kind == "unit" else x


@pytest.mark.parametrize("name", BIJECTIONS)
def test_every_package_bijection_passes_the_students_layer_check(name):
    """The checker that students run (round trip, log-det = autograd slogdet, accumulation, batch) on every layer."""
    factory, shape, kind = BIJECTIONS[name]
    report = inspect_layer(randomized(factory()), draw(shape, kind, torch.float64), tol=1e-9)
    assert report.passed, report.summary()


def variational_dequantization():
    couplings = [
        CouplingLayer(GatedConvNet(2, hidden=8, c_out=2), create_checkerboard_mask(4, 4, invert=i % 2 == 1), 1)
        for i in range(2)
    ]
    return VariationalDequantization(couplings)


# name -> (layer factory, example input): the layers that are not bijections of float tensors
OTHER_LAYERS = {
    "dequantization": (Dequantization, lambda: torch.randint(0, 256, (3, 1, 4, 4))),
    "variational_dequantization": (variational_dequantization, lambda: torch.randint(0, 256, (3, 1, 4, 4))),
    "split": (SplitFlow, lambda: torch.randn(3, 4, 3, 3)),
}


@pytest.mark.parametrize("name", OTHER_LAYERS)
def test_dequantizations_and_the_split_pass_the_students_layer_check(name):
    """Integer pixels check a dequantization (log-det against autograd in the noise); fewer outputs, a split."""
    factory, example = OTHER_LAYERS[name]
    torch.manual_seed(3)
    report = inspect_layer(randomized(factory(), scale=0.1), example())
    assert report.passed, report.summary()
    assert {"inverse", "log-det", "batch"} <= {v.name for v in report.verdicts}


@pytest.mark.parametrize("name", BIJECTIONS)
def test_float32_round_trip_is_exact_to_float32_precision(name):
    factory, shape, kind = BIJECTIONS[name]
    layer = randomized(factory())
    x = draw(shape, kind, torch.float32)
    ldj0 = torch.zeros(x.shape[0])
    y, ldj = layer(x, ldj0)
    assert not torch.allclose(y.flatten(), x.flatten()) or name == "squeeze"
    back, ldj_back = layer(y, ldj, reverse=True)
    assert back.shape == x.shape
    assert (back - x).abs().max() <= 1e-4
    assert (ldj_back - ldj0).abs().max() <= 1e-4 * max(1.0, ldj.abs().max().item())


def test_squeeze_example_from_the_course():
    img = torch.arange(1, 17).view(1, 1, 4, 4)
    out, _ = SqueezeFlow()(img, None)
    expected = torch.tensor([[[1, 2, 5, 6], [3, 4, 7, 8]], [[9, 10, 13, 14], [11, 12, 15, 16]]])
    assert torch.equal(out.permute(0, 2, 3, 1)[0], expected)
    assert torch.equal(SqueezeFlow()(out, None, reverse=True)[0], img)


def test_split_adds_prior_density_and_round_trips_with_held_noise():
    z = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    kept, ldj = SplitFlow()(z, torch.zeros(3, dtype=torch.float64))
    z2 = z[:, 2:]
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(z2).sum(dim=(1, 2, 3))
    assert torch.allclose(ldj, expected, atol=1e-12)
    back, ldj_back = SplitFlow()(kept, ldj, reverse=True, z_split=z2)
    assert torch.equal(back, z) and torch.allclose(ldj_back, torch.zeros(3, dtype=torch.float64), atol=1e-12)
    drawn, _ = SplitFlow()(kept, ldj, reverse=True)
    assert drawn.shape == z.shape and torch.equal(drawn[:, :2], kept)


def test_dequantization_round_trip_exact_in_float64_for_all_values():
    x = torch.arange(256, dtype=torch.int32).view(1, 1, 16, 16).repeat(4, 1, 1, 1)
    noise = torch.stack([torch.full((1, 16, 16), u, dtype=torch.float64) for u in (1e-9, 1e-6, 0.5, 1 - 1e-9)])
    deq = Dequantization()
    for u in (None, noise):
        z, ldj = deq(x, torch.zeros(4, dtype=torch.float64), noise=u)
        back, ldj_back = deq(z, ldj, reverse=True)
        assert back.dtype == torch.int32 and torch.equal(back, x)
        assert ldj_back.abs().max() < 1e-9


def test_dequantization_log_determinant_of_the_scaling_is_minus_d_log_256():
    x = torch.randint(0, 256, (2, 1, 3, 3))
    noise = torch.rand(2, 1, 3, 3, dtype=torch.float64)
    deq = Dequantization()
    v, ldj = deq.dequantize(x, torch.zeros(2, dtype=torch.float64), noise)
    assert torch.allclose(v, (x + noise) / 256)
    assert torch.allclose(ldj, torch.full((2,), -9 * math.log(256), dtype=torch.float64))


@pytest.mark.parametrize(
    "bad,error,words",
    [
        (torch.rand(1, 1, 4, 4), TypeError, "integer pixels"),
        (torch.full((1, 1, 4, 4), 256), ValueError, "0..255"),
        (torch.full((1, 1, 4, 4), -1), ValueError, "0..255"),
    ],
)
def test_dequantization_rejects_bad_pixels(bad, error, words):
    with pytest.raises(error, match=words):
        Dequantization()(bad, torch.zeros(1))


def test_squeeze_rejects_odd_sizes():
    with pytest.raises(ValueError, match="even height and width"):
        SqueezeFlow()(torch.zeros(1, 1, 5, 4), None)


def test_coupling_rejects_channel_and_size_mismatch():
    layer = channel_coupling(4)
    with pytest.raises(ValueError, match="built for 4 channels"):
        layer(torch.zeros(1, 3, 3, 3), torch.zeros(1))
    with pytest.raises(ValueError, match="mask is 6x6"):
        checkerboard_coupling()(torch.zeros(1, 1, 8, 8), torch.zeros(1))
    with pytest.raises(ValueError, match="mask must have shape"):
        CouplingLayer(GatedConvNet(4), create_channel_mask(2), 4)
