"""recipes/llama/*.yml validate as written; full.yml trains 2 steps on the tiny twin (base_model swapped).

lora.yml and qlora.yml train on the twin in test_adapters.py (the lora, dora, ..., qlora variants).
"""
from __future__ import annotations

import pytest
from twin import ROOT, train_on_twin

from ftkit.recipe import load_recipe

RECIPES = sorted((ROOT / "recipes" / "llama").glob("*.yml"))


def test_the_llama_method_recipes_are_found():
    assert {"full", "lora", "qlora"} <= {p.stem for p in RECIPES}  # plus the preference recipes


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_names_a_real_model(path):
    assert load_recipe(path).base_model.startswith("meta-llama/")  # swapped for the twin only in tests


def test_full_recipe_runs_two_steps_on_its_twin(tmp_path_factory, tmp_path):
    path = ROOT / "recipes" / "llama" / "full.yml"
    shared = tmp_path_factory.getbasetemp() / "prepared"
    recipe, result = train_on_twin(path, tmp_path, dataset_prepared_path=str(shared))
    assert result.steps == 2 and all(loss == loss for _, loss in result.losses)  # finite, not NaN
    saved = {p.name for p in (tmp_path / "out").iterdir()}
    assert ("adapter_config.json" in saved) is bool(recipe.adapter) and "recipe.yml" in saved
