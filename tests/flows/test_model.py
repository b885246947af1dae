"""Whole models: published checkpoints load strictly, models invert exactly, stacks have the right log-determinant."""

from __future__ import annotations

import math

import pytest
import torch

from nflows_tutorial import ImageFlow, SplitFlow, create_model, create_simple_flow
from nflows_tutorial.course.checks import randomized
from nflows_tutorial.io.checkpoint_files import CheckpointError, load_state_dict_checked, read_checkpoint


@pytest.mark.parametrize("name,use_vardeq", [("simple", False), ("vardeq", True)])
def test_published_checkpoints_load_strictly(published_dir, name, use_vardeq):
    ckpt = torch.load(published_dir / f"MNISTFlow_{name}.ckpt", map_location="cpu", weights_only=True)
    model = create_simple_flow(use_vardeq)
    missing, unexpected = model.load_state_dict(ckpt["state_dict"], strict=True)
    assert not missing and not unexpected


def test_wrong_checkpoint_names_model_and_first_key(published_dir):
    state = read_checkpoint(published_dir / "MNISTFlow_simple.ckpt")["state_dict"]
    with pytest.raises(CheckpointError, match=r"'vardeq' model: the checkpoint lacks 'flows.0.flows.0.mask'"):
        load_state_dict_checked(create_model("vardeq"), state, "vardeq")
    vardeq_state = read_checkpoint(published_dir / "MNISTFlow_vardeq.ckpt")["state_dict"]
    with pytest.raises(CheckpointError, match=r"'simple' model: the checkpoint has 'flows.0.flows.0.mask', which"):
        load_state_dict_checked(create_model("simple"), vardeq_state, "simple")


def run_layers(model: ImageFlow, z0: torch.Tensor):
    """Forward through every layer after dequantization, remembering what each split factors out."""
    z, ldj, splits = z0, torch.zeros(z0.shape[0], dtype=z0.dtype), []
    for flow in model.flows[1:]:
        if isinstance(flow, SplitFlow):
            splits.append(z.chunk(2, dim=1)[1])
        z, ldj = flow(z, ldj)
    return z, ldj, splits


def reverse_layers(model: ImageFlow, z: torch.Tensor, ldj: torch.Tensor, splits):
    splits = list(splits)
    for flow in reversed(model.flows[1:]):
        kwargs = {"z_split": splits.pop()} if isinstance(flow, SplitFlow) else {}
        z, ldj = flow(z, ldj, reverse=True, **kwargs)
    return z, ldj


@pytest.mark.parametrize("name", ["simple", "vardeq", "multiscale"])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 1e-4)])
def test_whole_model_round_trip_with_noise_held(name, dtype, tol):
    model = randomized(create_model(name), scale=0.05).to(dtype).eval()
    imgs = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.int32)
    noise = torch.rand(2, 1, 28, 28, dtype=dtype)
    with torch.no_grad():
        z0, _ = model.flows[0](imgs, torch.zeros(2, dtype=dtype), noise=noise)
        z, ldj, splits = run_layers(model, z0)
        assert z.shape[1:] == model.latent_shape
        back, ldj_back = reverse_layers(model, z, ldj, splits)
        assert (back - z0).abs().max() <= tol * max(1.0, z0.abs().max().item())
        assert (ldj_back).abs().max() <= tol * max(1.0, ldj.abs().max().item())
        restored, _ = model.flows[0](back, ldj_back, reverse=True)
        u = model.flows[0].dequantize(imgs, torch.zeros(2, dtype=dtype), noise)[0] * 256 - imgs
    # Variational noise can leave [0, 1) by up to alpha/2/(1-alpha) (the sigmoid's range after undoing
    # the alpha scaling); only where it stays inside does the quantization have to give the pixel back.
    inside = (u >= 0) & (u < 1)
    if name == "simple":
        assert inside.all()
    if dtype == torch.float64:
        assert torch.equal(restored[inside], imgs[inside])
    else:  # float32 may miss one level where x + u sits within rounding of a bin edge
        assert (restored - imgs)[inside].abs().max() <= 1
    assert (restored - imgs).abs().max() <= 1


