"""Every Axolotl option has one status and never silently changes meaning: implemented options change what is
trained, aliases equal their canonical option, speed-only ones leave training identical, refused ones are
errors naming the feature and the fix. Empty values are unset at every level; the method check is generated."""
import math
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from ftkit.axolotl import EMPTY, IGNORED
from ftkit.axolotl import catalogue as cat
from ftkit.errors import ConfigError, Problem
from ftkit.recipe import Recipe, inspect_recipe, load_recipe
from ftkit.recipe.base import METHODS, field_methods, method_label
from ftkit.recipe.data_options import DatasetSpec, PretrainingDataset, UserDefinedFormat
from ftkit.recipe.reference import option_counts, option_status, options_reference

ROOT = Path(__file__).resolve().parents[1]
BASE = {"base_model": "tiny:llama", "datasets": [{"path": "data_samples/alpaca.jsonl", "type": "alpaca"}]}
DPO = {"base_model": "tiny:llama", "rl": "dpo", "chat_template": "llama3",
       "datasets": [{"path": "data_samples/preference_pairs.jsonl", "type": "chat_template.prompt_pairs"}]}


def problems_of(data: dict) -> list[str]:
    return [str(p) for p in inspect_recipe(data)[2]]


# ---------------------------------------------------------------- one status per option

def test_every_name_axolotl_shipped_has_a_status():
    """ftkit/axolotl/harvested_names.txt: every option name of Axolotl's releases v0.3.0 (2023-09) .. v0.18.0."""
    rows = cat.harvested()
    assert len(rows) == len({(level, name) for level, name, _ in rows}) >= 800
    assert [(level, name) for level, name, _ in rows if option_status(level, name) is None] == []
    counted = option_counts()
    assert "none" not in counted and sum(counted.values()) == len(rows)
    assert counted["implemented"] >= 260 and counted["refused"] >= 255 and counted["alias"] >= 15
    shipped = {(level, name): when for level, name, when in rows}
    assert shipped[("top", "eval_table_max_new_tokens")] == "main@2023-10-main@2024-02"  # renamed in 2024-02
    assert cat.lookup("top", "eval_table_max_new_tokens").canonical == "eval_max_new_tokens"
    assert shipped[("top", "base_model")] == "v0.3.0-v0.18.0"


def test_each_option_has_exactly_one_status_and_a_provenance():
    fields = {"top": set(Recipe.model_fields), "dataset": set(DatasetSpec.model_fields),
              "type": set(UserDefinedFormat.model_fields), **{k: set(v) for k, v in cat.NESTED_FIELDS.items()}}
    shipped = {(level, name): when for level, name, when in cat.harvested()}
    for (level, name), entry in cat.CATALOGUE.items():
        assert name not in fields.get(level, ()), (level, name)  # a recipe field is never catalogued too
        assert entry.shipped == shipped.get((level, name)), (level, name)  # harvest.py --update wrote it
        assert entry.shipped or entry.source, (level, name)  # from Axolotl's releases, or said where from


def test_catalogue_file_has_no_key_written_twice():
    """YAML keeps the last of two equal keys silently: an entry written twice would lose one status."""
    def walk(node, path):
        if isinstance(node, yaml.MappingNode):
            keys = [k.value for k, _ in node.value]
            assert len(keys) == len(set(keys)), (path, sorted(k for k in keys if keys.count(k) > 1))
            for k, v in node.value:
                walk(v, f"{path}.{k.value}")

    walk(yaml.compose(cat.FILE.read_text()), "catalogue")


def test_options_reference_shows_every_status():
    ref = options_reference()
    counted = option_counts()
    assert "Axolotl options by status: implemented" in ref and f"({sum(counted.values())} in all" in ref
    for level, name in cat.CATALOGUE:
        shown = name if level == "top" else f"datasets[].{name}" if level == "dataset" else f"{level}.{name}"
        assert f"`{shown}`" in ref, shown
    assert "`rl_beta` | `None` | dpo, ipo, kto, simpo, grpo, gdpo |" in ref  # the methods that read an option


