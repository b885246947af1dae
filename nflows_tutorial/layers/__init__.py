"""Invertible layers. Each one maps ``(z, ldj)`` to ``(z', ldj + log|det dz'/dz|)``, or back with ``reverse=True``."""

from .coupling import CouplingLayer
from .dequantization import Dequantization, VariationalDequantization
from .flow_layer import FlowLayer
from .multiscale import SplitFlow, SqueezeFlow

__all__ = ["FlowLayer", "CouplingLayer", "Dequantization", "VariationalDequantization", "SplitFlow", "SqueezeFlow"]
