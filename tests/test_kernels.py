"""CUDA kernels a recipe names (plugins/kernels.py) and the LM head's kernel choice (plugins/kernels.route): what
would run where, and what is said. This machine has no GPU: the CUDA side is checked with stand-ins for the
packages; ftkit/bench/gpu_speed.sh measures the real kernels on a GPU."""
from __future__ import annotations

import sys
import types

import pytest

from ftkit.plugins import kernels as lm_head

ALL = dict(liger_rope=True, liger_rms_norm=True, liger_glu_activation=True, liger_fused_linear_cross_entropy=True,
           cut_cross_entropy=True)


def test_on_cpu_nothing_is_applied_and_that_is_said(make_recipe):
    kwargs, cce, said = lm_head.plan(make_recipe(**ALL), cuda=False, has=lambda m: True)
    assert (kwargs, cce) == ({}, False)
    assert said == ["liger_rope, liger_rms_norm, liger_glu_activation, liger_fused_linear_cross_entropy, "
                    "cut_cross_entropy: CUDA kernels, not used on this machine (no CUDA device); the same training "
                    "with transformers' modules and ftkit's chunked LM head"]
    assert lm_head.plan(make_recipe(), cuda=True, has=lambda m: True) == ({}, False, [])


def test_on_cuda_with_the_packages_liger_patches_what_the_recipe_names_and_cce_takes_the_loss(make_recipe):
    kwargs, cce, said = lm_head.plan(make_recipe(**ALL), cuda=True, has=lambda m: True)
    # layer_norm not asked; Liger's own loss kernels stay off (TRL's fused head computes the loss)
    assert kwargs == {"rope": True, "rms_norm": True, "layer_norm": False, "swiglu": True, "geglu": True,
                      "cross_entropy": False, "fused_linear_cross_entropy": False}
    assert cce is True
    assert "Liger kernels: liger_rope, liger_rms_norm, liger_glu_activation" in said
    assert any(s.startswith("liger_fused_linear_cross_entropy: the LM head's loss never builds the logits") for s in said)
    assert any(s.startswith("cut_cross_entropy: Cut Cross-Entropy computes the loss") for s in said)


def test_on_cuda_without_the_packages_the_fix_is_named(make_recipe):
    kwargs, cce, said = lm_head.plan(make_recipe(**ALL), cuda=True, has=lambda m: False)
    assert (kwargs, cce) == ({}, False)
    assert any("liger-kernel is not installed (pip install 'ftkit[gpu]')" in s for s in said)
    assert any("cut-cross-entropy is not installed (pip install 'ftkit[gpu]')" in s for s in said)


def test_a_preference_recipe_may_name_them_liger_patches_its_model_and_the_loss_kernels_are_said_unused(make_recipe):
    """As Axolotl's Liger plugin, the model-level kernels serve every method (it patches before the trainer exists);
    DPO computes its loss from the logits, so the loss kernels have nothing to replace there: said, not refused."""
    from conftest import ROOT

    recipe = make_recipe(ROOT / "recipes" / "llama" / "dpo.yml", base_model="tiny:llama", **ALL)
    kwargs, cce, said = lm_head.plan(recipe, cuda=True, has=lambda m: True)
    assert kwargs["rms_norm"] and kwargs["swiglu"] and not kwargs["fused_linear_cross_entropy"] and cce is False
    assert "Liger kernels: liger_rope, liger_rms_norm, liger_glu_activation" in said
    assert [s.split(":")[0] for s in said if "not used by dpo runs" in s] == ["liger_fused_linear_cross_entropy",
                                                                              "cut_cross_entropy"]


def test_apply_patches_the_base_model_under_lora_and_routes_the_loss_to_cce(make_recipe, tiny_llama_dir,
                                                                           monkeypatch, said):
    """On CUDA (as if) with a stand-in liger_kernel, apply() hands Liger the base model (not peft's wrapper)
    with the planned keywords, and sets CCE as the LM head's kernel for lean CUDA steps."""
    from transformers import AutoModelForCausalLM

    from ftkit.models import apply_lora

    calls = []
    fake = types.ModuleType("liger_kernel.transformers.monkey_patch")
    fake.MODEL_TYPE_TO_APPLY_LIGER_FN = {"llama": None}
    fake._apply_liger_kernel_to_instance = lambda model, **kw: calls.append((model, kw))
    for name in ("liger_kernel", "liger_kernel.transformers"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers.monkey_patch", fake)
    monkeypatch.setattr(lm_head, "installed", lambda module: True)
    monkeypatch.setattr(lm_head.Dispatch, "cce", None)

    recipe = make_recipe(adapter="lora", lora_target_linear=True, **ALL)
    model = apply_lora(recipe, AutoModelForCausalLM.from_pretrained(tiny_llama_dir))
    lm_head.apply_kernels(recipe, model, cuda=True)
    [(patched, kw)] = calls
    assert patched is model.get_base_model() and kw["rms_norm"] and not kw["fused_linear_cross_entropy"]
    assert lm_head.Dispatch.cce is lm_head._cce_loss
    assert "Liger kernels: liger_rope, liger_rms_norm, liger_glu_activation" in said


@pytest.mark.parametrize("device,outputs,plain,cce,expected", [
    ("cpu", ("log_probs", "entropy", "is_top1"), True, False, "ftkit"),  # SFT's logged step on CPU
    ("cpu", ("log_probs",), False, True, "ftkit"),  # scale/temperature/bias: ftkit's kernel handles them
    ("cpu", ("log_probs", "log_sum_sq_probs"), True, False, "trl"),  # a field only TRL's kernel computes
    ("cuda", ("log_probs",), True, True, "cce"),  # a lean step with CCE asked for
    ("cuda", ("log_probs", "entropy", "is_top1"), True, True, "trl"),  # logged steps need entropy/accuracy
    ("cuda", ("log_probs",), False, True, "trl"),  # a logit scale CCE does not take
    ("cuda", ("log_probs",), True, False, "trl"),
])
def test_route(device, outputs, plain, cce, expected):
    assert lm_head.route(device, outputs, plain, cce) == expected


def test_gpu_options_on_cpu_train_exactly_as_without_them(make_recipe, rows64, tmp_path, said):
    from ftkit import train

    common = dict(max_steps=3, sequence_len=64, micro_batch_size=4, datasets=rows64)
    plain = train.run(make_recipe(output_dir=str(tmp_path / "plain"), **common))
    said.clear()
    asked = train.run(make_recipe(output_dir=str(tmp_path / "asked"), **common, **ALL))
    assert [loss for _, loss in plain.losses] == [loss for _, loss in asked.losses]
    assert any("CUDA kernels, not used on this machine" in s for s in said)
