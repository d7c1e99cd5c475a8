"""Preference tuning (DPO, IPO, KTO, ORPO, SimPO) on the tiny twin with LoRA: the preference is learned.

The sample sets' rule (chosen ends with '.', rejected with '!') is one token, so a few dozen steps move
both the trainers' reward margin and logp(chosen) - logp(rejected) on held-out prompts never trained on.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from ftkit import data, train
from ftkit.cookbook.preference import method_recipe
from ftkit.data.files import RawData
from ftkit.errors import ConfigError, DataError, FtkitError
from ftkit.formats.chat import end_of_turn
from ftkit.formats.prompt import configure_tokenizer
from ftkit.infer.generate import prompt_ids
from ftkit.formats.chat_templates import TEMPLATES
from ftkit.recipe import load_recipe
from ftkit.train.args import config as rl_config
from ftkit.plugins import pairs
from tests.conftest import ROOT


def recipe_for(method: str, out, **overrides):
    base = {"base_model": "tiny:llama", "output_dir": str(out), "max_steps": 12, "eval_prompts": [],
            "bf16": False, "fp16": False, "tf32": False}  # full fp32 everywhere: reload scores compare to 1e-4
    if method == "orpo":  # lambda 2.0 (recipe: the paper's 0.1) so the odds-ratio term moves every held-out pair
        base["orpo_alpha"] = 2.0  # within 12 steps (1.0 moved 9 of 11 on the twin whose header keeps "\n\n" whole)
    return method_recipe(method, {**base, **overrides})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Each method trained once per module (12 steps, LoRA), shared by the tests below."""
    cache = {}

    def get(method):
        if method not in cache:
            recipe = recipe_for(method, tmp_path_factory.mktemp(method))
            cache[method] = (recipe, train.run(recipe))
        return cache[method]

    return get


@pytest.mark.parametrize("method", ["dpo", "ipo", "kto", "orpo", "simpo"])
def test_method_learns_preference(trained, method):
    recipe, result = trained(method)
    margins = result.series("margin")
    assert len(margins) >= 10, result.history
    # the trainer's reward margin (KTO: desirable minus undesirable reward) rises over training
    assert statistics.fmean(margins[-3:]) > statistics.fmean(margins[:3]), margins
    before, after = result.heldout_before, result.heldout_after
    assert before["n"] == after["n"] == 11  # data_samples/preference_heldout.jsonl, never trained on
    # the random base prefers '!' on most held-out pairs; after training the calm answer wins on all
    assert after["margin"] > before["margin"] + 0.5, result.summary()
    # the twin's random init already leans towards some chosen answers; what matters is that training
    # moves every held-out pair to the chosen side and widens the gap (asserted above)
    assert after["accuracy"] == 1.0 and after["accuracy"] > before["accuracy"], result.summary()


def test_run_saves_adapter_tokenizer_and_margins_that_reload(trained):
    from ftkit.models import load_trained

    recipe, result = trained("dpo")
    out = Path(recipe.output_dir)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "dpo" and [h["margin"] for h in metrics["history"]] == result.series("margin")
    assert (out / "adapter_config.json").is_file() and (out / "recipe.yml").is_file()
    model, tok = load_trained(recipe)
    assert "<|start_header_id|>" in tok.chat_template  # the template trained with travels with the model
    rows = pairs.heldout_rows(recipe, tok)
    again = pairs.pair_scores(model, tok, rows)
    assert again["margins"] == pytest.approx(result.heldout_after["margins"], abs=1e-4)


def test_heldout_pairs_left_out_are_said_and_a_kto_run_reads_them_as_pairs(tmp_path, said):
    from ftkit import models

    rows = [json.loads(line) for line in (ROOT / "data_samples/preference_heldout.jsonl").read_text().splitlines()]
    rows[1]["rejected"] = rows[1]["chosen"]  # nothing to compare: left out, and said
    path = tmp_path / "heldout.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = recipe_for("kto", tmp_path / "out", test_datasets=[{"path": str(path), "type": "chat_template.prompt_pairs"}])
    held = pairs.heldout_rows(recipe, models.load_tokenizer(recipe))
    assert len(held) == len(rows) - 1 and set(held.column_names) == {"prompt", "chosen", "rejected"}
    assert held[1]["prompt"][-1]["content"] == rows[2]["prompt"]
    assert f"test_datasets.0: 1 of {len(rows)} held-out rows left out (1 identical)" in said
    said.clear()  # the measurement after training reads the same rows: said once per run, before training
    assert len(pairs.heldout_rows(recipe, models.load_tokenizer(recipe), say=False)) == len(held)
    assert not any("held-out rows left out" in s for s in said)


