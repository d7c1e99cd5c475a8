"""Sharded engines with a quantized base: QLoRA + DeepSpeed ZeRO-3 trains (as in Axolotl), on the CPU too.

Wild config 33 (QLoRA, ZeRO-3, an unk token added to the vocabulary) used to end in DeepSpeed's stage-3
`defragment` assertion: TRL keeps LoRA A/B of a 4-bit model in bf16 while the resized embeddings trained in
full are in the run's fp32, and ZeRO-3 flattens every trainable weight into one buffer of one dtype.
"""
from pathlib import Path

import pytest
import torch
from axolotl_corpus import STEPS, WILD, as_cli, wild_run_overrides
from conftest import run_cli
from safetensors import safe_open

from ftkit.models import quant


def test_qlora_zero3_with_an_added_token_trains_and_saves_the_grown_embeddings(tmp_path):
    config = next(Path(WILD).glob("33-*.yml"))
    overrides = wild_run_overrides(config, tmp_path)
    assert overrides["base_model"] == "tiny:mistral"
    trained = run_cli("train", str(config), *as_cli(overrides))
    said = trained.stdout + trained.stderr
    assert trained.returncode == 0 and "Traceback" not in said, said[-3000:]
    assert STEPS.search(said).group(3) == "2"
    assert "4-bit weights stored as torch.float32 (bnb_4bit_quant_storage) so DeepSpeed can shard them" in said
    assert "ZeRO-3: LoRA weights in torch.float32 too" in said
    with safe_open(str(tmp_path / "out" / "adapter_model.safetensors"), "pt") as f:
        names = list(f.keys())
        embed = f.get_tensor("base_model.model.model.embed_tokens.modules_to_save.weight")
        lora_a = [f.get_tensor(n) for n in names if "lora_A" in n]
    assert embed.shape[0] == 925  # the twin's 924 tokens + <unk>, gathered whole from ZeRO-3's partitions
    assert lora_a and all(t.numel() and t.abs().sum() > 0 for t in lora_a)  # not ZeRO-3's empty placeholders
    answered = run_cli("infer", str(config), *as_cli(overrides), "--prompt=Hello", "--max-new-tokens=4")
    assert answered.returncode == 0 and "Traceback" not in answered.stderr, answered.stderr[-3000:]


@pytest.mark.parametrize("engine, storage", [({"deepspeed": "recipes/deepspeed/zero3.json"}, torch.bfloat16),
                                             ({"fsdp": ["full_shard", "auto_wrap"]}, torch.bfloat16),
                                             ({}, torch.uint8)])
def test_sharded_4bit_weights_are_stored_in_the_compute_dtype(make_recipe, engine, storage):
    """As Axolotl: packed 4-bit weights in a bf16 tensor, so FSDP / ZeRO-3 can flatten them with the others."""
    recipe = make_recipe(load_in_4bit=True, adapter="qlora", lora_target_linear=True, **engine)
    assert quant.bnb_config(recipe, torch.bfloat16).bnb_4bit_quant_storage == storage


def test_memory_per_device_counts_what_each_engine_adds(make_recipe):
    """`ftkit memory --num_processes N`: what ftkit/bench/sharded.py measured on two CPU processes, as rows: DDP's
    bucket copy of the gradients, ZeRO-1/2's fp32 clone of their partition (also in fp32), the weights a ZeRO-3
    step keeps gathered (the shipped config: up to 1e9 parameters) or FSDP's two layers."""
    from ftkit.bench.estimate import estimate

    def rows(est):
        return {name: b for name, b, _ in est.rows}

    n = 7_241_732_096  # Mistral 7B, from the built-in table
    base = dict(base_model="mistralai/Mistral-7B-v0.1", bf16=False)
    ddp = rows(estimate(make_recipe(**base), devices=8, cpu=False))
    assert ddp["ddp buckets"] == ddp["gradients"] == 4 * n
    assert "ddp buckets" not in rows(estimate(make_recipe(**base), devices=1, cpu=False))
    z1 = rows(estimate(make_recipe(deepspeed="recipes/deepspeed/zero1.json", **base), devices=8, cpu=False))
    assert z1["optimizer"] == 12 * n / 8 and "ddp buckets" not in z1  # fp32 clone 4 B + Adam 2 x 4 B
    z3 = rows(estimate(make_recipe(deepspeed="recipes/deepspeed/zero3.json", **base), devices=8, cpu=False))
    assert z3["weights"] == 4 * n / 8 and z3["gathered"] == 4 * 1e9 and z3["optimizer"] == 8 * n / 8
    fsdp = rows(estimate(make_recipe(fsdp=["full_shard", "auto_wrap"], **base), devices=8, cpu=False))
    assert fsdp["gathered"] == 2 * n / 32 * 4  # Mistral 7B has 32 layers
