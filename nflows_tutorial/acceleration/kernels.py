"""Fused kernels for the conditioner network: gated blocks with a hand-written backward pass.

Autograd keeps every intermediate of a gated block alive until the backward pass: the doubled
concat-ELU maps, the gate's sigmoid, the layer norm's input, about twelve feature maps in all. The
functions here keep three (the block's input and its two convolution outputs) and recompute the
cheap activations when the gradient arrives, so a training step needs about a third of the memory.

The elementwise work runs in a few pointwise kernels. Concatenated ELU needs a single exponential
per input value, since for ``e = exp(-|x|) - 1``

.. math:: \\mathrm{elu}(x) = \\max(x, e), \\qquad \\mathrm{elu}(-x) = \\max(-x, e),

which is several times cheaper than two ``expm1`` calls on the doubled map. Where ``torch.compile``
works and is asked for, each kernel is compiled into one loop over memory; elsewhere the same
formulas run eagerly.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["concat_elu", "GatedLayout", "gated_conv_net", "compilation_works"]


def concat_elu(x: torch.Tensor) -> torch.Tensor:
    """``[elu(x), elu(-x)]`` along the channels, with one exponential per value of ``x``."""
    e = torch.exp(-x.abs()) - 1
    return torch.cat([torch.maximum(x, e), torch.maximum(-x, e)], dim=1)


def _concat_elu_grad(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    # d elu(y)/dy is 1 for y > 0 and exp(y) otherwise; for either sign of x, the exponent is -|x|.
    g1, g2 = grad.chunk(2, dim=1)
    p = torch.exp(-x.abs())
    return torch.where(x > 0, g1 - g2 * p, g1 * p - g2)


def _gate(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    a, b = y.chunk(2, dim=1)
    return x + a * torch.sigmoid(b)


def _gate_grad(grad: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    a, b = y.chunk(2, dim=1)
    s = torch.sigmoid(b)
    grad_s = grad * s
    return torch.cat([grad_s, grad_s * a * (1 - s)], dim=1)


def _gate_norm_elu(x: torch.Tensor, y: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float):
    # Without gradients, a block's gate and layer norm and the next block's concat-ELU are one pass.
    r = _gate(x, y)
    var, mean = torch.var_mean(r, dim=1, keepdim=True, correction=0)
    out = (r - mean) * torch.rsqrt(var + eps) * gamma + beta
    return out, concat_elu(out)


class _Kernel:
    """A pointwise function that runs compiled when asked and compilation works, else eagerly."""

    def __init__(self, fn: Callable[..., torch.Tensor]) -> None:
        self.eager = fn
        self.compiled = torch.compile(fn)

    def __call__(self, compiled: bool, *args):
        if compiled and _compilation_works:
            for arg in args:
                if isinstance(arg, torch.Tensor):
                    # One kernel per feature-map shape serves every batch size. Channels and image size
                    # stay fixed in it: symbolic ones cost the compiler its vectorized loops.
                    torch._dynamo.maybe_mark_dynamic(arg, 0)
            try:
                return self.compiled(*args)
            except Exception as err:  # no C++ compiler, unsupported platform, ...: carry on eagerly
                _give_up_compiling(err)
        return self.eager(*args)


_compilation_works = True
_concat_elu = _Kernel(concat_elu)
_concat_elu_backward = _Kernel(_concat_elu_grad)
_gate_forward = _Kernel(_gate)
_gate_backward = _Kernel(_gate_grad)
_gate_norm_concat_elu = _Kernel(_gate_norm_elu)


def compilation_works() -> bool:
    """``False`` once ``torch.compile`` has failed in this process (the kernels then run eagerly)."""
    return _compilation_works


def _give_up_compiling(err: Exception) -> None:
    global _compilation_works
    _compilation_works = False
    warnings.warn(
        f"torch.compile is unavailable here ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
        "the accelerated path's pointwise kernels run eagerly instead",
        RuntimeWarning,
        stacklevel=4,
    )


def _conv_grads(grad_out, inp, weight):
    # Gradients of a stride-1, same-padding convolution for its input, weight and bias.
    padding = weight.shape[-1] // 2
    return torch.ops.aten.convolution_backward(
        grad_out,
        inp,
        weight,
        [weight.shape[0]],
        [1, 1],
        [padding, padding],
        [1, 1],
        False,
        [0, 0],
        1,
        [True, True, True],
    )


def _layer_norm(r: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float):
    # r is channels-last, so its NHWC view is contiguous and the library's layer norm applies as is.
    out, mean, rstd = torch.native_layer_norm(r.permute(0, 2, 3, 1), (r.shape[1],), gamma.view(-1), beta.view(-1), eps)
    return out.permute(0, 3, 1, 2), mean, rstd


def _channels_last(grad: torch.Tensor) -> torch.Tensor:
    # Under vmap (a vectorized Jacobian batches the backward pass) a layout cannot be asked for; the
    # gradient keeps the one it has, which costs speed, not correctness.
    functorch = torch._C._functorch
    if (
        torch._C._are_functorch_transforms_active()
        or functorch.is_batchedtensor(grad)
        or functorch.is_legacy_batchedtensor(grad)
    ):
        return grad
    return grad.contiguous(memory_format=torch.channels_last)


class _GatedBlockNorm(torch.autograd.Function):
    """``LayerNorm(x + a * sigmoid(b))`` with ``[a, b] = conv1x1(celu(conv3x3(celu(x))))``."""

    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2, gamma, beta, eps: float, compiled: bool):
        ctx.compiled = compiled
        y1 = F.conv2d(_concat_elu(compiled, x), w1, b1, padding=w1.shape[-1] // 2)
        y2 = F.conv2d(_concat_elu(compiled, y1), w2, b2, padding=w2.shape[-1] // 2)
        out, mean, rstd = _layer_norm(_gate_forward(compiled, x, y2), gamma, beta, eps)
        ctx.save_for_backward(x, y1, y2, mean, rstd, w1, w2, gamma, beta)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, y1, y2, mean, rstd, w1, w2, gamma, beta = ctx.saved_tensors
        compiled = ctx.compiled
        grad = _channels_last(grad)
        r = _gate_forward(compiled, x, y2)
        grad_r, grad_gamma, grad_beta = torch.ops.aten.native_layer_norm_backward(
            grad.permute(0, 2, 3, 1),
            r.permute(0, 2, 3, 1),
            (r.shape[1],),
            mean,
            rstd,
            gamma.view(-1),
            beta.view(-1),
            [True, True, True],
        )
        del r
        grad_r = grad_r.permute(0, 3, 1, 2)
        grad_y2 = _gate_backward(compiled, grad_r, y2)
        grad_h2, grad_w2, grad_b2 = _conv_grads(grad_y2, _concat_elu(compiled, y1), w2)
        grad_y1 = _concat_elu_backward(compiled, grad_h2, y1)
        del grad_h2, grad_y2
        grad_h1, grad_w1, grad_b1 = _conv_grads(grad_y1, _concat_elu(compiled, x), w1)
        grad_x = grad_r + _concat_elu_backward(compiled, grad_h1, x)
        return (
            grad_x,
            grad_w1,
            grad_b1,
            grad_w2,
            grad_b2,
            grad_gamma.view_as(gamma),
            grad_beta.view_as(beta),
            None,
            None,
        )


class _EluConv(torch.autograd.Function):
    """``conv(celu(x))``, keeping ``x`` instead of the doubled activation for the backward pass."""

    @staticmethod
    def forward(ctx, x, weight, bias, compiled: bool):
        ctx.compiled = compiled
        ctx.save_for_backward(x, weight)
        return F.conv2d(_concat_elu(compiled, x), weight, bias, padding=weight.shape[-1] // 2)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad = _channels_last(grad)
        grad_h, grad_w, grad_b = _conv_grads(grad, _concat_elu(ctx.compiled, x), weight)
        return _concat_elu_backward(ctx.compiled, grad_h, x), grad_w, grad_b, None


@dataclass(frozen=True)
class GatedLayout:
    """The parameters of a gated conditioner, read off by role: the first convolution, each gated
    block's two convolutions with the layer norm that follows the block, and the last convolution."""

    first: nn.Conv2d
    blocks: tuple[tuple[nn.Conv2d, nn.Conv2d, nn.Module], ...]
    last: nn.Conv2d