def jacobian_rows(f, x: torch.Tensor, chunk: int = 28) -> torch.Tensor:
    """Autograd Jacobian of ``f`` at ``x`` (both flat), ``chunk`` rows per batched backward pass.

    Each copy of ``x`` in the batch back-propagates a different one-hot output gradient, so one pass
    yields ``chunk`` rows while memory stays that of an ordinary batch (vmap'd jacrev needs far more).
    """
    rows = []
    for start in range(0, x.numel(), chunk):
        n = min(chunk, x.numel() - start)
        xs = x.expand(n, -1).clone().requires_grad_()
        out = f(xs)
        one_hot = torch.zeros_like(out)
        one_hot[torch.arange(n), torch.arange(start, start + n)] = 1
        (grad,) = torch.autograd.grad(out, xs, one_hot)
        rows.append(grad)
    return torch.cat(rows)


@pytest.mark.parametrize("name", ["simple", "vardeq", "multiscale"])
def test_stack_before_first_split_log_determinant_matches_autograd(name):
    model = randomized(create_model(name), scale=0.05).double().eval()
    stack = []
    for flow in model.flows[1:]:
        if isinstance(flow, SplitFlow):
            break
        stack.append(flow)

    def run(v):
        z, ldj = v.view(-1, *model.image_shape), torch.zeros(v.shape[0], dtype=torch.float64)
        for flow in stack:
            z, ldj = flow(z, ldj)
        return z.flatten(1), ldj

    torch.manual_seed(3)
    x = torch.randn(model.dims, dtype=torch.float64)
    with torch.no_grad():
        out, ldj = run(x[None])
    assert not torch.allclose(out[0], x)
    sign, logabsdet = torch.linalg.slogdet(jacobian_rows(lambda v: run(v)[0], x))
    assert sign != 0
    assert math.isclose(ldj.item(), logabsdet.item(), rel_tol=1e-6), (ldj.item(), logabsdet.item())


@pytest.mark.parametrize("name,shape", [("simple", (1, 28, 28)), ("multiscale", (8, 7, 7))])
def test_sampling_gives_int_images_on_the_model_device(name, shape):
    model = create_model(name).eval()
    assert model.latent_shape == shape
    imgs = model.sample(3)
    assert imgs.shape == (3, 1, 28, 28) and imgs.dtype == torch.int32 and imgs.device == model.device
    assert imgs.min() >= 0 and imgs.max() <= 255
    z = torch.randn(2, *shape)
    draws = []
    for _ in range(2):
        torch.manual_seed(5)  # the multi-scale model also draws its split-off channels
        draws.append(model.sample(z.shape, z_init=z))
    assert torch.equal(*draws)


def test_model_rejects_images_of_the_wrong_size():
    model = create_model("simple")
    with pytest.raises(ValueError, match=r"images of shape \[batch, 1, 28, 28\]"):
        model.bits_per_dim(torch.zeros(2, 1, 32, 32, dtype=torch.int32))
    with pytest.raises(ValueError, match="latents of shape"):
        model.sample((2, 1, 14, 14))


def test_importance_sampling_estimate_is_log_mean_exp_of_single_draws():
    model = randomized(create_model("simple"), scale=0.05).double().eval()
    imgs = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.int32)
    torch.manual_seed(7)
    with torch.no_grad():
        batched = model.log_likelihood(imgs, importance_samples=4)
        torch.manual_seed(7)
        singles = model.log_likelihood(imgs.repeat(4, 1, 1, 1)).view(4, 3)
    assert torch.allclose(batched, torch.logsumexp(singles, 0) - math.log(4), atol=1e-9)
    assert torch.all(batched >= singles.mean(0) - 1e-9)  # Jensen: the M-sample bound is tighter
    with pytest.raises(ValueError, match="importance_samples"):
        model.log_likelihood(imgs, importance_samples=0)
