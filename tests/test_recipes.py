"""Every recipe under recipes/ (found by glob, none registered) validates and trains 2 steps on its tiny twin.

The twin comes from the recipe itself (ftkit.cookbook.twins.twin_for_recipe: a tiny: base_model, a `# tiny twin:`
header, or the folder name), so a new recipe is tested with no new code.
"""
import json
import math
from pathlib import Path

import pytest

from ftkit import train
from ftkit.cookbook.twins import twin_overrides
from ftkit.models.families import FAMILIES
from ftkit.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPES_DIR = ROOT / "recipes"
LAUNCH_DIRS = {"accelerate", "deepspeed"}  # launch configs (accelerate/DeepSpeed), not training recipes
RECIPES = sorted(p for p in RECIPES_DIR.rglob("*.yml") if not LAUNCH_DIRS & set(p.relative_to(RECIPES_DIR).parts))
SAMPLE_ROWS = 64  # a 2-step run on the twin needs 2 x 8 rows; tokenizing all 2,400 per twin would dominate the test


def _param(path: Path):
    return pytest.param(path, id=str(path.relative_to(RECIPES_DIR)))


def test_recipe_tree_is_complete():
    family_dirs = [d for d in RECIPES_DIR.iterdir() if d.is_dir() and d.name in FAMILIES and d.name != "llama"]
    assert len(family_dirs) == len(FAMILIES) - 1  # every twin family has a folder (llama: the adapters branch)
    for d in family_dirs:
        assert (d / "lora.yml").is_file() and (d / "qlora.yml").is_file(), d
    assert len(RECIPES) >= 1 + 2 * len(family_dirs), [str(p) for p in RECIPES]  # quickstart + lora/qlora each


@pytest.fixture(scope="module")
def prepared_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("prepared")  # shared: lora and qlora of a family tokenize once


def _small_copy(path: str, recipe_file: Path, tmp: Path) -> str:
    """First SAMPLE_ROWS lines of a .jsonl dataset (other formats are used as they are)."""
    src = Path(path) if Path(path).is_absolute() else next(
        (p / path for p in [Path.cwd(), *recipe_file.parents] if (p / path).exists()), Path(path))
    if src.suffix != ".jsonl" or not src.is_file():
        return path
    dst = tmp / f"{src.stem}-{SAMPLE_ROWS}.jsonl"
    with open(src) as f:
        dst.write_text("".join(line for _, line in zip(range(SAMPLE_ROWS), f)))
    return str(dst)


@pytest.mark.parametrize("path", [_param(p) for p in RECIPES])
def test_recipe_validates_and_trains_two_steps_on_its_twin(path, tmp_path, prepared_dir):
    recipe = load_recipe(path)  # the recipe exactly as written must validate
    overrides = {**twin_overrides(path), "max_steps": 2, "output_dir": str(tmp_path / "out"),
                 "dataset_prepared_path": str(prepared_dir), "eval_prompts": []}
    for i, ds in enumerate(recipe.datasets):
        overrides[f"datasets.{i}.path"] = _small_copy(ds.path, path, tmp_path)
    small = load_recipe(path, overrides)
    result = train.run(small)
    logged = [loss for _, loss in getattr(result, "losses", [])] or \
        [h["loss"] for h in getattr(result, "history", []) if "loss" in h]  # SFT runs / preference (rl:) runs
    assert result.steps == 2 and logged and all(math.isfinite(v) for v in logged), result.summary()
    out = Path(small.output_dir)
    assert json.loads((out / "metrics.json").read_text())["steps"] == 2
    if recipe.adapter and not recipe.relora_active:  # ReLoRA saves the merged model (no adapter)
        cfg = json.loads((out / "adapter_config.json").read_text())
        if recipe.lora_target_modules:
            assert set(cfg["target_modules"]) == set(recipe.lora_target_modules)
    else:
        assert (out / "config.json").is_file()
