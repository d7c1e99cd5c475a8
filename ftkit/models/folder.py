"""A folder ftkit saves a model into (train's output_dir, merge-lora's output folder): owned, checked, staged.

- Ownership: `ftkit_output.json` (the marker) says ftkit writes there. A missing or empty folder becomes ftkit's;
  a non-empty one without the marker is the user's: refused unless told to overwrite, and then only the files of
  the names ftkit writes are replaced. Every other file is left exactly as it is, its mode included.
- Writable: a folder (or the nearest existing folder above it) ftkit cannot write is an error naming the option
  before anything starts, not a PermissionError at the first write.
- Staged: a model is written into `.ftkit-final.tmp/` inside the folder, given the mode the user's umask gives new
  files there, and renamed into place when complete (a kill or a full disk leaves the earlier model). A file it
  replaces keeps the mode it had (a README.md the user made private stays private).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ftkit.errors import ConfigError, Problem
from ftkit.log import log
from ftkit.recipe import Recipe
from ftkit.recipe.fingerprint import training_options

MARKER = "ftkit_output.json"
LOCK = ".ftkit-train.lock"
STAGING = ".ftkit-final.tmp"
OURS = {MARKER, LOCK, STAGING}


def problem(recipe: Recipe, key: str, what: str, fix: str) -> Problem:
    """A Problem at a recipe option (file and line when the recipe file has it) or a command-line flag."""
    return Problem(what, recipe.source, key, recipe.line_of(key) if not key.startswith("-") else None, fix)


def read_marker(out: str | Path) -> dict | None:
    """The marker of an ftkit output folder, or None (not ftkit's, or unreadable)."""
    try:
        marker = json.loads((Path(out) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and marker.get("written_by") == "ftkit" else None


def write_marker(out: Path, recipe: Recipe, **update) -> None:
    """The marker, rewritten atomically (earlier fields kept unless `update` replaces them)."""
    marker = {**(read_marker(out) or {}), "written_by": "ftkit", "recipe_file": recipe.source,
              "training_options": training_options(recipe.dump()), **update}
    tmp = out / f".{MARKER}.tmp"
    tmp.write_text(json.dumps(marker, indent=1, default=str))
    os.replace(tmp, out / MARKER)


def check_writable(recipe: Recipe, key: str, folder: str | Path) -> Problem | None:
    """Why ftkit cannot create files in `folder` (or, when it does not exist yet, in the folder that would hold
    it), as a Problem at `key`; None when it can. Read-only mounts count: access(2) reports them too."""
    existing = next(p for p in (Path(folder), *Path(folder).parents) if p.exists())
    if os.access(existing, os.W_OK | os.X_OK):
        return None
    held = "" if existing == Path(folder) else f" (it would hold {str(folder)!r})"
    return problem(recipe, key, f"cannot write there: {str(existing)!r} is read-only for this user{held}",
                   f"point {key} at a folder you can write, or make it writable (chmod u+w)")


def foreign_entries(out: Path, also_ours=()) -> list[str]:
    """What the folder holds besides ftkit's own files (and `also_ours`, e.g. the data cache inside it)."""
    if not out.is_dir():
        return []
    keep = {Path(p).resolve() for p in also_ours}
    return sorted(p.name + ("/" if p.is_dir() else "") for p in out.iterdir()
                  if p.name not in OURS and p.resolve() not in keep)


def refuse_foreign(recipe: Recipe, out: Path, key: str, foreign: list[str], replaced: list[str], flag: str) -> None:
    """The error for a user's non-empty folder: what it holds, what a run would replace, and how to go on."""
    shown = ", ".join(foreign[:6]) + (f", ... ({len(foreign)} entries)" if len(foreign) > 6 else "")
    raise ConfigError(problem(
        recipe, key, f"{str(out)!r} is not empty and was not written by ftkit (it holds {shown})"
        + (f"; a run would replace {', '.join(replaced)}" if replaced else ""),
        f"use a new or empty {key}, or pass {flag} to write there anyway: files of the names above are replaced, "
        "other files stay"))


def publish(staging: Path, target: Path, earlier: list[str]) -> list[str]:
    """Move every entry of `staging` into `target` (each move a rename: nothing is copied, so a full disk cannot
    cut it short); a file it replaces passes its mode on. Then remove the files of the earlier save that this one
    did not write (a full fine-tune's model.safetensors next to a new adapter would load the wrong weights).
    Returns the names published."""
    target.mkdir(parents=True, exist_ok=True)
    names = sorted(p.name for p in staging.iterdir())
    for name in names:
        dest = target / name
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        elif dest.is_file() and not dest.is_symlink():
            os.chmod(staging / name, dest.stat().st_mode & 0o7777)
        os.replace(staging / name, dest)
    staging.rmdir()
    stale = [n for n in earlier if n not in names and (target / n).is_file()]
    for name in stale:
        (target / name).unlink()
    if stale:
        log.info(f"removed the earlier model's {', '.join(stale)} from {target} (this run did not write them)")
    return names
