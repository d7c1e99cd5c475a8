"""`ftkit memory RECIPE`: expected peak training memory per device, with the arithmetic shown (bench/memory.py
measures it).

Reads only the base model's config (local file, the HF cache, or a built-in table of well-known
configs when offline), counts parameters exactly on the meta device (no weights loaded), then adds:

  weights     params x bytes (fp32 4, bf16 2, 8-bit 1, 4-bit nf4 ~0.56 with its absmax constants)
  gradients   trainable params x bytes
  optimizer   AdamW: 2 states per trainable param (8-bit Adam: 1 byte each; SGD: none); under DeepSpeed
              with bf16/fp16 also an fp32 master copy (the ZeRO paper's 12 bytes/param)
  activations what autograd keeps for backward, per token per decoder layer (sdpa attention), as counted
              with torch's saved-tensor hooks on Llama: both norm inputs (2h), rotated q and the attention
              output (2h), k and v (2kv), the MLP's gate, up and activation outputs (3i); a trained base
              adds the norms' normalized inputs (2h) and the inputs its linears read (2h + i); LoRA adds
              r per adapted module and, with lora_dropout, per adapted input feature the dropout output
              and its mask (a float on CPU, one byte with CUDA's fused dropout), without dropout the
              inputs the adapters read; plus h at the head (the hidden states the fused LM head projects).
              Gradient checkpointing keeps one h per layer plus one layer's set.
  backward    one layer's set again: the gradients of a layer's intermediates exist while its saved
              tensors are still alive.
  lm head     the loss's working set: the full [tokens, V] logits never exist (plugins/kernels.py). On CPU
              3 slices of fp32 logits (the slice, its exponentials, its gradient) of TILE / V tokens; on
              CUDA TRL's tile (4,096 tokens x 32,768 vocabulary entries in the compute dtype) and the fp32
              gradient of the hidden states. What the full logits would cost is printed beside it.

  allocator   CPU under glibc's malloc (ftkit's CPU default, train/allocator.py): freed activations stay
              resident, about one more copy of activations + backward; shown apart from the peak of the
              tensors, summed into `peak RSS`. Not with FTKIT_CPU_MALLOC=lean, nor on GPUs.

Peak = weights + optimizer + the larger of (activations + max(backward, lm head)) and gradients: backward
frees each layer's activations as it writes gradients, and the optimizer step runs after both (gradients do sit
next to activations when gradient_accumulation_steps > 1). ZeRO-1/2/3 and FSDP divide optimizer /
+gradients / +weights by the number of devices; a fully sharded step gathers weights back ("gathered": ZeRO-3 keeps
up to stage3_max_live_parameters of them, the whole model below 1e9 params with the usual config; FSDP about two
layers), and DeepSpeed's ZeRO-1/2 clone an fp32 master copy of their partition even in fp32
(`ftkit/bench/sharded.py` measures two CPU processes). The workshop rule of thumb (fp32 full fine-tune with
Adam: 4 bytes x 4 = 16 bytes/param, e.g. 7B -> 112 GB) is printed next to the estimate for comparison.
`ftkit bench memory` checks the estimate against measured CPU runs.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from ftkit.errors import FtkitError
from ftkit.models.families import known_config, known_labels
from ftkit.recipe import Recipe

GB = 1e9  # decimal GB, as the workshop's figures and GPU spec sheets use

def base_config(recipe: Recipe) -> tuple[dict, str]:
    """(config dict, where it came from): local/tiny config.json, the HF cache, or the built-in table."""
    from ftkit.models.load import resolve_model_path

    local = Path(resolve_model_path(recipe.base_model)) / "config.json"
    if local.is_file():
        return json.loads(local.read_text()), str(local)
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(recipe.base_model, "config.json")
    except Exception:  # not a valid repo id: fall through to the table  # noqa: BLE001
        cached = None
    if isinstance(cached, str):
        return json.loads(Path(cached).read_text()), cached
    real = known_config(recipe.base_model)
    if real:
        return dict(real.config), f"built-in table ({real.label})"
    raise FtkitError(f"no config.json for {recipe.base_model!r} locally or in the HF cache, and it is not in the "
                     "built-in table", where="base_model",
                     fix=f"download its config.json once, or name one of {known_labels()}")


class Counts(NamedTuple):
    """Exact parameter counts, and what the adapters read (summed over every adapted module)."""

    total: int
    trainable: int
    linear: int  # quantizable linear weights (the head excluded)
    lora_in: int = 0  # input features of every adapted module
    lora_rank: int = 0  # r summed over adapted modules (their lora_A outputs)
    lora_inputs: int = 0  # distinct inputs they read: modules of one block reading the same width share one


def count_params(config: dict, recipe: Recipe) -> Counts:
    """Parameter counts, exact, from the model built on the meta device (no memory used)."""
    import torch
    import transformers

    cfg = transformers.AutoConfig.for_model(**config)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(cfg)
    head = model.get_output_embeddings()
    linear = sum(m.weight.numel() for m in model.modules()
                 if isinstance(m, torch.nn.Linear) and m is not head)
    total = sum(p.numel() for p in model.parameters())
    if not recipe.adapter:
        return Counts(total, total, linear)
    from peft.tuners.lora import LoraLayer

    from ftkit.models.load import apply_lora

    peft_model = apply_lora(recipe, model)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    adapted = [(name, m) for name, m in peft_model.named_modules() if isinstance(m, LoraLayer)]
    # q/k/v read the attention norm's output, gate/up the MLP norm's: one input per (block, width)
    inputs = {(name.rsplit(".", 1)[0], m.in_features): m.in_features for name, m in adapted}
    return Counts(total, trainable, linear, sum(m.in_features for _, m in adapted),
                  sum(max(m.r.values(), default=0) for _, m in adapted), sum(inputs.values()))


@dataclass
class Estimate:
    """Peak bytes per device, as (component, bytes, arithmetic) rows; `total` is the peak (not their sum)."""

    title: str
    rows: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    accumulating: bool = False  # gradient_accumulation_steps > 1: gradients live through the next backward

    def bytes(self, name: str) -> float:
        return sum(b for n, b, _ in self.rows if n == name)

    @property
    def total(self) -> float:
        """weights + optimizer + max(activations + max(backward, lm head), gradients), or all of them when
        accumulating."""
        grads = self.bytes("gradients")
        working = self.bytes("activations") + max(self.bytes("backward"), self.bytes("lm head"))
        rest = sum(b for n, b, _ in self.rows if n not in ("gradients", "activations", "backward", "lm head", "allocator"))
        return rest + (grads + working if self.accumulating else max(grads, working))

    @property
    def resident(self) -> float:
        """What a process holds at its peak: the tensors' peak plus what the CPU allocator keeps (0 elsewhere)."""
        return self.total + self.bytes("allocator")

    def add(self, name: str, nbytes: float, how: str) -> None:
        self.rows.append((name, nbytes, how))

    def table(self) -> str:
        lines = [self.title]
        lines += [f"  {name:<12}{nbytes / GB:>9.3f} GB   {how}" for name, nbytes, how in self.rows if name != "allocator"]
        how = ("weights + optimizer + gradients + activations + max(backward, lm head): gradients accumulate over "
               "micro-batches" if self.accumulating else
               "weights + optimizer + max(activations + max(backward, lm head), gradients): backward frees activations as "
               "it writes gradients")
        lines.append(f"  {'peak':<12}{self.total / GB:>9.3f} GB   per device = {how}")
        lines += [f"  + {name:<10}{nbytes / GB:>9.3f} GB   {how}" for name, nbytes, how in self.rows if name == "allocator"]
        if any(name == "allocator" for name, _, _ in self.rows):
            lines.append(f"  {'peak RSS':<12}{self.resident / GB:>9.3f} GB   peak + allocator: what the process holds")
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