def test_refused_entries_name_a_reason_and_aliases_a_field():
    for entry in cat.CATALOGUE.values():
        assert entry.why or entry.status == cat.ALIAS, entry
        if entry.status == cat.ALIAS:
            head = entry.canonical.split(".")[0]
            fields = PretrainingDataset.model_fields if entry.level == "pretraining_dataset" else Recipe.model_fields
            assert head in fields, entry


# ---------------------------------------------------------------- empty = unset, at every level

def test_empty_values_are_unset_at_every_level(tmp_path):
    path = tmp_path / "r.yml"
    path.write_text("""\
base_model: tiny:llama
adapter: lora
lora_r:
lora_alpha:
lora_target_modules:
bf16:
special_tokens:
  pad_token:
peft:
  loftq_config:
    loftq_bits:
fsdp_config:
datasets:
  - path: data_samples/chat.jsonl
    type: chat_template
    roles_to_train:
    field_messages:
    train_on_eos:
""")
    r = load_recipe(path)
    assert (r.lora_r, r.lora_alpha, r.lora_target_modules, r.bf16, r.special_tokens) == (8, 16, None, "auto", {})
    d = r.datasets[0]
    assert (d.roles_to_train, d.field_messages, d.train_on_eos) == (None, None, None)
    empty = {line.key: line.detail for line in r.report.of(EMPTY)}
    assert {"lora_r", "bf16", "special_tokens.pad_token", "peft.loftq_config.loftq_bits", "fsdp_config",
            "datasets.0.roles_to_train"} <= set(empty)
    assert "Axolotl reads an empty bf16 as off" in empty["bf16"]  # where Axolotl differs, the report says so


def test_zero_means_off_where_axolotl_reads_it_so():
    r = load_recipe({**BASE, "evals_per_epoch": 0, "cosine_constant_lr_ratio": 0, "max_steps": 0})
    assert (r.evals_per_epoch, r.cosine_constant_lr_ratio, r.max_steps) == (None, None, None)


# ---------------------------------------------------------------- the four status classes

def test_implemented_options_change_the_training_arguments():
    from ftkit.models import Precision
    from ftkit.train.args import training_args

    fp32 = Precision(False, False, False)
    silent = training_args(load_recipe(BASE), fp32, n_train=1000)
    set_ = training_args(load_recipe({**BASE, "adam_beta2": 0.95, "adam_epsilon": 1e-5, "warmup_ratio": 0.1,
                                      "eval_batch_size": 7, "cosine_min_lr_ratio": 0.1, "torch_compile": True,
                                      "save_strategy": "no", "logging_steps": 3}), fp32, n_train=1000)
    assert "adam_beta2" not in silent and (set_["adam_beta2"], set_["adam_epsilon"]) == (0.95, 1e-5)
    assert (silent["warmup_steps"], set_["warmup_steps"]) == (30, 100)  # 3% of 1,000 steps; 10%
    assert (silent["per_device_eval_batch_size"], set_["per_device_eval_batch_size"]) == (1, 7)
    assert (set_["lr_scheduler_type"], set_["lr_scheduler_kwargs"]) == ("cosine_with_min_lr", {"min_lr_rate": 0.1})
    # a checkpoint each epoch, the newest 4 kept: by ftkit's rotation (train/checkpoint_files.py), not the Trainer's
    assert (silent["save_strategy"], silent["save_total_limit"], set_["save_strategy"]) == ("epoch", None, "no")
    assert load_recipe(BASE).save_total_limit == 4
    assert (silent["logging_steps"], set_["logging_steps"], set_["torch_compile"]) == (5, 3, True)
    kw = training_args(load_recipe({**BASE, "gradient_checkpointing_kwargs": {"use_reentrant": True}}), fp32)
    assert kw["activation_checkpointing_kwargs"] == {"use_reentrant": True}


def test_implemented_logging_and_precision_options():
    import os

    import torch

    from ftkit.models import resolve_precision
    from ftkit.plugins import tracking

    tracking.report_to(load_recipe({**BASE, "wandb_project": "p", "wandb_mode": "offline", "wandb_watch": "gradients",
                                    "wandb_log_model": "end"}))
    assert (os.environ["WANDB_WATCH"], os.environ["WANDB_LOG_MODEL"]) == ("gradients", "end")
    tracking.report_to(load_recipe(BASE))  # ftkit clears what it set for the previous run
    assert "WANDB_WATCH" not in os.environ
    weights = resolve_precision(load_recipe({**BASE, "bfloat16": True}))
    assert weights.dtype == torch.bfloat16 and not weights.bf16  # bf16 weights, no autocast on a CPU


