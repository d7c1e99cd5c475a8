"""The verbs end to end on the tiny twin: preprocess --debug, train (full and LoRA), infer, merge-lora."""
import json
from pathlib import Path

import pytest
import torch
from conftest import QUICKSTART, run_cli

from ftkit import train
from ftkit.recipe import load_recipe


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    """One short LoRA run shared by the infer and merge tests."""
    out = tmp_path_factory.mktemp("lora")
    recipe = load_recipe(QUICKSTART, {"adapter": "lora", "lora_r": 16, "lora_alpha": 32, "learning_rate": 0.01, "logging_steps": 5,
                                      "max_steps": 30, "output_dir": str(out / "run"), "val_set_size": 0,
                                      "dataset_prepared_path": str(out / "prep"), "eval_prompts": [],
                                      "lora_target_linear": True})
    result = train.run(recipe)
    return recipe, result, out


def test_lora_trains_and_saves_adapter(lora_run):
    recipe, result, _ = lora_run
    assert result.final_loss < result.first_loss * 0.8, result.summary()
    assert 0 < result.trainable_params < result.total_params
    out = Path(recipe.output_dir)
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert not (out / "model.safetensors").exists()  # only the adapter is saved
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 30 and metrics["final_loss"] == result.final_loss
    assert "adapter: lora" in (out / "recipe.yml").read_text()


def test_full_finetune_saves_reloadable_model(make_recipe):
    from transformers import AutoModelForCausalLM

    recipe = make_recipe(max_steps=6)
    result = train.run(recipe)
    assert result.trainable_params == result.total_params and result.steps == 6
    model = AutoModelForCausalLM.from_pretrained(recipe.output_dir)
    assert model.config.model_type == "llama"


def test_merge_lora_logits_equal_base_plus_adapter(lora_run, tmp_path):
    from transformers import AutoModelForCausalLM

    from ftkit.models import load_trained

    recipe, _, _ = lora_run
    proc = run_cli("merge-lora", str(QUICKSTART), f"--output_dir={recipe.output_dir}", "--adapter=lora",
                   "--lora_target_linear=true", f"--output-dir={tmp_path / 'merged'}")
    assert proc.returncode == 0, proc.stderr
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    peft_model, tok = load_trained(recipe)
    ids = torch.tensor([tok("What is the capital of Peru?")["input_ids"]])
    with torch.no_grad():
        want = peft_model(input_ids=ids).logits
        got = merged(input_ids=ids).logits
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    with torch.no_grad():  # and the adapter really changed something
        base = peft_model.get_base_model()
        with peft_model.disable_adapter():
            plain = peft_model(input_ids=ids).logits
    assert (plain - want).abs().max() > 1e-3
    del base


def test_infer_prompt_and_stdin(lora_run):
    recipe, _, _ = lora_run
    common = [str(QUICKSTART), f"--output_dir={recipe.output_dir}", "--adapter=lora", "--lora_target_linear=true"]
    one = run_cli("infer", *common, "--prompt=What is the capital of Peru?", "--max-new-tokens=8", "--no-stream")
    assert one.returncode == 0, one.stderr
    assert one.stdout.strip(), "no text generated"
    many = run_cli("infer", *common, "--max-new-tokens=6", input="What color is snow?\n\nAdd 1 and 2.\n")
    assert many.returncode == 0, many.stderr
    rows = [json.loads(line) for line in many.stdout.splitlines()]
    assert [r["prompt"] for r in rows] == ["What color is snow?", "Add 1 and 2."]
    assert all(isinstance(r["completion"], str) and r["completion"] for r in rows)


def test_preprocess_debug_shows_mask_and_counts(tmp_path):
    proc = run_cli("preprocess", str(QUICKSTART), f"--dataset_prepared_path={tmp_path}", "--sequence_len=60",
                   "--debug", "--debug-rows=2")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "2400 rows in" in out and "dropped longer than sequence_len=60" in out
    dropped = int(out.split("kept (")[1].split(" dropped longer")[0])
    assert dropped > 0  # alpaca rows with an input are longer than 60 tokens: counted, not silently lost
    assert out.count("--- example") == 2
    assert "### Response:\n[[" in out and "]]" in out  # the answer (and only it) is marked as trained


def test_cli_reports_config_error_without_traceback(tmp_path):
    proc = run_cli("train", str(QUICKSTART), "--lerning_rate=1")
    assert proc.returncode == 2
    assert "lerning_rate: unknown option. Fix: did you mean learning_rate?" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_help_documents_each_verb():
    for verb in ("preprocess", "train", "infer", "merge-lora"):
        proc = run_cli(verb, "--help")
        assert proc.returncode == 0 and "--key=value" in proc.stdout, verb


def test_missing_deepspeed_config_fails_before_data_preparation(tmp_path):
    proc = run_cli("train", str(QUICKSTART), "--deepspeed=zero9.json", f"--dataset_prepared_path={tmp_path}")
    assert proc.returncode == 2 and "deepspeed: DeepSpeed config 'zero9.json' not found. Fix:" in proc.stderr
    assert "rows in" not in proc.stdout and not any(tmp_path.iterdir())  # nothing was tokenized first