PREFIX_WARNING = "The tokenized prompt is not a prefix of the tokenized prompt+completion"


def test_trl_trains_the_prompt_inference_sends_without_a_prefix_warning(tmp_path, caplog):
    """TRL's tokenized prompt for a row equals the ids `ftkit infer` sends and the ids any server sends
    (apply_chat_template with the generation prompt), and TRL's prefix check stays silent. With the twin's old
    tokenizer (GPT-2's split: "\\n\\n" alone is one token, "\\n\\nThe" is "\\n" + "\\n" + "The") the same rows make TRL
    warn and cut the template's trailing "\\n\\n" from the trained prompt: the control shows the check can fail."""
    import dataclasses
    import logging

    from accelerate.logging import MultiProcessAdapter
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    from ftkit.models.families import FAMILIES
    from ftkit.models.tiny import build_tokenizer, tiny_path

    recipe = recipe_for("dpo", tmp_path)
    tok = tiny_tokenizer_for(recipe)
    rows = Dataset.from_list(data.prepare(recipe, tok).train.select(range(3)).to_list())  # in memory: TRL's
    # tokenization really runs (a map over a dataset on disk may come from datasets' cache, silently)
    MultiProcessAdapter.warning_once.cache_clear()  # TRL warns once per process and message: start clean
    with caplog.at_level(logging.WARNING, logger="trl"):
        trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_path("tiny:llama")), train_dataset=rows,
                             processing_class=tok, args=DPOConfig(str(tmp_path), use_cpu=True, bf16=False,
                                                                  report_to=[], gradient_checkpointing=False))
    assert not [r for r in caplog.records if PREFIX_WARNING in r.getMessage()]
    for row, tokenized in zip(rows, trainer.train_dataset):
        question = row["prompt"][-1]["content"]
        served = tok.apply_chat_template(row["prompt"], add_generation_prompt=True)["input_ids"]
        assert tokenized["prompt_ids"] == prompt_ids(recipe, tok, question) == list(served)
        assert tok.decode(tokenized["prompt_ids"]).endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
        assert tok.decode(tokenized["chosen_ids"]) == row["chosen"][0]["content"] + "<|eot_id|>"

    old = build_tokenizer(dataclasses.replace(FAMILIES["llama"].twin, isolate=None))  # the twin before the fix
    configure_tokenizer(old, recipe)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="trl"):
        control = trainer._prepare_dataset(rows, old, trainer.args, "control")
    warned = [r.getMessage() for r in caplog.records if PREFIX_WARNING in r.getMessage()]
    assert warned and "'\\n\\n'" in warned[0], warned  # TRL names the cut: the template's trailing "\n\n"
    assert old.decode(control[0]["prompt_ids"]).endswith("<|end_header_id|>")


def tiny_tokenizer_for(recipe):
    """The twin's tokenizer with the run's chat template, as models.load_tokenizer sets it."""
    from transformers import AutoTokenizer

    from ftkit.models.tiny import tiny_path

    tok = AutoTokenizer.from_pretrained(tiny_path("tiny:llama"))
    configure_tokenizer(tok, recipe)
    return tok


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_bad_rows_are_dropped_and_counted(tmp_path, tiny_tokenizer):
    good = {"prompt": "Is snow white?", "chosen": "Snow is white.", "rejected": "Snow is white!"}
    rows = [good, {**good, "rejected": "Snow is white."},  # identical
            {**good, "chosen": "  "},  # empty
            {**good, "prompt": "word " * 200}]  # prompt alone over sequence_len=64
    path = _write(tmp_path / "pairs.jsonl", rows)
    recipe = recipe_for("dpo", tmp_path, sequence_len=64,
                        datasets=[{"path": path, "type": "chat_template.prompt_pairs"}])
    tok = tiny_tokenizer.__class__.from_pretrained(tiny_tokenizer.name_or_path)
    configure_tokenizer(tok, recipe)
    prepared = data.prepare(recipe, tok)
    s = prepared.stats
    assert (s["dropped_empty"], s["dropped_identical"], s["dropped_too_long"]) == (1, 1, 1)
    assert s["kept"] == len(prepared.train) == 1
    assert ("1 dropped with an empty field, 1 dropped with chosen == rejected, 1 dropped longer than "
            "sequence_len=64") in prepared.summary()
    assert prepared.train[0]["chosen"] == [{"role": "assistant", "content": "Snow is white."}]


