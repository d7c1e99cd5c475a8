"""`ftkit memory`: exact parameter counts, the workshop's 16 bytes/param arithmetic, sharding, LoRA, 4-bit,
and the activation count against what autograd really saves (saved-tensor hooks on the tiny twin).

The estimate-vs-measured peak RSS of real CPU runs (within 15% for full and LoRA) is `ftkit bench memory`:
it needs a ~58M-parameter model for the measurement to rise above interpreter noise, too slow for CI.
"""
import pytest

from ftkit.errors import FtkitError
from ftkit.bench import estimate as memory

GB = 1e9


def rows(est):
    return {name: nbytes for name, nbytes, _ in est.rows}


def test_llama_7b_matches_the_workshop_arithmetic(make_recipe):
    recipe = make_recipe(base_model="meta-llama/Llama-2-7b-hf", micro_batch_size=1, sequence_len=2048, bf16=False)
    est = memory.estimate(recipe)
    n = 6_738_415_616  # Llama-2-7B's published parameter count
    assert est.title.startswith(f"meta-llama/Llama-2-7b-hf: 6.738B params ({n:,}; config from built-in table")
    r = rows(est)
    # fp32 + Adam: weights 4 B + gradients 4 B + 2 Adam states x 4 B = 16 B/param (the workshop's "4x model size")
    assert (r["weights"], r["gradients"], r["optimizer"]) == (4 * n, 4 * n, 8 * n)
    assert "16 x 6.74B = 107.8 GB before activations" in est.table()
    # activations: 2,048 tokens x (32 layers x (8h + 2kv + 4i) + the head's input h) x 4 B, h=kv=4096, i=11008
    per_layer = 8 * 4096 + 2 * 4096 + 4 * 11008
    assert r["activations"] == 2048 * (32 * per_layer + 4096) * 4 and r["backward"] == 2048 * per_layer * 4
    # the chunked LM head on CPU: 3 fp32 slices of 2^25 // 32,000 = 1,048 tokens; full logits: 2,048 x 32,000 x 12 B
    assert r["lm head"] == 3 * 1048 * 32000 * 4
    assert f"saves {(2048 * 32000 * 12 - 3 * 1048 * 32000 * 4) / GB:.3f} GB" in est.table()
    # the peak: gradients are written as backward frees activations, so the larger of the two counts
    working = r["activations"] + max(r["backward"], r["lm head"])
    assert est.total == r["weights"] + r["optimizer"] + max(working, r["gradients"])
    accumulating = memory.estimate(make_recipe(base_model="meta-llama/Llama-2-7b-hf", micro_batch_size=1,
                                               sequence_len=2048, bf16=False, gradient_accumulation_steps=4))
    r = rows(accumulating)  # gradients live through the next backward
    assert accumulating.total == r["weights"] + r["optimizer"] + r["gradients"] + working


def test_gpu_lm_head_is_trls_tile_and_saves_the_logits(make_recipe):
    """bf16 on a GPU: TRL's fused head holds one 4,096 x 32,768 bf16 tile and the fp32 gradient of the hidden
    states; 8 x 4,096 tokens of Llama-3's 128,256 vocabulary would need 14 B per logit in full."""
    est = memory.estimate(make_recipe(base_model="meta-llama/Meta-Llama-3-8B", micro_batch_size=8, sequence_len=4096,
                                      bf16=True, adapter="lora"), half=True)
    head, tokens = rows(est)["lm head"], 8 * 4096
    assert head == 4096 * 32768 * 2 + tokens * 4096 * 4
    assert f"would need {tokens * 128256 * 14 / GB:.3f} GB" in est.table()


def test_zero3_and_fsdp_divide_states_across_devices(make_recipe):
    base = dict(base_model="mistralai/Mistral-7B-v0.1", bf16=True)
    single = rows(memory.estimate(make_recipe(**base)))
    z2 = rows(memory.estimate(make_recipe(deepspeed="recipes/deepspeed/zero2.json", **base), devices=8))
    z3 = rows(memory.estimate(make_recipe(deepspeed="recipes/deepspeed/zero3.json", **base), devices=8))
    fsdp = rows(memory.estimate(make_recipe(fsdp=["full_shard", "auto_wrap"], **base), devices=8))
    n = 7_241_732_096
    assert single["weights"] == 2 * n and single["optimizer"] == 4 * n  # pure bf16: Adam states in bf16
    assert z2["weights"] == 2 * n and z2["gradients"] == 2 * n / 8
    assert z2["optimizer"] == 12 * n / 8  # DeepSpeed bf16: fp32 master + 2 fp32 states = 12 B (ZeRO paper)
    assert (z3["weights"], z3["gradients"], z3["optimizer"]) == (2 * n / 8, 2 * n / 8, 12 * n / 8)
    assert fsdp["weights"] == 2 * n / 8 and fsdp["activations"] == single["activations"]


