"""The output folder contract: ftkit writes only into a folder it owns, and one training at a time.

- Ownership: `ftkit_output.json` (the marker) says ftkit writes in this folder: the recipe file, the recipe's
  training options (recipe/fingerprint.py) and the files of the last finished model. A missing or empty folder
  becomes ftkit's. A non-empty folder without the marker is the user's: refused, unless the run is told to
  overwrite (`ftkit train --overwrite`, `train.run(recipe, overwrite=True)`), and then the run says which of
  its files it replaces. A folder ftkit owns is ftkit's to write again; when it holds a run of other training
  options the run names what changed.
- Lock: `.ftkit-train.lock` holds the pid of the training writing there, under fcntl.flock, which the kernel
  releases when that process dies: a second training into the folder fails at once naming the holder, and a
  lock left by a killed run is taken over, with a line saying so.
- A fresh start (no resume) removes the earlier run's checkpoints (ftkit's, with their manifest, and an older
  ftkit's that load, adopted), announced: otherwise rotation, which keeps the highest step numbers, would keep
  them and delete the new ones.
- The final model is staged in `.ftkit-final.tmp/` and moved into place when complete (train/save.py, with the
  folder rules shared with merge-lora in models/folder.py). Free space is compared with what the run will write
  at the start (a warning); a full disk at the end with no checkpoint to resume from saves the finished model
  beside the data cache or in the system temp dir, and says where.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import time
from contextlib import contextmanager, suppress
from pathlib import Path

from ftkit.errors import ConfigError, FtkitError, Problem, is_disk_full
from ftkit.log import log
from ftkit.models.folder import MARKER  # noqa: F401  (re-exported: outputs.MARKER)
from ftkit.models.folder import LOCK, STAGING, check_writable, foreign_entries, problem, read_marker, refuse_foreign
from ftkit.models.folder import write_marker
from ftkit.recipe import Recipe
from ftkit.recipe.fingerprint import default_output_dir, training_options
from ftkit.train import checkpoint_files as cf
from ftkit.train.checkpoints import option_changes, save_kwargs

# What a finished run writes at the top of output_dir (save.py), named when a user's folder would lose them.
WRITES = ("README.md", "config.json", "generation_config.json", "model.safetensors", "adapter_config.json",
          "adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
          "recipe.yml", "metrics.json", "trainer_state.json", "loss.png", "training_args.bin")


class RunFailed(FtkitError):
    """The run started but produced no model (diverged, disk full): exit code 3, with what was kept."""

    exit_code = 3


class Interrupted(FtkitError):
    """Training stopped by Ctrl-C after writing a checkpoint: exit code 130 (128 + SIGINT), as shells expect."""

    exit_code = 130


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def check_paths(recipe: Recipe, keys=("output_dir", "dataset_prepared_path")) -> None:
    """output_dir and dataset_prepared_path must be folders (or not exist yet) that this user can write."""
    problems = []
    for key in keys:
        if not (value := getattr(recipe, key)):
            continue
        blocked = next((p for p in (Path(value), *Path(value).parents) if p.exists() and not p.is_dir()), None)
        if blocked is not None:
            problems.append(problem(recipe, key, f"{value!r} cannot be a folder: {str(blocked)!r} is a file",
                                     f"point {key} at a folder (it is created when missing), or move the file away"))
        elif found := check_writable(recipe, key, value):
            problems.append(found)
    if problems:
        raise ConfigError(problems)


def written_before_markers(out: str | Path) -> bool:
    """A folder a finished ftkit run wrote before ftkit marked its folders: recipe.yml next to a metrics.json that
    holds a TrainResult. It is ftkit's own (adopted, said), not a user's folder."""
    try:
        metrics = json.loads((Path(out) / "metrics.json").read_text())
    except (OSError, ValueError):
        return False
    return (Path(out) / "recipe.yml").is_file() and isinstance(metrics, dict) and \
        {"output_dir", "method", "first_loss", "final_loss"} <= set(metrics)


def _foreign_entries(recipe: Recipe) -> list[str]:
    """What output_dir holds besides ftkit's own files (and the data cache, when it lives inside)."""
    cache = recipe.dataset_prepared_path
    return foreign_entries(Path(recipe.output_dir), [cache] if cache else [])


def check(recipe: Recipe, overwrite: bool = False) -> None:
    """Refuse a folder ftkit may not write into (a file, or a user's non-empty folder without overwrite)."""
    check_paths(recipe)
    out = Path(recipe.output_dir)
    if read_marker(out) is not None or overwrite or written_before_markers(out):
        return
    if foreign := _foreign_entries(recipe):
        replaced = [name for name in foreign if name in WRITES or (cf.NUMBERED.fullmatch(name.rstrip("/")) and
                                                                    not (out / name.rstrip("/")).is_symlink())]
        refuse_foreign(recipe, out, "output_dir", foreign, replaced,
                       "--overwrite (Python: train.run(recipe, overwrite=True))")


