"""What every `ftkit bench` timing prints beside its figure: CPU seconds next to wall seconds, the spread of
interleaved rounds, and whether the machine was busier than its cores (then wall times mean little).

CPU seconds of the measured process (user + system, all its threads) move far less with other processes'
load than wall time does, but not nothing: shared caches and SMT siblings still slow each instruction.
"""
from __future__ import annotations

import os
import statistics


def cpu_seconds() -> float:
    """User + system seconds of this process so far (every thread, not its children)."""
    t = os.times()
    return t.user + t.system


def load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def busy(loads) -> str:
    """'' on a machine no busier than its cores, else a warning naming the load seen."""
    cores, worst = os.cpu_count() or 1, max(loads, default=0.0)
    return (f"  !! load average up to {worst:.1f} on {cores} cores: other processes competed; trust CPU seconds "
            "and the ratios of interleaved rounds more than wall times" if worst > cores else "")


def spread(values) -> str:
    """'median (min-max, n rounds)'."""
    values = list(values)
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f}, {len(values)} rounds)"
