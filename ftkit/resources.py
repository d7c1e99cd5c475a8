"""Files ftkit ships beside its code: recipes, DeepSpeed configs, notebooks, data samples.

One place that knows where they are, so no module reaches into a checkout with `parents[...]`.
"""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the repository checkout (editable install)


def shipped(relative: str) -> Path:
    """The shipped file or folder `relative` (e.g. "recipes/deepspeed/zero2.json")."""
    return ROOT / relative
