"""Checking a whole model: every layer on what reaches it from real images, and the latent shape sampling uses."""

from __future__ import annotations

import copy

import torch

from ...flows.model import ImageFlow
from .layer import LayerCheckError, LayerReport, Verdict, inspect_layer

__all__ = ["check_model"]


def check_model(model: ImageFlow, images: torch.Tensor, tol: float = 1e-8) -> None:
    """Check each layer of ``model`` with :func:`inspect_layer` on the values the first two ``images`` reach it with.

    Prints one line per layer and raises :class:`LayerCheckError` at the first layer that fails, naming it;
    then checks that the flow ends in the model's ``latent_shape``, where sampling starts. The Jacobians are
    built for the full image, so this takes a few seconds per coupling on MNIST.
    """
    model64 = copy.deepcopy(model).double().eval()
    z: torch.Tensor = images[:2].to(torch.int32)
    for i, layer in enumerate(model64.flows):
        name = f"layer {i} ({type(layer).__name__})"
        report = inspect_layer(layer, z, tol=tol)
        print(f"{name}: {report.summary().splitlines()[0]}")
        if not report.passed:
            raise LayerCheckError(_named(report, name))
        with torch.no_grad():
            z, _ = layer(z, torch.zeros(z.shape[0], dtype=torch.float64))
    if tuple(z.shape[1:]) != tuple(model.latent_shape):
        cause = f"the flow ends in {list(z.shape[1:])}, but latent_shape is {list(model.latent_shape)}: sampling starts there"
        report = LayerReport(
            [Verdict("latent shape", False, f"{list(z.shape[1:])} vs {list(model.latent_shape)}", cause)]
        )
        raise LayerCheckError(report)
    print(f"[ok  ] the flow ends in the latent shape {list(z.shape[1:])}, where sampling starts")


def _named(report: LayerReport, name: str) -> LayerReport:
    """The report with the failing property prefixed by the layer it belongs to."""
    verdicts = [v if v.passed else Verdict(f"{name} {v.name}", False, v.detail, v.cause) for v in report.verdicts]
    return LayerReport(verdicts)
