"""Recipes: the YAML schema with Axolotl's option names, loading with overrides, and the options reference."""
from ftkit.recipe.load import apply_overrides, inspect_recipe, load_recipe, parse_overrides
from ftkit.recipe.reference import options_reference
from ftkit.recipe.schema import DatasetSpec, Recipe

__all__ = ["DatasetSpec", "Recipe", "apply_overrides", "inspect_recipe", "load_recipe", "options_reference",
           "parse_overrides"]
