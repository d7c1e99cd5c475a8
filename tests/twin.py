"""Run any recipe on its tiny twin: swap base_model for tiny:<family>, write under a temp dir, few steps.

Reusable by every recipe test (the cookbook tests parametrize over recipes/**/*.yml with it).
"""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# What makes a real recipe fit the twin and the CPU; everything else (adapter, quantization, ...) is kept.
FAST = {"max_steps": 2, "logging_steps": 1, "eval_prompts": [], "val_set_size": 0, "warmup_steps": 0,
        "micro_batch_size": 4, "gradient_accumulation_steps": 1, "sequence_len": 128, "save_steps": None,
        # full fp32 on every device: reload/merge tests compare logits to 1e-5, which bf16 and TF32 (GPU auto) cannot meet
        "bf16": False, "fp16": False, "tf32": False}


def twin_overrides(tmp: Path, family: str = "llama", **overrides) -> dict:
    """Overrides that put a recipe on tiny:<family>, with outputs and the data cache under `tmp`."""
    return {"base_model": f"tiny:{family}", "output_dir": str(tmp / "out"),
            "dataset_prepared_path": str(tmp / "prepared"), **FAST, **overrides}


def load_on_twin(recipe_path, tmp: Path, family: str = "llama", **overrides):
    from ftkit.recipe import load_recipe

    return load_recipe(Path(recipe_path), twin_overrides(tmp, family, **overrides))


def train_on_twin(recipe_path, tmp: Path, family: str = "llama", **overrides):
    """(recipe, TrainResult) after a short run of the recipe on its tiny twin."""
    from ftkit import train

    recipe = load_on_twin(recipe_path, tmp, family, **overrides)
    return recipe, train.run(recipe)
