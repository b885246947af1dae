"""The layer checker: correct layers pass in one line, and each typical mistake is named in the first line."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nflows_tutorial import (
    CouplingLayer,
    Dequantization,
    GatedConvNet,
    ImageFlow,
    SplitFlow,
    SqueezeFlow,
    create_channel_mask,
    create_checkerboard_mask,
)
from nflows_tutorial.course.checks import PROPERTIES, LayerCheckError, check_layer, inspect_layer, randomized
from nflows_tutorial.course.checks.model import check_model


class Affine(nn.Module):
    """An elementwise affine layer ``z' = (z + t) e^s`` with fixed random ``s, t``; ``mistake`` breaks it."""

    def __init__(self, shape: tuple[int, ...], mistake: str | None = None) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(3)
        self.s = nn.Parameter(torch.randn(1, *shape, generator=gen) * 0.5)
        self.t = nn.Parameter(torch.randn(1, *shape, generator=gen))
        self.mistake = mistake

    def forward(self, z, ldj, reverse=False):
        s, t = self.s, self.t
        term = s.flatten(1).sum(dim=1)
        if self.mistake == "ldj not updated":
            term = torch.zeros(1)
        elif self.mistake == "forgotten sum":
            term = s
        elif self.mistake == "summed over the batch":
            term = (s * torch.ones_like(z)).sum()
        if not reverse:
            out = (z + t) * torch.exp(s)
            if self.mistake == "wrong sign":
                return out, ldj - term
            if self.mistake == "ldj overwritten":
                return out, term + torch.zeros_like(ldj)
            return out, ldj + term
        if self.mistake == "non-inverse reverse":
            return z * torch.exp(-s) + t, ldj - term
        if self.mistake == "wrong sign":
            return z * torch.exp(-s) - t, ldj + term
        if self.mistake == "reverse adds the ldj":
            return z * torch.exp(-s) - t, ldj + term
        return z * torch.exp(-s) - t, ldj - term


def coupling(mask: torch.Tensor, c_in: int) -> CouplingLayer:
    return randomized(CouplingLayer(GatedConvNet(c_in=c_in, hidden=8), mask, c_in=c_in), scale=0.3)


SHAPE = (2, 3, 4)  # the last dimension equals the batch of 4, so an unsummed term broadcasts silently

CORRECT = {
    "elementwise affine": (lambda: Affine(SHAPE), torch.randn(4, *SHAPE)),
    "checkerboard coupling": (lambda: coupling(create_checkerboard_mask(4, 4), 1), torch.randn(3, 1, 4, 4)),
    "channel coupling": (lambda: coupling(create_channel_mask(4), 4), torch.randn(3, 4, 2, 2)),
    "squeeze": (SqueezeFlow, torch.randn(3, 2, 4, 4)),
    "split": (SplitFlow, torch.randn(3, 4, 2, 2)),
    "dequantization": (Dequantization, torch.randint(0, 256, (3, 1, 3, 3))),
}


@pytest.mark.parametrize("name", CORRECT)
def test_correct_layers_pass_in_one_printed_line(name, capsys):
    make, example = CORRECT[name]
    report = inspect_layer(make(), example)
    assert report.passed and report.failed is None and report.fault == ""
    assert [v.name for v in report.verdicts] == [p for p in PROPERTIES if p in {v.name for v in report.verdicts}]
    assert check_layer(make(), example) is None  # nothing for a notebook to echo below the printed line
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 1 and printed[0].startswith("[ok  ] your layer honours the contract: call; shape")


