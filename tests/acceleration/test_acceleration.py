"""The accelerated path changes the speed and the memory, never the numbers, and never hides an edited module."""

from __future__ import annotations

import ast
import copy
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.nn import Conv2d

import nflows_tutorial
from nflows_tutorial import ConcatELU, CouplingLayer, GatedBlock, GatedConvNet, accelerate, create_model
from nflows_tutorial.acceleration import compilation_works, is_accelerated, kernels
from nflows_tutorial.analysis.speed import activation_bytes
from nflows_tutorial.course.checks import randomized

from support.helpers import modules_of

MODEL_NAMES = ["simple", "vardeq", "multiscale"]


def bpd_and_grads(model, imgs):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(11)  # the same dequantization noise on both paths
    bpd = model.bits_per_dim(imgs)
    bpd.mean().backward()
    return bpd.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def disagreements(caught):
    return [w for w in caught if "disagree with its modules' own forward" in str(w.message)]


def assert_same(reference, other, tol=1e-4):
    (bpd_a, grads_a), (bpd_b, grads_b) = reference, other
    assert (bpd_a - bpd_b).abs().max() <= tol
    for name, grad in grads_a.items():
        scale = grad.abs().max().clamp_min(1e-12)
        assert (grads_b[name] - grad).abs().max() / scale <= tol, name


@pytest.mark.parametrize("compiled", [False, True], ids=["eager-kernels", "compiled-kernels"])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_accelerated_path_gives_the_plain_numbers(name, compiled):
    model = randomized(create_model(name), scale=0.05)
    imgs = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.int32)
    plain = bpd_and_grads(model, imgs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert_same(plain, bpd_and_grads(accelerate(model, compiled=compiled), imgs))
    assert not disagreements(caught)  # the kernels agree with the modules: they ran, with no fallback
    assert compilation_works() or not compiled, "torch.compile fell back to eager on this machine"
    assert all(is_accelerated(net) for net in modules_of(model, GatedConvNet))
    assert all(conv.weight.is_contiguous(memory_format=torch.channels_last) for conv in modules_of(model, Conv2d))


@pytest.mark.parametrize("compiled", [False, True], ids=["eager-kernels", "compiled-kernels"])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_accelerated_inference_gives_the_plain_numbers(name, compiled):
    # Without gradients the kernels take another route (block boundaries fused into one kernel).
    model = randomized(create_model(name), scale=0.05)
    imgs = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.int32)
    z = torch.randn(4, *model.latent_shape)
    scores, images = {}, {}
    for accelerated in (False, True):
        accelerate(model, enabled=accelerated, compiled=compiled)
        torch.manual_seed(5)
        with torch.inference_mode():
            scores[accelerated] = model.bits_per_dim(imgs, importance_samples=3)
        torch.manual_seed(6)  # the same split-off draws
        with torch.inference_mode():
            images[accelerated] = model.decode(z.clone())
    assert (scores[True] - scores[False]).abs().max() <= 1e-4
    # Integer images: a value within float rounding of a level boundary may land one level over.
    differ = images[True] != images[False]
    assert differ.float().mean() <= 0.01 and (images[True] - images[False]).abs().max() <= 1


def test_hand_written_backward_matches_autograd_in_float64():
    # In float64 the only differences left are rounding: this pins the derivation of every gradient.
    model = randomized(create_model("vardeq"), scale=0.05).double()
    imgs = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.int32)
    plain = bpd_and_grads(model, imgs)
    assert_same(plain, bpd_and_grads(accelerate(model, compiled=False), imgs), tol=1e-10)


def test_concat_elu_with_one_exponential_is_elu():
    x = torch.cat([torch.linspace(-30, 30, 10001), torch.tensor([0.0, -0.0, 1e-30, -1e-30])]).view(1, -1, 1, 1)
    reference = F.elu(torch.cat([x, -x], dim=1))
    assert (kernels.concat_elu(x) - reference).abs().max() <= 1.2e-7


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_accelerated_path_keeps_under_forty_percent_of_the_activations(name):
    model = create_model(name)
    imgs = torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.int32)
    plain = activation_bytes(model, imgs)
    accelerated = activation_bytes(accelerate(model, compiled=False), imgs)
    assert accelerated <= 0.4 * plain, f"{accelerated / plain:.2f}x"


def test_accelerate_can_be_undone_and_leaves_the_weights_alone():
    model = randomized(create_model("simple"), scale=0.05)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    accelerate(model, compiled=False)
    twin = copy.deepcopy(model)  # an accelerated copy computes with its own weights, not the original's
    assert all(is_accelerated(net) for net in modules_of(twin, GatedConvNet))
    net = modules_of(twin, GatedConvNet)[0]
    assert net.forward.net is net
    accelerate(model, enabled=False)
    assert not any(is_accelerated(net) for net in modules_of(model, GatedConvNet))
    assert all(conv.weight.is_contiguous() for conv in modules_of(model, Conv2d))
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


