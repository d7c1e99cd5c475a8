"""CPU training under glibc: how freed tensor memory goes back to the OS (`ftkit train` sets it on CPU)."""
from __future__ import annotations

import os

from ftkit.log import log

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)


def return_freed_memory(threshold: int = 1 << 20) -> bool:
    """CPU training under glibc: give allocations of >= 1 MiB their own mappings, unmapped when freed.

    glibc starts with a 128 KiB mmap threshold and raises it to the size of each large block freed (up to
    32 MiB), so after the first step activation-sized tensors come from the heap, and what backward frees
    stays resident, fragmented: a LoRA run of the 58M twin in `ftkit bench memory` peaked at 1.44 GB of
    RSS for 0.78 GB estimated (full fine-tune: 1.58 for 1.29); with the fixed threshold 0.79 and 1.36. A
    fixed threshold switches that adjustment off (as MALLOC_MMAP_THRESHOLD_ does). The cost is page faults
    on every re-use: measured 28-30 s vs 21.7 s for 20 steps of the 58M twin (about 1.35x the time per
    step), the same on the tiny twin. FTKIT_CPU_MALLOC=glibc keeps glibc's behaviour (faster, more memory).
    Returns whether it was applied (not on other C libraries or systems, nor with FTKIT_CPU_MALLOC=glibc)."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux") or os.environ.get("FTKIT_CPU_MALLOC", "lean") == "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        applied = bool(libc.mallopt(M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):
        return False
    if applied:
        log.info("CPU: tensors >= 1 MiB get their own memory mappings, so what backward frees goes back to the OS "
                 "(peak memory near the live tensors, as `ftkit memory` estimates; steps about 1.3x slower). "
                 "FTKIT_CPU_MALLOC=glibc trades that back")
    return applied


