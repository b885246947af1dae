"""The accelerated path: fused kernels for the conditioners, attached to a model from outside by :func:`accelerate`.

The teaching modules (:mod:`nflows_tutorial.networks`, :mod:`nflows_tutorial.model`, ...) know
nothing of this package; ``accelerate(model)`` swaps in the kernels where they agree with them.
"""

from .kernels import compilation_works
from .switch import accelerate, is_accelerated

__all__ = ["accelerate", "is_accelerated", "compilation_works"]