def test_implemented_model_options_change_the_model(tiny_llama_dir):
    from ftkit import models

    r = load_recipe({**BASE, "model_config": {"max_position_embeddings": 777}, "resize_token_embeddings_to_32x": True,
                     "tokens": ["<x1>", "<x2>"], "special_tokens": {"additional_special_tokens": ["<tool>"]},
                     "tokenizer_type": "PreTrainedTokenizerFast", "device_map": {"": "cpu"}, "attn_implementation": "eager"})
    tok = models.load_tokenizer(r)
    model = models.load_base(r, tok)
    from transformers import PreTrainedTokenizerFast

    assert isinstance(tok, PreTrainedTokenizerFast) and model.config._attn_implementation == "eager"
    assert model.config.max_position_embeddings == 777
    rows = model.get_input_embeddings().weight.shape[0]
    assert rows % 32 == 0 and rows >= len(tok) and "<tool>" in tok.all_special_tokens
    assert tok.convert_tokens_to_ids("<x1>") != tok.unk_token_id


def test_aliases_equal_their_canonical_option_and_save_canonically():
    pairs = [({"dataset_num_proc": 3}, {"dataset_processes": 3}),
             ({"flash_attention": True}, {"attn_implementation": "flash_attention_2"}),
             ({"model_config": {"rope_theta": 5.0}}, {"overrides_of_model_config": {"rope_theta": 5.0}}),
             ({"noisy_embedding_alpha": 5}, {"neftune_noise_alpha": 5}),
             ({"fsdp_version": 2, "fsdp_config": {"fsdp_offload_params": True}},
              {"fsdp_config": {"version": 2, "offload_params": True}}),
             ({"chat_template_jinja": "{{ 'x' }}"}, {"chat_template": "{{ 'x' }}"}),
             ({"gradient_checkpointing": "offload"}, {"gradient_checkpointing": True})]
    for alias, canonical in pairs:
        a, c = load_recipe({**BASE, **alias}), load_recipe({**BASE, **canonical})
        assert a.dump() == c.dump(), alias
        assert not set(alias) - set(canonical) & set(a.dump())  # recipe.yml is written with canonical names
    template = Path(__file__).parent / "data" / "template.jinja"
    template.write_text("{{ 'x' }}")
    try:
        assert load_recipe({**BASE, "chat_template": "jinja", "chat_template_jinja": str(template)}).chat_template == "{{ 'x' }}"
    finally:
        template.unlink()
    r = load_recipe({**DPO, "dpo_beta": 0.3, "trl": {"beta": 0.3, "use_vllm": False}})
    assert r.rl_beta == 0.3
    with pytest.raises(ConfigError, match="dataset_num_proc: conflicts with dataset_processes: 2"):
        load_recipe({**BASE, "dataset_processes": 2, "dataset_num_proc": 4})


def test_speed_only_options_leave_training_identical(make_recipe, said):
    from ftkit import train

    speed = {"liger_rms_norm_gated": True, "liger_swiglu": True, "flash_attn_cross_entropy": True,
             "dataloader_num_workers": 4, "strict": True, "flash_attention": True, "local_rank": 0}
    plain = make_recipe(max_steps=3, sequence_len=64, micro_batch_size=4)
    fast = make_recipe(max_steps=3, sequence_len=64, micro_batch_size=4, **speed)
    summary = fast.report.summary()
    assert "5 speed-only ignored: liger_rms_norm_gated, liger_swiglu, flash_attn_cross_entropy, " \
           "dataloader_num_workers, strict" in summary and "1 alias," in summary
    a = train.run(plain)
    b = train.run(fast)
    assert [loss for _, loss in a.losses] == [loss for _, loss in b.losses]
    assert any("flash_attention_2 is not available here" in line and "using sdpa" in line for line in said)


