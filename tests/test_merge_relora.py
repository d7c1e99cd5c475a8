"""merge-lora equals base + adapter; ReLoRA merges at the steps set; adapter/quantization conflicts are errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback
from axolotl_corpus import twin_run_overrides
from test_adapters import IDS, LORA, QLORA, logits, run_variant
from twin import ROOT, load_on_twin

from ftkit import models
from ftkit.errors import ConfigError, FtkitError
from ftkit.models import merge
from ftkit.models.adapters import ADAPTER_FILES

EXAMPLES = ROOT / "tests" / "data" / "axolotl_examples"  # Axolotl's own, byte for byte after a source line


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


class Watch(TrainerCallback):
    """What each ReLoRA restart must do, seen from outside: the base weight (a 4-bit layer's full-precision
    master), the cycle's update scale·B·A and the adapter's Adam moments, just before the ReLoRA callback acts
    (on_optimizer_step) and right after it (on_step_end: this callback runs after ReLoRA's); and at the end."""

    def __init__(self, every: int):
        self.every, self.before, self.after, self.final = every, {}, {}, None

    @staticmethod
    def snapshot(model, optimizer=None):
        from ftkit.plugins.relora import MOMENTS, base_weights, lora_layers

        inner = getattr(optimizer, "optimizer", optimizer)
        base = {n: w.float().clone() for n, w in base_weights(model).items()}
        delta = {n: m.get_delta_weight("default").detach().float().clone() for n, m in lora_layers(model).items()}
        moments = {(n, k): inner.state[p][k].clone() for n, p in model.named_parameters() if "lora_" in n
                   for k in MOMENTS if inner and k in inner.state.get(p, {})}  # qlora.yml: bitsandbytes' state1/2
        return base, delta, moments

    def on_optimizer_step(self, args, state, control, model=None, optimizer=None, **kwargs):
        if (state.global_step + 1) % self.every == 0 and state.global_step + 1 < state.max_steps:
            self.before[state.global_step + 1] = self.snapshot(model, optimizer)

    def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        if state.global_step in self.before:
            self.after[state.global_step] = self.snapshot(model, optimizer)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.final = self.snapshot(model)


RELORA = dict(max_steps=5, relora=True, jagged_restart_steps=2, jagged_restart_warmup_steps=1, learning_rate=0.01,
              lr_scheduler="constant", lora_dropout=0.0, gradient_checkpointing=False)  # restarts after steps 2 and 4


def logged_lrs(out) -> list[float]:
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    return [h["learning_rate"] for h in history if "learning_rate" in h]


_RELORA_RUNS: dict = {}


def relora_run(recipe_file, tmp_path_factory):
    """(recipe, TrainResult, Watch, what ftkit said) of a 5-step ReLoRA run with a checkpoint at step 3, run once
    per session and shared by the tests below."""
    import logging

    from ftkit import train

    if recipe_file not in _RELORA_RUNS:
        tmp = tmp_path_factory.mktemp(recipe_file.stem)
        recipe = load_on_twin(recipe_file, tmp, **RELORA, save_steps=3,
                              dataset_prepared_path=str(tmp_path_factory.getbasetemp() / "prepared"))
        said, watch = [], Watch(2)
        handler = logging.Handler()
        handler.emit = lambda record: said.append(record.getMessage())
        logging.getLogger("ftkit").addHandler(handler)
        try:
            result = train.run(recipe, callbacks=[watch])
        finally:
            logging.getLogger("ftkit").removeHandler(handler)
        _RELORA_RUNS[recipe_file] = recipe, result, watch, said
    return _RELORA_RUNS[recipe_file]


@pytest.mark.parametrize("recipe_file", [LORA, QLORA], ids=["lora", "qlora-4bit"])
def test_relora_merges_prunes_follows_the_jagged_schedule_and_saves_a_plain_model(recipe_file, tmp_path_factory):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    recipe, result, watch, said = relora_run(recipe_file, tmp_path_factory)
    out = Path(recipe.output_dir)
    assert [m.split(":")[1].strip() for m in said if m.startswith("ReLoRA: step")] == ["step 2", "step 4"]
    assert sorted(watch.after) == [2, 4]  # not after the final step 5
    for step in (2, 4):
        (base0, delta, moments0), (base1, delta1, moments1) = watch.before[step], watch.after[step]
        for name in base0:  # the merged weight (4-bit: its master) grew by exactly this cycle's update
            torch.testing.assert_close(base1[name], base0[name] + delta[name], rtol=0, atol=1e-6)
            assert not delta1[name].any()  # B = 0 again: the restart leaves the model's function as it was
        for name, m0 in moments0.items():  # 90% of each moment zeroed; the largest |values| kept as they were
            m1, n = moments1[name], m0.numel()
            kept = m1 != 0
            assert int(kept.sum()) <= n - int(0.9 * n) and torch.equal(m1[kept], m0[kept]), name
            assert not kept.any() or m0[kept].abs().min() >= m0[~kept].abs().max(), name
        assert {k for _, k in moments0} in ({"exp_avg", "exp_avg_sq"}, {"state1", "state2"})  # both moments pruned
        assert sum(int((m != 0).sum()) for m in moments0.values()) > 0.5 * sum(m.numel() for m in moments0.values())
    lr, low = 0.01, 0.01 * 0.001  # the trainer's logged rates: x0.001 after each restart, back after 1 step
    assert logged_lrs(out) == pytest.approx([lr, lr, low, lr, low], rel=1e-6)
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    plain = AutoModelForCausalLM.from_pretrained(out)  # plain transformers: no peft, no bitsandbytes
    assert "quantization_config" not in plain.config.to_dict()
    assert type(plain.model.layers[0].self_attn.q_proj) is torch.nn.Linear
    saved, (base, delta, _) = load_file(out / "model.safetensors"), watch.final
    for name in base:  # the saved weight = the moved base + the last cycle's update (step 5 merges at the save)
        torch.testing.assert_close(saved[name.removeprefix("base_model.model.") + ".weight"], base[name] + delta[name],
                                   rtol=0, atol=1e-6)
    if not recipe.load_in_4bit:  # and computes what the trained model computed
        torch.testing.assert_close(logits(plain), logits(result.model), rtol=0, atol=1e-5)


def test_relora_resumes_with_the_base_merged_so_far(tmp_path, tmp_path_factory):
    """Resumed at step 3 (after the restart at 2): the same weights and LR curve as the run that went on."""
    from ftkit import train

    whole, one, _, _ = relora_run(LORA, tmp_path_factory)
    checkpoint = Path(whole.output_dir) / "checkpoint-3"
    assert (checkpoint / "relora_base.safetensors").is_file()
    resumed = train.run(load_on_twin(LORA, tmp_path, **RELORA, resume_from_checkpoint=str(checkpoint),
                                     dataset_prepared_path=str(tmp_path_factory.getbasetemp() / "prepared")))
    assert resumed.steps == 5
    torch.testing.assert_close(logits(resumed.model), logits(one.model), rtol=0, atol=1e-5)
    assert logged_lrs(tmp_path / "out")[-2:] == pytest.approx(logged_lrs(Path(whole.output_dir))[-2:])


def test_pruning_keeps_the_largest_moments_also_in_8bit_optimizer_states():
    """bitsandbytes' 8-bit Adam stores codes into a map times a block maximum: pruned by what the codes stand for."""
    import bitsandbytes as bnb

    from ftkit.plugins.relora import BNB_BLOCK, prune_moments

    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(64, 80))  # 5,120 values: 8-bit states (bitsandbytes: >= 4,096), 20 blocks
    # bitsandbytes keeps the Trainer's "embeddings in 32-bit" override of an earlier run in this process, keyed by
    # (group, index): (0, 0) would be 32-bit here after any adamw_bnb_8bit run; start from a clean manager
    bnb.optim.GlobalOptimManager.get_instance().initialize()
    opt = bnb.optim.AdamW8bit([p])
    p.grad = torch.randn_like(p)
    opt.step()
    st = opt.state[p]
    assert st["state1"].dtype == torch.uint8

    def values(i):
        return (st[f"qmap{i}"][st[f"state{i}"].long()].flatten()
                * st[f"absmax{i}"].repeat_interleave(BNB_BLOCK)[:p.numel()])

    before = [values(1), values(2)]
    zeroed, total = prune_moments(opt, [p], 0.75)
    assert total == 2 * p.numel() and zeroed >= 2 * int(0.75 * p.numel())
    for v0, v1 in zip(before, [values(1), values(2)]):
        kept = v1 != 0
        assert int(kept.sum()) <= p.numel() - int(0.75 * p.numel()) and torch.equal(v1[kept], v0[kept])
        assert v0[kept].abs().min() >= v0[~kept].abs().max()