def _sharding(recipe: Recipe) -> tuple[int, dict]:
    """(0 = none; ZeRO stage (1 optimizer, 2 +gradients, 3 +weights); FSDP full_shard = 3, shard_grad_op = 2),
    with DeepSpeed's zero_optimization block ({} otherwise)."""
    if recipe.deepspeed:
        from ftkit.plugins.distributed import deepspeed_path

        zero = json.loads(Path(deepspeed_path(recipe)).read_text()).get("zero_optimization") or {}
        return zero.get("stage") or 0, zero
    if recipe.fsdp:
        options = recipe.fsdp if isinstance(recipe.fsdp, list) else recipe.fsdp.split()
        return (2 if "shard_grad_op" in options else 3), {}
    return 0, {}


def _gathered(recipe: Recipe, zero: dict, config: dict, total: int, dense: float) -> tuple[float, str]:
    """The full weights a fully sharded step computes with, gathered from the other devices."""
    if recipe.deepspeed:  # released only when not used again within stage3_max_reuse_distance parameters
        live = min(total, int(float(zero.get("stage3_max_live_parameters", 1e9))))
        return live * dense, (f"ZeRO-3 keeps what it gathers while reused within stage3_max_reuse_distance: "
                              f"min({total:,} params, stage3_max_live_parameters) x {dense:g} B")
    import transformers

    layers = transformers.AutoConfig.for_model(**config).num_hidden_layers
    return 2 * total / layers * dense, (f"FSDP gathers a layer at a time and prefetches the next: "
                                        f"2 x {total:,} / {layers} layers x {dense:g} B")


