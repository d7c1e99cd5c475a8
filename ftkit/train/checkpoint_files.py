"""What makes a checkpoint trustworthy: a manifest of every file it holds, written after the Trainer.

The HF Trainer writes `checkpoint-N/` file by file and knows no checksum, so a checkpoint cut off by a
kill or a full disk, or damaged later, looks complete to it: a missing optimizer.pt silently restarts
the optimizer and warm-up, zeroed bytes in the weights are trained on. After each save ftkit records
every file's size and sha256, plus the recipe options that shape training, in `ftkit_checkpoint.json`
(written last, atomically). A checkpoint is resumable only when that manifest matches the files.

Rotation (`save_total_limit`) is ftkit's too: it deletes only `checkpoint-<number>` folders that carry
ftkit's manifest, never a user's `checkpoint-important-backup/` (the Trainer's glob would). A `checkpoint-N`
that is a symbolic link, or a numbered folder that was there before the run without a manifest, is the user's:
never resumed automatically, never rotated, never written into (that step's checkpoint is skipped, said).

An ftkit from before manifests left checkpoints without one: a checkpoint whose files all load (the Trainer's
trainer_state.json, written last; every safetensors file covered by its header; every torch zip intact) is
adopted, its manifest written then, as older output folders are adopted.
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
from ftkit.models.card import make_readable
from ftkit.recipe.fingerprint import training_options

MANIFEST = "ftkit_checkpoint.json"
NUMBERED = re.compile(r"checkpoint-(\d+)")


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_manifest(checkpoint: Path, recipe_dump: dict | None, data: dict | None = None, **extra) -> None:
    """Record every file of `checkpoint` (size + sha256), the training options (recipe/fingerprint.py) and the
    data the rows came from (data/cache.data_record); the manifest is written last."""
    files = {str(p.relative_to(checkpoint)): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
             for p in sorted(checkpoint.rglob("*")) if p.is_file() and p.name != MANIFEST}
    record = {"files": files, "recipe": training_options(recipe_dump) if recipe_dump else {}, "data": data or {},
              **extra}
    tmp = checkpoint / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(record, indent=1, default=str))
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


def recipe_of(checkpoint: Path, part: str = "recipe") -> dict:
    """The training options (or, part="data", the data record) kept with a checkpoint ({} when not recorded)."""
    try:
        return json.loads((checkpoint / MANIFEST).read_text()).get(part) or {}
    except (OSError, ValueError):
        return {}


def numbered(output_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, folder) of every checkpoint-<number> folder, newest first; symbolic links are not ftkit's."""
    found = [(int(m.group(1)), d) for d in Path(output_dir).glob("checkpoint-*")
             if d.is_dir() and not d.is_symlink() and (m := NUMBERED.fullmatch(d.name))]
    return sorted(found, reverse=True)


def theirs(output_dir: str | Path) -> list[Path]:
    """checkpoint-<number> entries ftkit must not write into: symbolic links, and folders without a manifest."""
    return sorted(d for d in Path(output_dir).glob("checkpoint-*") if NUMBERED.fullmatch(d.name)
                  and (d.is_symlink() or (d.is_dir() and not (d / MANIFEST).is_file())))


def _load_problem(checkpoint: Path) -> str | None:
    """Why a checkpoint without a manifest cannot be resumed as it is; None when every file of it loads."""
    import zipfile

    from safetensors import safe_open

    try:
        int(json.loads((checkpoint / "trainer_state.json").read_text())["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return "no readable trainer_state.json (the Trainer writes it last)"
    weights = sorted(checkpoint.glob("*.safetensors"))
    if not weights or not (checkpoint / "optimizer.pt").is_file() or not (checkpoint / "scheduler.pt").is_file():
        return "weights, optimizer.pt or scheduler.pt is missing"
    for path in weights:
        try:
            with safe_open(str(path), "pt"):  # checks that the header's tensors cover the file exactly
                pass
        except Exception:  # noqa: BLE001 - safetensors raises its own error type for every kind of damage
            return f"{path.name} is cut short or damaged"
    for path in sorted(checkpoint.glob("*.pt")) + sorted(checkpoint.glob("*.pth")):
        try:
            with zipfile.ZipFile(path) as z:
                if z.testzip() is not None:
                    return f"{path.name} is damaged"
        except (OSError, zipfile.BadZipFile):
            return f"{path.name} is cut short or damaged"
    return None


def adopt(checkpoint: Path) -> bool:
    """A checkpoint without a manifest whose files all load (an older ftkit's): its manifest written now, said."""
    if (checkpoint / MANIFEST).is_file() or checkpoint.is_symlink() or _load_problem(checkpoint):
        return False
    write_manifest(checkpoint, None, adopted=True)
    log.warning(f"{checkpoint} has no {MANIFEST} (written by an ftkit before checksums, or cut off just before "
                "ftkit recorded it) but all its files load: adopted (its training options and data were not "
                "recorded, so they cannot be compared)")
    return True


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
    """After every save: the manifest of the new checkpoint, then rotation of ftkit's own checkpoints. Before a
    save into a name that is the user's (see `theirs`): that checkpoint is skipped, said."""

    def __init__(self, recipe_dump: dict, save_total_limit: int | None, data: dict | None = None):
        self.recipe_dump, self.limit, self.data = recipe_dump, save_total_limit, data
        self.theirs: set[str] = set()

    def on_train_begin(self, args, state, control, **kwargs):
        self.theirs = {d.name for d in theirs(args.output_dir)}
        for d in theirs(args.output_dir):
            kind = f"a symbolic link to {os.readlink(d)}" if d.is_symlink() else "a folder without ftkit's manifest"
            log.warning(f"{d} is {kind}: treated as yours (not resumed automatically, never rotated, never "
                        "written into)")

    def on_step_end(self, args, state, control, **kwargs):
        name = f"checkpoint-{state.global_step}"
        if control.should_save and name in self.theirs:
            control.should_save = False
            log.warning(f"not writing {name}: {Path(args.output_dir) / name} is yours (see above); this step's "
                        "checkpoint is skipped (rename it to keep a checkpoint here)")

    on_epoch_end = on_step_end

    def on_save(self, args, state, control, **kwargs):
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # every rank has written its own rng_state_<rank>.pth
        if state.is_world_process_zero:
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if checkpoint.is_dir() and not checkpoint.is_symlink():
                make_readable(checkpoint)  # the Trainer writes safetensors 0600; this run's files get the umask's mode
                write_manifest(checkpoint, self.recipe_dump, self.data)
                for d in rotate(args.output_dir, self.limit, state.best_model_checkpoint):
                    log.info(f"save_total_limit={self.limit}: removed {d.name}")
