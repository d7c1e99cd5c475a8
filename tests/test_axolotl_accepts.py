"""Configs Axolotl trains, ftkit trains: settings that change nothing are notes, test_datasets is the eval set,
data_files without path, a remote-code model_type, lora_target_modules the model partly lacks, load_in_4bit with
adapter: lora, 1-token rows dropped, and LoRA's lora_A drawn from the seed (each checked on real rows or weights)."""
import json
import math
import os

import pytest
import torch

from ftkit import data, models
from ftkit.errors import ConfigError, FtkitError
from ftkit.formats.prompt import strategy_for
from ftkit.formats.tokenize import IGNORE
from ftkit.recipe import load_recipe
from ftkit.recipe.check import check


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


ALPACA = [{"instruction": f"Say {w}.", "input": "", "output": f"{w.capitalize()}!"} for w in
          ("hi", "yes", "no", "red", "blue", "green", "one", "two")]


def notes(source) -> dict[str, str]:
    report, problems, _ = check(source)
    assert not problems, problems
    return {line.split()[1]: line.split(None, 2)[2] for line in report.splitlines() if line.strip().startswith("note ")}


# ---------------------------------------------------------------- item 4: harmless settings are notes

def test_dataset_keys_that_change_nothing_are_notes_and_the_rest_stay_errors(tiny_tokenizer):
    base = {"base_model": "tiny:llama"}
    said = notes({**base, "datasets": [
        {"path": "a.jsonl", "type": "alpaca", "field_instruction": "instruction", "field_output": "output"},
        {"path": "o.jsonl", "type": "oasst", "roles_to_train": ["gpt"], "train_on_eos": "turn"},
        {"path": "s.jsonl", "type": "sharegpt", "conversation": "vicuna_v1.1", "field": "text"}]})
    assert set(said) == {"datasets.0.field_instruction", "datasets.0.field_output", "datasets.1.roles_to_train",
                         "datasets.1.train_on_eos", "datasets.2.field"}
    assert "changes nothing for oasst" in said["datasets.1.roles_to_train"]
    # the rows are encoded exactly as without those keys
    plain = load_recipe({**base, "datasets": [{"path": "o.jsonl", "type": "oasst"}]})
    noted = load_recipe({**base, "datasets": [{"path": "o.jsonl", "type": "oasst", "roles_to_train": ["gpt"],
                                               "train_on_eos": "turn"}]})
    row = {"INSTRUCTION": "Say hi.", "RESPONSE": "Hi!"}
    assert strategy_for(noted.datasets[0], noted, tiny_tokenizer).encode_batch([row], tiny_tokenizer) == \
        strategy_for(plain.datasets[0], plain, tiny_tokenizer).encode_batch([row], tiny_tokenizer)
    # values that ask for something the type does not do stay errors
    for bad, key, why in [({"type": "oasst", "roles_to_train": ["user"]}, "roles_to_train", "applies only to type"),
                          ({"type": "alpaca", "train_on_eos": "none"}, "train_on_eos", "applies only to type"),
                          ({"type": "alpaca", "field_instruction": "question"}, "field_instruction", "put it under type:")]:
        with pytest.raises(ConfigError, match=rf"datasets\.0\.{key}: .*{why}"):
            load_recipe({**base, "datasets": [{"path": "x.jsonl", **bad}]})


