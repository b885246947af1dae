"""Keep torch's compiler from printing a notice that says nothing to a user of the accelerated path."""

from __future__ import annotations

import logging

__all__ = ["quiet_compiler_notices"]

_LOGGER = "torch.utils.cpp_extension"


def _not_the_missing_cuda_notice(record: logging.LogRecord) -> bool:
    # A CUDA build of torch says this on every CPU-only machine the first time it compiles: no news to
    # a user (the kernels are CPU kernels), and it would interleave with progress bars and CLI output.
    return not record.getMessage().startswith("No CUDA runtime is found")


def quiet_compiler_notices() -> None:
    """Drop the compiler's "No CUDA runtime is found" notice from the log (once per process)."""
    logger = logging.getLogger(_LOGGER)
    if _not_the_missing_cuda_notice not in logger.filters:
        logger.addFilter(_not_the_missing_cuda_notice)
