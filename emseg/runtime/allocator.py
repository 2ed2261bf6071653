"""Stop glibc from returning freed tensor memory to the kernel after every step.

By default glibc unmaps large freed blocks (and trims the heap), so that each training
step faults its activations and gradients back in, zeroed: thousands of page faults and a
measurable share of a CPU training step spent in the kernel (`benchmarks/bench_train.py`
measures it; the figures are on the [Speed](../../../results/speed.md) page). Fixing both
thresholds keeps that memory mapped. Training and the volume path's workers call
[`keep_freed_memory`][emseg.runtime.allocator.keep_freed_memory] once.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 << 20  # the largest glibc accepts on 64-bit
_TRIM_THRESHOLD = 1 << 30


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds (both: setting one alone turns off the other's tuning).

    The cost: the process keeps its peak memory.

    Returns:
        Whether both were set; False, doing nothing, off glibc.
    """
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    except (OSError, AttributeError):
        return False
