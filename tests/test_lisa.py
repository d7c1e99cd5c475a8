"""LISA: at every step exactly lisa_n_layers layers get gradients, the draw changes every lisa_step_interval steps
and follows the recipe's seed, and the layers out of the draw do not move at all (AdamW with weight decay)."""
from __future__ import annotations

import pytest
import torch
from transformers import TrainerCallback
from axolotl_corpus import twin_run_overrides
from twin import ROOT, load_on_twin

from ftkit.errors import ConfigError, FtkitError
from ftkit.plugins.lisa import draw

EXAMPLES = ROOT / "tests" / "data" / "axolotl_examples"  # Axolotl's own, byte for byte after a source line
FULL = ROOT / "recipes" / "llama" / "full.yml"


def test_the_draw_is_a_function_of_the_seed_and_the_interval():
    seq = [draw(42, k, total=8, n=3) for k in range(10)]
    assert seq == [draw(42, k, total=8, n=3) for k in range(10)]  # the same recipe draws the same layers
    assert seq != [draw(7, k, total=8, n=3) for k in range(10)]  # another seed, another sequence
    assert all(len(set(d)) == 3 and d == sorted(d) and 0 <= d[0] and d[-1] < 8 for d in seq)
    assert len({tuple(d) for d in seq}) > 1  # and it changes between intervals


class Layers(TrainerCallback):
    """Per step: which decoder layers hold a gradient at the optimizer step, and their weights before and after."""

    def __init__(self):
        self.with_grad, self.before, self.moved, self.embed_moved = {}, {}, {}, {}

    def on_step_begin(self, args, state, control, model=None, **kwargs):  # runs after LISA's (callback order)
        self.before[state.global_step] = [[p.detach().clone() for p in layer.parameters()] for layer in model.model.layers]
        self.embed = model.model.embed_tokens.weight.detach().clone()

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.with_grad[state.global_step] = [i for i, layer in enumerate(model.model.layers)
                                             if any(p.grad is not None for p in layer.parameters())]

    def on_step_end(self, args, state, control, model=None, **kwargs):
        step = state.global_step - 1
        self.moved[step] = [not all(torch.equal(a, b) for a, b in zip(old, layer.parameters()))
                            for old, layer in zip(self.before[step], model.model.layers)]
        self.embed_moved[step] = not torch.equal(self.embed, model.model.embed_tokens.weight)


def test_lisa_trains_exactly_n_layers_per_interval_and_freezes_the_rest_bit_for_bit(tmp_path, said):
    from ftkit import train

    recipe = load_on_twin(FULL, tmp_path, max_steps=6, lisa_n_layers=1, lisa_step_interval=2, seed=2,
                          learning_rate=0.01, weight_decay=0.1, optimizer="adamw_torch", gradient_checkpointing=False)
    seen = Layers()
    result = train.run(recipe, callbacks=[seen])
    assert result.steps == 6
    # seed 2 draws layer 1, then 0, then 1 (the twin has 2 layers): layer 1 stops training with AdamW moments and
    # weight decay pending, and must still not move
    assert [draw(2, k, total=2, n=1) for k in range(3)] == [[1], [0], [1]]
    for step in range(6):
        drawn = draw(2, step // 2, total=2, n=1)
        assert seen.with_grad[step] == drawn, step  # exactly n layers have gradients: the seeded draw
        assert seen.moved[step] == [i in drawn for i in range(2)], step  # the others: bit-identical
        assert seen.embed_moved[step]  # embeddings (and the head) always train
    assert [m for m in said if m.startswith("LISA: steps")] == [
        f"LISA: steps {s}-{s + 1}: layers {draw(2, s // 2, 2, 1)} train" for s in (0, 2, 4)]
    assert all(p.requires_grad for p in result.model.parameters())  # the saved model: nothing left frozen


def test_a_wrong_layers_attribute_names_the_layer_lists_the_model_has(tmp_path):
    from ftkit import models
    from ftkit.plugins.lisa import layer_list

    recipe = load_on_twin(FULL, tmp_path)
    model = models.load_model(recipe, models.load_tokenizer(recipe))
    assert len(layer_list(model, "model.layers")) == 2
    with pytest.raises(FtkitError, match=r"lisa_layers_attribute: LlamaForCausalLM has no layer list at transformer\.h"
                                         r".*Fix: use one of: model\.layers"):
        layer_list(model, "transformer.h")


@pytest.mark.parametrize("overrides, key, fix", [
    ({"lisa_n_layers": 2}, "lisa_step_interval", "set both"),
    ({"lisa_n_layers": 2, "lisa_step_interval": 5, "adapter": "lora"}, "lisa_n_layers", "remove adapter"),
    ({"lisa_layers_attribute": "transformer.h"}, "lisa_layers_attribute", "set them, or remove it"),
])
def test_lisa_settings_that_cannot_run_are_config_errors(tmp_path, overrides, key, fix):
    with pytest.raises(ConfigError, match=rf"full.yml(:\d+)?: {key}: .*Fix: {fix}"):
        load_on_twin(FULL, tmp_path, **overrides)


def test_zero_is_off_as_in_axolotl(tmp_path):
    """Axolotl tests lisa_* and jagged_restart_steps for truth: 0 there is off, and here unset (said)."""
    recipe = load_on_twin(FULL, tmp_path, lisa_n_layers=0, lisa_step_interval=0, jagged_restart_steps=0)
    assert (recipe.lisa_n_layers, recipe.lisa_step_interval, recipe.jagged_restart_steps) == (None, None, None)
    assert {line.key: line.status for line in recipe.report.lines}["lisa_step_interval"] == "empty"


def test_axolotls_lisa_example_trains_two_steps_on_its_twin(tmp_path, said):
    """examples/llama-2/lisa.yml (full fine-tune, lisa_n_layers 4 every 20 steps, adamw_bnb_8bit) on the 2-layer twin."""
    from ftkit import train
    from ftkit.recipe import load_recipe

    path = EXAMPLES / "llama-2-lisa.yml"
    recipe = load_recipe(path, twin_run_overrides(path, tmp_path, "tiny:llama"))
    assert (recipe.lisa_n_layers, recipe.lisa_step_interval, recipe.lisa_layers_attribute) == (4, 20, "model.layers")
    result = train.run(recipe)
    assert result.steps == 2 and all(loss == loss for _, loss in result.losses)
    assert any("lisa_n_layers 4 >= the model's 2 layers" in m for m in said)  # the twin has fewer layers: said