def _bytes_per_weight(recipe: Recipe, half: bool) -> tuple[float, str]:
    if getattr(recipe, "load_in_4bit", False):
        return 0.5 + 4 / 64, "nf4: 0.5 + 4-byte absmax per 64 = 0.5625"
    if getattr(recipe, "load_in_8bit", False):
        return 1.0 + 4 / 4096, "int8: 1 + absmax"
    return (2.0, "bf16/fp16") if half else (4.0, "fp32")


def _activations(config: dict, recipe: Recipe, act_bytes: int, counts: Counts, cpu: bool) -> tuple[float, float, str]:
    """(saved activations, one layer's backward working set, arithmetic) in bytes; see the module docstring."""
    import transformers

    cfg = transformers.AutoConfig.for_model(**config)  # maps e.g. GPT-2's n_embd onto hidden_size
    h, layers, vocab = cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size
    heads = getattr(cfg, "num_attention_heads", None) or 1
    kv = getattr(cfg, "num_key_value_heads", None) or heads
    kv_dim = h * kv // heads
    inter = getattr(cfg, "intermediate_size", None) or getattr(cfg, "n_inner", None) or 4 * h
    tokens = recipe.micro_batch_size * recipe.sequence_len
    per_layer = 4 * h + 2 * kv_dim + 3 * inter  # norm inputs, q + attention output, k + v, gate/up/act outputs
    if not recipe.adapter:  # trained norms keep their normalized inputs; trained linears keep what they read
        per_layer += 2 * h + 2 * h + inter
    else:
        per_layer += round(counts.lora_rank / layers)  # lora_A outputs
        if recipe.lora_dropout > 0:  # dropout output + mask: float noise on CPU, a 1-byte mask in CUDA's fused kernel
            per_layer += round(counts.lora_in / layers * (2 if cpu else 1 + 1 / act_bytes))
        else:  # the adapters read the base's inputs themselves
            per_layer += round(counts.lora_inputs / layers)
    if recipe.gradient_checkpointing:
        values = tokens * (layers * h + per_layer + h)
        how = f"{tokens:,} tok x ({layers} layers x {h} + one layer {per_layer:,} + head input {h}) x {act_bytes} B"
    else:
        values = tokens * (layers * per_layer + h)
        how = f"{tokens:,} tok x ({layers} layers x {per_layer:,} + head input {h}) x {act_bytes} B"
    return values * act_bytes, tokens * per_layer * act_bytes, how


