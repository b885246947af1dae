"""The switch that puts a model's conditioners on the fused kernels, and the check that keeps them honest.

An accelerated :class:`~nflows_tutorial.networks.GatedConvNet` runs through
:mod:`nflows_tutorial.acceleration.kernels` only where those kernels compute what the network's own
modules compute. The first call for each combination of module code (the ``forward`` of every
module inside the network), feature-map shape, dtype, device and route (with or without gradients)
runs both, the network's own ``forward`` and the kernels, on the same input and compares each gated
block's output and the final concat-ELU map. Where they disagree, for instance because
``ConcatELU.forward`` or ``GatedBlock.forward`` was edited, that combination stays on the network's
own ``forward`` and one warning says so.

The network's own ``forward`` also runs, without a check, where the kernels do not apply: off the
CPU (they are CPU kernels; on a GPU the network's own forward trains faster, as measured in the
README), under ``torch.func`` transforms (``vmap``, ``jacrev``, vectorized Jacobians) and forward-mode AD, under
autocast, inside ``torch.compile``, for dtypes other than float32/float64, and where a module of the
network carries hooks.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable
from typing import TypeGuard, TypeVar

import torch
from torch import nn
from torch.autograd import forward_ad

from ..flows.conditioner import ChannelLayerNorm, ConcatELU, GatedBlock, GatedConvNet
from .kernels import GatedLayout, gated_conv_net
from .malloc import tune_for_tensors
from .notices import quiet_compiler_notices

__all__ = ["accelerate", "is_accelerated"]

M = TypeVar("M", bound=nn.Module)

# Verdicts of the comparison, by module code, shape, dtype, device and route; and the module code already
# warned about, so that a disagreement is reported once, not once per shape.
_agrees: dict[Hashable, bool] = {}
_warned: set[Hashable] = set()


def _same_padding_conv(module: nn.Module) -> TypeGuard[nn.Conv2d]:
    return (
        isinstance(module, nn.Conv2d)
        and module.bias is not None
        and module.stride == (1, 1)
        and module.dilation == (1, 1)
        and module.groups == 1
        and module.padding_mode == "zeros"
        and module.kernel_size[0] == module.kernel_size[1]
        and module.kernel_size[0] % 2 == 1
        and module.padding == (module.kernel_size[0] // 2,) * 2
    )


def _layout(net: GatedConvNet) -> GatedLayout | None:
    """The roles of ``net``'s layers, or ``None`` where its layers are not the ones the kernels stand for."""
    layers = list(net.nn)
    if len(layers) < 3 or len(layers) % 2 == 0 or not isinstance(layers[-2], ConcatELU):
        return None
    first, last = layers[0], layers[-1]
    if not (_same_padding_conv(first) and _same_padding_conv(last)):
        return None
    blocks: list[tuple[nn.Conv2d, nn.Conv2d, nn.Module]] = []
    for block, norm in zip(layers[1:-2:2], layers[2:-2:2]):
        if not isinstance(block, GatedBlock) or not isinstance(norm, ChannelLayerNorm) or len(block.net) != 4:
            return None
        elu1, conv1, elu2, conv2 = block.net
        if not (isinstance(elu1, ConcatELU) and isinstance(elu2, ConcatELU)):
            return None
        if not (_same_padding_conv(conv1) and _same_padding_conv(conv2)):
            return None
        blocks.append((conv1, conv2, norm))
    return GatedLayout(first=first, blocks=tuple(blocks), last=last)


def _module_code(net: nn.Module) -> tuple[Hashable, ...]:
    # The function each module's forward runs: a class-level edit or an instance-level override shows here.
    # The network's own entry is its class's forward (its instance attribute is the accelerated one).
    inner = tuple((type(m), getattr(m.forward, "__func__", m.forward)) for m in net.modules() if m is not net)
    return ((type(net), type(net).forward), *inner)


def _kernels_apply(net: nn.Module, x: torch.Tensor) -> bool:
    return not (
        x.device.type != "cpu"
        or torch._C._are_functorch_transforms_active()
        or forward_ad._current_level >= 0
        or torch.compiler.is_compiling()
        or torch.is_autocast_enabled(x.device.type)
        or x.dtype not in (torch.float32, torch.float64)
        or x.dim() != 4
        or any(m._forward_hooks or m._forward_pre_hooks for m in net.modules())
        or nn.modules.module._global_forward_hooks
        or nn.modules.module._global_forward_pre_hooks
    )