def test_counts_are_exact_for_the_tiny_twin_full_and_lora(make_recipe, tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    from ftkit.models import apply_lora, count_parameters

    recipe = make_recipe(adapter="lora", lora_target_linear=True)
    config, source = memory.base_config(recipe)
    assert source.endswith("config.json")
    counts = memory.count_params(config, recipe)
    real = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    assert counts.total == count_parameters(real)[1]
    assert counts.trainable == count_parameters(apply_lora(recipe, real))[0]
    # 2 layers x 7 adapted linears, r=8; inputs: q/k/v/o/gate/up read 64 features, down 128; shared inputs:
    # the attention block's 64 and the MLP's 64 and 128
    assert (counts.lora_rank, counts.lora_in, counts.lora_inputs) == (2 * 7 * 8, 2 * (6 * 64 + 128), 2 * (64 + 64 + 128))


def test_lora_4bit_shrinks_weights_and_states(make_recipe):
    recipe = make_recipe(base_model="meta-llama/Meta-Llama-3-8B", adapter="lora", lora_r=16, bf16=True)
    lora = rows(memory.estimate(recipe))
    full = rows(memory.estimate(make_recipe(base_model="meta-llama/Meta-Llama-3-8B", bf16=True)))
    assert lora["optimizer"] < full["optimizer"] / 500 and lora["gradients"] < full["gradients"] / 500
    q = rows(memory.estimate(make_recipe(base_model="meta-llama/Meta-Llama-3-8B", adapter="qlora",
                                         load_in_4bit=True, bf16=True)))
    assert q["weights"] < lora["weights"] / 2.5


def test_unknown_offline_model_names_the_fix(make_recipe):
    with pytest.raises(FtkitError, match=r"base_model: no config.json for 'acme/secret-13b'.*Fix: .*llama-2-7b"):
        memory.estimate(make_recipe(base_model="acme/secret-13b"))


@pytest.mark.parametrize("adapter,dropout", [(None, 0.0), ("lora", 0.05), ("lora", 0.0)],
                         ids=["full", "lora-dropout", "lora-no-dropout"])
def test_activations_match_what_autograd_saves(make_recipe, tiny_llama_dir, adapter, dropout):
    """One forward of the tiny twin on CPU through the fused LM head as training runs it (TRL's head, ftkit's
    chunked cross-entropy); every tensor autograd saves for backward (parameters aside) is summed once per
    storage: the estimate's activations."""
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from ftkit.models import apply_lora
    from ftkit.plugins import kernels as lm_head

    recipe = make_recipe(adapter=adapter, lora_target_linear=True, lora_dropout=dropout, micro_batch_size=2,
                         sequence_len=64, bf16=False)
    est = rows(memory.estimate(recipe, cpu=True))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, attn_implementation="sdpa")
    lm_head.install()
    add_fused_lm_head(model)
    model = apply_lora(recipe, model) if adapter else model
    model.train()
    params = {p.data_ptr() for p in model.parameters()}
    saved = {}

    def keep(t):
        if t.data_ptr() not in params:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    ids = torch.randint(3, 900, (2, 64))
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        model(input_ids=ids, labels=ids, fused_lm_head=True)
    measured = sum(saved.values())
    assert abs(est["activations"] / measured - 1) < 0.08, (est["activations"], measured)


def test_cpu_malloc_is_glibcs_by_default_and_lean_on_request(monkeypatch, said):
    """`ftkit train` on a CPU keeps glibc's malloc (speed) and says what it costs in memory; FTKIT_CPU_MALLOC=lean
    fixes the mmap threshold (memory back to the OS, slower steps), announced."""
    import sys

    from ftkit.train.allocator import set_cpu_malloc

    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's mallopt is Linux-only")
    monkeypatch.delenv("FTKIT_CPU_MALLOC", raising=False)
    assert set_cpu_malloc() is False
    assert any("glibc's malloc keeps what backward frees resident" in s and "FTKIT_CPU_MALLOC=lean" in s for s in said)
    monkeypatch.setenv("FTKIT_CPU_MALLOC", "lean")
    assert set_cpu_malloc() is True
    assert any("FTKIT_CPU_MALLOC=lean: tensors >= 1 MiB get their own memory mappings" in s for s in said)


def test_cpu_estimate_states_glibcs_overhead_apart_from_the_tensors(make_recipe, monkeypatch):
    """On CPU under glibc's malloc the estimate adds an allocator row (activations + backward less the
    gradients written into what backward frees) beside the tensors' peak; with FTKIT_CPU_MALLOC=lean, and on a
    GPU, there is none."""
    recipe = make_recipe(base_model="meta-llama/Llama-2-7b-hf", micro_batch_size=1, sequence_len=512, bf16=False)
    monkeypatch.delenv("FTKIT_CPU_MALLOC", raising=False)
    est = memory.estimate(recipe, cpu=True)
    r = rows(est)
    assert r["allocator"] == 0 < r["activations"] < r["gradients"]  # full 7B: its gradients fill what backward frees
    lora = rows(memory.estimate(recipe.model_copy(update={"adapter": "lora"}), cpu=True))
    assert 0 < lora["allocator"] == pytest.approx(lora["activations"] + lora["backward"] - lora["gradients"])
    assert est.resident == est.total + r["allocator"]
    table = est.table()
    assert "+ allocator" in table and f"peak RSS    {est.resident / GB:9.3f} GB" in table
    assert table.index("  peak ") < table.index("+ allocator")  # shown apart, after the tensors' peak
    monkeypatch.setenv("FTKIT_CPU_MALLOC", "lean")
    lean = memory.estimate(recipe, cpu=True)
    assert "allocator" not in rows(lean) and lean.resident == lean.total == est.total
    assert "allocator" not in rows(memory.estimate(recipe, half=True, cpu=False))