def test_axolotl_former_relora_names_mean_the_same_run(tmp_path):
    """relora_steps / relora_warmup_steps / relora_anneal_steps (Axolotl <= 0.11) = relora: true + jagged_restart_*;
    jagged_restart_steps without relora: true is the jagged schedule alone, no merges (today's Axolotl)."""
    from ftkit.train import schedules

    old = load_on_twin(LORA, tmp_path, relora_steps=6, relora_warmup_steps=2, relora_anneal_steps=3)
    new = load_on_twin(LORA, tmp_path, relora=True, jagged_restart_steps=6, jagged_restart_warmup_steps=2,
                       jagged_restart_anneal_steps=3)
    assert old.relora_active and new.relora_active and old.restart_steps == new.restart_steps == 6
    assert schedules.jagged_args(old) == schedules.jagged_args(new) == (6, 2, 3, 0.001)
    assert {line.key: line.status for line in old.report.lines}["relora_warmup_steps"] == "alias"
    jagged_only = load_on_twin(LORA, tmp_path, jagged_restart_steps=6)
    assert not jagged_only.relora_active and schedules.jagged_args(jagged_only) == (6, 10, 1, 0.001)  # Axolotl's defaults


@pytest.mark.parametrize("overrides, key, fix", [
    ({"load_in_4bit": True, "load_in_8bit": True, "adapter": "qlora"}, "load_in_8bit", "choose one"),
    # (load_in_4bit with adapter: lora loads the base unquantized, as Axolotl v0.13+: no LoftQ conflict there)
    ({"load_in_8bit": True, "adapter": "lora", "loftq_config": {"loftq_bits": 4}}, "loftq_config",
     "set adapter: lora without load_in_4bit"),
    ({"load_in_4bit": True, "adapter": None}, "load_in_4bit", "set adapter: qlora"),
    ({"adapter": "qlora"}, "adapter", "add load_in_4bit: true"),
    ({"load_in_8bit": True, "adapter": None}, "load_in_8bit", "set adapter: lora"),
    ({"gptq": True, "load_in_8bit": True}, "gptq", "remove load_in_4bit/load_in_8bit"),
    ({"loftq_config": {"loftq_bits": 4}, "load_in_4bit": True, "adapter": "qlora"}, "loftq_config", "set adapter: lora without load_in_4bit"),
    ({"peft_init_lora_weights": "loftq"}, "peft_init_lora_weights", "add loftq_config"),
    ({"relora_steps": 10, "adapter": None}, "relora_steps", "set adapter: lora"),
    ({"relora_steps": 10, "load_in_8bit": True}, "relora_steps", "use adapter: qlora with load_in_4bit"),
    ({"relora_steps": 4, "relora_warmup_steps": 4}, "relora_warmup_steps", "use a shorter warm-up"),
    ({"relora": True}, "relora", "add jagged_restart_steps"),
    ({"relora": True, "jagged_restart_steps": 5, "optimizer": "sgd"}, "relora", "use an Adam optimizer"),
    ({"relora_steps": 5, "jagged_restart_steps": 5}, "jagged_restart_steps", "keep one"),
    ({"jagged_restart_anneal_steps": 2}, "jagged_restart_anneal_steps", "set jagged_restart_steps"),
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

    recipe = load_on_twin(QLORA, tmp_path)
    tok = models.load_tokenizer(recipe)
    quantized = models.load_base(recipe, tok).get_memory_footprint()
    plain = models.load_base(load_on_twin(LORA, tmp_path), tok).get_memory_footprint()
    # the twin is mostly embeddings (2 x 926 x 64 of 172k params stay fp32): only the linears shrink, ~8x
    assert quantized < 0.75 * plain, (quantized, plain)


def test_axolotls_relora_example_trains_two_steps_on_its_twin(tmp_path):
    """examples/llama-2/relora.yml (QLoRA, relora: true, jagged_restart_*, adamw_bnb_8bit) with model and data swapped."""
    from transformers import AutoModelForCausalLM

    from ftkit import train
    from ftkit.recipe import load_recipe

    path = EXAMPLES / "llama-2-relora.yml"
    recipe = load_recipe(path, twin_run_overrides(path, tmp_path, "tiny:llama"))
    assert recipe.relora_active and recipe.load_in_4bit and (recipe.restart_steps, recipe.relora_prune_ratio) == (150, 0.9)
    result = train.run(recipe)
    assert result.steps == 2 and all(loss == loss for _, loss in result.losses)
    assert not (tmp_path / "out" / "adapter_config.json").exists()
    assert "quantization_config" not in AutoModelForCausalLM.from_pretrained(tmp_path / "out").config.to_dict()


def test_the_jagged_factor_by_hand():
    """R = 6, W = 2, A = 3, floor 0.001: the first cycle untouched until its anneal, then drop, warm-up, anneal."""
    from ftkit.train.schedules import jagged

    f = 0.001
    want = [1, 1, 1, 1, f + (1 - f) * 2 / 3, f + (1 - f) / 3, f, f + (1 - f) / 2, 1, 1, f + (1 - f) * 2 / 3]
    assert [jagged(s, 6, 2, 3, f) for s in range(11)] == pytest.approx(want)
