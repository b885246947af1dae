"""glibc malloc settings for tensor work on a CPU: keep freed memory for the next tensor.

By default glibc maps every allocation above a few hundred kilobytes fresh from the kernel and
returns it on free, so each feature map of each layer pays for page faults (the README's speed
section says how much). Serving tensors of up to 32 MiB from malloc's own heap, and trimming that
heap only when more than 256 MiB of it lie free, removes most of those faults at the price of the
process keeping up to 256 MiB it no longer uses.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["tune_for_tensors"]

_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers from glibc's <malloc.h>
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest allowed value on 64-bit machines
TRIM_THRESHOLD = 256 * 2**20

_state: bool | None = None  # None: not tried yet


def tune_for_tensors() -> bool:
    """Apply the settings once per process (Linux with glibc only); return whether they are in force.

    Nothing is changed where the user set ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_``
    (their choice wins) or where the C library has no ``mallopt``.
    """
    global _state
    if _state is None:
        _state = False
        user_set = any(f"MALLOC_{name}_THRESHOLD_" in os.environ for name in ("MMAP", "TRIM"))
        if sys.platform.startswith("linux") and not user_set:
            mallopt = getattr(ctypes.CDLL(None), "mallopt", None)  # absent on musl and other C libraries
            if mallopt is not None:
                _state = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
                    mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
                )
    return _state