# Edits to the modules take effect on both paths -----------------------------------------------------------------
def halved_concat_elu(self, x):
    return 0.5 * F.elu(torch.cat([x, -x], dim=1))


def ungated_block(self, x):
    a, _ = self.net(x).chunk(2, dim=1)
    return x + a


@pytest.mark.parametrize(
    ("cls", "edited"), [(ConcatELU, halved_concat_elu), (GatedBlock, ungated_block)], ids=["ConcatELU", "GatedBlock"]
)
@pytest.mark.parametrize("compiled", [False, True], ids=["eager-kernels", "compiled-kernels"])
def test_an_edited_module_changes_the_accelerated_model_as_it_changes_the_plain_one(monkeypatch, cls, edited, compiled):
    plain = randomized(create_model("vardeq"), scale=0.05)
    accelerated = accelerate(copy.deepcopy(plain), compiled=compiled)
    imgs = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.int32)
    before = bpd_and_grads(plain, imgs)
    assert_same(before, bpd_and_grads(accelerated, imgs))

    # A fresh function per test: the fallback warning is given once per module code and process.
    monkeypatch.setattr(cls, "forward", lambda self, x: edited(self, x))
    edited_plain = bpd_and_grads(plain, imgs)
    assert (edited_plain[0] - before[0]).abs().max() > 0.1  # the default (plain) model follows the edit
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        edited_accelerated = bpd_and_grads(accelerated, imgs)
        with torch.no_grad():
            accelerated.bits_per_dim(imgs)  # the other route, another shape: no further warning
            modules_of(accelerated, GatedConvNet)[-1](torch.randn(2, 1, 14, 14))
    (warning,) = disagreements(caught)
    assert warning.category is RuntimeWarning
    # Both run the modules now; channels-last weights only sum in another order.
    assert_same(edited_plain, edited_accelerated, tol=1e-3)

    monkeypatch.undo()  # the original code is checked again, agrees, and runs fused
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert_same(before, bpd_and_grads(accelerated, imgs))
    assert not disagreements(caught)


def test_an_edit_on_one_instance_is_honoured_too():
    model = accelerate(randomized(create_model("simple"), scale=0.05), compiled=False)
    imgs = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.int32)
    elu = modules_of(modules_of(model, GatedConvNet)[2], ConcatELU)[-1]
    elu.forward = lambda x: halved_concat_elu(elu, x)
    reference = copy.deepcopy(model)
    accelerate(reference, enabled=False)
    with pytest.warns(RuntimeWarning, match="disagree"):
        got = bpd_and_grads(model, imgs)
    assert_same(bpd_and_grads(reference, imgs), got, tol=1e-3)


def test_a_layer_replaced_after_accelerate_is_the_one_that_runs():
    model = accelerate(randomized(create_model("simple"), scale=0.05), compiled=False)
    imgs = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.int32)
    before = bpd_and_grads(model, imgs)[0]
    net = modules_of(model, GatedConvNet)[0]
    replacement = copy.deepcopy(net.nn[0])  # the first convolution, with other weights
    with torch.no_grad():
        replacement.weight.mul_(3)
    net.nn[0] = replacement
    reference = accelerate(copy.deepcopy(model), enabled=False)
    got = bpd_and_grads(model, imgs)
    assert (got[0] - before).abs().max() > 1e-3
    assert_same(bpd_and_grads(reference, imgs), got)


def test_hooks_on_the_modules_see_their_calls_on_an_accelerated_model():
    model = accelerate(create_model("simple"), compiled=False)
    seen = []
    modules_of(model, GatedBlock)[0].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    model.bits_per_dim(torch.zeros(3, 1, 28, 28, dtype=torch.int32))
    assert seen == [torch.Size([3, 32, 28, 28])]


# torch.func and vectorized Jacobians ---------------------------------------------------------------------------
def coupling_stack(model, count=2):
    """The first ``count`` couplings of the flow (after dequantization), as a function of one flattened 28x28 latent."""
    layers = modules_of(model, CouplingLayer)[:count]

    def f(flat):
        z, ldj = flat.view(1, 1, 28, 28), torch.zeros(1)
        for layer in layers:
            z, ldj = layer(z, ldj)
        return z.flatten(), ldj

    return f


