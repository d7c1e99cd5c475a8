"""Each adapter method trains on the tiny twin through the real path, saves, and reloads to identical logits.

LoRA, DoRA, rsLoRA, LoftQ, QLoRA (4-bit nf4) and LoRA on an 8-bit base all run on this CPU with
bitsandbytes 0.50.2 (measured; see ftkit/quant.py), so none is skipped here.
"""
from __future__ import annotations

import json

import pytest
import torch
from twin import ROOT, train_on_twin

from ftkit import models

LORA = ROOT / "recipes" / "llama" / "lora.yml"
QLORA = ROOT / "recipes" / "llama" / "qlora.yml"

# Enough to see learning in 6 steps on the twin: constant high LR, no dropout noise, no checkpointing.
LEARN = dict(max_steps=6, learning_rate=0.02, lr_scheduler="constant", lora_dropout=0.0, gradient_checkpointing=False,
             lora_r=8, lora_alpha=16, optimizer="adamw_torch")
VARIANTS = {
    "lora": (LORA, {}),
    "dora": (LORA, {"peft_use_dora": True}),
    "rslora": (LORA, {"peft_use_rslora": True, "lora_modules_to_save": ["lm_head"]}),  # + a fully trained head
    "loftq": (LORA, {"loftq_config": {"loftq_bits": 4}, "lora_alpha": 8}),  # alpha = r: B·A starts at W - Q
    "qlora": (QLORA, {}),
    "lora_8bit": (LORA, {"load_in_8bit": True}),
}
IDS = torch.tensor([[1, 17, 230, 54, 99, 310, 12, 8, 400, 77]])


def logits(model, ids=IDS):
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids.to(model.device)).logits.float().cpu()


_RUNS: dict = {}


def run_variant(name: str, tmp_path_factory):
    """(name, recipe, TrainResult), trained once per session and shared by the tests below."""
    if name not in _RUNS:
        path, extra = VARIANTS[name]
        shared = tmp_path_factory.getbasetemp() / "prepared"  # one tokenized cache for every variant
        _RUNS[name] = (name, *train_on_twin(path, tmp_path_factory.mktemp(name), dataset_prepared_path=str(shared),
                                            **{**LEARN, **extra}))
    return _RUNS[name]


@pytest.fixture(scope="module", params=list(VARIANTS))
def trained(request, tmp_path_factory):
    return run_variant(request.param, tmp_path_factory)


def test_method_trains_saves_and_reloads_identically(trained):
    name, recipe, result = trained
    losses = [loss for _, loss in result.losses]
    assert len(losses) == 6 and min(losses[-2:]) < losses[0] - 0.05, (name, losses)  # loss falls
    config = json.loads((ROOT / recipe.output_dir / "adapter_config.json").read_text())
    assert config["use_dora"] is (name == "dora") and config["use_rslora"] is (name == "rslora")
    assert config["init_lora_weights"] == ("loftq" if name == "loftq" else True)
    assert config["modules_to_save"] == (["lm_head"] if name == "rslora" else None)
    if name == "rslora":
        from safetensors import safe_open

        with safe_open(str(ROOT / recipe.output_dir / "adapter_model.safetensors"), "pt") as f:
            assert any("lm_head.modules_to_save" in k or k.endswith("lm_head.weight") for k in f.keys())
    assert 0 < result.trainable_params < result.total_params
    reloaded, _ = models.load_trained(recipe)
    torch.testing.assert_close(logits(reloaded), logits(result.model), rtol=0, atol=1e-5)


def test_quantized_bases_really_are_quantized(trained):
    import bitsandbytes as bnb

    name, _, result = trained
    kinds = {type(m).__name__ for m in result.model.modules() if isinstance(m, (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt))}
    assert kinds == {"qlora": {"Linear4bit"}, "lora_8bit": {"Linear8bitLt"}}.get(name, set())


def test_loftq_base_holds_its_4bit_values_and_adapter_starts_at_the_residual(tmp_path):
    """LoftQ: base W -> Q = dequant(nf4(W)); scale·B·A ≈ W - Q, so Q + scale·B·A is closer to W than Q."""
    from twin import load_on_twin

    from ftkit import models

    recipe = load_on_twin(LORA, tmp_path, loftq_config={"loftq_bits": 4}, lora_r=8, lora_alpha=8,
                          lora_target_modules=["q_proj"], lora_target_linear=False)
    tok = models.load_tokenizer(recipe)
    plain = models.load_base(recipe, tok)
    w = plain.model.layers[0].self_attn.q_proj.weight.detach().clone()
    peft_model = models.load_model(recipe, tok)
    layer = peft_model.base_model.model.model.layers[0].self_attn.q_proj
    q = layer.base_layer.weight.detach()
    ba = layer.lora_B["default"].weight @ layer.lora_A["default"].weight  # scale = 8/8 = 1
    assert not torch.equal(q, w) and q.unique().numel() < w.numel() / 4  # quantized: few distinct values
    assert (w - (q + ba)).norm() < 0.9 * (w - q).norm()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the weight-repacking bug is in bitsandbytes' CPU "
                    "(AVX512-BF16) path; this test drives a CPU model")
def test_cpu_4bit_gradients_survive_an_eval_pass(tmp_path):
    """bitsandbytes repacks 4-bit CPU weights on an eval pass and then loses gradients; ftkit prevents it."""
    from twin import load_on_twin

    from ftkit import models

    recipe = load_on_twin(QLORA, tmp_path, gradient_checkpointing=False, lora_dropout=0.0)
    tok = models.load_tokenizer(recipe)
    model = models.load_model(recipe, tok)

    def grads():
        model.train()
        model.zero_grad()
        model(input_ids=IDS, labels=IDS).loss.backward()
        return [p.grad.clone() for p in model.parameters() if p.requires_grad]

    before = grads()
    logits(model)  # eval mode, no grad: where bitsandbytes would repack
    after = grads()
    for a, b in zip(before, after):
        torch.testing.assert_close(a, b)


def test_continue_training_from_lora_model_dir(tmp_path_factory, tmp_path):
    _, recipe, result = run_variant("lora", tmp_path_factory)
    again, second = train_on_twin(LORA, tmp_path, **{**LEARN, "max_steps": 2, "lora_model_dir": recipe.output_dir})
    assert second.first_loss < result.first_loss - 0.05  # starts where the first run left off, not from scratch


@pytest.mark.parametrize("model_type", ["AutoModelForCausalLM", "LlamaForCausalLM"])
def test_reinit_weights_starts_from_seeded_random_weights(tmp_path, model_type):
    """reinit_weights: the base's architecture with fresh weights drawn from `seed` (an Auto class or a concrete
    one as model_type), not the checkpoint's."""
    from twin import load_on_twin

    recipe = load_on_twin(LORA, tmp_path, adapter=None, model_type=model_type)
    tok = models.load_tokenizer(recipe)
    base = models.load_base(recipe, tok).model.layers[0].mlp.up_proj.weight
    fresh = [models.load_base(recipe.model_copy(update={"reinit_weights": True, "seed": s}), tok)
             for s in (1, 1, 2)]
    weights = [m.model.layers[0].mlp.up_proj.weight for m in fresh]
    assert type(fresh[0]).__name__ == "LlamaForCausalLM" and weights[0].shape == base.shape
    assert not torch.equal(weights[0], base) and torch.equal(weights[0], weights[1])
    assert not torch.equal(weights[0], weights[2])
