"""What makes a checkpoint trustworthy: a manifest of every file it holds, written after the Trainer.

The HF Trainer writes `checkpoint-N/` file by file and knows no checksum, so a checkpoint cut off by a
kill or a full disk, or damaged later, looks complete to it: a missing optimizer.pt silently restarts
the optimizer and warm-up, zeroed bytes in the weights are trained on. After each save ftkit records
every file's size and sha256, plus the recipe options that shape training, in `ftkit_checkpoint.json`
(written last, atomically). A checkpoint is resumable only when that manifest matches the files.

Rotation (`save_total_limit`) is ftkit's too: it deletes only `checkpoint-<number>` folders that carry
ftkit's manifest, never a user's `checkpoint-important-backup/` (the Trainer's glob would).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

from transformers import TrainerCallback

from ftkit.log import log
from ftkit.recipe.fingerprint import training_options  # noqa: F401  (re-exported: checkpoints.py)

MANIFEST = "ftkit_checkpoint.json"
NUMBERED = re.compile(r"checkpoint-(\d+)")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(checkpoint: Path, recipe_dump: dict) -> None:
    """Record every file of `checkpoint` (size + sha256) and the training options (recipe/fingerprint.py); the
    manifest is written last."""
    files = {str(p.relative_to(checkpoint)): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
             for p in sorted(checkpoint.rglob("*")) if p.is_file() and p.name != MANIFEST}
    tmp = checkpoint / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps({"files": files, "recipe": training_options(recipe_dump)}, indent=1, default=str))
    os.replace(tmp, checkpoint / MANIFEST)


def problem_with(checkpoint: Path) -> str | None:
    """None when every file the manifest lists is present and unchanged; else what is wrong (for a message)."""
    manifest = checkpoint / MANIFEST
    if not manifest.is_file():
        return f"no {MANIFEST} (cut off before ftkit recorded it, or not written by ftkit)"
    try:
        files = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError) as e:
        return f"{MANIFEST} is unreadable ({e})"
    for name, want in files.items():
        path = checkpoint / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != want["bytes"]:
            return f"{name} has {path.stat().st_size} bytes, {want['bytes']} were written (truncated or replaced)"
        if _sha256(path) != want["sha256"]:
            return f"{name} changed since it was written (checksum differs)"
    return None


def recipe_of(checkpoint: Path) -> dict:
    """The training options recorded with a checkpoint ({} when it has no manifest)."""
    try:
        return json.loads((checkpoint / MANIFEST).read_text()).get("recipe", {})
    except (OSError, ValueError):
        return {}


def numbered(output_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, folder) of every checkpoint-<number> folder, newest first."""
    found = [(int(m.group(1)), d) for d in Path(output_dir).glob("checkpoint-*")
             if d.is_dir() and (m := NUMBERED.fullmatch(d.name))]
    return sorted(found, reverse=True)


def rotate(output_dir: str | Path, keep: int | None, protect: str | None = None) -> list[Path]:
    """Delete the oldest ftkit checkpoints beyond `keep` (the newest and `protect`, the best, always stay)."""
    if not keep:
        return []
    ours = [d for _, d in numbered(output_dir) if (d / MANIFEST).is_file()]
    kept = set(ours[:keep]) | ({Path(protect)} if protect else set())
    removed = [d for d in ours if d not in kept]
    for d in removed:
        shutil.rmtree(d, ignore_errors=True)
    return removed


class CheckpointManifest(TrainerCallback):
    """After every save: the manifest of the new checkpoint, then rotation of ftkit's own checkpoints."""

    def __init__(self, recipe_dump: dict, save_total_limit: int | None):
        self.recipe_dump, self.limit = recipe_dump, save_total_limit

    def on_save(self, args, state, control, **kwargs):
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # every rank has written its own rng_state_<rank>.pth
        if state.is_world_process_zero:
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if checkpoint.is_dir():
                write_manifest(checkpoint, self.recipe_dump)
                for d in rotate(args.output_dir, self.limit, state.best_model_checkpoint):
                    log.info(f"save_total_limit={self.limit}: removed {d.name}")
        return control
