"""The process environment ftkit runs in: offline, no telemetry, quiet tokenizer threads.

Nothing in ftkit may reach a model hub: every entry point (CLI, notebooks, tests) sets these first.
"""
from __future__ import annotations

import os

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "HF_HUB_DISABLE_TELEMETRY": "1"}


def go_offline() -> None:
    """Set the offline variables unless the caller already chose a value."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def world_size() -> int:
    """Processes in this run (set by accelerate/torchrun; 1 when started plainly)."""
    return int(os.environ.get("WORLD_SIZE", "1"))
