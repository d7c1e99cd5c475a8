"""`trust_remote_code: true` runs Python files from the model folder in this process: say so, and name them.

transformers imports the modules a model's config.json / tokenizer_config.json name in `auto_map`; those files
come with the model (a hub repo or a local folder) and run with the user's rights. ftkit announces them once
per folder, before anything is loaded. save_pretrained copies them next to the trained model (the saved model
needs them to load), so the line says that too: whoever loads the output with trust_remote_code runs them.
"""
from __future__ import annotations

import json
from pathlib import Path

from ftkit.log import log
from ftkit.models.tiny import is_tiny
from ftkit.recipe import Recipe

_announced: set[str] = set()


def _local_folder(name: str) -> Path | None:
    """The folder holding `name`'s files: the path itself, or its snapshot in the hub cache (None if neither)."""
    if Path(name).is_dir():
        return Path(name)
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "config.json")
    except Exception:  # noqa: BLE001 - not a repo id at all: nothing cached to name
        return None
    return Path(cached).parent if isinstance(cached, str) else None


def code_files(folder: Path) -> tuple[list[str], list[str]]:
    """(modules auto_map names, every .py file in the folder): what transformers imports, and what is there."""
    named = set()
    for config in ("config.json", "tokenizer_config.json"):
        try:
            auto_map = json.loads((folder / config).read_text()).get("auto_map") or {}
        except (OSError, ValueError):
            continue
        refs = [r for ref in auto_map.values() for r in (ref if isinstance(ref, list) else [ref])]
        # "repo--module.Class" -> module.py
        named |= {r.split("--")[-1].rsplit(".", 1)[0] + ".py" for r in refs if isinstance(r, str) and "." in r}
    return sorted(named), sorted(p.name for p in folder.glob("*.py"))


def remote_code_notice(recipe: Recipe) -> None:
    """With trust_remote_code: a warning naming the files that will run (once per model folder)."""
    if not recipe.trust_remote_code or is_tiny(recipe.base_model):
        return
    names = [n for n in dict.fromkeys((recipe.base_model, recipe.tokenizer_config)) if n and n not in _announced]
    _announced.update(names)
    for name in names:
        folder = _local_folder(name)
        if folder is None:
            log.warning(f"trust_remote_code: true: the Python files named by {name}'s config.json (auto_map) will be "
                        "downloaded and RUN in this process with your rights; read them on the hub first")
            continue
        named, present = code_files(folder)
        files = ", ".join(named) or "none named in auto_map"
        log.warning(f"trust_remote_code: true: Python code from {folder} will RUN in this process with your rights: "
                    f"{files}" + (f" (the folder holds {', '.join(present)})" if present != named else "")
                    + ". Read it first. Saving copies these files next to the trained model, so whoever loads it with "
                    "trust_remote_code runs them too")