REFUSALS = [
    ({"qat": {"weight_dtype": "int8"}}, "qat: quantization-aware training", "adapter: qlora"),
    ({"rl": "ebft"}, "rl: 'ebft' -- EBFT", "rl: grpo"),
    ({"optimizer": "muon"}, "optimizer: 'muon' -- this optimizer is Axolotl's own", "adamw_torch_fused"),
    ({"bf16": "full"}, "bf16: 'full' -- pure-bf16 training", "bfloat16: true"),
    ({"plugins": ["axolotl.integrations.kd.KDPlugin"]}, "plugins.0: plugin axolotl.integrations.kd.KDPlugin: knowledge distillation", "remove it"),
    ({"trl": {"async_prefetch": True}}, "trl.async_prefetch: Axolotl's async GRPO pipeline", "rl: grpo (on-policy)"),
    ({"loraplus_lr_ratio": 16}, "loraplus_lr_ratio: per-group learning rates", "learning_rate"),
    ({"chat_template": "mistral_v1"}, "chat_template: 'mistral_v1' -- ftkit has no copy", "tokenizer_default"),
    ({"datasets": [{"path": "x.jsonl", "type": "stepwise_supervised"}]}, "TRL 1.16 removed PRMTrainer", "reward_model: true"),
    ({"save_safetensors": False}, "save_safetensors: False -- ftkit writes safetensors only", "save_safetensors: true"),
]


@pytest.mark.parametrize("extra,feature,fix", REFUSALS, ids=[next(iter(r[0])) for r in REFUSALS])
def test_refused_options_name_the_feature_and_the_fix(extra, feature, fix):
    got = problems_of({**BASE, **extra})
    assert any(feature in p and "ftkit refuses rather than ignores" in p and "Fix: remove it" in p and fix in p
               for p in got), got


def test_axolotl_defaults_of_refused_options_are_accepted_as_off():
    dumped = {"dion_rank_fraction": 1.0, "relora": False, "eaft_k": 20, "loraplus_lr_embedding": "1e-6",
              "trl": {"use_vllm": False, "scale_rewards": True, "beta": None}, "vllm": {"port": 8000},
              "lisa_layers_attribute": "model.layers"}
    r = load_recipe({**BASE, **dumped})
    assert {line.key for line in r.report.of(IGNORED)} >= {"dion_rank_fraction", "eaft_k", "trl.use_vllm", "vllm.port"}


def test_options_that_do_nothing_with_the_rest_are_said_not_errors():
    r = load_recipe({**BASE, "evals_per_epoch": 4, "save_strategy": "no", "save_steps": 10})
    notes = {line.key: line.detail for line in r.report.of(IGNORED)}
    assert "no evaluation split" in notes["evals_per_epoch"] and "the save interval wins" in notes["save_strategy"]
    from ftkit.train.checkpoints import save_kwargs

    assert save_kwargs(r, 100)["save_strategy"] == "steps"


def test_internal_and_unknown_keys():
    r = load_recipe({**BASE, "local_rank": 3, "is_llama_derived_model": True, "world_size": 8})
    assert all(line.status == IGNORED and "internal" in line.detail for line in r.report.lines if line.key in
               ("local_rank", "is_llama_derived_model", "world_size"))
    got = problems_of({**BASE, "lerning_rate": 0.1, "liger_rms_nrm": True})
    assert any("lerning_rate: unknown option. Fix: did you mean learning_rate?" in p for p in got)
    assert any("liger_rms_nrm: unknown option. Fix: did you mean liger_rms_norm?" in p for p in got)


def test_problems_travel_as_problem_objects(tmp_path):
    path = tmp_path / "r.yml"
    path.write_text("base_model: tiny:llama\ndatasets:\n  - path: a.jsonl\n    type: \"alp;aca\"\nrl: dpo\n"
                    "orpo_alpha: 0.1\nsample_packing: true\n")
    with pytest.raises(ConfigError) as e:
        load_recipe(path)
    assert all(isinstance(p, Problem) for p in e.value.problems)
    by_key = {p.where: p for p in e.value.problems}
    assert by_key["orpo_alpha"].line == 6 and "not read by rl: dpo" in by_key["orpo_alpha"].problem
    assert by_key["sample_packing"].fix == "remove it, or remove rl:"