def test_no_usable_rows_is_a_clear_error(tmp_path, tiny_tokenizer):
    same = {"prompt": "Is snow white?", "chosen": "Yes.", "rejected": "Yes."}
    path = _write(tmp_path / "same.jsonl", [same, same])
    recipe = recipe_for("dpo", tmp_path, datasets=[{"path": path, "type": "chat_template.prompt_pairs"}])
    with pytest.raises(DataError, match=r"same\.jsonl: datasets\.0\.path: no usable preference rows: 0 with an empty "
                                        r"field, 2 with chosen == rejected.*Fix: check the dataset type matches"):
        data.prepare(recipe, tiny_tokenizer)


def test_bad_row_names_file_line_and_field(tmp_path, tiny_tokenizer):
    rows = [{"question": "Is snow white?", "chosen": "Snow is white.", "rejected": "Snow is white!"}] * 2
    rows.append({"question": "Is coal black?", "chosen": "Coal is black."})
    path = _write(tmp_path / "intel.jsonl", rows)
    recipe = recipe_for("dpo", tmp_path, datasets=[{"path": path, "type": "chat_template.intel"}])
    with pytest.raises(DataError, match=r"intel\.jsonl:3: field 'rejected': missing\. Fix: add 'rejected'"):
        data.prepare(recipe, tiny_tokenizer)
    with pytest.raises(FtkitError, match=r"datasets\.0\.type: unsupported preference dataset type 'chat_template\.pairs'"
                                        r".*prompt_pairs"):  # refused when the recipe loads, before any row is read
        recipe_for("dpo", tmp_path, datasets=[{"path": path, "type": "chat_template.pairs"}])


SHAPES = {  # sample file, type -> the normalized prompt of its first row
    "preference_pairs.jsonl": ("chat_template.prompt_pairs", ["user"]),
    "preference_intel.jsonl": ("chatml.intel", ["system", "user"]),
    "preference_ultra.jsonl": ("chat_template.ultra", ["user"]),
    "preference_chat.jsonl": ("chat_template.argilla_chat", ["user", "assistant", "user"]),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_each_shape_becomes_trl_conversational_rows(name, tmp_path, tiny_tokenizer):
    type_, roles = SHAPES[name]
    raw = json.loads((ROOT / "data_samples" / name).read_text().splitlines()[0])
    recipe = recipe_for("dpo", tmp_path, chat_template=None, datasets=[{"path": f"data_samples/{name}", "type": type_}])
    tok = tiny_tokenizer.__class__.from_pretrained(tiny_tokenizer.name_or_path)
    configure_tokenizer(tok, recipe)
    rows = RawData(__import__("datasets").Dataset.from_list([raw]), [name])
    row = pairs.convert_rows(rows, recipe.datasets[0], recipe, tok, "datasets.0")[0]
    assert [m["role"] for m in row["prompt"]] == roles and row["_drop"] == ""
    assert row["chosen"][0]["content"].endswith(".") and row["rejected"][0]["content"].endswith("!")
    shown = pairs.show_pair(tok, row)  # what `ftkit preprocess --debug` prints
    assert shown.splitlines()[-1].startswith("rejected: ")  # chatml follows <|im_end|> with a newline
    assert f"{row['rejected'][0]['content']}{end_of_turn(tok.chat_template, tok)}" in shown.splitlines()[-1]
    if type_.startswith("chatml"):  # the type's template becomes the run's, special tokens added
        assert tok.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True) == (
            f"<|im_start|>system\n{raw['system']}<|im_end|>\n<|im_start|>user\n{raw['question']}<|im_end|>\n"
            "<|im_start|>assistant\n")
        assert "<|im_start|>" in tok.get_vocab()


