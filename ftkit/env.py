"""The process environment ftkit runs in: offline, no telemetry, quiet tokenizer threads, no known noise.

Nothing in ftkit may reach a model hub: every entry point (CLI, notebooks, tests) sets these first.
Library lines that are known to be harmless on the machines ftkit supports are dropped once, at import
(`quiet_known_noise`), by exact message: anything else a library says still gets through.
"""
from __future__ import annotations

import logging
import os

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "HF_HUB_DISABLE_TELEMETRY": "1"}

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


def go_offline() -> None:
    """Set the offline variables unless the caller already chose a value."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def world_size() -> int:
    """Processes in this run (set by accelerate/torchrun; 1 when started plainly)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


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