# ---------------------------------------------------------------- the method check is generated from metadata

def _sample(field, default):
    """A valid value other than the default, from the field's type."""
    ann = field.annotation
    args = [ann] if typing.get_origin(ann) in (list, dict) else [a for a in typing.get_args(ann) if a is not type(None)] or [ann]
    first = args[0]
    origin = typing.get_origin(first)
    if first is bool:
        return not default
    if origin is typing.Literal:
        return next(v for v in typing.get_args(first) if v != default)
    if first in (int, float):
        return 0.25 if first is float and default != 0.25 and not (isinstance(default, int) and default >= 1) else \
            (default or 0) + 1
    if first is str:
        return "x"
    if origin is list:
        inner = typing.get_args(first)[0]
        return [{"path": "data_samples/preference_pairs.jsonl", "type": "chat_template.prompt_pairs"}] \
            if inner is DatasetSpec else ["x"]
    if origin is dict:
        return {"a": "b"}
    if isinstance(first, type) and issubclass(first, BaseModel):  # an option block (trl:)
        return {"num_generations": 4}
    raise AssertionError(f"no sample value for {field}")


NEEDS = {"relora_steps": {"adapter": "lora"}, "eval_table_size": {"val_set_size": 0.1},
         "relora_cpu_offload": {"adapter": "lora", "relora_steps": 5}}


def _narrowed(model):
    return [(name, f) for name, f in model.model_fields.items() if field_methods(f) != METHODS]


def test_every_option_not_read_by_a_method_is_an_error_naming_both():
    checked = 0
    for name, field in _narrowed(Recipe):
        method = next(m for m in METHODS if m not in field_methods(field))
        base = BASE if method == "sft" else {**DPO, "rl": method}
        value = _sample(field, field.get_default(call_default_factory=True))
        got = problems_of({**base, **NEEDS.get(name, {}), name: value})
        want = f"{name}: is not read by {method_label(method)}"
        assert any(want in p for p in got), (name, value, got)
        checked += 1
    for name, field in _narrowed(DatasetSpec):
        method = next(m for m in METHODS if m not in field_methods(field))
        base = BASE if method == "sft" else {**DPO, "rl": method}
        entry = {**base["datasets"][0], name: _sample(field, field.get_default())}
        got = problems_of({**base, "datasets": [entry]})
        assert any(f"datasets.0.{name}: is not read by {method_label(method)}" in p for p in got), (name, got)
        checked += 1
    assert checked >= 35  # e.g. simpo_gamma under rl: dpo, train_on_inputs under rl:, field_chosen under SFT


def test_method_check_passes_the_methods_that_read_an_option():
    assert not problems_of({**DPO, "rl": "simpo", "simpo_gamma": 1.0, "cpo_alpha": 1.0})
    assert not problems_of({**DPO, "rl_beta": 0.2, "dpo_label_smoothing": 0.1})
    assert not problems_of({**DPO, "eval_sample_packing": False, "sample_packing": False})  # off is off


# ---------------------------------------------------------------- ftkit check, the summary line

def test_check_verb_reports_and_exits(tmp_path, capsys):
    from ftkit.cli import main

    path = tmp_path / "ax.yml"
    path.write_text(yaml.safe_dump({**BASE, "dataset_num_proc": 2, "liger_swiglu": True, "lora_r": None}))
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "alias    dataset_num_proc" in out and "-> dataset_processes" in out
    assert "ignored  liger_swiglu" in out and "speed only" in out and "empty    lora_r" in out
    assert "1 alias, 1 speed-only ignored: liger_swiglu" in out and "ok: the recipe will train" in out
    assert main(["check", str(path), "--strict"]) == 2
    assert "liger_swiglu: ignored here" in capsys.readouterr().err
    path.write_text(yaml.safe_dump({**BASE, "qat": {"group_size": 32}}))
    assert main(["check", str(path)]) == 2
    assert "quantization-aware training" in capsys.readouterr().err