def _disagreement(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest difference of ``a`` from ``b``, relative to the size of ``b`` (at least 1)."""
    if a.shape != b.shape:
        return float("inf")
    return float((a - b).abs().max()) / max(1.0, float(b.abs().max())) if b.numel() else 0.0


class _FusedForward:
    """The ``forward`` of an accelerated network: the fused kernels where they were checked to agree."""

    def __init__(self, net: GatedConvNet, compiled: bool) -> None:
        self.net = net
        self.compiled = compiled

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        own_forward = type(net).forward
        # Read the layers afresh on every call: a layer replaced after accelerate() is the one that counts.
        layout = _layout(net)
        if layout is None or not _kernels_apply(net, x):
            return own_forward(net, x)
        code = _module_code(net)
        with_grad = torch.is_grad_enabled()
        key = (code, tuple(x.shape[1:]), x.dtype, x.device, with_grad, self.compiled)
        x = x.contiguous(memory_format=torch.channels_last)
        if key not in _agrees:
            _agrees[key] = self._check(layout, x, with_grad, code)
        if not _agrees[key]:
            return own_forward(net, x)
        return gated_conv_net(layout, x, self.compiled, with_grad)

    def _check(self, layout: GatedLayout, x: torch.Tensor, with_grad: bool, code: Hashable) -> bool:
        """Run the network's own forward and the kernels on ``x``; whether they agree (one warning if not)."""
        net = self.net
        watched = [norm for _, _, norm in layout.blocks] + [net.nn[-2]]
        recorded: list[torch.Tensor] = []
        handles = [m.register_forward_hook(lambda _m, _i, out: recorded.append(out)) for m in watched]
        try:
            with torch.no_grad():
                expected = type(net).forward(net, x)
        finally:
            for handle in handles:
                handle.remove()
        traced: list[torch.Tensor] = []
        with torch.no_grad():
            got = gated_conv_net(layout, x, self.compiled, with_grad, traced)
        tolerance = 1e3 * torch.finfo(x.dtype).eps
        pairs = [*zip(traced, recorded), (got, expected)]
        worst = max(_disagreement(a, b) for a, b in pairs) if len(traced) == len(recorded) else float("inf")
        if worst <= tolerance:
            return True
        if code not in _warned:
            _warned.add(code)
            warnings.warn(
                f"the fused kernels of {type(net).__name__} disagree with its modules' own forward "
                f"(relative difference {worst:.3g}, tolerance {tolerance:.1g}), for instance because "
                f"ConcatELU.forward or GatedBlock.forward was edited; {type(net).__name__} runs its own forward instead",
                RuntimeWarning,
                stacklevel=5,
            )
        return False


def is_accelerated(net: nn.Module) -> bool:
    """Whether ``net`` (a conditioner) was put on the fused kernels by :func:`accelerate`."""
    return isinstance(net.__dict__.get("forward"), _FusedForward)


def accelerate(model: M, enabled: bool = True, compiled: bool = True) -> M:
    """Run the conditioners of ``model`` through the fused kernels, in place; return ``model``.

    Every :class:`~nflows_tutorial.networks.GatedConvNet` inside ``model`` keeps its modules and
    parameters (the ``state_dict`` does not change) but computes with fused pointwise kernels and
    hand-written backward passes that recompute activations instead of storing them: the same numbers,
    less time, and about a third of the memory in training. The kernels are used only where they agree
    with the modules' own ``forward`` (see :mod:`nflows_tutorial.acceleration.switch`), so an edited
    ``ConcatELU`` or ``GatedBlock`` takes effect on an accelerated model too.

    ``compiled`` runs the pointwise kernels through ``torch.compile`` (the first batch of each
    feature-map shape waits a few seconds for the compiler; where compiling fails they run eagerly,
    with one warning). ``enabled=False`` puts the networks back on their own ``forward``.

    The kernels are CPU kernels: off the CPU the networks keep computing with their own ``forward``,
    which on a GPU trains faster (see the README), so accelerate a model on the device it will run on.
    On a model on the CPU the call also stores the networks' parameters channels-last (the
    convolutions' native layout), changes two glibc malloc settings for the whole process (see
    :mod:`nflows_tutorial.acceleration.malloc`) and, with ``compiled``, silences the compiler's
    "No CUDA runtime is found" log notice.

    Example:
        >>> from nflows_tutorial import create_simple_flow
        >>> model = accelerate(create_simple_flow(use_vardeq=False), compiled=False)
        >>> is_accelerated(model.flows[1].network)
        True
        >>> is_accelerated(accelerate(model, enabled=False).flows[1].network)
        False
    """
    nets = [m for m in model.modules() if isinstance(m, GatedConvNet)]
    on_cpu = any(p.device.type == "cpu" for p in model.parameters())
    for net in nets:
        if is_accelerated(net):
            del net.__dict__["forward"]
        elif "forward" in net.__dict__:
            continue  # a forward set on this very instance is the user's, and wins
        if not enabled or _layout(net) is None:
            net.to(memory_format=torch.contiguous_format)
            continue
        if on_cpu:
            net.to(memory_format=torch.channels_last)
        net.__dict__["forward"] = _FusedForward(net, compiled)
    if enabled and nets and on_cpu:
        tune_for_tensors()
        if compiled:
            quiet_compiler_notices()
    return model
