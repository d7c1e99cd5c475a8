"""`ftkit check RECIPE [--strict]`: validate without loading a model and show what each option does here."""
from __future__ import annotations

from ftkit.axolotl import IGNORED
from ftkit.errors import Problem
from ftkit.recipe.load import inspect_recipe
from ftkit.recipe.train_options import missing_optimizer_package


def check(source, overrides=None, strict: bool = False) -> tuple[str, list[Problem], object]:
    """(the migration report, option by option; the problems that stop the recipe from training; the recipe).

    --strict: options ignored here (speed-only or internal) are problems too.
    """
    recipe, migration, problems = inspect_recipe(source, overrides)
    report = migration.report
    if strict:
        problems += [Problem(f"ignored here ({line.detail}); --strict refuses it", report.file, line.key, line.line,
                             "remove it, or run without --strict") for line in report.of(IGNORED)]
    text = report.table()
    if recipe is not None and recipe.hub_model_id and recipe.push_to_hub is not False:
        text += (f"\nnote: hub_model_id pushes to {recipe.hub_model_id}: ftkit train checks that the hub is on "
                 "(HF_HUB_OFFLINE unset) and the token (`hf auth login`) before training starts")
    if recipe is not None and (pip := missing_optimizer_package(recipe.optimizer)):
        text += (f"\nnote: optimizer {recipe.optimizer} needs the {pip} package, which is not installed here: "
                 f"ftkit train stops before loading anything until it is (pip install {pip})")
    return text, problems, (None if problems else recipe)
