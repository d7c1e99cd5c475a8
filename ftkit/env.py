"""The process environment ftkit runs in: the hub as transformers reaches it, torch threads, no known noise.

Online by default, as transformers is: a hub model downloads unless the user or the environment says offline
(HF_HUB_OFFLINE=1; the Makefile, the tests and CI set it, and the tiny twins never need the network).
Torch threads follow the cores that are free (`torch_threads`). Library lines that are known to be harmless on
the machines ftkit supports are dropped once, at import (`quiet_known_noise`), by exact message: anything else a
library says still gets through.
"""
from __future__ import annotations

import logging
import os

# what the Makefile, the tests and CI run under: nothing may reach a model hub
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "HF_HUB_DISABLE_TELEMETRY": "1"}
# what every ftkit command runs under: quiet tokenizer threads (ftkit forks datasets workers), no telemetry
PROCESS_ENV = {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_DISABLE_TELEMETRY": "1"}
# the variables that switch model downloads off, in the order huggingface_hub reads them
OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
THREAD_VARS = ("FTKIT_THREADS", "OMP_NUM_THREADS")  # first one set wins

# logger name -> message starts that are harmless, with why (each line printed on every command before)
KNOWN_NOISE = {
    # bitsandbytes on an AVX512-bf16 CPU looks for an optional `kernels` package and falls back to its own
    # 4-bit kernel when it is missing: nothing is wrong, the fallback is the path the tests verify
    "bitsandbytes.backends.cpu.ops": ("Failed to load CPU gemm_4bit_forward",),
    # DeepSpeed picks the CPU accelerator on a machine without CUDA and warns at import, even when
    # DeepSpeed is never used (transformers and accelerate import it to probe for it)
    "DeepSpeed": ("Setting accelerator to CPU",),
}
# Python warnings raised inside libraries by other libraries' calls (not ftkit's): (category, message regex)
KNOWN_WARNINGS = [
    # peft reads model.is_gradient_checkpointing on every get_peft_model; transformers 5 renamed it
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated"),
]


def set_process_env() -> None:
    """Set PROCESS_ENV unless the caller already chose a value. The hub stays as the environment says."""
    for key, value in PROCESS_ENV.items():
        os.environ.setdefault(key, value)


def offline_switch(names: tuple[str, ...] = OFFLINE_VARS) -> str | None:
    """The variable that switches the hub off, or None: the first of `names` that is set decides, as in
    huggingface_hub (HF_HUB_OFFLINE, else TRANSFORMERS_OFFLINE; 1/true/yes/on mean off)."""
    var = next((n for n in names if os.environ.get(n, "").strip()), None)
    return var if var and os.environ[var].strip().upper() in ("1", "ON", "YES", "TRUE") else None


def world_size() -> int:
    """Processes in this run (set by accelerate/torchrun; 1 when started plainly)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask), not the machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def load_average() -> float | None:
    """The 1-minute load average: how many cores other work keeps busy (None where it cannot be read)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def idle_cores(cores: int | None = None, load: float | None = None) -> int:
    """Cores not busy right now: the usable cores less the 1-minute load average, at least 1 (all of them
    where the load cannot be read)."""
    cores = cores or usable_cores()
    load = load_average() if load is None else load
    return cores if load is None else max(1, min(cores, int(cores - load + 0.5)))


def torch_threads(cores: int | None = None, load: float | None = None) -> tuple[int, str]:
    """(torch threads, why): FTKIT_THREADS, else OMP_NUM_THREADS, else one per idle core. Threads beyond the idle
    cores wait on each other: on a 2-core machine busy with other work, training with 2 threads ran 5.7-6.7
    times slower than with 1. A variable that is not a whole number >= 1 is a ValueError naming it."""
    for var in THREAD_VARS:
        if value := os.environ.get(var, "").strip():
            if not value.isdigit() or int(value) < 1:
                raise ValueError(var, value)
            return int(value), f"{var}={value}"
    cores = cores or usable_cores()
    load = load_average() if load is None else load
    n = idle_cores(cores, load)
    busy = "load unknown" if load is None else f"{cores - n} busy"
    return n, f"{cores} cores, {busy}; set FTKIT_THREADS to change"


class _DropKnown(logging.Filter):
    """Drops records whose message starts with one of `starts`; lets everything else through."""

    def __init__(self, starts: tuple[str, ...]):
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.starts)


def quiet_known_noise() -> None:
    """Attach the KNOWN_NOISE filters to those libraries' loggers and ignore the KNOWN_WARNINGS
    (idempotent; works before the libraries are imported)."""
    import warnings

    for category, message in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name, starts in KNOWN_NOISE.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropKnown) for f in logger.filters):
            logger.addFilter(_DropKnown(starts))


_fork_parent = {"pid": None, "hooked": False}


def die_with_parent() -> None:
    """Linux: every process this one forks from now on (datasets.map's num_proc workers, DataLoader workers)
    is killed when this process dies, even by SIGKILL. Without it, the workers of a killed `ftkit preprocess`
    finish their shard and then wait for their parent forever, as orphans holding memory.

    datasets offers no worker initializer, so the hook runs at every fork (os.register_at_fork): the child asks
    the kernel for SIGKILL when its parent dies (prctl PR_SET_PDEATHSIG), then checks the parent did not die
    before that. The child also ignores Ctrl-C: the terminal sends SIGINT to every process of the group, and a
    worker's own KeyboardInterrupt traceback would bury the parent's one line ("interrupted"); the parent stops
    and the workers die with it. Idempotent; a no-op elsewhere than Linux."""
    import ctypes
    import signal
    import sys

    if _fork_parent["hooked"] or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)  # looked up now: the child only calls it
    pr_set_pdeathsig = 1

    def before() -> None:
        _fork_parent["pid"] = os.getpid()

    def in_child() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
        if os.getppid() != _fork_parent["pid"]:  # the parent died between fork and prctl
            os._exit(1)

    os.register_at_fork(before=before, after_in_child=in_child)
    _fork_parent["hooked"] = True
