"""The training methods beyond SFT are plug-ins (ftkit/plugins/), reached only through ftkit/hooks.py: each rl:
value and reward_model: true gets its trainer, its rows and its refused options from exactly one plug-in, an SFT
recipe from none; the core names no plug-in in its code (not even lazily, by a module path in a string)."""
import io
import tokenize

import pytest
from conftest import ROOT

from ftkit import hooks
from ftkit.recipe import load_recipe
from ftkit.recipe.base import METHODS
from ftkit.train.run import method_for

RECIPES = {"sft": ("lora.yml", {}), "dpo": ("dpo.yml", {}), "ipo": ("dpo.yml", {"rl": "ipo"}),
           "simpo": ("dpo.yml", {"rl": "simpo"}), "orpo": ("orpo.yml", {}), "kto": ("kto.yml", {}),
           "grpo": ("grpo.yml", {}), "gdpo": ("grpo.yml", {"rl": "gdpo"}), "reward": ("reward.yml", {})}
CORE = ("recipe", "data", "models", "train", "formats")


def _recipe(method: str, **overrides):
    name, extra = RECIPES[method]
    return load_recipe(ROOT / "recipes" / "llama" / name, {"base_model": "tiny:llama", **extra, **overrides})


@pytest.mark.parametrize("method", METHODS)
def test_each_method_comes_from_one_plugin(method):
    recipe = _recipe(method)
    given = hooks.call(recipe, "method", recipe)
    rows = hooks.call(recipe, "rows", recipe)
    assert method_for(recipe).name == method
    if method == "sft":
        assert given == [] and rows == []
        return
    assert [m.name for m in given] == [method]
    assert len(rows) == 1 and rows[0].__name__.startswith("ftkit.plugins.") and callable(rows[0].convert)
    truncating = _recipe(method, excess_length_strategy="truncate")
    refused = [p for found in hooks.call(truncating, "refused_options", truncating) for p in found]
    assert [p.where for p in refused] == ["excess_length_strategy"], refused


def test_sft_may_truncate():
    recipe = _recipe("sft", excess_length_strategy="truncate")
    assert hooks.call(recipe, "refused_options", recipe) == []


def _names_a_plugin(source: str) -> list[str]:
    """Code tokens that reach ftkit.plugins: the name in an import or attribute, or a dotted module path in a string
    (importlib). Comments and docstrings that say ftkit/plugins/ do not count."""
    toks = tokenize.generate_tokens(io.StringIO(source).readline)
    return [t.string for t in toks if (t.type == tokenize.NAME and t.string == "plugins")
            or (t.type == tokenize.STRING and "ftkit.plugins" in t.string)]


def test_the_core_names_no_plugin():
    found = {str(p.relative_to(ROOT)): hits for pkg in CORE for p in sorted((ROOT / "ftkit" / pkg).rglob("*.py"))
             if (hits := _names_a_plugin(p.read_text(encoding="utf-8")))}
    assert found == {}, "the core reaches plug-ins only through ftkit/hooks.py"
    assert _names_a_plugin("def f():\n    from ftkit.plugins import grpo\n") == ["plugins"]
    assert _names_a_plugin("importlib.import_module('ftkit.plugins.grpo')\n") == ["'ftkit.plugins.grpo'"]
    assert _names_a_plugin('"""See ftkit/plugins/grpo.py."""\n# ftkit.plugins\n') == []
