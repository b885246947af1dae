"""The fast path changes the speed, never the numbers: same noise, same bpd and gradients as the plain path."""

from __future__ import annotations

import pytest
import torch
from helpers import randomize

from nflows_tutorial import create_model


def bpd_and_grads(model, imgs, fast: bool, compile_networks: bool = False):
    model.fast = fast
    model.compile_networks = compile_networks
    model.zero_grad(set_to_none=True)
    torch.manual_seed(11)  # the same dequantization noise on both paths
    bpd = model.bits_per_dim(imgs)
    bpd.mean().backward()
    return bpd.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def assert_same(reference, other):
    (bpd_a, grads_a), (bpd_b, grads_b) = reference, other
    assert (bpd_a - bpd_b).abs().max() <= 1e-4
    for name, grad in grads_a.items():
        scale = grad.abs().max().clamp_min(1e-12)
        assert (grads_b[name] - grad).abs().max() / scale <= 1e-4, name


@pytest.mark.parametrize("name", ["simple", "vardeq", "multiscale"])
def test_fast_path_gives_the_plain_numbers(name):
    model = randomize(create_model(name), scale=0.05)
    imgs = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.int32)
    plain = bpd_and_grads(model, imgs, fast=False)
    assert_same(plain, bpd_and_grads(model, imgs, fast=True))
    assert model.flows[-1].network.nn[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_compiled_conditioners_give_the_plain_numbers():
    model = randomize(create_model("simple"), scale=0.05)
    imgs = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.int32)
    plain = bpd_and_grads(model, imgs, fast=False)
    compiled = bpd_and_grads(model, imgs, fast=True, compile_networks=True)
    assert model.compile_networks, "torch.compile fell back to eager on this machine"  # a fallback switches it off
    assert_same(plain, compiled)
