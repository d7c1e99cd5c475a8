"""Experiment logging: tensorboard always; W&B, MLflow and Comet when the recipe names them.

transformers' own integrations do the logging (they read their settings from environment variables),
so ftkit only maps the recipe's Axolotl-named keys onto those variables and adds the resolved recipe
to each run's config. Offline modes need no network: `wandb_mode: offline` writes a local run dir,
`mlflow_tracking_uri: file:./mlruns` is a local file store.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

import yaml
from transformers import TrainerCallback

from ftkit.errors import ConfigError, Problem
from ftkit.log import log
from ftkit.recipe import Recipe

_SET_BY_FTKIT: dict[str, str] = {}  # env vars ftkit set for the previous run in this process (cleared per run)


def _set_env(values: dict[str, str | None]) -> None:
    """Set the integrations' variables for this run; drop the ones an earlier run in this process set."""
    for key in list(_SET_BY_FTKIT):
        if os.environ.get(key) == _SET_BY_FTKIT.pop(key):
            del os.environ[key]
    for key, value in values.items():
        if value is not None:
            os.environ[key] = _SET_BY_FTKIT[key] = str(value)


def _known(recipe: Recipe, key: str) -> str | None:
    """The W&B setting as transformers acts on it: a value it does not know is false (the recipe report says so)."""
    from ftkit.recipe.notes import W_AND_B_VALUES

    value = getattr(recipe, key)
    return value if value is None or value in W_AND_B_VALUES[key] else "false"


def report_to(recipe: Recipe) -> list[str]:
    """Which integrations log this run, with their environment set; tensorboard is always on."""
    targets = ["tensorboard"]
    env = {"TENSORBOARD_LOGGING_DIR": str(Path(recipe.output_dir) / "runs" / time.strftime("%Y%m%d-%H%M%S"))}
    if recipe.wandb_project and recipe.wandb_mode != "disabled" and os.environ.get("WANDB_MODE") != "disabled":
        targets.append("wandb")
        env.update(WANDB_PROJECT=recipe.wandb_project, WANDB_ENTITY=recipe.wandb_entity, WANDB_NAME=recipe.wandb_name,
                   WANDB_RUN_ID=recipe.wandb_run_id, WANDB_MODE=recipe.wandb_mode,
                   WANDB_RESUME="allow" if recipe.wandb_run_id else None,
                   WANDB_WATCH=_known(recipe, "wandb_watch"), WANDB_LOG_MODEL=_known(recipe, "wandb_log_model"),
                   WANDB_DIR=str(Path(recipe.output_dir)))  # run dir: OUTPUT_DIR/wandb/
    if recipe.mlflow_tracking_uri or recipe.mlflow_experiment_name:
        targets.append("mlflow")
        env.update(MLFLOW_TRACKING_URI=recipe.mlflow_tracking_uri, MLFLOW_EXPERIMENT_NAME=recipe.mlflow_experiment_name)
        uri = recipe.mlflow_tracking_uri or ""
        if uri.startswith("file:") or (uri and "://" not in uri):  # MLflow 3 refuses file stores unless allowed
            env["MLFLOW_ALLOW_FILE_STORE"] = "true"
            log.info("mlflow_tracking_uri is a file store, which MLflow 3 keeps only in maintenance mode: "
                     "allowing it (MLFLOW_ALLOW_FILE_STORE=true); sqlite:///mlflow.db is the maintained local store")
    if recipe.use_comet:
        targets.append("comet_ml")
    _require_packages(recipe, targets)
    _set_env(env)
    if len(targets) > 1:
        log.info(f"logging to {', '.join(targets)}")
    return targets


_PACKAGES = {  # integration -> (package, recipe key, how to get it)
    "wandb": ("wandb", "wandb_project", "pip install 'ftkit[tracking]' (wandb), or remove wandb_project"),
    "mlflow": ("mlflow", "mlflow_tracking_uri", "pip install 'ftkit[tracking]' (mlflow), or remove the mlflow_ keys"),
    "comet_ml": ("comet_ml", "use_comet", "pip install comet_ml (and set COMET_API_KEY), or remove use_comet"),
}


def _require_packages(recipe: Recipe, targets: list[str]) -> None:
    """A named logger whose package is missing is a config error, not a traceback from inside the Trainer."""
    problems = [Problem(f"logging to {target} needs the {package} package, which is not installed", recipe.source, key,
                        fix=fix) for target, (package, key, fix) in _PACKAGES.items()
                if target in targets and importlib.util.find_spec(package) is None]
    if problems:
        raise ConfigError(problems)


class RecipeLogger(TrainerCallback):
    """Adds the resolved recipe to each logger's run config (runs after the integrations' own setup)."""

    def __init__(self, recipe: Recipe):
        self.recipe = recipe

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        resolved = self.recipe.dump()
        text = yaml.safe_dump(resolved, sort_keys=False)
        tensorboard_text(args, "ftkit/recipe", f"```yaml\n{text}\n```")
        if wandb := open_run(args, "wandb"):
            wandb.config.update({"ftkit_recipe": resolved}, allow_val_change=True)
        if mlflow := open_run(args, "mlflow"):
            mlflow.log_text(text, "ftkit_recipe.yml")
            mlflow.log_params({f"ftkit.{k}": str(v)[:500] for k, v in resolved.items() if v not in (None, [], {})})


def tensorboard_text(args, tag: str, text: str, step: int = 0) -> None:
    """`text` into this run's tensorboard log (when it writes one)."""
    if "tensorboard" in (args.report_to or []) and os.environ.get("TENSORBOARD_LOGGING_DIR"):
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(log_dir=os.environ["TENSORBOARD_LOGGING_DIR"]) as tb:
            tb.add_text(tag, text, step)


def open_run(args, name: str):
    """The wandb or mlflow module when this run logs to it and its run is open; else None."""
    module = sys.modules.get(name) if name in (args.report_to or []) else None
    if module is not None and (module.run if name == "wandb" else module.active_run()) is not None:
        return module
    return None


def finish() -> None:
    """End this process's W&B run, so the offline run dir is complete and the next run starts its own.

    (transformers' WandbCallback leaves the run open after training; MLflow's callback ends its own run.)
    """
    if (wandb := sys.modules.get("wandb")) is not None and wandb.run is not None:
        wandb.finish()