def _announce(recipe: Recipe, marker: dict | None, overwrite: bool) -> None:
    out, now = Path(recipe.output_dir), training_options(recipe.dump())
    if marker is None:
        foreign = _foreign_entries(recipe)
        if written_before_markers(out):
            log.info(f"{out} holds a run of an earlier ftkit (recipe.yml, metrics.json): marked as ftkit's; this run "
                     "replaces its model when it finishes")
        elif foreign and overwrite:
            replaced = [name for name in foreign if name in WRITES]
            log.warning(f"--overwrite: {out} was not written by ftkit; it is ftkit's from now on. "
                        + (f"Replaced when this run finishes: {', '.join(replaced)}; " if replaced else "")
                        + f"left as they are: {len(foreign) - len(replaced)} other entries")
        elif recipe.output_dir == os.path.abspath(default_output_dir(recipe.source, recipe.dump())):
            log.info(f"output_dir is not set: writing to {out} (named after the recipe; set output_dir to choose)")
        return
    if changes := option_changes(marker.get("training_options", {}), now, most=4):
        log.warning(f"{out} holds ftkit's run of other training options ({marker.get('recipe_file') or 'a recipe'}: "
                    f"{changes}); this run replaces its model when it finishes")


@contextmanager
def _lock(recipe: Recipe, out: Path):
    """`.ftkit-train.lock` under fcntl.flock (the kernel drops it when the holder dies), holding who and since when,
    for the length of the `with`; a second training into the folder is refused, naming the holder."""
    import fcntl

    path = out / LOCK
    for _ in range(5):  # the holder may unlink the file between our open and flock: then try the new one
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise ConfigError(problem(
                recipe, "output_dir", f"{out} is in use by another training (pid {holder.get('pid', '?')}"
                f" on {holder.get('host', '?')}, started {holder.get('started', '?')}): two runs in one folder would "
                "interleave their checkpoints and overwrite each other's model",
                f"wait for it to finish, stop it (kill {holder.get('pid', 'PID')}), or use another output_dir"),
            ) from None
        if os.path.exists(path) and os.fstat(fd).st_ino == os.stat(path).st_ino:
            break
        os.close(fd)
    else:
        raise FtkitError(f"could not lock {path}", where="output_dir", fix="try again")
    left = _holder(fd)
    if left.get("pid") and left.get("pid") != os.getpid():
        log.warning(f"{out}: taking over the lock of pid {left['pid']} (started {left.get('started')}), "
                    "which is not running any more (killed or crashed)")
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                              "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode(), 0)
    try:
        yield
    finally:
        with suppress(OSError):
            path.unlink()
        os.close(fd)  # closing drops the flock


def _holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}