# mistake -> (the property that must fail first, words the first line must contain)
MISTAKES = {
    "wrong sign": ("values", "sign"),
    "forgotten sum": ("shape", "forgotten sum"),
    "summed over the batch": ("batch", "batch dimension"),
    "non-inverse reverse": ("inverse", "reverse"),
    "reverse adds the ldj": ("inverse", "adds the log-det instead of subtracting"),
    "ldj overwritten": ("accumulates", "overwritten"),
    "ldj not updated": ("values", "unchanged"),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_each_typical_mistake_is_named_in_the_first_line(mistake):
    expected, words = MISTAKES[mistake]
    with pytest.raises(LayerCheckError) as info:
        check_layer(Affine(SHAPE, mistake), torch.randn(4, *SHAPE), reference=Affine(SHAPE))
    report = info.value.report
    assert report.failed == expected
    assert words in str(info.value).splitlines()[0]
    assert all(v.passed for v in report.verdicts[:-1]), "properties before the failing one must hold"


def test_without_a_reference_the_log_det_is_judged_by_autograd():
    report = inspect_layer(Affine(SHAPE, "wrong sign"), torch.randn(4, *SHAPE))
    assert report.failed == "log-det" and "sign" in report.fault
    layer_part, autograd_part = report.verdicts[-1].detail.split(" | ")
    ours = [float(v) for v in layer_part.removeprefix("layer ").split(", ")]
    theirs = [float(v) for v in autograd_part.removeprefix("autograd ").split(", ")]
    expected = Affine(SHAPE).s.sum().item()
    assert theirs == pytest.approx([expected] * 2, abs=1e-6) and ours == pytest.approx([-expected] * 2, abs=1e-6)


def test_unsummed_term_that_cannot_broadcast_is_a_call_failure():
    report = inspect_layer(Affine((2, 3, 5), "forgotten sum"), torch.randn(4, 2, 3, 5))
    assert report.failed == "call" and "forward raised RuntimeError" in report.verdicts[0].detail
    assert "unsummed" in report.verdicts[0].cause


def test_a_layer_returning_one_tensor_fails_the_call_property():
    report = inspect_layer(lambda z, ldj, reverse=False: z, torch.randn(2, 3))
    assert report.failed == "call" and "not a pair of tensors" in report.verdicts[0].detail


def test_an_unfinished_exercise_raises_not_implemented():
    def stub(z, ldj, reverse=False):
        raise NotImplementedError("Exercise 1: a stub")

    with pytest.raises(NotImplementedError, match="Exercise 1"):
        check_layer(stub, torch.randn(2, 3))


def test_caller_layer_keeps_its_dtype():
    layer = Affine(SHAPE)
    inspect_layer(layer, torch.randn(4, *SHAPE))
    assert layer.s.dtype == torch.float32


def test_a_layer_that_never_returns_is_stopped():
    def forever(z, ldj, reverse=False):
        while True:
            pass

    report = inspect_layer(forever, torch.randn(2, 3), time_limit_s=0.5)
    assert report.failed == "call" and "did not return within 0.5 s" in report.verdicts[0].detail


def test_integer_input_needs_a_noise_argument_to_be_checked():
    report = inspect_layer(lambda z, ldj, reverse=False: (z.double(), ldj), torch.randint(0, 256, (2, 3)))
    assert report.failed == "call" and "noise=" in report.fault


def test_a_model_is_checked_layer_by_layer_and_the_failing_layer_named(capsys):
    flows = [
        Dequantization(),
        coupling(create_checkerboard_mask(4, 4), 1),
        SqueezeFlow(),
        SplitFlow(),
        Affine((2, 2, 2), "wrong sign"),
    ]
    model = ImageFlow(flows, image_shape=(1, 4, 4), latent_shape=(2, 2, 2))
    with pytest.raises(LayerCheckError, match=r"layer 4 \(Affine\) log-det: the sign of your log-det is flipped"):
        check_model(model, torch.randint(0, 256, (2, 1, 4, 4)))
    assert capsys.readouterr().out.count("[ok  ] your layer honours the contract") == 4
    model.flows[4] = Affine((2, 2, 2))
    check_model(model, torch.randint(0, 256, (2, 1, 4, 4)))
    assert "ends in the latent shape [2, 2, 2]" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("example", "error", "words"),
    [
        (torch.zeros(2, 3, dtype=torch.bool), TypeError, "float tensor"),
        (torch.randn(1, 3), ValueError, "at least 2 samples"),
        (torch.randn(2, 1, 40, 40), ValueError, "1600 x 1600"),
    ],
)
def test_bad_example_input_is_refused_with_a_fix(example, error, words):
    with pytest.raises(error, match=words):
        check_layer(SqueezeFlow(), example)


def test_check_values_prints_both_and_refuses_a_wrong_value(capsys):
    from nflows_tutorial.course.checks import check_values

    check_values("sum", torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0 + 1e-9], dtype=torch.float64))
    assert capsys.readouterr().out == (
        "[ok  ] sum: yours [1.000000, 2.000000] | expected [1.000000, 2.000000] | max difference 1.00e-09\n"
    )
    with pytest.raises(AssertionError, match="differs from the expected value by up to 0.5"):
        check_values("half off", torch.tensor([1.5]), torch.tensor([1.0]))
    with pytest.raises(AssertionError, match=r"shape \[2\], expected \[1, 2\]"):
        check_values("shape", torch.zeros(2), torch.zeros(1, 2))
    assert "[FAIL] shape: yours has shape [2], expected [1, 2]" in capsys.readouterr().out


def test_check_values_reads_the_same_on_every_machine(capsys):
    from nflows_tutorial.course.checks import check_values

    check_values(
        "ldj", torch.tensor([1.5], dtype=torch.float64), torch.tensor(1.5 + 1e-12, dtype=torch.float64), tol=1e-10
    )
    check_values("zero", torch.tensor([-1e-17, 2.0], dtype=torch.float64), torch.tensor([0.0, 2.0]), tol=1e-12)
    check_values("counts", torch.tensor(3), 3, tol=0)
    assert capsys.readouterr().out.splitlines() == [
        "[ok  ] ldj: yours 1.500000 | expected 1.500000 | max difference below 1e-10",
        "[ok  ] zero: yours [0.000000, 2.000000] | expected [0.000000, 2.000000] | max difference below 1e-10",
        "[ok  ] counts: yours 3 | expected 3 | max difference 0",
    ]
    with pytest.raises(AssertionError, match="far: yours differs from the expected value by up to 0.1"):
        check_values("far", 1.0, 1.1, tol=1e-8)


def test_check_values_prints_a_small_matrix_value_by_value(capsys):
    from nflows_tutorial.course.checks import check_values

    check_values("eye", torch.eye(2), torch.eye(2), digits=1)
    assert capsys.readouterr().out.startswith(
        "[ok  ] eye: yours [[1.0, 0.0], [0.0, 1.0]] | expected [[1.0, 0.0], [0.0, 1.0]]"
    )