def test_preprocess_prints_the_one_line_summary(tmp_path, capsys):
    from ftkit.cli import main

    small = tmp_path / "a.jsonl"
    small.write_text("".join((ROOT / "data_samples" / "alpaca.jsonl").read_text().splitlines(True)[:8]))
    path = tmp_path / "ax.yml"
    path.write_text(yaml.safe_dump({**BASE, "datasets": [{"path": str(small), "type": "alpaca"}],
                                    "dataset_num_proc": 1, "flash_attention": True, "strict": False}))
    assert main(["preprocess", str(path)]) == 0
    assert "options used, 2 aliases, 1 speed-only ignored: strict" in capsys.readouterr().out


# ---------------------------------------------------------------- same YAML, same training

def test_two_identical_lora_runs_give_identical_losses(make_recipe):
    from ftkit import train

    def run(seed):
        return [loss for _, loss in train.run(make_recipe(adapter="lora", max_steps=3, sequence_len=64,
                                                          micro_batch_size=4, seed=seed, lora_dropout=0.0)).losses]

    first, second, other = run(7), run(7), run(8)
    assert first == second  # the adapter's initial weights come from `seed`
    assert first != other and all(math.isfinite(v) for v in first)


def test_axolotl_warmup_and_logging_rules():
    from ftkit.train.args import logging_steps, total_steps, warmup_steps

    r = load_recipe({**BASE, "micro_batch_size": 2, "gradient_accumulation_steps": 4, "num_epochs": 2})
    assert total_steps(r, 1000) == 250 and warmup_steps(r, 250) == 7 and logging_steps(r, 250) == 1
    assert warmup_steps(r, 40) == 2  # int(1.2) = 1 -> 2, as Axolotl bumps it
    assert warmup_steps(r, 10_000) == 100 and logging_steps(r, 10_000) == 10
    assert warmup_steps(r, 0) == 0.03  # run length unknown: a ratio TrainingArguments applies
    r = load_recipe({**BASE, "batch_size": 16, "micro_batch_size": 4})
    assert r.gradient_accumulation_steps == 4  # Axolotl: batch_size / micro_batch_size


def test_silent_recipe_gets_axolotl_defaults():
    r = load_recipe({**BASE, "adapter": "lora"})
    assert (r.micro_batch_size, r.lora_dropout, r.save_total_limit, r.warmup_steps, r.logging_steps) == (1, 0.0, 4, None, None)


# ---------------------------------------------------------------- keys Axolotl drops silently (issue 20, item 3)

def _file(tmp_path, body: str) -> Path:
    path = tmp_path / "r.yml"
    path.write_text("base_model: tiny:llama\ndatasets:\n  - path: data_samples/alpaca.jsonl\n    type: alpaca\n" + body)
    return path


NEAR_MISSES = [("lerning_rate: 0.1", "learning_rate"), ("micro_batchsize: 2", "micro_batch_size"),
               ("lora_rank: 16", "lora_r"), ("train_on_input: true", "train_on_inputs"),
               ("gradient_acumulation_steps: 4", "gradient_accumulation_steps"), ("flash_attn: true", "flash_attention"),
               ("max_seq_len: 256", "sequence_len"), ("model_name_or_path: x", "base_model")]


@pytest.mark.parametrize("line,meant", NEAR_MISSES, ids=[n[1] for n in NEAR_MISSES])
def test_a_near_miss_stays_an_error_with_its_suggestion(tmp_path, line, meant):
    key = line.split(":")[0]
    with pytest.raises(ConfigError) as e:
        load_recipe(_file(tmp_path, line + "\n"))
    assert f"r.yml:5: {key}: unknown option. Fix: did you mean {meant}?" in str(e.value)


def test_suggestions_go_by_meaning_not_by_spelling_alone():
    """Plain difflib (what ftkit used before) picks the wrong option for each of these; the meaning table does not."""
    import difflib

    from ftkit.axolotl.suggest import suggest

    top = [*Recipe.model_fields, *cat.names_at("top")]
    dataset = [*DatasetSpec.model_fields, *cat.names_at("dataset")]
    wrong = {"report_to": ("eot_tokens", top), "lora_rank": ("local_rank", top), "train_on_input": ("train_on_split", dataset)}
    for key, (bad, names) in wrong.items():
        assert difflib.get_close_matches(key, [n for n in names if n != key], n=1, cutoff=0.6) == [bad]
        assert suggest(key, names, cat.MEANING) != bad, key
    assert suggest("lora_rank", top, cat.MEANING) == "lora_r" and suggest("report_to", top, cat.MEANING) is None
    assert suggest("train_on_input", top, cat.MEANING) == "train_on_inputs"
    for unrelated in ("comment", "notes", "author", "version", "my_experiment", "tags", "description"):
        assert suggest(unrelated, top, cat.MEANING) is None, unrelated  # accepted and said, not an error