def test_one_template_for_a_preference_run(tmp_path, tiny_tokenizer):
    """TRL renders every row with the tokenizer's template: names that disagree are an error, before any data."""
    from ftkit import models

    intel = [{"path": "data_samples/preference_intel.jsonl", "type": "chatml.intel"}]
    with pytest.raises(FtkitError, match=r"chat_template: the dataset types and chat_template name different "
                                         r"templates: \['chatml', 'llama3'\]"):
        models.load_tokenizer(recipe_for("dpo", tmp_path, datasets=intel))  # dpo.yml says chat_template: llama3
    tok = models.load_tokenizer(recipe_for("dpo", tmp_path, datasets=intel, chat_template="chatml"))
    assert tok.chat_template == TEMPLATES["chatml"].jinja and "<|im_end|>" in tok.get_vocab()
    assert end_of_turn(tok.chat_template, tok) == "<|im_end|>"


def test_full_finetune_uses_a_frozen_reference_copy(tmp_path):
    import torch

    from ftkit.train.run import build

    recipe = recipe_for("dpo", tmp_path, adapter=None, max_steps=3, learning_rate=1e-3)
    trainer = build(recipe).trainer
    ref, policy = trainer.ref_model, trainer.model
    assert ref is not None and ref is not policy and not any(p.requires_grad for p in ref.parameters())
    assert all(p.requires_grad for p in policy.parameters())  # a full fine-tune trains every weight
    w0 = ref.model.layers[0].self_attn.q_proj.weight.clone()
    trainer.train()
    assert trainer.state.global_step == 3
    assert torch.equal(ref.model.layers[0].self_attn.q_proj.weight, w0)  # the reference stayed where it started
    assert not torch.equal(policy.model.layers[0].self_attn.q_proj.weight, w0)  # the policy moved


def test_options_only_one_method_reads_are_errors():
    with pytest.raises(ConfigError, match=r"orpo_alpha: is not read by rl: dpo \(only by rl: orpo\)\. Fix: remove it, or set rl: orpo"):
        load_recipe(ROOT / "recipes" / "llama" / "dpo.yml", {"orpo_alpha": "0.2"})
    with pytest.raises(ConfigError, match=r"rl_beta: ORPO has no reference model.*Fix: use orpo_alpha"):
        load_recipe(ROOT / "recipes" / "llama" / "orpo.yml", {"rl_beta": "0.2"})


def test_rl_config_maps_axolotl_names_onto_trl(tmp_path):
    from ftkit.models import Precision

    fp32 = Precision(False, False, False)
    dpo = rl_config(recipe_for("dpo", tmp_path, rpo_alpha=0.5, dpo_label_smoothing=0.1), fp32)
    assert (dpo.loss_type, dpo.loss_weights, dpo.label_smoothing, dpo.beta) == (["robust", "sft"], [1.0, 0.5], 0.1, 0.1)
    assert rl_config(recipe_for("ipo", tmp_path), fp32).loss_type == ["ipo"]
    kto = rl_config(recipe_for("kto", tmp_path, kto_undesirable_weight=1.5), fp32)
    assert (kto.beta, kto.desirable_weight, kto.undesirable_weight) == (0.1, 1.0, 1.5)
    assert rl_config(recipe_for("orpo", tmp_path, orpo_alpha=0.3), fp32).beta == 0.3
    simpo = rl_config(recipe_for("simpo", tmp_path, simpo_gamma=0.7), fp32)
    assert (simpo.loss_type, simpo.beta, simpo.simpo_gamma, simpo.cpo_alpha) == ("simpo", 2.0, 0.7, 0.0)
    assert not dpo.gradient_checkpointing and dpo.max_length == 128


def test_cli_train_dispatches_on_rl_and_infer_uses_the_chat_template(tmp_path, capsys):
    from ftkit.cli import main

    out = tmp_path / "cli"
    args = ["recipes/llama/dpo.yml", "--base_model=tiny:llama", f"--output_dir={out}"]
    # (in-process: the same main() `ftkit` runs; --eval_prompts=[] would arrive as the string '[]')
    assert main(["train", *args, "--max_steps=2", "--max_new_tokens=2"]) == 0
    assert "dpo: train loss 0.693 -> " in capsys.readouterr().out and (out / "adapter_model.safetensors").is_file()
    assert main(["infer", *args, "--prompt=What is the capital of Peru?", "--no-stream", "--max-new-tokens=4"]) == 0
    assert capsys.readouterr().out.strip()
