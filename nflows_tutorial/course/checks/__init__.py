"""Checks that teach: the course's maths checked against autograd, and a student's answer against the right one.

:func:`check_values` prints a value next to the expected one; :func:`check_layer` runs a layer through the
course's layer contract; the ``check_...`` functions of :mod:`.notebook1`, :mod:`.notebook2` and
:mod:`.notebook3` check the answer to each exercise. Each failure's first line says what is wrong in the
student's code, with the numbers that show it.
"""

from .calls import CheckTimeout, time_limit
from .exercise import ExerciseFailure
from .layer import PROPERTIES, LayerCheckError, LayerReport, Verdict, check_layer, inspect_layer
from .model import check_model
from .notebook1 import check_bits_per_dim, check_log_mean_exp, check_logit_layer, check_quantize
from .notebook2 import check_additive_coupling, check_channel_mask, check_early_split_flow, check_unsqueeze
from .notebook3 import check_householder, check_importance_bpd, check_interpolate, check_invertible_conv
from .values import autograd_log_det, check_values, randomized

__all__ = [
    "CheckTimeout",
    "time_limit",
    "PROPERTIES",
    "LayerCheckError",
    "LayerReport",
    "Verdict",
    "check_layer",
    "inspect_layer",
    "check_model",
    "autograd_log_det",
    "check_values",
    "randomized",
    "ExerciseFailure",
    "check_bits_per_dim",
    "check_logit_layer",
    "check_quantize",
    "check_log_mean_exp",
    "check_additive_coupling",
    "check_channel_mask",
    "check_unsqueeze",
    "check_early_split_flow",
    "check_importance_bpd",
    "check_interpolate",
    "check_invertible_conv",
    "check_householder",
]
