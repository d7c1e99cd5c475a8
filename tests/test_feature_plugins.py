"""The feature plug-ins (ftkit/plugins/relora, lisa, stream, kernels, packing, schedules, distributed, tracking) are
on exactly when their recipe options are: a plain SFT recipe on a CPU runs the kernels plug-in alone (ftkit's chunked
loss under TRL's fused head), on CUDA none; each option turns its own plug-in on, in PLUGINS order."""
from pathlib import Path

import pytest
import torch

from ftkit import hooks
from ftkit.plugins import kernels

TEXTS = Path(__file__).resolve().parents[1] / "data_samples" / "completion.jsonl"


def on(recipe) -> list[str]:
    return [module.__name__.rsplit(".", 1)[1] for module in hooks.active(recipe)]


@pytest.fixture
def cuda(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def test_a_plain_sft_recipe_on_a_cpu_runs_the_kernels_plugin_alone(make_recipe):
    assert on(make_recipe()) == ["kernels"]


def test_on_cuda_the_kernels_plugin_runs_only_for_a_kernel_the_recipe_names(make_recipe, cuda):
    assert on(make_recipe()) == []
    assert on(make_recipe(liger_rms_norm=True)) == ["kernels"]
    assert on(make_recipe(cut_cross_entropy=True)) == ["kernels"]


def test_cce_left_routed_by_an_earlier_run_is_undone_by_the_next_run_that_names_no_kernel(make_recipe, cuda,
                                                                                          monkeypatch):
    """Cut Cross-Entropy is routed process-wide (kernels.Dispatch): a later run in the same process (a notebook) that
    does not ask for it must not keep it."""
    monkeypatch.setattr(kernels.Dispatch, "cce", kernels._cce_loss)
    recipe = make_recipe()
    assert on(recipe) == ["kernels"]
    hooks.call(recipe, "patch_model", recipe, None)
    assert kernels.Dispatch.cce is None and on(recipe) == []


@pytest.mark.parametrize("overrides, expected", [
    ({"adapter": "lora", "lora_target_linear": True, "relora": True, "jagged_restart_steps": 2},
     ["relora", "schedules"]),  # ReLoRA's learning rate follows the jagged schedule
    ({"lisa_n_layers": 1, "lisa_step_interval": 2}, ["lisa"]),
    ({"datasets": [], "pretraining_dataset": [{"path": str(TEXTS), "type": "pretrain"}], "val_set_size": 0},
     ["stream"]),
    ({"sample_packing": True}, ["packing"]),
    ({"eval_sample_packing": True, "val_set_size": 0.1}, ["packing"]),
    ({"lr_scheduler": "cosine", "cosine_min_lr_ratio": 0.1, "cosine_constant_lr_ratio": 0.5}, ["schedules"]),
    ({"jagged_restart_steps": 4}, ["schedules"]),
    ({"lr_scheduler": "cosine", "cosine_min_lr_ratio": 0.1}, []),  # transformers' cosine_with_min_lr
    ({"deepspeed": "zero2.json"}, ["distributed"]),
    ({"fsdp": ["full_shard", "auto_wrap"]}, ["distributed"]),
    ({"wandb_project": "p", "wandb_mode": "offline"}, ["tracking"]),
    ({"mlflow_tracking_uri": "file:./mlruns"}, ["tracking"]),
    ({"use_comet": True}, ["tracking"]),
], ids=["relora", "lisa", "stream", "packing", "eval packing", "cosine_constant", "jagged", "cosine_min", "deepspeed",
        "fsdp", "wandb", "mlflow", "comet"])
def test_each_feature_option_turns_its_own_plugin_on(make_recipe, cuda, overrides, expected):
    """(on CUDA, so the kernels plug-in stays out; the runs themselves: test_merge_relora, test_lisa, test_streaming)"""
    assert on(make_recipe(**overrides)) == expected


@pytest.mark.parametrize("packed", [False, True])
def test_stream_rows_take_the_packed_collator_and_count_real_tokens_once(make_recipe, cuda, monkeypatch, packed):
    """Stream rows carry seq_lengths as packed rows do: the stream plug-in hands packing's collator and token count
    on (once, with sample_packing on as well); a plain SFT recipe gets neither (TRL's padding collator and count)."""
    from types import SimpleNamespace

    from ftkit.plugins import packing

    counted = []
    monkeypatch.setattr(packing, "count_real_tokens", counted.append)
    tok, model = SimpleNamespace(pad_token_id=0), SimpleNamespace(config=SimpleNamespace(_attn_implementation="sdpa"))
    stream = make_recipe(datasets=[], pretraining_dataset=[{"path": str(TEXTS), "type": "pretrain"}],
                         sample_packing=packed)
    given = hooks.call(stream, "collator", stream, tok, model)
    assert len(given) == 1 + packed and all(isinstance(c, packing.PackedCollator) for c in given)
    hooks.call(stream, "trainer_built", stream, "trainer")
    assert counted == ["trainer"]
    plain = make_recipe()
    assert hooks.call(plain, "collator", plain, tok, model) == [] and packing.collator(plain, tok, model) is None
    hooks.call(plain, "trainer_built", plain, "plain trainer")
    assert counted == ["trainer"]


def test_a_relora_run_finished_from_its_last_checkpoint_saves_the_base_merged_at_its_restarts(tmp_path):
    """The checkpoint of the last step is loaded, not trained (checkpoints.finish_from): the checkpoint_loaded hook
    puts back the base ReLoRA merged at step 2, so the saved model is the one the run saved (else: the original base
    plus the last cycle's update)."""
    from safetensors.torch import load_file
    from twin import ROOT, load_on_twin

    from ftkit import train

    lora = ROOT / "recipes" / "llama" / "lora.yml"
    common = dict(max_steps=4, relora=True, jagged_restart_steps=2, learning_rate=0.01, lr_scheduler="constant",
                  lora_dropout=0.0, gradient_checkpointing=False, save_steps=4,
                  dataset_prepared_path=str(tmp_path / "prepared"))
    whole = load_on_twin(lora, tmp_path / "a", **common)
    train.run(whole)
    checkpoint = tmp_path / "a" / "out" / "checkpoint-4"
    again = load_on_twin(lora, tmp_path / "b", **common, resume_from_checkpoint=str(checkpoint))
    assert train.run(again).steps == 4
    first, second = (load_file(tmp_path / run / "out" / "model.safetensors") for run in ("a", "b"))
    assert first.keys() == second.keys()
    for name in first:
        torch.testing.assert_close(second[name], first[name], rtol=0, atol=1e-6)


def test_more_than_one_process_turns_the_distributed_plugin_on(make_recipe, cuda, monkeypatch):
    """Plain DDP (no deepspeed/fsdp): two processes still need its arguments (gloo on CPU processes)."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert on(make_recipe()) == ["distributed"]
