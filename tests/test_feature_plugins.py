"""The feature plug-ins (ftkit/plugins/relora, lisa, stream, kernels) are on exactly when their recipe options are:
a plain SFT recipe on a CPU runs the kernels plug-in alone (ftkit's chunked loss under TRL's fused head), on CUDA
none; each option turns its own plug-in on, in PLUGINS order."""
from pathlib import Path

import pytest

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
    ({"adapter": "lora", "lora_target_linear": True, "relora": True, "jagged_restart_steps": 2}, ["relora"]),
    ({"lisa_n_layers": 1, "lisa_step_interval": 2}, ["lisa"]),
    ({"datasets": [], "pretraining_dataset": [{"path": str(TEXTS), "type": "pretrain"}], "val_set_size": 0},
     ["stream"]),
], ids=["relora", "lisa", "stream"])
def test_each_feature_option_turns_its_own_plugin_on(make_recipe, cuda, overrides, expected):
    """(on CUDA, so the kernels plug-in stays out; the runs themselves: test_merge_relora, test_lisa, test_streaming)"""
    assert on(make_recipe(**overrides)) == expected