def test_settings_lost_in_axolotl_too_are_said_and_train_the_same(tmp_path, tiny_tokenizer):
    """Wild configs 24, 28, 36, 52: `wandb: {enabled: true}`, a run name as wandb_log_model, a key written as its
    default and again empty, and system_prompt beside a named type each train as in Axolotl, said in the report."""
    from ftkit.plugins import tracking

    path = tmp_path / "r.yml"
    path.write_text("base_model: tiny:llama\nlora_fan_in_fan_out: false\ndatasets:\n  - path: a.jsonl\n"
                    "    type: alpaca_chat.load_qa\n    system_prompt: Be brief.\nwandb:\n  enabled: true\n"
                    "wandb_project: p\nwandb_mode: offline\nwandb_log_model: my-run-name\nlora_fan_in_fan_out:\n")
    said = notes(path)
    assert said["lora_fan_in_fan_out"].startswith("written twice with the default (False) and then empty")
    assert "not one of checkpoint, end, false: transformers reads it as false" in said["wandb_log_model"]
    r = load_recipe(path)
    ignored = {line.key: line.detail for line in r.report.lines if line.status == "ignored"}
    assert "near use_wandb, which ftkit ignores too" in ignored["wandb"]
    assert "beside type: alpaca_chat.load_qa, which does not read it" in ignored["datasets.0.system_prompt"]
    tracking.report_to(r.model_copy(update={"output_dir": str(tmp_path / "out")}))
    assert os.environ["WANDB_LOG_MODEL"] == "false"
    # the rows are the same as without system_prompt: Axolotl's load_qa never reads it
    plain = load_recipe({"base_model": "tiny:llama", "datasets": [{"path": "a.jsonl", "type": "alpaca_chat.load_qa"}]})
    row = {"question": "Say hi.", "answer": "Hi!"}
    assert strategy_for(r.datasets[0], r, tiny_tokenizer).encode_batch([row], tiny_tokenizer) == \
        strategy_for(plain.datasets[0], plain, tiny_tokenizer).encode_batch([row], tiny_tokenizer)
    # a value written twice differently still stops, and a near miss of a setting that trains still does
    path.write_text(path.read_text().replace("lora_fan_in_fan_out:\n", "lora_fan_in_fan_out: true\n"))
    with pytest.raises(ConfigError, match="lora_fan_in_fan_out: written twice in one mapping"):
        load_recipe(path)
    with pytest.raises(ConfigError, match="lerning_rate: unknown option. Fix: did you mean learning_rate"):
        load_recipe({"base_model": "tiny:llama", "datasets": [{"path": "a.jsonl", "type": "alpaca"}], "lerning_rate": 1})


def test_group_by_length_with_sample_packing_is_a_note_and_changes_no_sampling():
    from ftkit.train.args import sft_args

    recipe = {"base_model": "tiny:llama", "datasets": [{"path": "a.jsonl", "type": "alpaca"}], "sample_packing": True,
              "group_by_length": True}
    assert "no effect with sample_packing" in notes(recipe)["group_by_length"]
    assert sft_args(load_recipe(recipe))["train_sampling_strategy"] == "random"
    unpacked = load_recipe({**recipe, "sample_packing": False})
    assert sft_args(unpacked)["train_sampling_strategy"] == "group_by_length"


