"""GRPO (rl: grpo / gdpo): the twin learns a verifiable task and its held-out reward rises; LoRA and QLoRA step;
reward functions and prompt transforms are imported by path from the recipe's folder, with clear errors; the
trl: block maps onto TRL's GRPOConfig; Axolotl's GDPO example trains 2 steps on its twin."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import yaml
from axolotl_corpus import twin_run_overrides
from conftest import ROOT

from ftkit import data, models, train
from ftkit.axolotl import catalogue as cat
from ftkit.errors import ConfigError, DataError, FtkitError
from ftkit.models import Precision
from ftkit.recipe import load_recipe
from ftkit.recipe.method_options import TRLBlock
from ftkit.plugins import grpo
from ftkit.train.args import grpo_config

RECIPE = ROOT / "recipes" / "llama" / "grpo.yml"
FP32 = Precision(False, False, False)
LENGTH_REWARD = '''
def length(completions, **kwargs):
    """Varies between any two completions, so every group has a learning signal."""
    return [float(len(c[0]["content"])) for c in completions]
'''


def _twin(tmp_path, **overrides):
    """recipes/llama/grpo.yml on the tiny twin, writing under tmp_path (its rewards.py stays next to it)."""
    base = {"base_model": "tiny:llama", "output_dir": str(tmp_path / "out"), "eval_prompts": [],
            "dataset_prepared_path": str(tmp_path / "prepared")}
    return load_recipe(RECIPE, {**base, **overrides})


def _recipe_in(folder: Path, module: str, body: str, **overrides) -> dict:
    """A GRPO recipe written into `folder` with a reward module `module`.py next to it."""
    (folder / f"{module}.py").write_text(body)
    shutil.copy(ROOT / "data_samples" / "arithmetic.jsonl", folder / "arithmetic.jsonl")
    recipe = {"base_model": "tiny:llama", "chat_template": "llama3", "rl": "grpo", "sequence_len": 64,
              "trl": {"reward_funcs": [f"{module}.length"], "num_generations": 4, "max_completion_length": 4},
              "datasets": [{"path": "arithmetic.jsonl", "type": "rewards_transform.arithmetic_prompt"}],
              "micro_batch_size": 8, "max_steps": 2, "logging_steps": 1, "learning_rate": 0.01, "save_strategy": "no",
              "output_dir": str(folder / "out"), "dataset_prepared_path": str(folder / "prepared"), **overrides}
    shutil.copy(ROOT / "recipes" / "llama" / "rewards.py", folder / "rewards_transform.py")
    (folder / "grpo.yml").write_text(yaml.safe_dump(recipe))
    return recipe


# ---------------------------------------------------------------- the twin learns a verifiable task

def test_the_twin_learns_to_answer_with_a_number(tmp_path):
    """Full fine-tune, reward = number_format (share of digits in the answer). Measured with this seed on the
    twin: held-out mean reward 0.024 -> 0.706 and the logged training reward 0.013 -> 0.706 in 20 steps."""
    recipe = _twin(tmp_path, adapter=None, lora_r=None, lora_alpha=None, lora_dropout=None, lora_target_linear=None,
                   learning_rate=0.03, max_steps=20, **{"trl.reward_funcs": ["rewards.number_format"],
                                                         "trl.reward_weights": None})
    result = train.run(recipe)
    before, after = result.reward_before, result.reward_after
    assert (before["n"], before["generations"]) == (17, 4)  # every held-out sum, a group of 4 completions each
    assert after["mean"] > before["mean"] + 0.5 and after["mean"] > 0.6, result.summary()
    assert after["per_func"]["number_format"] == after["mean"]
    rewards = result.series("reward")
    assert len(rewards) == 20 and sum(rewards[-4:]) / 4 > sum(rewards[:4]) / 4 + 0.5, rewards
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["method"] == "grpo" and saved["reward_after"]["mean"] == after["mean"]
    assert "held-out mean reward" in result.summary()


@pytest.mark.parametrize("adapter", ["lora", "qlora"])
def test_lora_and_qlora_grpo_step(tmp_path, adapter):
    """The one training path: the recipe's adapter (4-bit base for qlora) under GRPOTrainer; two steps move it."""
    extra = {"adapter": adapter, "lora_r": 8, "lora_alpha": 16, "lora_target_linear": True,
             **({"load_in_4bit": True} if adapter == "qlora" else {})}
    _recipe_in(tmp_path, "len_rewards", LENGTH_REWARD, **extra)
    recipe = load_recipe(tmp_path / "grpo.yml")
    from ftkit.train.run import build

    trainer = build(recipe).trainer
    assert type(trainer).__name__ == "GRPOTrainer" and trainer.num_generations == 4
    assert [f.__name__ for f in trainer.reward_funcs] == ["length"]
    b_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_B" in n}
    trainer.train()
    assert trainer.state.global_step == 2
    moved = [n for n, p in trainer.model.named_parameters() if "lora_B" in n and not p.detach().equal(b_before[n])]
    assert moved, "no LoRA weight moved"
    assert getattr(trainer.model, "is_loaded_in_4bit", False) is (adapter == "qlora")
    assert all(math.isfinite(h["loss"]) for h in trainer.state.log_history if "loss" in h)


