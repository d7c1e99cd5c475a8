"""A saved model carries how it was trained: its tokenizer's chat template renders the training prompt (so plain
`apply_chat_template` + `generate` answers like `ftkit infer`), a hub model card, trainer_state.json, readable files."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch

from ftkit.formats.alpaca import FORMATS
from ftkit.formats.prompt import Prompt
from ftkit.infer.generate import prompt_ids
from ftkit.recipe import load_recipe

from conftest import QUICKSTART
from test_adapters import run_variant

TEXT = "What is the capital of Spain?"


def _recipe(type_, tmp_path, **extra):
    return load_recipe(QUICKSTART, {"datasets": [{"path": "data_samples/alpaca.jsonl", "type": type_, **extra}],
                                    "output_dir": str(tmp_path)})


def _served_ids(tok, messages):
    return tok.apply_chat_template(messages, add_generation_prompt=True)["input_ids"]


@pytest.mark.parametrize("type_", sorted(FORMATS))
def test_serving_template_renders_the_training_prompt_for_every_alpaca_type(type_, tiny_tokenizer, tmp_path):
    tok = tiny_tokenizer.__class__.from_pretrained(tiny_tokenizer.name_or_path)  # a fresh copy per type
    recipe = _recipe(type_, tmp_path)
    want = prompt_ids(recipe, tok, TEXT)
    assert _served_ids(tok, [{"role": "user", "content": TEXT}]) != want  # negative control: Llama 3's template
    Prompt(recipe, tok).save_template()
    assert _served_ids(tok, [{"role": "user", "content": TEXT}]) == want
    # an assistant turn renders as its text + the eos training appended (eos_count of the format)
    text = tok.apply_chat_template([{"role": "user", "content": TEXT}, {"role": "assistant", "content": "Madrid."}],
                                   tokenize=False)
    assert text.endswith("Madrid." + tok.eos_token * FORMATS[type_].eos_count), text[-60:]


def test_serving_template_system_messages_custom_formats_and_chat_formats(tiny_tokenizer, tmp_path):
    tok = tiny_tokenizer.__class__.from_pretrained(tiny_tokenizer.name_or_path)
    Prompt(_recipe("alpaca", tmp_path), tok).save_template()
    with pytest.raises(Exception, match="trained on the alpaca prompt, which has no system message"):
        tok.apply_chat_template([{"role": "system", "content": "Be brief."}, {"role": "user", "content": TEXT}])
    # alpaca_w_system writes the system message where training wrote the row's system field
    recipe = _recipe("alpaca_w_system", tmp_path)
    Prompt(recipe, tok).save_template()
    from ftkit.formats.prompt import strategy_for
    from ftkit.formats.tokenize import encode_prompt_text

    strategy = strategy_for(recipe.datasets[0], recipe, tok)
    want = encode_prompt_text(strategy.render(TEXT, "", "Be brief."), tok)
    assert _served_ids(tok, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": TEXT}]) == want
    # a custom `type:` mapping and raw completion text
    custom = load_recipe(QUICKSTART, {"datasets": [{"path": "data_samples/custom.jsonl", "type": {
        "field_instruction": "question", "field_output": "answer", "format": "Q: {instruction}\nA:",
        "no_input_format": "Q: {instruction}\nA:"}}], "output_dir": str(tmp_path)})
    Prompt(custom, tok).save_template()
    assert _served_ids(tok, [{"role": "user", "content": TEXT}]) == prompt_ids(custom, tok, TEXT)
    # chat formats train through the tokenizer's own template: it is kept
    chat = load_recipe(QUICKSTART, {"datasets": [{"path": "data_samples/chat.jsonl", "type": "chat_template"}],
                                    "output_dir": str(tmp_path)})
    assert Prompt(chat, tok).serving_template() is None


def test_apply_chat_template_and_generate_answer_like_ftkit_infer(trained_quickstart):
    """What any server does with the saved folder (plain transformers) gives `ftkit infer`'s answer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftkit import infer

    recipe, result = trained_quickstart
    tok = AutoTokenizer.from_pretrained(recipe.output_dir)
    model = AutoModelForCausalLM.from_pretrained(recipe.output_dir).eval()
    inputs = tok.apply_chat_template([{"role": "user", "content": TEXT}], add_generation_prompt=True,
                                     return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=recipe.max_new_tokens, do_sample=False)
    served = tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    answer = infer.run(recipe, TEXT, stream=False, stdout=open(os.devnull, "w"))[0]
    assert served == answer == result.samples_after[0]["completion"], (served, answer)
    assert "### Instruction:\nWhat is the capital of Spain?" in tok.apply_chat_template(
        [{"role": "user", "content": TEXT}], tokenize=False, add_generation_prompt=True)


def _modes(folder: Path) -> set:
    return {stat.S_IMODE(p.stat().st_mode) for p in folder.rglob("*") if p.is_file()}


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _card(folder: Path):
    from huggingface_hub import ModelCard

    return ModelCard.load(folder / "README.md")


def test_full_fine_tune_folder_has_card_state_plot_and_readable_files(trained_quickstart):
    recipe, result = trained_quickstart
    out = Path(recipe.output_dir)
    card = _card(out)
    assert card.data.base_model == "tiny:llama" and card.data.library_name == "transformers"
    assert card.data.datasets == ["data_samples/alpaca.jsonl"] and {"ftkit", "sft", "alpaca"} <= set(card.data.tags)
    text = card.text
    assert "## Prompt format" in text and "### Instruction:\nWhat is the capital of Spain?\n\n### Response:" in text
    assert f"{result.first_loss:.4f} -> {result.final_loss:.4f}" in text  # final metrics
    assert f"{result.eval_loss_after:.4f}" in text and "![training loss](loss.png)" in text
    assert "base_model: tiny:llama" in text and "max_steps: 40" in text  # the recipe, as run
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == result.steps == 40
    assert [(h["step"], h["loss"]) for h in state["log_history"] if "loss" in h] == [tuple(x) for x in result.losses]
    assert _modes(out) == {_umask_mode()}, _modes(out)  # safetensors were 0600, everything else 0644


def test_adapter_and_merged_folders_have_hub_cards(tmp_path_factory):
    from ftkit.models import merge

    _, recipe, result = run_variant("lora", tmp_path_factory)
    out = Path(recipe.output_dir)
    card = _card(out)
    assert card.data.library_name == "peft" and card.data.base_model_relation == "adapter"
    assert card.data.base_model == "tiny:llama" and "lora" in card.data.tags
    assert "Model Card for Model ID" not in card.text  # peft's empty template was replaced
    assert "PeftModel.from_pretrained" in card.text and f"{result.final_loss:.4f}" in card.text
    assert _modes(out) == {_umask_mode()}
    merged = merge.run(recipe, output_dir=str(tmp_path_factory.mktemp("merged_card")))
    mcard = _card(merged)
    assert mcard.data.library_name == "transformers" and "merged" in mcard.data.tags
    assert "r=8, alpha=16" in mcard.text and f"{result.final_loss:.4f}" in mcard.text  # the adapter run's metrics
    assert (merged / "loss.png").is_file() and (merged / "recipe.yml").is_file()
    assert _served_ids(_tok(merged), [{"role": "user", "content": TEXT}]) == prompt_ids(recipe, _tok(merged), TEXT)
    assert _modes(merged) == {_umask_mode()}


def _tok(folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)
