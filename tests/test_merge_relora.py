"""merge-lora equals base + adapter; ReLoRA merges at the steps set; adapter/quantization conflicts are errors."""
from __future__ import annotations

import pytest
import torch
from test_adapters import IDS, LORA, QLORA, logits, run_variant
from twin import load_on_twin

from ftkit import models
from ftkit.errors import ConfigError, FtkitError
from ftkit.models import merge
from ftkit.models.adapters import ADAPTER_FILES


@pytest.mark.parametrize("name", ["lora", "qlora"])
def test_merged_model_equals_base_plus_adapter(name, tmp_path_factory):
    from transformers import AutoModelForCausalLM

    _, recipe, result = run_variant(name, tmp_path_factory)
    out = merge.run(recipe)
    assert not [p.name for p in out.iterdir() if p.name in ADAPTER_FILES]
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    card = (out / "README.md").read_text()
    assert recipe.source in card and recipe.base_model in card
    merged = AutoModelForCausalLM.from_pretrained(out)  # plain transformers, no peft
    from ftkit.models import resolve_precision

    assert merged.dtype == resolve_precision(recipe).dtype  # bf16: auto -> fp32 on a CPU
    # reference: the same base (a quantized one dequantized) with the adapter applied unmerged
    unmerged, _ = models.load_trained(recipe, dequantize=True)
    torch.testing.assert_close(logits(merged), logits(unmerged.to(torch.float32)), rtol=0, atol=2e-4)
    if name == "qlora":  # and the 4-bit model as trained: same weights, but TRL keeps a bf16 adapter copy,
        # so allow bf16 rounding (2^-8 ~ 0.4%) of the logits' scale, with margin: 1% of the largest logit
        trained = logits(result.model)
        torch.testing.assert_close(logits(merged), trained, rtol=0, atol=1e-2 * float(trained.abs().max()))


def test_merge_refuses_a_directory_holding_an_adapter(tmp_path_factory):
    _, recipe, _ = run_variant("lora", tmp_path_factory)
    with pytest.raises(FtkitError, match=r"--output-dir: .*adapter_config.json.*Fix: choose an empty directory"):
        merge.run(recipe, output_dir=recipe.output_dir)


def test_relora_callback_merges_at_the_steps_set(tmp_path):
    """Unit check of one restart: W += scale·B·A, then B = 0 and Adam state for LoRA params is cleared."""
    from transformers import TrainerState

    from ftkit import models
    from ftkit.train.relora import ReLoRACallback

    recipe = load_on_twin(LORA, tmp_path, lora_target_modules=["q_proj"], lora_target_linear=False)
    tok = models.load_tokenizer(recipe)
    model = models.load_model(recipe, tok)
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    torch.nn.init.normal_(layer.lora_B["default"].weight)  # pretend it trained
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    model(input_ids=IDS, labels=IDS).loss.backward()
    opt.step()
    w0 = layer.base_layer.weight.detach().clone()
    delta = layer.scaling["default"] * layer.lora_B["default"].weight @ layer.lora_A["default"].weight
    cb, state = ReLoRACallback(steps=3, warmup_steps=1), TrainerState(max_steps=10)
    for step in (1, 2):
        state.global_step = step
        cb.on_step_end(None, state, None, model=model, optimizer=opt)
    assert cb.restarts == [] and torch.equal(layer.base_layer.weight, w0)  # nothing before step 3
    state.global_step = 3
    cb.on_step_end(None, state, None, model=model, optimizer=opt)
    assert cb.restarts == [3]
    torch.testing.assert_close(layer.base_layer.weight, w0 + delta.detach())
    assert not layer.lora_B["default"].weight.any() and layer.merged_adapters == []
    assert all(not opt.state[p] for n, p in model.named_parameters() if "lora_" in n and p in opt.state)
    opt.param_groups[0]["lr"] = 1.0  # what the scheduler set for step 4: the first step after the restart
    cb.on_step_begin(None, state, None, optimizer=opt)
    assert opt.param_groups[0]["lr"] == 0.5  # re-warm-up over 1 step: x (0 + 1) / (1 + 1)