def _lm_head(config: dict, recipe: Recipe, act_bytes: int, cpu: bool) -> tuple[float, str, float]:
    """(the chunked loss's working set, arithmetic, what the full logits would hold) in bytes."""
    import transformers

    from ftkit.plugins.kernels import slice_tokens

    cfg = transformers.AutoConfig.for_model(**config)
    h, vocab, tokens = cfg.hidden_size, cfg.vocab_size, recipe.micro_batch_size * recipe.sequence_len
    # logits, their fp32 copy under bf16/fp16, the fp32 log-softmax autograd keeps, and its gradient in backward
    full = tokens * vocab * (act_bytes + (4 if act_bytes != 4 else 0) + 4 + 4)
    if cpu:
        rows = min(tokens, slice_tokens(vocab))
        return 3 * rows * vocab * 4, f"3 x {rows:,} tok x {vocab:,} vocab x 4 B (fp32 slices)", full
    rows, cols = min(tokens, 4096), min(vocab, 32768)
    head = rows * cols * act_bytes + tokens * h * 4
    return head, f"TRL's tile {rows:,} x {cols:,} x {act_bytes} B + fp32 hidden gradient {tokens:,} x {h} x 4 B", full


def estimate(recipe: Recipe, devices: int = 1, half: bool | None = None, model_config: dict | None = None,
             cpu: bool | None = None) -> Estimate:
    """Expected peak memory per device for training this recipe on `devices` devices.

    `model_config` (a config dict) stands in for the base model's config.json, e.g. a notebook showing the
    real model's budget offline; `half=True` assumes bf16 on the target GPU whatever this machine has.
    `cpu`: training on CPU (default: no CUDA here and not half), where dropout keeps a float mask."""
    config, source = (model_config, "the given config") if model_config else base_config(recipe)
    counts = count_params(config, recipe)
    total, trainable, linear = counts.total, counts.trainable, counts.linear
    if half is None:
        half = recipe.bf16 is True or recipe.fp16 is True or (recipe.bf16 == "auto" and _cuda_bf16())
    if cpu is None:
        cpu = not half and not _cuda()
    stage, zero = _sharding(recipe)
    div = {k: (devices if stage >= s else 1) for k, s in (("opt", 1), ("grad", 2), ("weights", 3))}
    shard = lambda k: f" / {devices} devices" if div[k] > 1 else ""  # noqa: E731
    est = Estimate(f"{recipe.base_model}: {total / 1e9:.3f}B params ({total:,}; config from {source}); "
                   f"{recipe.adapter.upper() if recipe.adapter else 'full fine-tune'}, "
                   f"{'bf16' if half else 'fp32'}, {recipe.optimizer}, micro_batch_size {recipe.micro_batch_size} x "
                   f"sequence_len {recipe.sequence_len}" + (f", ZeRO/FSDP stage {stage}" if stage else "")
                   + (", on CPU" if cpu else ""), accumulating=recipe.gradient_accumulation_steps > 1)
    w_bytes, w_how = _bytes_per_weight(recipe, half)
    frozen_q = linear if (bool(recipe.adapter) and w_bytes < 2) else 0
    dense = 2.0 if half else 4.0
    weights = frozen_q * w_bytes + (total - frozen_q) * dense
    how = (f"{frozen_q:,} x {w_bytes:.4g} B ({w_how}) + {total - frozen_q:,} x {dense:g} B" if frozen_q
           else f"{total:,} x {dense:g} B")
    if recipe.adapter:  # adapter weights come on top, in fp32 (peft upcasts them on a half base)
        weights += trainable * 4
        how += f" + LoRA {trainable:,} x 4 B"
    est.add("weights", weights / div["weights"], how + shard("weights"))
    if stage == 3 and devices > 1:
        est.add("gathered", *_gathered(recipe, zero, config, total, dense))
    t_bytes = 4.0 if bool(recipe.adapter) else dense
    est.add("gradients", trainable * t_bytes / div["grad"], f"{trainable:,} trainable x {t_bytes:g} B" + shard("grad"))
    if devices > 1 and not (recipe.deepspeed or recipe.fsdp):
        est.add("ddp buckets", trainable * t_bytes, f"{trainable:,} x {t_bytes:g} B: DDP all-reduces a copy of the "
                "gradients (accelerate's gradient_as_bucket_view=False)")
    opt, opt_how = _optimizer_bytes(recipe, trainable, t_bytes, half, stage)
    est.add("optimizer", opt / div["opt"], opt_how + shard("opt"))
    act, one_layer, act_how = _activations(config, recipe, 2 if half else 4, counts, cpu)
    est.add("activations", act, act_how)
    est.add("backward", one_layer, "one layer's activations again: the gradients of its intermediates")
    if cpu and os.environ.get("FTKIT_CPU_MALLOC", "glibc") != "lean":  # train/allocator.py
        kept = max(0.0, act + one_layer - est.bytes("gradients"))  # the gradients backward writes reuse what it frees
        est.add("allocator", kept, "CPU, glibc's malloc (ftkit's default): what backward frees stays resident, about "
                "activations + backward less the gradients written into it (`ftkit bench memory --sections "
                "allocator`); FTKIT_CPU_MALLOC=lean returns it to the OS at ~1.1-1.2x the time per step")
    head, head_how, logits = _lm_head(config, recipe, 2 if half else 4, cpu)
    est.add("lm head", head, head_how)
    est.notes.append(f"the chunked LM head saves {(logits - head) / GB:.3f} GB: the micro-batch's full logits would "
                     f"need {logits / GB:.3f} GB (logits, fp32 log-softmax, their gradient)" if logits > head else
                     "the micro-batch's logits fit in one slice of the chunked LM head: it holds what full logits would")
    if not recipe.adapter and not half:
        est.notes.append(f"workshop rule of thumb (fp32 + Adam: 4 B x 4 = 16 B/param): 16 x {total / 1e9:.2f}B = "
                         f"{16 * total / GB:.1f} GB before activations")
    est.notes.append("left out: " + ("the process itself (Python, torch, the data; ~0.1-0.2 GB above the RSS "
                                     "before the model loads), " if cpu else
                                     "the CUDA context and kernels (~0.3-0.5 GB per GPU), the caching "
                                     "allocator's reserve and fragmentation, ")
                     + "a padded or packed batch's attention mask (micro_batch x sequence_len^2 per layer where "
                       "the kernel keeps one), the optimizer step's temporaries, 4/8-bit dequantization buffers"
                     + (", DeepSpeed's flat buffers and step temporaries (0.25-0.5 GB per process above this estimate "
                        "on two CPU processes training a 58M model: python -m ftkit.bench.sharded)"
                        if recipe.deepspeed else ""))
    return est


