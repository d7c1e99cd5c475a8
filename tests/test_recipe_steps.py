"""save_steps / eval_steps / warmup_steps: a whole number of steps, or a fraction below 1 (Axolotl's rule).

Until the Steps type carried the check, RunOptions' validator for save_steps/eval_steps shared its name with
TrainOptions' one for warmup_steps, so Recipe kept only the latter and `save_steps: 2.5` passed the recipe check.
"""
import pytest

from ftkit.errors import ConfigError
from ftkit.recipe import load_recipe

from conftest import QUICKSTART


@pytest.mark.parametrize("key", ["save_steps", "eval_steps", "warmup_steps"])
def test_steps_are_whole_or_a_fraction(key):
    assert getattr(load_recipe(QUICKSTART, [f"--{key}=0.25"]), key) == 0.25
    assert getattr(load_recipe(QUICKSTART, [f"--{key}=3.0"]), key) == 3 and \
        isinstance(getattr(load_recipe(QUICKSTART, [f"--{key}=3.0"]), key), int)
    with pytest.raises(ConfigError, match=rf"{key}: value error, use a whole number of steps, or a fraction below 1"):
        load_recipe(QUICKSTART, [f"--{key}=2.5"])