def test_a_key_axolotl_would_drop_is_accepted_named_in_one_line_and_trains(make_recipe):
    from ftkit import train

    plain = make_recipe(max_steps=3, sequence_len=64, micro_batch_size=4)
    extra = make_recipe(max_steps=3, sequence_len=64, micro_batch_size=4, image="axolotl:main", gpu="h100",
                        my_note="first try")
    summary = extra.report.summary().splitlines()
    assert summary[1] == "ignored: not an option Axolotl reads: image, gpu, my_note"
    assert len(summary) == 2 and "image" not in summary[0]
    assert [loss for _, loss in train.run(plain).losses] == [loss for _, loss in train.run(extra).losses]


def test_strict_check_refuses_every_ignored_key(tmp_path, capsys):
    from ftkit.cli import main

    path = _file(tmp_path, "image: axolotl:main\nmy_note: first try\nhub_private_repo: true\n")
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "ignored: not an option Axolotl reads: image, my_note" in out and "ok: the recipe will train" in out
    assert main(["check", str(path), "--strict"]) == 2
    err = capsys.readouterr().err
    assert "3 problems" in err and "image: ignored here (not an option Axolotl reads" in err
    assert "my_note: ignored here" in err and "hub_private_repo: ignored here (hub transport only" in err


# (TrainingArguments name, value, the TrainingArguments key it must reach, the value there)
TRAINING_ARGUMENTS = [
    ("per_device_train_batch_size", 3, "per_device_train_batch_size", 3),
    ("per_gpu_train_batch_size", 3, "per_device_train_batch_size", 3),
    ("per_device_eval_batch_size", 5, "per_device_eval_batch_size", 5),
    ("per_gpu_eval_batch_size", 5, "per_device_eval_batch_size", 5),
    ("num_train_epochs", 2, "num_train_epochs", 2),
    ("lr_scheduler_type", "linear", "lr_scheduler_type", "linear"),
    ("optim", "sgd", "optim", "sgd"),
    ("activation_checkpointing", True, "activation_checkpointing", True),
    ("activation_checkpointing_kwargs", {"use_reentrant": True}, "activation_checkpointing_kwargs", {"use_reentrant": True}),
    ("run_name", "first-try", "run_name", "first-try"),
    ("data_seed", 7, "data_seed", 7),
    ("logging_first_step", True, "logging_first_step", True),
    ("report_to", ["tensorboard"], "report_to", ["tensorboard"]),
    ("max_seq_length", 96, "max_length", 96),
    ("train_sampling_strategy", "group_by_length", "train_sampling_strategy", "group_by_length"),
]


@pytest.mark.parametrize("name,value,key,expected", TRAINING_ARGUMENTS, ids=[t[0] for t in TRAINING_ARGUMENTS])
def test_training_arguments_names_reach_the_built_trainer_arguments(tmp_path, name, value, key, expected):
    """The trainer's config is built for a tiny recipe as train.run builds it; the value is read back from it."""
    from ftkit.models import Precision
    from ftkit.train.args import sft_config

    r = load_recipe({**BASE, "output_dir": str(tmp_path / "out"), name: value})
    config = sft_config(r, Precision(False, False, False), has_eval=False, n_train=100)
    assert getattr(config, key) == expected
    field = name in Recipe.model_fields  # data_seed, logging_first_step: recipe fields of their own
    assert {line.key: line.status for line in r.report.lines}[name] == ("used" if field else "alias")
    assert (name in r.dump()) == field  # recipe.yml is written with ftkit's names


