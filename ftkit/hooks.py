"""The seam between the core and ftkit/plugins/: optional methods and features, loaded by name.

The core imports no plug-in (the import-linter layers put ftkit.plugins above ftkit.train; this module sits at the
bottom, so data/ and models/ may call it too). It asks which plug-ins a recipe turns on and calls the hooks they
define. A plug-in is a module with
`applies(recipe) -> bool` and any of the hooks in HOOKS; a hook it does not define is skipped."""
from __future__ import annotations

import importlib

PLUGINS: tuple[str, ...] = (  # module names under ftkit/plugins/, in the order their hooks run
    # the training methods beyond SFT
    "ftkit.plugins.pairs",  # preference rows and held-out pairs (rl: dpo/ipo/kto/orpo/simpo, reward_model: true)
    "ftkit.plugins.preference",  # rl: dpo/ipo/kto/orpo/simpo: TRL's preference trainers
    "ftkit.plugins.reward",  # reward_model: true: TRL's RewardTrainer
    "ftkit.plugins.grpo",  # rl: grpo/gdpo: prompt rows, reward functions, TRL's GRPOTrainer
    # the features a recipe turns on
    "ftkit.plugins.relora",  # relora / relora_steps: merge and restart the adapter every R steps
    "ftkit.plugins.lisa",  # lisa_n_layers: a few decoder layers train at a time
    "ftkit.plugins.stream",  # pretraining_dataset: raw text tokenized and packed while training
    "ftkit.plugins.kernels",  # Liger / CCE named, or a CPU run: how the LM head's loss is computed
    "ftkit.plugins.packing",  # sample_packing / eval_sample_packing: rows packed ahead, their collator
    "ftkit.plugins.schedules",  # cosine_constant_lr_ratio / lr_quadratic_warmup / jagged_restart_steps: LR shapes
    "ftkit.plugins.distributed",  # deepspeed / fsdp, or more than one process: the engine's arguments
    "ftkit.plugins.tracking",  # wandb_project / mlflow_* / use_comet: loggers beside tensorboard
)

HOOKS = {  # hook -> its signature and what the core does with what it returns
    # the training methods beyond SFT
    "method": "(recipe) -> Method: the trainer this recipe trains with (SFT when no plug-in gives one)",
    "rows": "(recipe) -> a module like data/sft.py (REASONS, convert, mixed_stats): data.prepare reads rows with it",
    "data_files": "(recipe) -> list[str]: code the rows depend on (GRPO transforms), part of the data fingerprint",
    "refused_options": "(recipe) -> list[Problem]: option values the method cannot honour, raised by data.prepare",
    # the features a recipe turns on
    "prepare": "(recipe, tokenizer) -> rows: the plug-in reads the rows itself; data.prepare returns them as they are",
    "pack_prepared": "(recipe, prepared) -> None: data.prepare's rows (fresh or a cache hit); replace its splits in place "
                     "(packed rows, with their stats and cache)",
    "patch_model": "(recipe, model) -> None: change the loaded model in place, before a trainer wraps it",
    "sft_loss": "(recipe, model) -> None: SFT's trainer is about to be built; how TRL's fused LM head scores tokens",
    "collator": "(recipe, tokenizer, model) -> data collator for SFT's rows (the first given; none: TRL's padding one)",
    "trainer_built": "(recipe, trainer) -> None: the trainer is built, nothing has run; change it in place",
    "callbacks": "(recipe, prepared) -> [TrainerCallback]: first in the run's callbacks (their on_save before the "
                 "manifest's)",
    "resume": "(trainer, checkpoint or None) -> None: training is about to start, from that checkpoint",
    "checkpoint_loaded": "(trainer) -> None: the last step's checkpoint was loaded without training (finish_from)",
    "save_weights": "(trainer, folder) -> None: write the final weights there in place of trainer.save_model",
    "training_args": "(recipe) -> dict: TrainingArguments fields to add (train/args.py), e.g. deepspeed, fsdp_config",
    "check": "(report) -> None: `ftkit check` and the preflight before training: add the plug-in's problems to report",
    "report_to": "(recipe) -> list[str]: loggers beside tensorboard (TrainingArguments.report_to), their variables set",
    "run_end": "(recipe) -> None: the run ended (trained, failed or interrupted): undo what the plug-in set in this "
               "process (a later run in a notebook starts plain)",
}


def active(recipe) -> list:
    """The plug-in modules this recipe turns on, in PLUGINS order."""
    return [module for module in map(importlib.import_module, PLUGINS) if module.applies(recipe)]


def call(recipe, hook: str, *args) -> list:
    """Each active plug-in's `hook(*args)`, in order; plug-ins without that hook are skipped."""
    assert hook in HOOKS, f"unknown hook {hook!r}: add it to HOOKS with its contract"
    return [getattr(module, hook)(*args) for module in active(recipe) if hasattr(module, hook)]
