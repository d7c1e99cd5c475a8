"""`ftkit check RECIPE [--strict]`: validate without loading a model and show what each option does here."""
from __future__ import annotations

from ftkit.axolotl import IGNORED
from ftkit.errors import Problem
from ftkit.recipe.load import inspect_recipe


def check(source, overrides=None, strict: bool = False) -> tuple[str, list[Problem], object]:
    """(the migration report, option by option; the problems that stop the recipe from training; the recipe).

    --strict: options ignored here (speed-only or internal) are problems too. What needs the model, the
    environment or the rows (hub push, optimizer package, LoRA targets, ...) is train/preflight.py's.
    """
    recipe, migration, problems = inspect_recipe(source, overrides)
    report = migration.report
    if strict:
        problems += [Problem(f"ignored here ({line.detail}); --strict refuses it", report.file, line.key, line.line,
                             "remove it, or run without --strict") for line in report.of(IGNORED)]
    return report.table(), problems, (None if problems else recipe)