def test_training_arguments_names_without_a_mapping_are_said_or_refused():
    r = load_recipe({**BASE, "logging_dir": "logs", "overwrite_output_dir": True, "push_adapter_to_hub": True,
                     "eval_accumulation_steps": 4, "label_smoothing_factor": 0.1, "preprocessing_num_workers": 3,
                     "push_to_hub_model_id": None, "eval_table_max_new_tokens": 64, "packing": True})
    ignored = {line.key: line.detail for line in r.report.of(IGNORED)}
    assert "output_dir/runs/" in ignored["logging_dir"] and "ftkit train --overwrite" in ignored["overwrite_output_dir"]
    assert ignored["push_adapter_to_hub"].startswith("hub transport only")
    assert ignored["eval_accumulation_steps"].startswith("speed only: memory only")
    # Axolotl drops TrainingArguments names it does not read, so it trains without label smoothing: so does ftkit
    assert "Axolotl drops" in ignored["label_smoothing_factor"]
    assert (r.dataset_processes, r.eval_max_new_tokens, r.sample_packing) == (3, 64, True)  # read by data prep
    got = problems_of({**BASE, "train_sampling_strategy": "sequential"})
    assert any("train_sampling_strategy: sequential is Axolotl's curriculum_sampling. Fix: write curriculum_sampling: "
               "true" in p for p in got), got


def test_report_to_maps_onto_the_tracking_options():
    assert load_recipe({**BASE, "report_to": "comet_ml"}).use_comet is True
    assert load_recipe({**BASE, "report_to": ["wandb"], "wandb_project": "p"}).wandb_project == "p"
    assert load_recipe({**BASE, "report_to": "none"}).use_comet is False
    # as in Axolotl (which drops report_to), the loggers follow their own keys: harmless configs train
    alone = load_recipe({**BASE, "report_to": "wandb"})
    assert alone.wandb_project is None and "whatever report_to says" in {l.key: l.detail for l in alone.report.lines}["report_to"]
    assert load_recipe({**BASE, "report_to": "none", "mlflow_tracking_uri": "file:./mlruns"}).mlflow_tracking_uri


def test_benchmark_evaluation_is_not_run_here_and_says_so():
    r = load_recipe({**BASE, "do_bench_eval": True, "bench_dataset": "mmlu", "lm_eval_tasks": ["hellaswag"]})
    ignored = {line.key: line.detail for line in r.report.of(IGNORED)}
    for key in ("do_bench_eval", "bench_dataset", "lm_eval_tasks"):
        assert ignored[key].startswith("not run by ftkit: use `ftkit evaluate`"), ignored[key]
    assert "3 ignored (not run by ftkit: use `ftkit evaluate`): do_bench_eval, bench_dataset, lm_eval_tasks" in \
        r.report.summary() and "speed-only ignored:" not in r.report.summary()


def test_dataset_entries_and_checked_blocks_follow_the_same_policy():
    r = load_recipe({**DPO, "trl": {"beta": 0.2, "my_flag": 1},
                     "datasets": [{**DPO["datasets"][0], "source_url": "https://example.org"}]})
    assert r.rl_beta == 0.2
    assert r.report.summary().splitlines()[1] == "ignored: not an option Axolotl reads: datasets.0.source_url, trl.my_flag"
    got = problems_of({**DPO, "trl": {"bta": 0.2}, "datasets": [{**DPO["datasets"][0], "feild_messages": "m"}]})
    assert any("trl.bta: unknown option. Fix: did you mean beta?" in p for p in got), got
    assert any("datasets.0.feild_messages: unknown option. Fix: did you mean field_messages?" in p for p in got), got


# ---------------------------------------------------------------- a key written twice (issue 20, item 4)

def test_a_key_written_twice_with_the_same_value_is_a_note(tmp_path):
    r = load_recipe(_file(tmp_path, "lora_r: 8\nadapter: lora\nlora_r: 8\n"))
    notes = [(line.key, line.detail, line.line) for line in r.report.of("note")]
    assert notes == [("lora_r", "written twice with the same value, lines 5 and 7", 7)] and r.lora_r == 8
    assert "1 note: lora_r (written twice with the same value, lines 5 and 7)" in r.report.summary()
    with pytest.raises(ConfigError, match=r"r.yml:7: lora_r: written twice in one mapping \(lines 5 and 7\)"):
        load_recipe(_file(tmp_path, "lora_r: 8\nadapter: lora\nlora_r: 16\n"))
