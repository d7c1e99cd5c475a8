"""Checkpoints: when to save, how many to keep, and which checkpoint a run resumes from.

The HF Trainer writes `checkpoint-N/` (weights, optimizer, scheduler, RNG states, data position); ftkit
then records a manifest of its files (checkpoint_files.py). Auto-resume takes the newest checkpoint whose
files match their manifest, skipping damaged ones with the reason, and refuses one written by a different
recipe or from other data (a data file edited in place since: the run would train on two datasets spliced
together), unless told to resume anyway (`--resume-changed-data`), which it then says. An older ftkit's
checkpoint without a manifest is adopted when its files load (checkpoint_files.adopt). Resuming restores the
data order and RNG, so the loss curve continues where it stopped.
"""
from __future__ import annotations

from pathlib import Path

from transformers import TrainerState

from ftkit import hooks
from ftkit.data.cache import changed_files
from ftkit.data.steps import steps_per_epoch
from ftkit.errors import ConfigError, Problem
from ftkit.log import log
from ftkit.recipe import Recipe
from ftkit.recipe.fingerprint import training_options
from ftkit.train.checkpoint_files import adopt, numbered, problem_with, recipe_of


def save_kwargs(recipe: Recipe, n_train: int, world: int = 1) -> dict:
    """save_strategy / save_steps / saves_per_epoch / save_total_limit as TrainingArguments.

    As in Axolotl: an interval means steps; without one a checkpoint is written at the end of every epoch
    (and at the last step), keeping the newest save_total_limit (4).
    """
    every = recipe.save_steps
    if recipe.saves_per_epoch:
        every = max(1, steps_per_epoch(recipe, n_train, world) // recipe.saves_per_epoch)
    strategy = "steps" if every else recipe.save_strategy or "epoch"  # an interval wins, as in Axolotl
    if strategy == "no":
        return {"save_strategy": "no"}
    # save_total_limit is applied by ftkit (checkpoint_files.rotate), which deletes only its own checkpoints
    out = {"save_strategy": strategy, "save_total_limit": None}
    return {**out, "save_steps": every} if strategy == "steps" else out


def option_changes(then: dict, now: dict, most: int | None = None) -> str:
    """The training options that differ between two records ("key: old -> new; ..."), the first `most` of them;
    "" when they agree or `then` recorded none."""
    changes = [f"{k}: {then.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(then) | set(now))
               if then.get(k) != now.get(k)] if then else []
    return "; ".join(changes[:most]) + ("; ..." if most and len(changes) > most else "")


def _check_data(recipe: Recipe, checkpoint: Path, data: dict | None, changed_ok: bool) -> None:
    """The data the checkpoint was trained on is the data this run prepared (fingerprint of the rows), else an
    error naming the files that changed; with `changed_ok` the resume goes on, said."""
    then = recipe_of(checkpoint, "data")
    if not (data and then) or then.get("fingerprint") == data.get("fingerprint"):
        return
    files = changed_files(then, data)
    what = (f"the data changed since {checkpoint} was written ("
            + (f"{', '.join(files[:3])}{' ...' if len(files) > 3 else ''} differ" if files else
               "the prepared rows differ: same files, other bytes or tokenizer") + ")")
    if changed_ok:
        log.warning(f"{what}; resuming anyway (--resume-changed-data): the rest of the run trains on the new data")
        return
    raise ConfigError(Problem(f"{what}: resuming would train the rest of the run on other rows than its first "
                              "steps, two datasets spliced together", recipe.source, "datasets",
                              recipe.line_of("datasets"),
                              fix="put the data back as it was, or pass --resume-changed-data to continue on the new "
                                  "data (said in the log), or --overwrite with auto_resume_from_checkpoints: false to "
                                  "start afresh"))


def _unusable(checkpoint: Path) -> str | None:
    """Why `checkpoint` cannot be resumed; None when its manifest matches, or it is an older ftkit's whose files
    load (adopted now)."""
    wrong = problem_with(checkpoint)
    return None if wrong and adopt(checkpoint) else wrong  # adopt: only a checkpoint without a manifest


def latest_complete(recipe: Recipe, data: dict | None = None, changed_ok: bool = False) -> str | None:
    """The newest checkpoint-N in output_dir whose files match its manifest (or an older ftkit's that loads);
    damaged newer ones are skipped (each with the reason). One written by a different recipe or from other data
    is an error, not a silent resume."""
    for _, d in numbered(recipe.output_dir):
        if wrong := _unusable(d):
            log.warning(f"skipping {d}: {wrong}; trying an older checkpoint")
            continue
        if changes := option_changes(recipe_of(d), training_options(recipe.dump()), most=4):
            raise ConfigError(Problem(f"{d} was written by a different recipe ({changes}), so resuming it would train "
                                      "the old run under this recipe's name", recipe.source, "auto_resume_from_checkpoints",
                                      fix="use a new output_dir for this recipe, or set the changed options back"))
        _check_data(recipe, d, data, changed_ok)
        return str(d)
    return None


def resume_from(recipe: Recipe, data: dict | None = None, changed_ok: bool = False) -> str | None:
    """The checkpoint this run continues from: the explicit one, the newest complete one, or none. `data`: this
    run's data record (data/cache.data_record), compared with the checkpoint's."""
    if recipe.resume_from_checkpoint:
        path = Path(recipe.resume_from_checkpoint)
        if wrong := (_unusable(path) if path.is_dir() else "it is not a directory"):
            older = [str(d) for _, d in numbered(path.parent) if d != path and not problem_with(d)]
            raise ConfigError(Problem(f"{path} cannot be resumed: {wrong}", recipe.source, "resume_from_checkpoint",
                                      fix=f"resume from {older[0]} (the newest intact one)" if older else
                                          "point it at an intact output_dir/checkpoint-N, or use "
                                          "auto_resume_from_checkpoints: true"))
        if changes := option_changes(recipe_of(path), training_options(recipe.dump())):
            log.warning(f"resuming {path}, written with other training options: {changes}")
        _check_data(recipe, path, data, changed_ok)
        return str(path)
    if recipe.auto_resume_from_checkpoints:
        found = latest_complete(recipe, data, changed_ok)
        log.info(f"resuming from {found}" if found else
                 f"auto_resume_from_checkpoints: no intact checkpoint in {recipe.output_dir}; starting fresh")
        return found
    return None


def is_last_step(trainer, checkpoint: str) -> bool:
    """True when `checkpoint` is the last step of the run the trainer is set up for (same max_steps, or the same
    epochs when max_steps is unset). Resuming such a checkpoint, the Trainer would still train one more step
    (it only checks max_steps after a step), so `finish_from` loads it instead."""
    state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))
    args = trainer.args
    same_length = (args.max_steps == state.max_steps if args.max_steps > 0 else
                   args.num_train_epochs == state.num_train_epochs)
    return bool(state.max_steps) and state.global_step >= state.max_steps and same_length


def finish_from(recipe: Recipe, trainer, checkpoint: str) -> None:
    """A run whose last step is in `checkpoint`: its weights and logged history, no training (then it is saved)."""
    trainer._load_from_checkpoint(checkpoint)  # the Trainer's own loader: full weights or the adapter
    trainer.state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))
    hooks.call(recipe, "checkpoint_loaded", trainer)  # a ReLoRA run: the base as merged at its restarts
    log.info(f"{checkpoint} holds the run's last step ({trainer.state.global_step}): loaded, not trained further")
