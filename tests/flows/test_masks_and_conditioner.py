"""Masks have the documented patterns; the conditioner has the documented layout and starts at zero."""

import pytest
import torch

from nflows_tutorial import (
    ChannelLayerNorm,
    ConcatELU,
    GatedConvNet,
    create_channel_mask,
    create_checkerboard_mask,
    create_model,
)


def test_checkerboard_mask_pattern():
    mask = create_checkerboard_mask(3, 4)
    assert mask.shape == (1, 1, 3, 4) and mask.dtype == torch.float32
    expected = torch.tensor([[0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1]], dtype=torch.float32)
    assert torch.equal(mask[0, 0], expected)
    assert torch.equal(create_checkerboard_mask(3, 4, invert=True)[0, 0], 1 - expected)


def test_channel_mask_pattern():
    assert torch.equal(create_channel_mask(4).flatten(), torch.tensor([1.0, 1.0, 0.0, 0.0]))
    assert torch.equal(create_channel_mask(8, invert=True).flatten(), torch.tensor([0.0] * 4 + [1.0] * 4))
    assert create_channel_mask(8).shape == (1, 8, 1, 1)


@pytest.mark.parametrize("bad", [lambda: create_channel_mask(1), lambda: create_checkerboard_mask(0, 4)])
def test_masks_reject_bad_sizes(bad):
    with pytest.raises(ValueError):
        bad()


@pytest.mark.parametrize("name,count", [("simple", 556_312), ("vardeq", 628_388), ("multiscale", 1_711_818)])
def test_parameter_counts(name, count):
    assert sum(p.numel() for p in create_model(name).parameters()) == count


def test_concat_elu_and_layer_norm_match_their_definitions():
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    assert torch.allclose(ConcatELU()(x), torch.cat([torch.nn.functional.elu(x), torch.nn.functional.elu(-x)], 1))
    norm = ChannelLayerNorm(3).double()
    with torch.no_grad():
        norm.gamma.uniform_(0.5, 2)
        norm.beta.normal_()
    mean, var = x.mean(1, keepdim=True), x.var(1, unbiased=False, keepdim=True)
    assert torch.allclose(norm(x), (x - mean) / torch.sqrt(var + 1e-5) * norm.gamma + norm.beta, atol=1e-12)


def test_gated_conv_net_layout_and_zero_start():
    net = GatedConvNet(c_in=2, hidden=16, c_out=2)
    kinds = [type(m).__name__ for m in net.nn]
    assert kinds == ["Conv2d"] + ["GatedBlock", "ChannelLayerNorm"] * 3 + ["ConcatELU", "Conv2d"]
    assert not any(list(m.parameters()) for m in net.nn if isinstance(m, ConcatELU))
    assert torch.count_nonzero(net(torch.randn(3, 2, 8, 8))) == 0