def gated_conv_net(
    layout: GatedLayout, x: torch.Tensor, compiled: bool, with_grad: bool, trace: list[torch.Tensor] | None = None
) -> torch.Tensor:
    """The conditioner of ``layout`` applied to a channels-last ``x``.

    ``with_grad`` takes the route for training: each gated block and its layer norm is one autograd
    function with the lean backward pass. Otherwise each boundary between blocks is one pointwise
    kernel. ``compiled`` runs the pointwise kernels through ``torch.compile``. ``trace``, when given,
    receives each block's normalised output and then the concat-ELU map that enters the last
    convolution, for comparison with the modules these kernels stand for.
    """
    h = layout.first(x)
    if with_grad:
        for conv1, conv2, norm in layout.blocks:
            h = _GatedBlockNorm.apply(
                h, conv1.weight, conv1.bias, conv2.weight, conv2.bias, norm.gamma, norm.beta, norm.eps, compiled
            )
            if trace is not None:
                trace.append(h)
        if trace is not None:
            trace.append(_concat_elu(compiled, h))
        return _EluConv.apply(h, layout.last.weight, layout.last.bias, compiled)
    elu_h = _concat_elu(compiled, h)
    for conv1, conv2, norm in layout.blocks:
        y2 = conv2(_concat_elu(compiled, conv1(elu_h)))
        h, elu_h = _gate_norm_concat_elu(compiled, h, y2, norm.gamma, norm.beta, norm.eps)
        if trace is not None:
            trace.append(h)
    if trace is not None:
        trace.append(elu_h)
    return layout.last(elu_h)