def _optimizer_bytes(recipe: Recipe, trainable: int, t_bytes: float, half: bool, stage: int) -> tuple[float, str]:
    name = recipe.optimizer.lower()
    # DeepSpeed's fp32 master copy: ZeRO-1/2 clone their partition even in fp32; ZeRO-3 shares an fp32 one
    master = 4 if recipe.deepspeed and (stage in (1, 2) or (half and not recipe.adapter)) else 0
    if "sgd" in name:
        per, how = 0.0, "SGD keeps no state"
    elif "8bit" in name:
        per, how = 2.0, "8-bit Adam: 2 states x 1 B"
    elif "adafactor" in name:
        per, how = 0.0, "Adafactor: factored state (row+column), ~0 per param"
    elif master:  # DeepSpeed mixed precision keeps Adam's states in fp32 next to an fp32 master copy
        per, how = 12.0, "fp32 master copy 4 B + Adam: 2 fp32 states x 4 B (ZeRO paper's K=12)"
    else:
        per, how = 2 * t_bytes, f"Adam: 2 states x {t_bytes:g} B"
    return trainable * per, f"{trainable:,} x {per:g} B ({how})"


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _cuda_bf16() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def run(recipe: Recipe, devices: int = 1) -> str:
    """`ftkit memory`: the table, saying first which precision it assumed when `auto` resolved on this machine."""
    table = estimate(recipe, devices).table()
    if recipe.bf16 == "auto" and recipe.fp16 is not True and not _cuda_bf16():
        gpu = estimate(recipe, devices, half=True)
        return (f"bf16: auto -> fp32 on this machine (no CUDA bf16 device), so the estimate below is for fp32; "
                f"the recipe on a bf16 GPU: peak {gpu.total / GB:.3f} GB per device (ftkit memory RECIPE --bf16=true "
                f"shows its arithmetic)\n" + table)
    return table
