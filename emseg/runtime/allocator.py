"""Stop glibc from returning freed tensor memory to the kernel after every step.

By default glibc unmaps large freed blocks (and trims the heap), so each training step
faults its activations and gradients back in, zeroed: measured 12-16k page faults and
20-28 ms of kernel time per 256x256 step on 2 cores, 10-20% of the step
(benchmarks/bench_train.py). Fixing both thresholds keeps that memory mapped.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 << 20  # the largest glibc accepts on 64-bit
_TRIM_THRESHOLD = 1 << 30


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds (both: one alone disables the other's tuning).

    Returns False, doing nothing, off glibc. The cost: the process keeps its peak memory.
    """
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    except (OSError, AttributeError):
        return False
