"""Multi-process training through accelerate's launcher (gloo on CPU), DeepSpeed ZeRO-2, engine config checks."""
import json
from pathlib import Path

import pytest
import yaml
from conftest import run_cli

from ftkit.errors import ConfigError
from ftkit.plugins import distributed
from ftkit.train.callbacks import param_checksum


def write_recipe(recipe, path: Path) -> str:
    path.write_text(yaml.safe_dump(recipe.dump(), sort_keys=False))
    return str(path)


def launch_and_check(make_recipe, tmp_path, tiny_llama_dir, **overrides):
    """Train 2 steps in 2 processes; both ranks step, stay identical, and the saved model is rank 0's."""
    from transformers import AutoModelForCausalLM

    recipe = make_recipe(max_steps=2, sequence_len=64, micro_batch_size=2, **overrides)
    proc = run_cli("train", write_recipe(recipe, tmp_path / "r.yml"), "--num_processes=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((Path(recipe.output_dir) / "metrics.json").read_text())
    run = metrics["runtime"]
    assert run["world_size"] == 2
    assert [(r["rank"], r["steps"]) for r in run["replicas"]] == [(0, 2), (1, 2)]  # both ranks stepped
    assert run["replicas"][0]["checksum"] == run["replicas"][1]["checksum"]  # replicas in sync
    saved = AutoModelForCausalLM.from_pretrained(recipe.output_dir)
    assert param_checksum(saved) == run["replicas"][0]["checksum"]  # the saved model is rank 0's
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    assert param_checksum(base) != run["replicas"][0]["checksum"]  # and training changed it
    assert [s for s, _ in metrics["losses"]] == [1, 2]
    return proc


def test_ddp_two_processes_via_accelerate(make_recipe, tmp_path, tiny_llama_dir):
    proc = launch_and_check(make_recipe, tmp_path, tiny_llama_dir)
    said = proc.stdout + proc.stderr
    assert "2 processes, steps [2, 2]: replicas identical" in said
    # the summary lines are rank 0's alone: the data, the run's losses, where the model went
    summary = ("[ftkit] data (sft): ", "[ftkit] train loss ", "[ftkit] saved to ", " options used")
    assert [said.count(line) for line in summary] == [1, 1, 1, 1]


def test_deepspeed_zero2_two_processes_on_cpu(make_recipe, tmp_path, tiny_llama_dir):
    proc = launch_and_check(make_recipe, tmp_path, tiny_llama_dir, deepspeed="recipes/deepspeed/zero2.json")
    assert "shm helper not compiled" in proc.stdout + proc.stderr  # no 60-80 s compile on CPU


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_shipped_deepspeed_configs_resolve(make_recipe, stage):
    recipe = make_recipe(deepspeed=f"recipes/deepspeed/zero{stage}.json")
    cfg = json.loads(Path(distributed.deepspeed_path(recipe)).read_text())
    assert cfg["zero_optimization"]["stage"] == stage
    # the values the HF integration fills from the recipe are left to it
    assert cfg["train_micro_batch_size_per_gpu"] == cfg["gradient_accumulation_steps"] == "auto"


def test_zero3_fills_auto_values_from_the_recipe(make_recipe):
    """ZeRO-3's `auto` entries are filled by transformers from the recipe's batch/accum/precision."""
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig
    from trl import SFTConfig

    recipe = make_recipe(deepspeed="recipes/deepspeed/zero3.json", micro_batch_size=3, gradient_accumulation_steps=4)
    args = SFTConfig(output_dir=recipe.output_dir, per_device_train_batch_size=3, gradient_accumulation_steps=4,
                     use_cpu=True, bf16=False, report_to=[])
    ds = HfTrainerDeepSpeedConfig(distributed.deepspeed_path(recipe))
    ds.trainer_config_process(args)
    assert ds.config["train_micro_batch_size_per_gpu"] == 3
    assert ds.config["gradient_accumulation_steps"] == 4
    assert ds.config["bf16"]["enabled"] is False and ds.is_zero3()


def test_missing_deepspeed_file_names_key_and_fix(make_recipe):
    recipe = make_recipe(deepspeed="recipes/deepspeed/zero9.json")
    with pytest.raises(ConfigError, match=r"deepspeed: DeepSpeed config 'recipes/deepspeed/zero9.json' not found.*"
                                          r"Fix: .*zero1.json, zero2.json, zero3.json"):
        distributed.engine_kwargs(recipe)


def test_fsdp_axolotl_options_map_onto_training_arguments(make_recipe):
    from trl import SFTConfig

    recipe = make_recipe(fsdp=["full_shard", "auto_wrap", "offload"],
                         fsdp_config={"fsdp_version": 2, "fsdp_state_dict_type": "FULL_STATE_DICT",
                                      "fsdp_transformer_layer_cls_to_wrap": "LlamaDecoderLayer"})
    kw = distributed.fsdp_kwargs(recipe)
    assert kw == {"fsdp": True, "fsdp_config": {"version": 2, "state_dict_type": "FULL_STATE_DICT",
                                                "transformer_layer_cls_to_wrap": "LlamaDecoderLayer",
                                                "reshard_after_forward": True, "cpu_offload": True}}
    args = SFTConfig(output_dir=recipe.output_dir, use_cpu=True, bf16=False, report_to=[], **kw)
    assert args.fsdp_plugin_args["transformer_cls_names_to_wrap"] == "LlamaDecoderLayer"
    assert args.fsdp_plugin_args["cpu_offload"] is True and args.fsdp_plugin_args["fsdp_version"] == 2


def test_fsdp_mistakes_are_config_errors(make_recipe):
    recipe = make_recipe(fsdp=["full_shard", "fully_shard"], fsdp_config={"fsdp_offload_paramz": True})
    with pytest.raises(ConfigError, match=r"(?s)fsdp: unknown FSDP option 'fully_shard'.*"
                                          r"fsdp_config.fsdp_offload_paramz: unknown FSDP setting. Fix: use one of"):
        distributed.fsdp_kwargs(recipe)
    with pytest.raises(ConfigError, match="fsdp: conflicts with deepspeed. Fix: use one engine"):
        make_recipe(fsdp=["full_shard"], deepspeed="recipes/deepspeed/zero3.json")


def test_fsdp_on_cpu_says_it_trains_unsharded(make_recipe, said, monkeypatch):
    """accelerate 1.15 keeps the FSDP plugin for accelerator processes only: on CPU the run is DDP, and ftkit says so."""
    monkeypatch.setenv("RANK", "0")  # a launcher's world: engine_kwargs leaves the environment alone
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.engine_kwargs(make_recipe(fsdp=["full_shard", "auto_wrap"]))["fsdp"] is True
    assert any("fsdp on CPU: accelerate keeps FSDP for GPU processes only" in line for line in said)


def test_a_dotted_override_fills_an_empty_fsdp_config(make_recipe):
    """A recipe written with `fsdp_config:` empty (as `ftkit bench memory`'s dumped recipes are) takes
    --fsdp_config.KEY=VALUE as its first entry, not a traceback."""
    recipe = make_recipe(fsdp_config=None, **{"fsdp_config.fsdp_transformer_layer_cls_to_wrap": "LlamaDecoderLayer"})
    assert recipe.fsdp_config == {"transformer_layer_cls_to_wrap": "LlamaDecoderLayer"}  # prefix dropped, as ever
