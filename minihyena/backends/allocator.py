"""Keep the memory a step frees inside the process, so that the next step reuses it without page faults.

A train step allocates and frees the same large arrays (activations, gradients, spectra) every time.
glibc's malloc serves an array above its mmap threshold with a fresh ``mmap`` and gives it back with
``munmap`` when it is freed, so the next step touches new pages and the kernel zeroes each one: on a
2-vCPU VM that was 15,000-38,000 page faults and 35-135 ms of system time per step (B x L = 16 x 128 to
1 x 8192), 13-15% of the step. :func:`keep_freed_memory` raises the mmap threshold to glibc's maximum
(32 MiB) and the trim threshold to 1 GiB: freed arrays stay in malloc's heap and are handed out again.
The process then holds on to its peak memory instead of returning it between steps.
"""
from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (malloc.h)
MMAP_THRESHOLD_MAX = 32 << 20  # the most glibc accepts on 64-bit (half its heap size)
TRIM_THRESHOLD = 1 << 30  # free memory at the top of the heap returned to the system above this
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def keep_freed_memory() -> bool:
    """Set glibc's malloc to keep freed memory (see the module docstring); True if it took effect.
    Elsewhere (macOS, Windows, musl), or where the user set malloc's own variables
    (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ``GLIBC_TUNABLES``), nothing changes and the
    answer is False."""
    if not sys.platform.startswith("linux") or any(v in os.environ for v in USER_SETTINGS):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
