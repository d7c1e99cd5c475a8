"""CPU training under glibc: speed by default, or freed tensor memory handed back to the OS (FTKIT_CPU_MALLOC=lean).

glibc starts with a 128 KiB mmap threshold and raises it to the size of each large block freed (up to 32 MiB),
so after the first step activation-sized tensors come from the heap, and what backward frees stays resident:
`ftkit bench memory --sections allocator` (~58M twin) measures the LoRA run's peak RSS at about twice the
tensors' peak, the full fine-tune's at about 1.2x. A fixed 1 MiB threshold (FTKIT_CPU_MALLOC=lean) gives every
tensor of >= 1 MiB its own mapping, unmapped when freed: peak RSS within 10% of the tensors' estimate, at the
cost of a page fault per page on every re-use, 1.1-1.2x the CPU time per step. Tried and measured, none gave
both (same bench, LoRA): a 4 or 8 MiB threshold (RSS as glibc's: activations are 1-4 MiB), malloc_trim after
the forward or after each decoder layer's backward (the peak barely moves: 1.42-1.47 vs 1.49 GB), transparent
huge pages for the mappings (GLIBC_TUNABLES=glibc.malloc.hugetlb=1: still ~1.15x, and settable only at
process start). So the default is glibc's own (teaching runs on laptops: speed matters), and `ftkit memory`
shows what glibc keeps as a separate `allocator` row.
"""
from __future__ import annotations

import os

from ftkit.log import log

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)


def set_cpu_malloc(threshold: int = 1 << 20) -> bool:
    """Say which malloc behaviour this CPU run has; with FTKIT_CPU_MALLOC=lean fix glibc's mmap threshold at
    `threshold` (as MALLOC_MMAP_THRESHOLD_ does, switching its adjustment off). Returns whether it was fixed
    (not on other C libraries or systems)."""
    import ctypes

    if os.environ.get("FTKIT_CPU_MALLOC", "glibc") != "lean":
        log.info("CPU: glibc's malloc keeps what backward frees resident (fast; peak RSS above the tensors' peak: "
                 "`ftkit memory` shows it as the allocator row). FTKIT_CPU_MALLOC=lean hands it back to the OS, "
                 "steps ~1.1-1.2x slower")
        return False
    try:  # glibc's libc: elsewhere (musl, macOS) no such library or no mallopt
        applied = bool(ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):
        return False
    if applied:
        log.info("CPU: FTKIT_CPU_MALLOC=lean: tensors >= 1 MiB get their own memory mappings, so what backward frees "
                 "goes back to the OS (peak memory near the live tensors; steps ~1.1-1.2x slower)")
    return applied
