"""Files ftkit ships beside its code: recipes, DeepSpeed configs, notebooks, data samples.

One place that knows where they are, so no module reaches into a checkout with `parents[...]`. In a
checkout (and an editable install) they are the top-level folders; a wheel carries the same tree under
ftkit/_shipped/ (setup.py copies SHIPPED there at build time). This module imports nothing from ftkit:
setup.py loads it by path.
"""
from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
CHECKOUT = PACKAGE.parent  # the repository, when ftkit runs from a checkout or an editable install
INSTALLED = PACKAGE / "_shipped"  # the same folders inside an installed wheel

# folder -> the files of it that ship (glob patterns, searched recursively)
SHIPPED = {
    "recipes": ("*.yml", "*.yaml", "*.json", "*.md", "*.py", "*.sh", "*.sbatch"),  # <family>/*.yml (+ rewards.py), deepspeed/*.json, cloud/
    "notebooks": ("*.ipynb",),
    "data_samples": ("*.jsonl", "*.md", "*.py"),  # the .py files write the samples (bench preprocess reads them)
}


def root() -> Path:
    """The folder holding recipes/, notebooks/ and data_samples/: the checkout, else the installed copy."""
    if (CHECKOUT / "pyproject.toml").is_file() and (CHECKOUT / "recipes").is_dir():
        return CHECKOUT
    return INSTALLED


def shipped(relative: str) -> Path:
    """The shipped file or folder `relative` (e.g. "recipes/deepspeed/zero2.json")."""
    return root() / relative


def shipped_files(folder: str, base: Path | None = None) -> list[Path]:
    """Every shipped file of `folder` (one of SHIPPED), relative to `base` (default: root())."""
    base = base or root()
    found = {p for pattern in SHIPPED[folder] for p in (base / folder).rglob(pattern)}
    return sorted(p.relative_to(base) for p in found
                  if p.is_file() and not any(part.startswith((".", "__")) for part in p.parts))