def test_load_in_4bit_with_lora_loads_the_base_unquantized_as_axolotl_does(tmp_path):
    import bitsandbytes as bnb

    from ftkit import train

    rows = write_rows(tmp_path / "a.jsonl", ALPACA)
    raw = {"base_model": "tiny:llama", "datasets": [{"path": rows, "type": "alpaca"}], "adapter": "lora",
           "load_in_4bit": True, "max_steps": 2, "micro_batch_size": 4, "eval_prompts": [],
           "output_dir": str(tmp_path / "out"), "save_strategy": "no", "bf16": False}
    assert "loads unquantized, as Axolotl (v0.13 on)" in notes(raw)["load_in_4bit"]
    recipe = load_recipe(raw)
    assert recipe.load_in_4bit is False and recipe.adapter == "lora"  # what recipe.yml records
    result = train.run(recipe)
    # Axolotl 0.13-0.19 (loaders/model.py) builds a BitsAndBytesConfig only for adapter: qlora (4-bit) or lora
    # with load_in_8bit, so this base trains unquantized there: the same here
    assert not [m for m in result.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert result.steps == 2 and all(math.isfinite(v) for _, v in result.losses)
    assert 0 < result.trainable_params < result.total_params


# ---------------------------------------------------------------- item 4: lora_target_modules partly missing

def _lora(tmp_path, modules, linear=False):
    return load_recipe({"base_model": "tiny:llama", "datasets": [{"path": "a.jsonl", "type": "alpaca"}],
                        "adapter": "lora", "lora_target_modules": modules, "lora_target_linear": linear,
                        "output_dir": str(tmp_path / "out")})


def test_lora_targets_the_model_partly_lacks_adapt_the_others(tmp_path, said):
    recipe = _lora(tmp_path, ["q_proj", "v_proj", "query_key_value", "c_attn"])
    tok = models.load_tokenizer(recipe)
    model = models.load_model(recipe, tok)
    adapted = {name.split(".lora_A")[0].rsplit(".", 1)[-1] for name, _ in model.named_parameters() if "lora_A" in name}
    assert adapted == {"q_proj", "v_proj"}
    assert any("no module named 'query_key_value', 'c_attn'; the others are adapted" in s for s in said)
    with pytest.raises(FtkitError, match=r"lora_target_modules: the model \(llama\) has none of the modules .*"
                                         r"'query_key_value'.*Fix: use its linear layers: .*q_proj"):
        models.load_model(_lora(tmp_path, ["query_key_value"]), tok)


# ---------------------------------------------------------------- item 5: test_datasets, data_files, model_type

def test_test_datasets_are_the_eval_set_of_an_sft_run(tmp_path):
    from transformers import TrainerCallback

    from ftkit import train

    class Evals(TrainerCallback):
        steps: list = []

        def on_evaluate(self, args, state, control, **kwargs):
            self.steps.append(state.global_step)

    train_rows, test_rows = ALPACA[:6], [{"instruction": "Say cat.", "input": "", "output": "Cat!"},
                                         {"instruction": "Say dog.", "input": "", "output": "Dog!"}]
    recipe = load_recipe({"base_model": "tiny:llama", "datasets": [{"path": write_rows(tmp_path / "t.jsonl", train_rows),
                                                                    "type": "alpaca"}],
                          "test_datasets": [{"path": write_rows(tmp_path / "e.jsonl", test_rows), "type": "alpaca"}],
                          "max_steps": 2, "eval_steps": 1, "logging_steps": 1, "micro_batch_size": 2,
                          "eval_prompts": [], "save_strategy": "no", "output_dir": str(tmp_path / "out")})
    tok = models.load_tokenizer(recipe)
    prepared = data.prepare(recipe, tok)
    assert (prepared.stats["train_rows"], prepared.stats["eval_rows"]) == (6, 2)  # nothing held out of the train rows
    answers = sorted(tok.decode([t for t in ex["labels"] if t != IGNORE]) for ex in prepared.eval)
    assert answers == ["Cat!" + tok.eos_token, "Dog!" + tok.eos_token]
    evals = Evals()
    result = train.run(recipe, callbacks=[evals])
    assert result.eval_loss_before is not None and result.eval_loss_after is not None  # measured on prepared.eval
    assert evals.steps == [0, 1, 2, 2]  # before, eval_steps: 1 at steps 1 and 2, after
    with pytest.raises(ConfigError, match=r"val_set_size: test_datasets is the eval set.*Fix: keep one"):
        load_recipe({**recipe.dump(), "val_set_size": 0.1})


@pytest.mark.parametrize("suffix, ds_type", [(".jsonl", None), (".data", "json"), (".csv", None)])
def test_data_files_without_path_load_with_the_builder_of_their_suffix(tmp_path, tiny_tokenizer, suffix, ds_type):
    folder = tmp_path / "rows"
    folder.mkdir()
    if suffix == ".csv":
        (folder / "a.csv").write_text("instruction,input,output\n" + "".join(
            f"{r['instruction']},,{r['output']}\n" for r in ALPACA[:4]))
        files = [str(folder / "a.csv")]
    else:
        files = [write_rows(folder / f"a{suffix}", ALPACA[:4]), write_rows(folder / f"b{suffix}", ALPACA[4:])]
    recipe = load_recipe({"base_model": "tiny:llama", "shuffle_merged_datasets": False, "datasets": [
        {"data_files": files, "type": "alpaca", **({"ds_type": ds_type} if ds_type else {})}]})
    assert recipe.datasets[0].path == str(folder)
    prepared = data.prepare(recipe, tiny_tokenizer)
    answers = [tiny_tokenizer.decode([t for t in ex["labels"] if t != IGNORE]) for ex in prepared.train]
    n = 4 if suffix == ".csv" else 8
    assert answers == [r["output"] + tiny_tokenizer.eos_token for r in ALPACA[:n]]


def test_model_type_is_ignored_with_trust_remote_code_as_axolotl_does(said):
    base = {"base_model": "tiny:llama", "datasets": [{"path": "a.jsonl", "type": "alpaca"}],
            "model_type": "MPTForCausalLM"}
    with pytest.raises(FtkitError, match="transformers has no class 'MPTForCausalLM'"):
        models.load_base(load_recipe(base), None)
    recipe = load_recipe({**base, "trust_remote_code": True})
    assert "AutoModelForCausalLM loads the class the model names" in notes({**base, "trust_remote_code": True})["model_type"]
    tok = models.load_tokenizer(recipe)
    assert type(models.load_base(recipe, tok)).__name__ == "LlamaForCausalLM"
    assert any("model_type MPTForCausalLM not used with trust_remote_code" in s for s in said)


# ---------------------------------------------------------------- rows Axolotl drops

def test_one_token_rows_are_dropped_and_counted_as_axolotl_does(tmp_path, tiny_tokenizer):
    rows = [{"input_ids": [5], "labels": [5]}, {"input_ids": [5, 6], "labels": [5, 6]},
            {"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}]
    recipe = load_recipe({"base_model": "tiny:llama", "shuffle_merged_datasets": False,
                          "datasets": [{"path": write_rows(tmp_path / "t.jsonl", rows)}]})
    prepared = data.prepare(recipe, tiny_tokenizer)
    assert prepared.train["input_ids"] == [[5, 6], [5, 6, 7]]
    assert prepared.stats["dropped_too_short"] == 1 and "1 dropped shorter than min_sample_len=2" in prepared.summary()
    longer = load_recipe({**recipe.dump(), "min_sample_len": 3})
    assert data.prepare(longer, tiny_tokenizer).train["input_ids"] == [[5, 6, 7]]


# ---------------------------------------------------------------- item 8: LoRA's draw

def test_lora_a_is_drawn_from_the_seed_in_module_order(tmp_path):
    """ftkit seeds right before peft creates the adapter, so lora_A is the same every run. The expected tensors are
    the torch calls peft makes for each adapted module, in module order (peft/tuners/lora/layer.py update_layer:
    nn.Linear(in, r) and nn.Linear(r, out) are built, drawing kaiming_uniform_ weights, then reset_lora_parameters
    draws lora_A again with kaiming_uniform_(a=sqrt(5)) and zeroes lora_B). Axolotl calls the same get_peft_model
    (src/axolotl/loaders/adapter.py load_lora) but never seeds before it: its lora_A depends on the process's
    unseeded generator (see docs/axolotl-data.md, "LoRA initialisation")."""
    recipe = _lora(tmp_path, ["q_proj", "v_proj"])
    recipe = load_recipe({**recipe.dump(), "seed": 7, "lora_r": 4})
    tok = models.load_tokenizer(recipe)
    model = models.load_model(recipe, tok)
    layers = [(name, m) for name, m in model.named_modules() if hasattr(m, "lora_A") and "default" in m.lora_A]
    torch.manual_seed(7)
    for name, layer in layers:
        base = layer.get_base_layer()
        a = torch.nn.Linear(base.in_features, 4, bias=False).weight  # drawn at construction
        torch.nn.Linear(4, base.out_features, bias=False)  # lora_B: drawn, then zeroed
        torch.nn.init.kaiming_uniform_(a.data, a=math.sqrt(5))
        torch.testing.assert_close(layer.lora_A["default"].weight.detach(), a.detach(), rtol=0, atol=0, msg=name)
    assert len(layers) == 4  # 2 layers x (q_proj, v_proj)