# ---------------------------------------------------------------- reward functions and transforms by import path

def test_reward_functions_come_from_the_recipe_folder_even_with_a_name_taken(tmp_path):
    """Two recipes, each with its own `len_rewards.py`: each run imports the one next to it."""
    for name, factor in (("a", 1), ("b", 2)):
        folder = tmp_path / name
        folder.mkdir()
        _recipe_in(folder, "len_rewards", f"def length(completions, **kwargs):\n    return [{factor}.0] * len(completions)\n")
    got = [grpo.reward_functions(load_recipe(tmp_path / n / "grpo.yml"))[0](completions=[[{}]]) for n in "ab"]
    assert got == [[1.0], [2.0]]


@pytest.mark.parametrize("name,body,message", [
    ("nope.length", None, "reward function 'nope.length' does not import: no module named 'nope'"),
    ("len_rewards.missing", LENGTH_REWARD, "has no 'missing'"),
    ("len_rewards.length", "def length(completions):\n    return [0.0]\n", "takes no **kwargs"),
    ("length", None, "is not an import path (MODULE.FUNCTION)"),
])
def test_a_reward_function_that_does_not_load_is_an_error_naming_file_key_and_fix(tmp_path, name, body, message):
    _recipe_in(tmp_path, "len_rewards", body or LENGTH_REWARD)
    data_ = yaml.safe_load((tmp_path / "grpo.yml").read_text())
    data_["trl"]["reward_funcs"] = [name]
    (tmp_path / "grpo.yml").write_text(yaml.safe_dump(data_))
    with pytest.raises(FtkitError) as e:
        train.run(load_recipe(tmp_path / "grpo.yml"))  # fails before any data or model is loaded
    err = e.value.problems[0]
    assert message in err.problem and err.where == "trl.reward_funcs.0" and err.file.endswith("grpo.yml"), str(e.value)
    assert "next to the recipe" in err.fix or "**kwargs" in err.fix
    assert not (tmp_path / "prepared").exists()


def test_prompt_rows_from_a_transform_and_from_plain_prompts(tmp_path, tiny_tokenizer):
    _recipe_in(tmp_path, "len_rewards", LENGTH_REWARD)
    recipe = load_recipe(tmp_path / "grpo.yml")
    rows = data.prepare(recipe, models.load_tokenizer(recipe))
    first = rows.train[0]
    assert set(first) == {"prompt", "answer"}  # question removed by the transform, answer kept for the rewards
    assert first["prompt"][0]["role"] == "user" and first["prompt"][0]["content"].startswith("What is ")
    assert rows.stats["kept"] == 64 and rows.stats["method"] == "grpo"
    plain = tmp_path / "plain.jsonl"
    plain.write_text(json.dumps({"prompt": "Say hi."}) + "\n" + json.dumps({"prompt": "x " * 200}) + "\n"
                     + json.dumps({"prompt": "  "}) + "\n")
    recipe = load_recipe(tmp_path / "grpo.yml", {"datasets": [{"path": str(plain)}]})
    rows = data.prepare(recipe, models.load_tokenizer(recipe))
    assert rows.train[0]["prompt"] == [{"role": "user", "content": "Say hi."}]  # a text is one user turn
    assert (rows.stats["dropped_too_long"], rows.stats["dropped_empty"]) == (1, 1)  # counted, not silent
    plain.write_text(json.dumps({"prompt": 3}) + "\n")
    with pytest.raises(DataError, match=r"plain.jsonl:1: field 'prompt' must be a text or a list"):
        data.prepare(load_recipe(tmp_path / "grpo.yml", {"datasets": [{"path": str(plain)}]}), tiny_tokenizer)


def test_a_transform_that_fails_names_the_transform_and_dataset(tmp_path, tiny_tokenizer):
    _recipe_in(tmp_path, "len_rewards", LENGTH_REWARD + "\n\ndef broken(cfg, **kwargs):\n"
               "    return lambda row: {'prompt': row['nope']}\n")
    recipe = load_recipe(tmp_path / "grpo.yml", {"datasets.0.type": "len_rewards.broken"})
    with pytest.raises(FtkitError, match=r"datasets.0.type: the dataset transform len_rewards.broken failed on "
                                         r"arithmetic.jsonl: KeyError"):
        data.prepare(recipe, tiny_tokenizer)


