"""The fast path changes the speed and the memory, never the numbers: same noise, same bpd and gradients."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from helpers import randomize

from nflows_tutorial import create_model, fused
from nflows_tutorial.bench import activation_bytes


def bpd_and_grads(model, imgs, fast: bool, compile_networks: bool = False):
    model.fast = fast
    model.compile_networks = compile_networks
    model.zero_grad(set_to_none=True)
    torch.manual_seed(11)  # the same dequantization noise on both paths
    bpd = model.bits_per_dim(imgs)
    bpd.mean().backward()
    return bpd.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def assert_same(reference, other, tol=1e-4):
    (bpd_a, grads_a), (bpd_b, grads_b) = reference, other
    assert (bpd_a - bpd_b).abs().max() <= tol
    for name, grad in grads_a.items():
        scale = grad.abs().max().clamp_min(1e-12)
        assert (grads_b[name] - grad).abs().max() / scale <= tol, name


@pytest.mark.parametrize("compile_networks", [False, True], ids=["eager-kernels", "compiled-kernels"])
@pytest.mark.parametrize("name", ["simple", "vardeq", "multiscale"])
def test_fast_path_gives_the_plain_numbers(name, compile_networks):
    model = randomize(create_model(name), scale=0.05)
    imgs = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.int32)
    plain = bpd_and_grads(model, imgs, fast=False)
    assert_same(plain, bpd_and_grads(model, imgs, fast=True, compile_networks=compile_networks))
    assert model.compile_networks == compile_networks, "torch.compile fell back to eager on this machine"
    assert model.flows[-1].network.nn[0].weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("compile_networks", [False, True], ids=["eager-kernels", "compiled-kernels"])
@pytest.mark.parametrize("name", ["simple", "vardeq", "multiscale"])
def test_fast_inference_gives_the_plain_numbers(name, compile_networks):
    # Without gradients the fast path takes another route (block boundaries fused into one kernel).
    model = randomize(create_model(name), scale=0.05)
    imgs = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.int32)
    scores = {}
    for fast in (False, True):
        model.fast, model.compile_networks = fast, compile_networks
        torch.manual_seed(5)
        with torch.inference_mode():
            scores[fast] = model.bits_per_dim(imgs, importance_samples=3)
    assert (scores[True] - scores[False]).abs().max() <= 1e-4
    z = torch.randn(4, *model.latent_shape)
    images = {}
    for fast in (False, True):
        model.fast = fast
        torch.manual_seed(6)  # the same split-off draws
        with torch.inference_mode():
            images[fast] = model.decode(z.clone())
    # Integer images: a value within float rounding of a level boundary may land one level over.
    differ = images[True] != images[False]
    assert differ.float().mean() <= 0.01 and (images[True] - images[False]).abs().max() <= 1
    assert model.compile_networks == compile_networks


def test_hand_written_backward_matches_autograd_in_float64():
    # In float64 the only differences left are rounding: this pins the derivation of every gradient.
    model = randomize(create_model("vardeq"), scale=0.05).double()
    imgs = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.int32)
    assert_same(bpd_and_grads(model, imgs, fast=False), bpd_and_grads(model, imgs, fast=True), tol=1e-10)


def test_concat_elu_with_one_exponential_is_elu():
    x = torch.cat([torch.linspace(-30, 30, 10001), torch.tensor([0.0, -0.0, 1e-30, -1e-30])]).view(1, -1, 1, 1)
    reference = torch.nn.functional.elu(torch.cat([x, -x], dim=1))
    assert (fused.concat_elu(x) - reference).abs().max() <= 1.2e-7


@pytest.mark.parametrize("name", ["simple", "vardeq", "multiscale"])
def test_fast_path_keeps_under_forty_percent_of_the_activations(name):
    model = create_model(name)
    imgs = torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.int32)
    model.fast = False
    plain = activation_bytes(model, imgs)
    model.fast = True
    fast = activation_bytes(model, imgs)
    assert fast <= 0.4 * plain, f"{fast / plain:.2f}x"


def test_a_failed_compilation_falls_back_to_eager_kernels(monkeypatch):
    def no_compiler(*args):
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(fused, "_compilation_works", True)
    for kernel in (fused._concat_elu, fused._concat_elu_backward, fused._gate_forward, fused._gate_backward):
        monkeypatch.setattr(kernel, "compiled", no_compiler)
    model = randomize(create_model("simple"), scale=0.05)
    imgs = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.int32)
    plain = bpd_and_grads(model, imgs, fast=False)
    with pytest.warns(RuntimeWarning, match="torch.compile is unavailable here .*no C\\+\\+ compiler"):
        compiled = bpd_and_grads(model, imgs, fast=True, compile_networks=True)
    assert not model.compile_networks
    assert_same(plain, compiled)


def test_mixed_precision_trains_through_autograd():
    # Under autocast the convolutions return bfloat16; the hand-written backward passes are float32/64 only.
    model = randomize(create_model("simple"), scale=0.05)
    imgs = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.int32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model.bits_per_dim(imgs).mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


MALLOC_PROBE = (
    "import torch; from nflows_tutorial import create_model, malloc; "
    "m = create_model('simple'); m.fast = {fast}; "
    "m.bits_per_dim(torch.zeros(1, 1, 28, 28, dtype=torch.int32)); print(malloc.tuned())"
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the malloc settings are glibc's")
@pytest.mark.parametrize(
    ("fast", "env", "expected"),
    [(True, {}, "True"), (False, {}, "False"), (True, {"MALLOC_TRIM_THRESHOLD_": "131072"}, "False")],
    ids=["fast-path-tunes", "plain-path-leaves-it", "user-setting-wins"],
)
def test_the_fast_path_on_a_cpu_keeps_freed_memory_for_reuse(fast, env, expected):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}, **env}
    done = subprocess.run([sys.executable, "-c", MALLOC_PROBE.format(fast=fast)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == expected
