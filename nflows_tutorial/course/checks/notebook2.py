"""The checks of notebook 2's exercises: the additive coupling, the channel mask, the unsqueeze, an early split."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
from torch import nn

from ...flows.conditioner import GatedConvNet
from ...flows.coupling import CouplingLayer
from ...flows.masks import create_channel_mask, create_checkerboard_mask
from ...flows.model import ImageFlow
from ...flows.multiscale import SqueezeFlow
from .exercise import Steps
from .values import randomized

__all__ = ["check_additive_coupling", "check_channel_mask", "check_unsqueeze", "check_early_split_flow"]


class _Additive(nn.Module):
    """The additive coupling as the statement defines it; ``sign=-1`` makes the mistake of subtracting in forward."""

    mask: torch.Tensor

    def __init__(self, network: nn.Module, mask: torch.Tensor, sign: float = 1.0) -> None:
        super().__init__()
        self.network, self.sign = network, sign
        self.register_buffer("mask", mask)

    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.sign * self.network(z * self.mask) * (1 - self.mask)
        return (z - t, ldj) if reverse else (z + t, ldj)


def check_additive_coupling(my_additive_coupling: type[nn.Module], seed: int = 0) -> None:
    """Exercise 5: ``MyAdditiveCoupling(network, mask)`` with a checkerboard and a channel mask, against the formula."""
    steps = Steps(5)
    gen = torch.Generator().manual_seed(seed)
    configs = [
        ("checkerboard mask, 1 channel", create_checkerboard_mask(4, 4), torch.randn(4, 1, 4, 4, generator=gen)),
        (
            "channel mask, 4 channels, inverted",
            create_channel_mask(4, invert=True),
            torch.randn(4, 4, 2, 3, generator=gen),
        ),
    ]
    for label, mask, example in configs:
        channels = example.shape[1]
        network = randomized(GatedConvNet(c_in=channels, hidden=8, c_out=channels), scale=0.3, seed=seed + 1)
        layer = steps.guarded("MyAdditiveCoupling(network, mask)", my_additive_coupling, network, mask)
        mistakes = {
            "forward subtracts the shift: z' = z + (1 - m) * t in forward, z - (1 - m) * t in reverse": (
                _Additive(network, mask, sign=-1.0)
            ),
        }
        steps.layer(
            f"{label}: the layer contract", layer, example, reference=_Additive(network, mask), mistakes=mistakes
        )
    steps.done()


def check_channel_mask(my_channel_mask: Callable[..., torch.Tensor], seed: int = 0) -> None:
    """Exercise 6: ``my_channel_mask(c_in, invert)`` against ``create_channel_mask`` for even and odd ``c_in``."""
    steps = Steps(6)
    # An odd count first: for two channels, keeping the last channel and inverting the mask look the same.
    for c_in in (3, 2, 8) if seed == 0 else (5 + 2 * (seed % 5), 4, 6 + 2 * (seed % 3)):
        for invert in (False, True):
            label = f"c_in={c_in}, invert={invert}"
            yours = steps.guarded(f"my_channel_mask({c_in}, {invert})", my_channel_mask, c_in, invert)
            if not isinstance(yours, torch.Tensor):
                steps.fail(label, f"my_channel_mask returns {type(yours).__name__}, not a tensor")
            if not yours.is_floating_point():
                steps.fail(
                    label,
                    f"your mask is {yours.dtype}; the coupling computes z * mask and 1 - mask, which a {yours.dtype} "
                    f"mask breaks: return a float mask (torch.zeros(...) and set ones, or .float())",
                )
            right = create_channel_mask(c_in, invert)
            half = torch.zeros(1, c_in, 1, 1)
            half[:, : (c_in + 1) // 2] = 1
            flipped = create_channel_mask(c_in, False).flip(1) if invert else torch.full_like(right, math.nan)
            mistakes = {
                f"invert=True must give 1 - the plain mask; your inverted mask is the plain one in reverse order, "
                f"which for an odd c_in={c_in} keeps {c_in // 2} channels instead of {c_in - c_in // 2}": flipped,
                "invert is the wrong way round: invert=False keeps (1) the first c_in // 2 channels": 1 - right,
                f"for c_in={c_in} your mask keeps {(c_in + 1) // 2} channels: keep the first c_in // 2, rounded down": (
                    (1 - half) if invert else half
                ),
                "your mask keeps the last channels: the first c_in // 2 channels are 1 (kept)": right.flip(1),
                f"your mask has shape [{c_in}]; it must broadcast over batch and pixels: shape [1, c_in, 1, 1]": right.flatten(),
            }
            steps.expect(label, yours, right, 0, mistakes)
            steps.held.pop()
        steps.ok(f"c_in={c_in}, plain and inverted")
    mask = steps.guarded("my_channel_mask(4, False)", my_channel_mask, 4, False)
    layer = CouplingLayer(GatedConvNet(c_in=4, hidden=4), mask, c_in=4)
    steps.guarded("a CouplingLayer with your mask", layer, torch.randn(2, 4, 2, 2), torch.zeros(2))
    steps.ok("a CouplingLayer runs with your mask")
    steps.done()


def _unsqueeze_channel_last(z: torch.Tensor) -> torch.Tensor:
    b, c, h, w = z.shape
    return z.reshape(b, 2, 2, c // 4, h, w).permute(0, 3, 4, 1, 5, 2).reshape(b, c // 4, 2 * h, 2 * w)


def _unsqueeze_transposed_block(z: torch.Tensor) -> torch.Tensor:
    b, c, h, w = z.shape
    return z.reshape(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 3, 5, 2).reshape(b, c // 4, 2 * h, 2 * w)


def check_unsqueeze(my_unsqueeze: Callable[[torch.Tensor], torch.Tensor], seed: int = 0) -> None:
    """Exercise 7: ``my_unsqueeze`` undoes the package's squeeze for one and for several channels."""
    steps = Steps(7)
    squeeze = SqueezeFlow()
    shapes = [(1, 1, 4, 4), (2, 2, 4, 6), (1, 3, 2, 2)] if seed == 0 else [(2, 1, 6, 2), (1, 4, 2, 4), (3, 3, 4, 2)]
    for shape in shapes:
        x = torch.arange(1, 1 + torch.Size(shape).numel(), dtype=torch.float64).view(shape)
        if seed:
            x = x[..., torch.randperm(shape[-1], generator=torch.Generator().manual_seed(seed))]
        squeezed = squeeze(x, None)[0]
        yours = steps.guarded("my_unsqueeze", my_unsqueeze, squeezed.clone())
        mistakes = {
            "your unsqueeze takes the block's channels from the wrong places: the squeeze puts channel c's 2x2 block "
            "at channels 4c..4c+3, so reshape the channels as (C, 2, 2), channel first": _unsqueeze_channel_last(
                squeezed
            ),
            "the rows and columns of each 2x2 block are swapped: a block's four channels are top-left, top-right, "
            "bottom-left, bottom-right (row first)": _unsqueeze_transposed_block(squeezed),
            "a reshape alone keeps the values in memory order, so a block's four channels do not go back to its 2x2 "
            "pixels: reshape to (B, C, 2, 2, H, W), permute to (B, C, H, 2, W, 2), then reshape": squeezed.reshape(
                x.shape
            ),
        }
        steps.expect(
            f"{shape[1]} channel{'s' if shape[1] > 1 else ''} of {shape[2]}x{shape[3]} back", yours, x, 0, mistakes
        )

    def squeeze_with_your_inverse(
        z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return (my_unsqueeze(z), ldj) if reverse else squeeze(z, ldj)

    example = torch.randn(3, 2, 4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    steps.layer("the layer contract", squeeze_with_your_inverse, example)
    steps.done()


#: The layers exercise 8 asks for, in order.
EARLY_SPLIT = [
    "Dequantization",
    "CouplingLayer",
    "CouplingLayer",
    "SqueezeFlow",
    "SplitFlow",
    "CouplingLayer",
    "CouplingLayer",
    "SqueezeFlow",
    "CouplingLayer",
    "CouplingLayer",
]


def _hidden(layer: CouplingLayer) -> int | None:
    first = next((m for m in layer.modules() if isinstance(m, nn.Conv2d)), None)
    return None if first is None else first.out_channels


def _output_channels(layer: nn.Module) -> int | None:
    convs = [m for m in layer.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels if convs else None


def _check_couplings(steps: Steps, flows: list[nn.Module]) -> None:
    couplings = [(i, f) for i, f in enumerate(flows) if isinstance(f, CouplingLayer)]
    for i, layer in couplings:
        if _hidden(layer) != 16:
            steps.fail(
                "conditioners",
                f"coupling {i}'s network has {_hidden(layer)} hidden channels; the statement asks for 16 "
                f"(GatedConvNet(..., hidden=16))",
            )
    steps.ok("16 hidden channels in every conditioner")
    squeezed = False
    for i, flow in enumerate(flows):
        squeezed = squeezed or isinstance(flow, SqueezeFlow)
        if isinstance(flow, CouplingLayer):
            kind = "channel" if flow.mask.shape[-2:] == (1, 1) else "checkerboard"
            if kind != ("channel" if squeezed else "checkerboard"):
                steps.fail(
                    "mask kinds",
                    f"layer {i} uses a {kind} mask; the statement asks for checkerboard masks at 1x28x28 and channel "
                    f"masks after each squeeze (create_channel_mask(c))",
                )
    steps.ok("checkerboard masks before the first squeeze, channel masks after")
    for (i, a), (j, b) in itertools.pairwise(couplings):
        if j == i + 1 and a.mask.shape == b.mask.shape and torch.equal(a.mask, b.mask):
            steps.fail(
                "masks alternate",
                f"layers {i} and {j} use the same mask, so the second transforms the same values again and the others "
                f"never change: invert every second mask (invert=i % 2 == 1)",
            )
    steps.ok("the masks alternate")


def check_early_split_flow(my_early_split_flow: Callable[[], ImageFlow]) -> None:
    """Exercise 8: the layers, conditioners, masks and latent shape of the statement's early-split flow."""
    steps = Steps(8)
    model = steps.guarded("my_early_split_flow()", my_early_split_flow)
    names = [type(f).__name__ for f in model.flows]
    if names != EARLY_SPLIT:
        first = next(
            (i for i, (a, b) in enumerate(zip(names, EARLY_SPLIT, strict=False)) if a != b),
            min(len(names), len(EARLY_SPLIT)),
        )
        steps.fail(
            "the layers",
            f"layer {first} is {names[first] if first < len(names) else 'missing'}; the statement asks for "
            f"{EARLY_SPLIT[first] if first < len(EARLY_SPLIT) else 'no more layers'}",
            f"  yours {names}\n  asked {EARLY_SPLIT}",
        )
    steps.ok("the layers in the statement's order")
    if tuple(model.image_shape) != (1, 28, 28):
        steps.fail(
            "image shape",
            f"you declare image_shape={tuple(model.image_shape)}; images are [channels, height, width] = (1, 28, 28)",
        )
    _check_couplings(steps, list(model.flows))
    z, ldj = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.int32), torch.zeros(2)
    shapes = [list(z.shape[1:])]
    with torch.no_grad():
        for i, layer in enumerate(model.flows):
            out = _output_channels(layer)
            if isinstance(layer, CouplingLayer) and out != 2 * z.shape[1]:
                steps.fail(
                    "conditioners",
                    f"coupling {i}'s network outputs {out} channels, but it transforms {z.shape[1]}: it needs "
                    f"2 × {z.shape[1]} = {2 * z.shape[1]}, a scale and a shift per channel "
                    f"(GatedConvNet(c_in={z.shape[1]}, hidden=16, c_out={2 * z.shape[1]}))",
                )
            z, ldj = steps.guarded(f"{type(layer).__name__}", layer, z, ldj)
            shapes.append(list(z.shape[1:]))
    if tuple(model.latent_shape) != tuple(z.shape[1:]):
        steps.fail(
            "latent shape",
            f"you declare latent_shape={tuple(model.latent_shape)}, but your flow ends in "
            f"{tuple(z.shape[1:])}: sampling must start from the shape the last layer produces",
        )
    steps.ok("shapes " + " -> ".join(map(str, shapes)) + ", where sampling starts")
    images = steps.guarded("sampling", model.sample, 2)
    steps.expect("sampled images", torch.tensor(list(images.shape)), torch.tensor([2, 1, 28, 28]), 0, {})
    steps.done()