def test_relora_run_restarts_and_saves_the_merged_model(tmp_path, said):
    messages = said
    recipe = load_on_twin(LORA, tmp_path, max_steps=5, relora_steps=2, relora_warmup_steps=1,
                          lora_dropout=0.0, gradient_checkpointing=False)
    from ftkit import train

    result = train.run(recipe)
    restarts = [m for m in messages if "ReLoRA: step" in m]
    assert [m.split("step ")[1].split(":")[0] for m in restarts] == ["2", "4"]  # not at the final step 5
    out = tmp_path / "out"
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    reloaded, _ = models.load_trained(recipe)
    torch.testing.assert_close(logits(reloaded), logits(result.model), rtol=0, atol=1e-5)


@pytest.mark.parametrize("overrides, key, fix", [
    ({"load_in_4bit": True, "load_in_8bit": True, "adapter": "qlora"}, "load_in_8bit", "choose one"),
    ({"load_in_4bit": True, "adapter": "lora", "loftq_config": {"loftq_bits": 4}}, "loftq_config",
     "set adapter: lora without load_in_4bit"),
    ({"load_in_4bit": True, "adapter": None}, "load_in_4bit", "set adapter: qlora"),
    ({"adapter": "qlora"}, "adapter", "add load_in_4bit: true"),
    ({"load_in_8bit": True, "adapter": None}, "load_in_8bit", "set adapter: lora"),
    ({"gptq": True, "load_in_8bit": True}, "gptq", "remove load_in_4bit/load_in_8bit"),
    ({"loftq_config": {"loftq_bits": 4}, "load_in_4bit": True, "adapter": "qlora"}, "loftq_config", "set adapter: lora without load_in_4bit"),
    ({"peft_init_lora_weights": "loftq"}, "peft_init_lora_weights", "add loftq_config"),
    ({"relora_steps": 10, "adapter": None}, "relora_steps", "set adapter: lora"),
    ({"relora_steps": 10, "load_in_4bit": True, "adapter": "qlora"}, "relora_steps", "use adapter: lora on an unquantized base"),
    ({"relora_steps": 4, "relora_warmup_steps": 4}, "relora_warmup_steps", "use a shorter warm-up"),
    ({"lora_model_dir": "x", "adapter": None}, "lora_model_dir", "set adapter: lora"),
])
def test_conflicting_options_are_config_errors(tmp_path, overrides, key, fix):
    with pytest.raises(ConfigError, match=rf"lora.yml(:\d+)?: {key}: .*Fix: {fix}"):
        load_on_twin(LORA, tmp_path, **overrides)


def test_gptq_is_refused_with_the_packages_to_install(tmp_path):
    from transformers.utils import is_gptqmodel_available, is_optimum_available

    from ftkit import models

    if is_optimum_available() and is_gptqmodel_available():  # pragma: no cover - not in this stack
        pytest.skip("optimum and gptqmodel are installed: GPTQ loading is transformers' own")
    recipe = load_on_twin(LORA, tmp_path, gptq=True)
    tok = models.load_tokenizer(recipe)
    with pytest.raises(FtkitError, match=r"gptq: .*needs .*optimum.*Fix: pip install .*optimum"):
        models.load_model(recipe, tok)


def test_bad_bnb_config_kwargs_name_the_key(tmp_path):
    from ftkit import models

    recipe = load_on_twin(QLORA, tmp_path, bnb_config_kwargs={"bnb_4bit_quant_typo": "nf4"})
    tok = models.load_tokenizer(recipe)
    with pytest.raises(FtkitError, match=r"bnb_config_kwargs: unknown .*bnb_4bit_quant_typo.*Fix: use BitsAndBytesConfig argument names: .*bnb_4bit_quant_type"):
        models.load_model(recipe, tok)


def test_qlora_twin_holds_less_memory_than_its_base(tmp_path):
    from ftkit import models
    from ftkit.models.quant import footprint

    recipe = load_on_twin(QLORA, tmp_path)
    tok = models.load_tokenizer(recipe)
    quantized = footprint(models.load_base(recipe, tok))
    plain = footprint(models.load_base(load_on_twin(LORA, tmp_path), tok))
    # the twin is mostly embeddings (2 x 926 x 64 of 172k params stay fp32): only the linears shrink, ~8x
    assert quantized < 0.75 * plain, (quantized, plain)
