"""Reading the package from a notebook: the source viewer shows package code, autograd checks a log-determinant."""

from __future__ import annotations

import pytest
import torch

from nflows_tutorial import CouplingLayer, Dequantization, GatedConvNet, SqueezeFlow, create_model
from nflows_tutorial.course.checks import autograd_log_det
from nflows_tutorial.course.literate import SourceView, show_source


def test_show_source_returns_highlighted_package_code():
    view = show_source(Dequantization, "logit", "sigmoid")
    assert isinstance(view, SourceView)
    assert "def logit" in view.code and "def sigmoid" in view.code and "def dequantize" not in view.code
    assert view.code.startswith("def logit"), "methods are dedented to read as top-level code"
    assert "<span" in view._repr_html_() and view.title in view._repr_html_()
    whole = show_source(CouplingLayer)
    assert whole.code.startswith("class CouplingLayer") and repr(whole).startswith("# nflows_tutorial.")


def test_show_source_names_what_is_missing():
    with pytest.raises(AttributeError, match=r"defines no method 'backward'.*forward"):
        show_source(SqueezeFlow, "backward")
    with pytest.raises(TypeError, match="only be picked from a class"):
        show_source(create_model, "x")


def test_the_conditioner_a_student_reads_is_only_the_course_s_layers():
    code = show_source(GatedConvNet, "forward").code
    assert code.strip().splitlines()[-1].strip() == "return self.nn(x)"


def test_autograd_log_det_of_a_known_map():
    scale = torch.tensor([[0.5, 2.0], [3.0, 0.25]], dtype=torch.float64).view(1, 1, 2, 2)
    z = torch.randn(1, 1, 2, 2, dtype=torch.float64)
    assert autograd_log_det(lambda v: v * scale + 1, z).item() == pytest.approx(scale.log().sum().item())
    with pytest.raises(ValueError, match="batch size 1"):
        autograd_log_det(lambda v: v, torch.zeros(2, 1, 2, 2))
    with pytest.raises(ValueError, match="square"):
        autograd_log_det(lambda v: v[..., :1], z)