# ---------------------------------------------------------------- the trl: block and the checks

def test_trl_block_maps_onto_grpo_config(tmp_path):
    trl = {"reward_funcs": ["rewards.number_format"], "num_generations": 4, "max_completion_length": 12,
           "temperature": 0.7, "top_p": 0.9, "epsilon": 0.1, "epsilon_high": 0.28, "loss_type": "dr_grpo",
           "scale_rewards": False, "num_iterations": 2, "mask_truncated_completions": True, "beta": 0.04,
           "use_vllm": True, "vllm_server_port": 8000, "importance_sampling_level": "sequence"}
    recipe = _twin(tmp_path, trl=trl)
    said = {line.key: line.detail for line in recipe.report.lines}
    assert said["trl.use_vllm"].startswith("speed only: a setting of vLLM generation") and recipe.rl_beta == 0.04
    cfg = grpo_config(recipe, FP32, n_train=64)
    assert (cfg.num_generations, cfg.max_completion_length, cfg.temperature, cfg.top_p) == (4, 12, 0.7, 0.9)
    assert (cfg.epsilon, cfg.epsilon_high, cfg.loss_type, cfg.scale_rewards, cfg.num_iterations) == \
        (0.1, 0.28, "dr_grpo", "none", 2)
    assert (cfg.beta, cfg.mask_truncated_completions, cfg.importance_sampling_level, cfg.use_vllm) == \
        (0.04, True, "sequence", False)  # generation stays with transformers
    assert cfg.multi_objective_aggregation == "sum_then_normalize" and cfg.per_device_eval_batch_size == 4
    gdpo = grpo_config(_twin(tmp_path, rl="gdpo"), FP32)
    assert gdpo.multi_objective_aggregation == "normalize_then_sum"  # GDPO: Axolotl's default for rl: gdpo


@pytest.mark.parametrize("overrides,message", [
    ({"trl.reward_funcs": None}, "trl.reward_funcs: rl: grpo needs at least one reward function"),
    ({"trl.reward_weights": [1.0]}, "trl.reward_weights: has 1 weights for 2 reward functions"),
    ({"trl.num_generations": 3}, "trl.num_generations: 3 completions per prompt do not divide the 8 completions"),
    ({"eval_batch_size": 6}, "eval_batch_size: 6 does not hold whole groups of 4"),
    ({"trl.sync_ref_model": True}, "trl.sync_ref_model: there is no reference model with rl_beta 0"),
    ({"trl.vllm_guided_decoding_regex": "[0-9]+"}, "vLLM guided decoding constrains which completions"),
    ({"trl.async_prefetch": True}, "Axolotl's async GRPO pipeline"),
    ({"rl": "dpo"}, "trl: is not read by rl: dpo (only by rl: grpo or rl: gdpo)"),
])
def test_grpo_settings_trl_would_reject_are_recipe_errors(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=None) as e:
        _twin(tmp_path, **overrides)
    assert message in str(e.value), str(e.value)


def test_a_full_fine_tune_with_a_reference_that_differs_from_base_model_is_refused(tmp_path):
    """TRL reloads base_model as a full fine-tune's reference: added tokens would make it another model."""
    recipe = _twin(tmp_path, adapter=None, lora_r=None, lora_alpha=None, lora_dropout=None, lora_target_linear=None,
                   rl_beta=0.04, tokens=["<sum>"])
    with pytest.raises(FtkitError, match=r"rl_beta: rl_beta > 0 needs a reference model.*its embeddings grew"):
        train.run(recipe)


def test_the_catalogue_lists_the_trl_fields_and_no_field_twice():
    assert set(cat.NESTED_FIELDS["trl"]) == set(TRLBlock.model_fields)
    assert not [name for (level, name) in cat.CATALOGUE if level == "trl" and name in TRLBlock.model_fields]
    assert cat.lookup("trl", "beta").canonical == "rl_beta"


# ---------------------------------------------------------------- Axolotl's GRPO-family example

def test_axolotl_gdpo_example_trains_two_steps_on_its_twin(tmp_path):
    """examples/llama-3/qlora-1b-gdpo.yaml with model and data swapped (its rwd.py: tests/data/axolotl_examples)."""
    path = ROOT / "tests" / "data" / "axolotl_examples" / "llama-3-qlora-1b-gdpo.yaml"
    recipe = load_recipe(path, twin_run_overrides(path, tmp_path, "tiny:llama"))
    assert recipe.rl == "gdpo" and recipe.trl.reward_funcs == ["rwd.format_reward", "rwd.correctness_reward"]
    result = train.run(recipe)
    assert result.steps == 2 and all(math.isfinite(v) for _, v in result.losses), result.summary()
    assert len(result.series("reward")) == 2 and (Path(recipe.output_dir) / "recipe.yml").is_file()