@contextmanager
def claim(recipe: Recipe, overwrite: bool = False):
    """For the length of a training: the folder checked, locked and marked as ftkit's (main process only; the
    other processes of a multi-process run only check it). Yields the folder's earlier marker (None: new)."""
    check(recipe, overwrite)
    if not is_main_process():
        yield None
        return
    out = Path(recipe.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with _lock(recipe, out):
        earlier = read_marker(out)
        _announce(recipe, earlier, overwrite)
        shutil.rmtree(out / STAGING, ignore_errors=True)  # a final save cut off by a kill: never half-published
        write_marker(out, recipe, running=True, started=time.strftime("%Y-%m-%d %H:%M:%S"))
        yield earlier


def start_afresh(recipe: Recipe, earlier: dict | None, overwrite: bool = False) -> None:
    """A run that does not resume: the earlier run's checkpoints (ftkit's own) are removed, saying which and why.
    When that run never finished (killed, crashed), they are all that is left of it: refused unless overwrite."""
    if not is_main_process():
        return
    # an older ftkit's checkpoints that load count as ftkit's (adopted, said), and are never removed unsaid
    if not (found := [d for _, d in cf.numbered(recipe.output_dir) if cf.adopt(d) or (d / cf.MANIFEST).is_file()]):
        return
    names = ", ".join(d.name for d in reversed(found))
    if earlier and earlier.get("running") and not overwrite:
        raise ConfigError(problem(
            recipe, "output_dir", f"{recipe.output_dir} holds a run that did not finish (checkpoints {names}, no final "
            "model): starting afresh would delete them", "continue it with auto_resume_from_checkpoints: true "
            "(--auto_resume_from_checkpoints=true), or pass --overwrite to start afresh, or use another output_dir"))
    for d in found:
        shutil.rmtree(d, ignore_errors=True)
    log.warning(f"starting afresh (not resuming): removed the earlier run's checkpoints {names} from "
                f"{recipe.output_dir} (they would mix with this run's); auto_resume_from_checkpoints: true continues "
                "from the newest one instead")


def disk_full(recipe: Recipe, during: str, exc: BaseException, before: set[str], rescued: Path | None = None
              ) -> RunFailed:
    """The error for a full disk: the checkpoint it cut off is removed (it frees space and could never be
    resumed), and the message says what is kept, where the finished model went (`rescued`), and how to go on.
    `before`: checkpoint names at the start."""
    out = Path(recipe.output_dir)
    cut = [d for _, d in cf.numbered(out) if d.name not in before and not (d / cf.MANIFEST).is_file()]
    for d in cut:
        shutil.rmtree(d, ignore_errors=True)
    intact = next((d for _, d in cf.numbered(out) if cf.problem_with(d) is None), None)
    free = shutil.disk_usage(out).free if out.is_dir() else 0
    kept = ([f"the newest intact checkpoint {intact}"] if intact else []) + \
        ([f"the earlier model in {out} (unchanged)"] if (read_marker(out) or {}).get("final_files") else [])
    lost = (f"; no checkpoint had been written, so the finished model was saved to {rescued} instead (a complete "
            "model folder)" if rescued else "; no checkpoint had been written, and no other disk (the data cache's, "
            "the system temp dir) had room either, so this run's training is lost")
    what = (f"the disk is full ({free / 1e6:,.0f} MB free in {out}) while writing {during}"
            + (f"; removed the cut-off {', '.join(d.name for d in cut)}" if cut else "")
            + ("; kept: " + " and ".join(kept) if kept else "") + ("" if intact else lost))
    fix = (f"free space, then run again with --resume_from_checkpoint={intact} (it continues from there, and "
           "writes the final model)" if intact else
           f"free space, then move the files of {rescued} into {out} (or use it as it is: --output_dir={rescued})"
           if rescued else "free space and run again; save_steps keeps checkpoints during a long run")
    return RunFailed(Problem(f"{what} ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})",
                             recipe.source, "output_dir", recipe.line_of("output_dir"), fix))


def rescue(recipe: Recipe, write) -> Path | None:
    """After a full disk at the final save with no checkpoint to resume: `write(folder)` the finished model into
    a new folder beside the data cache, else in the system temp dir; the folder it went to (None: no room)."""
    import tempfile

    name = f"ftkit-rescued-{Path(recipe.output_dir).name}-{time.strftime('%Y%m%d-%H%M%S')}"
    for place in [Path(p) for p in (recipe.dataset_prepared_path, tempfile.gettempdir()) if p]:
        target = place / name
        try:
            target.mkdir(parents=True)
            write(target)
            return target
        except Exception as e:  # full there too (or not writable): the next place
            shutil.rmtree(target, ignore_errors=True)
            if not (isinstance(e, OSError) or is_disk_full(e, place)):
                raise
            log.warning(f"could not save the finished model to {target} either ({str(e).splitlines()[0][:120]})")
    return None


def check_space(recipe: Recipe, model, n_train: int) -> None:
    """Warn at the start when output_dir's disk has less room than the run will write there: the final model and
    the checkpoints kept at once (the loaded model's tensors; Adam's two fp32 moments per trained weight)."""
    from ftkit.data.steps import steps_per_epoch
    from ftkit.train.args import total_steps

    out = Path(recipe.output_dir)
    params = list(model.parameters())
    trained = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
    final = trained if recipe.adapter else sum(p.numel() * p.element_size() for p in params)
    checkpoint = final + 8 * sum(p.numel() for p in params if p.requires_grad)
    saves, steps = save_kwargs(recipe, n_train), recipe.max_steps or total_steps(recipe, n_train)
    every = saves.get("save_steps") or max(1, steps_per_epoch(recipe, n_train))
    count = 0 if saves["save_strategy"] == "no" else max(1, steps // every)
    kept = min(count, recipe.save_total_limit or count) + (count > (recipe.save_total_limit or count))
    need, free = final + kept * checkpoint, shutil.disk_usage(out).free
    if free < need:
        log.warning(f"{out} has {free / 1e6:,.1f} MB free, and this run writes about {need / 1e6:,.1f} MB there "
                    f"(the final model, {final / 1e6:,.1f} MB, and up to {kept} checkpoints of {checkpoint / 1e6:,.1f} "
                    "MB at once): the disk may fill before the run ends. Fix: free space, lower save_total_limit, "
                    "or point output_dir at a larger disk")