@pytest.mark.parametrize("accelerated", [False, True], ids=["plain", "accelerated"])
def test_vectorized_jacobians_and_torch_func_see_the_log_determinant_the_layers_report(accelerated):
    model = randomized(create_model("simple"), scale=0.05)
    if accelerated:
        accelerate(model, compiled=False)
    f = coupling_stack(model)
    z = torch.randn(784)
    _, ldj = f(z)
    by_vmap = torch.autograd.functional.jacobian(lambda v: f(v)[0], z, vectorize=True)
    by_jacrev = torch.func.jacrev(lambda v: f(v)[0])(z)
    torch.testing.assert_close(by_jacrev, by_vmap, rtol=1e-4, atol=1e-5)
    assert torch.linalg.slogdet(by_vmap.double()).logabsdet.item() == pytest.approx(ldj.item(), abs=1e-3)
    batched = torch.func.vmap(lambda v: f(v)[0])(torch.stack([z, -z]))
    torch.testing.assert_close(batched[0], f(z)[0].detach(), rtol=1e-5, atol=1e-5)


# Failures and side effects ---------------------------------------------------------------------------------------
def test_a_failed_compilation_falls_back_to_eager_kernels(monkeypatch):
    def no_compiler(*args):
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(kernels, "_compilation_works", True)
    for kernel in (kernels._concat_elu, kernels._concat_elu_backward, kernels._gate_forward, kernels._gate_backward):
        monkeypatch.setattr(kernel, "compiled", no_compiler)
    model = randomized(create_model("simple"), scale=0.05)
    imgs = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.int32)
    plain = bpd_and_grads(model, imgs)
    with pytest.warns(RuntimeWarning, match="torch.compile is unavailable here .*no C\\+\\+ compiler"):
        compiled = bpd_and_grads(accelerate(model, compiled=True), imgs)
    assert not compilation_works()
    assert_same(plain, compiled)


def test_off_the_cpu_the_networks_keep_their_own_forward_and_layout(monkeypatch):
    """The kernels are CPU kernels; the meta device stands in for a GPU, where the plain path trains faster."""
    from nflows_tutorial.acceleration import switch

    def no_kernels(*args, **kwargs):
        raise AssertionError("the fused kernels ran off the CPU")

    monkeypatch.setattr(switch, "gated_conv_net", no_kernels)
    model = accelerate(create_model("simple").to("meta"), compiled=False)
    nets = modules_of(model, GatedConvNet)
    assert all(is_accelerated(net) for net in nets)  # the switch is on, and would act back on a CPU
    assert all(conv.weight.is_contiguous() for conv in modules_of(model, Conv2d))
    out = nets[0](torch.zeros(2, 1, 28, 28, device="meta"))
    assert out.device.type == "meta" and out.shape == (2, 2, 28, 28)


def test_mixed_precision_trains_through_autograd():
    # Under autocast the convolutions return bfloat16; the hand-written backward passes are float32/64 only.
    model = accelerate(randomized(create_model("simple"), scale=0.05), compiled=False)
    imgs = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.int32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model.bits_per_dim(imgs).mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


SIDE_EFFECT_PROBE = (
    "import logging, torch; import nflows_tutorial as nt; from nflows_tutorial.acceleration import malloc; "
    "m = nt.create_model('simple'); {accelerate}"
    "m.bits_per_dim(torch.zeros(1, 1, 28, 28, dtype=torch.int32)); "
    "print(bool(malloc._state), bool(logging.getLogger('torch.utils.cpp_extension').filters))"
)


@pytest.mark.subprocess
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the malloc settings are glibc's")
@pytest.mark.parametrize(
    ("accelerate_call", "env", "expected"),
    [
        ("", {}, "False False"),
        ("nt.accelerate(m); ", {}, "True True"),
        ("nt.accelerate(m, compiled=False); ", {}, "True False"),
        ("nt.accelerate(m); ", {"MALLOC_TRIM_THRESHOLD_": "131072"}, "False True"),
    ],
    ids=[
        "import-and-plain-forward-change-nothing",
        "accelerate-tunes",
        "no-compile-no-log-filter",
        "user-setting-wins",
    ],
)
def test_process_wide_settings_change_only_when_accelerate_is_called(accelerate_call, env, expected):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}, **env}
    done = subprocess.run(
        [sys.executable, "-c", SIDE_EFFECT_PROBE.format(accelerate=accelerate_call)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == expected


TEACHING_FILES = sorted((Path(nflows_tutorial.__file__).parent / "flows").glob("*.py"))


@pytest.mark.parametrize("file", TEACHING_FILES, ids=lambda f: f.stem)
def test_the_teaching_modules_import_nothing_of_the_accelerated_path(file):
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.ImportFrom):
            assert "acceleration" not in (node.module or ""), f"{file.name} imports {node.module}"
            assert all(alias.name != "acceleration" for alias in node.names), file.name
