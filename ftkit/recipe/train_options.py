"""Recipe options of the optimisation itself: batches, optimizer, learning-rate schedule, precision, packing.

ftkit/train/args.py maps them onto TrainingArguments; where a recipe is silent the defaults are Axolotl's
(warm-up and logging interval computed from the run length, micro_batch_size 1).
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import model_validator

from ftkit.errors import Problem
from ftkit.recipe.base import SFT, Steps, Strict, option, problem

Precision = Union[bool, Literal["auto"]]

_NAMES = yaml.safe_load((Path(__file__).resolve().parents[1] / "assets" / "optimizers.yaml").read_text("utf-8"))
OPTIMIZERS, SCHEDULERS = tuple(_NAMES["optimizers"]), tuple(_NAMES["schedulers"])  # transformers' names, as data


def missing_optimizer_package(name: str) -> str | None:
    """The pip name of the package optimizer `name` needs when it is not installed here, else None."""
    import importlib.util

    return next((pip for prefix, (module, pip) in _NAMES["packages"].items()
                 if name.startswith(prefix) and importlib.util.find_spec(module) is None), None)


def name_problems(r) -> list[Problem]:
    """An optimizer or lr_scheduler transformers does not know, with the closest names (else transformers
    raises deep inside TrainingArguments, after the data is prepared)."""
    out = []
    for key, known, common in (("optimizer", OPTIMIZERS, "adamw_torch, adamw_torch_fused, paged_adamw_8bit"),
                               ("lr_scheduler", SCHEDULERS, "cosine, linear, constant_with_warmup")):
        value = getattr(r, key)
        if value not in known:
            close = difflib.get_close_matches(value, known, n=3, cutoff=0.6)
            out.append(problem(key, f"unknown {key.replace('_', ' ')} {value!r} (not one of transformers' names)",
                               (f"did you mean {' or '.join(close)}? " if close else "") +
                               f"`ftkit options` lists them; common: {common}"))
    return out


def order_problems(r) -> list:
    """LISA and data-order options that cannot run as written."""
    p, lisa = problem, r.lisa_n_layers or r.lisa_step_interval
    return [
        lisa and not (r.lisa_n_layers and r.lisa_step_interval) and p(
            "lisa_n_layers" if not r.lisa_n_layers else "lisa_step_interval", "LISA needs both lisa_n_layers and "
            "lisa_step_interval", "set both (e.g. lisa_n_layers: 4, lisa_step_interval: 20)"),
        lisa and r.adapter and p("lisa_n_layers", "LISA trains whole layers of a full fine-tune; an adapter already "
                                 "limits what trains", "remove adapter (LISA replaces it), or remove lisa_*"),
        lisa and (r.deepspeed or r.fsdp) and p("lisa_n_layers", "LISA switches which parameters train during the run, "
                                               "which DeepSpeed and FSDP fix when they wrap the model", "remove deepspeed/fsdp"),
        not lisa and r.lisa_layers_attribute != "model.layers" and p(
            "lisa_layers_attribute", "has no effect without lisa_n_layers and lisa_step_interval", "set them, or remove it"),
        r.sample_packing_sequentially and not r.sample_packing and p(
            "sample_packing_sequentially", "has no effect without sample_packing", "add sample_packing: true"),
        r.curriculum_sampling and r.group_by_length and p(
            "group_by_length", "conflicts with curriculum_sampling (both set the order of batches)", "keep one"),
    ]


class TrainOptions(Strict):
    output_dir: Optional[str] = option(None, description="Where the model/adapter, tokenizer, recipe and metrics.json are written (a folder ftkit owns: see README 'The output folder'). Default: outputs/<recipe file name without .yml> (a recipe given as a dict: outputs/run-<8 hex digits of its training options>).")
    micro_batch_size: int = option(1, ge=1, description="Rows per device per forward pass.")
    gradient_accumulation_steps: int = option(1, ge=1, description="Micro-batches per optimizer step (default: batch_size / micro_batch_size when batch_size is set, else 1).")
    batch_size: Optional[int] = option(None, ge=1, description="Rows per optimizer step; sets gradient_accumulation_steps = batch_size / micro_batch_size when that is not given.")
    eval_batch_size: Optional[int] = option(None, ge=1, description="Rows per device per evaluation forward pass (default: micro_batch_size).")
    auto_find_batch_size: bool = option(False, description="Halve the batch size and retry when a step runs out of memory (TrainingArguments auto_find_batch_size).")
    num_epochs: float = option(1.0, gt=0, description="Passes over the data (ignored when max_steps is set).")
    max_steps: Optional[int] = option(None, ge=1, description="Stop after this many optimizer steps.")
    learning_rate: float = option(2e-4, gt=0, le=1, description="Peak learning rate.")
    optimizer: str = option("adamw_torch", description="transformers optimizer name: " + ", ".join(OPTIMIZERS) + ".")
    optim_args: Optional[Union[str, dict[str, Any]]] = option(None, description="Extra optimizer arguments (TrainingArguments optim_args, 'k=v,...' or a mapping).")
    optim_target_modules: Optional[Union[str, list[str]]] = option(None, description="Modules an optimizer such as GaLore applies to (TrainingArguments optim_target_modules).")
    adam_beta1: Optional[float] = option(None, ge=0, lt=1, description="AdamW beta1 (default 0.9).")
    adam_beta2: Optional[float] = option(None, ge=0, lt=1, description="AdamW beta2 (default 0.999).")
    adam_epsilon: Optional[float] = option(None, gt=0, description="AdamW epsilon (default 1e-8).")
    weight_decay: float = option(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = option(1.0, ge=0, description="Gradient clipping norm (0 = off).")
    lr_scheduler: str = option("cosine", description="transformers scheduler name: " + ", ".join(SCHEDULERS) + ".")
    lr_scheduler_kwargs: dict[str, Any] = option(default_factory=dict, description="Extra scheduler arguments, e.g. {num_cycles: 0.5} or {min_lr_rate: 0.1}.")
    cosine_min_lr_ratio: Optional[float] = option(None, ge=0, le=1, description="cosine: decay to this fraction of learning_rate instead of 0.")
    cosine_constant_lr_ratio: Optional[float] = option(None, gt=0, le=1, description="cosine with cosine_min_lr_ratio: reach the minimum after this fraction of the steps, then hold it.")
    lr_quadratic_warmup: bool = option(False, description="cosine: warm up along (step / warmup)^2 instead of linearly.")
    jagged_restart_steps: Optional[int] = option(None, ge=1, description="Jagged schedule: every N steps the learning rate drops and warms up again (Axolotl's cycle length; with relora: true also the ReLoRA restart interval).")
    jagged_restart_warmup_steps: Optional[int] = option(None, ge=0, description="Jagged schedule: steps of linear re-warm-up after each restart (default 10, Axolotl's; 0 = the default).")
    jagged_restart_anneal_steps: Optional[int] = option(None, ge=0, description="Jagged schedule: steps of linear decay before each restart (default 1: none; 0 = the default).")
    warmup_steps: Optional[Steps] = option(None, ge=0, description="Linear warm-up steps (a value below 1: that fraction of the steps). Default (no warmup_ratio either): 3% of the steps, at most 100, as Axolotl does.")
    warmup_ratio: Optional[float] = option(None, ge=0, lt=1, description="Warm-up as a fraction of the total steps (rounded down), when warmup_steps is not set.")
    seed: int = option(42, description="Seed for data order, splits, the adapter's and new embeddings' initial weights.")
    data_seed: Optional[int] = option(None, ftkit_only=True, description="Seed of the order batches are drawn in (TrainingArguments data_seed); default: seed.")
    logging_steps: Optional[int] = option(None, ge=1, description="Log the loss every N steps. Default: 0.5% of the steps, between 1 and 10, as Axolotl does.")
    logging_first_step: bool = option(False, ftkit_only=True, description="Also log the loss of the first step (TrainingArguments logging_first_step).")
    bf16: Precision = option("auto", description="bfloat16 mixed precision; auto = on where the device supports it.")
    fp16: Optional[Precision] = option(None, description="float16 mixed precision; auto/empty = on only for GPUs without bf16.")
    tf32: Precision = option("auto", description="TF32 matmuls on Ampere+ GPUs; auto = on where supported.")
    bfloat16: bool = option(False, description="Load the weights in bfloat16 and train them so, without mixed precision (no fp32 master copy).")
    float16: bool = option(False, description="Load the weights in float16 and train them so, without mixed precision.")
    gradient_checkpointing: bool = option(False, description="Recompute activations in backward to save memory.")
    gradient_checkpointing_kwargs: Optional[dict[str, Any]] = option(None, description="Arguments of gradient_checkpointing_enable, e.g. {use_reentrant: false} (ftkit's default).")
    torch_compile: bool = option(False, description="torch.compile the model (speed; same maths).")
    torch_compile_backend: Optional[str] = option(None, description="torch.compile backend (default inductor).")
    torch_compile_mode: Optional[Literal["default", "reduce-overhead", "max-autotune"]] = option(None, description="torch.compile mode.")
    dataloader_drop_last: bool = option(False, description="Drop the last incomplete batch of each epoch.")
    liger_rope: bool = option(False, description="CUDA with liger-kernel: Liger's fused rotary embedding (speed only; elsewhere transformers' code, announced).")
    liger_rms_norm: bool = option(False, description="CUDA with liger-kernel: Liger's fused RMSNorm (speed and memory only; elsewhere transformers' code, announced).")
    liger_layer_norm: bool = option(False, description="CUDA with liger-kernel: Liger's fused LayerNorm (speed and memory only; elsewhere transformers' code, announced).")
    liger_glu_activation: bool = option(False, description="CUDA with liger-kernel: Liger's fused SwiGLU/GeGLU MLP (speed and memory only; elsewhere transformers' code, announced).")
    liger_fused_linear_cross_entropy: bool = option(False, description="Accepted and announced: ftkit's SFT LM head never builds the logits anyway (TRL's fused head, Triton on CUDA; a chunked kernel on CPU); rl:/reward runs: TRL's trainer computes its loss from the logits.")
    liger_cross_entropy: bool = option(False, description="Accepted and announced: ftkit's LM head never builds the logits anyway (see liger_fused_linear_cross_entropy).")
    cut_cross_entropy: bool = option(False, description="CUDA with cut-cross-entropy, SFT: Cut Cross-Entropy computes the LM head's loss on steps that log no metrics (exact gradients; elsewhere ftkit's chunked LM head, announced; rl:/reward runs: not used, announced).")
    lisa_n_layers: Optional[int] = option(None, ge=1, methods=SFT, description="LISA: train only this many of the model's layers at a time (embeddings and head always train), a seeded draw every lisa_step_interval steps.")
    lisa_step_interval: Optional[int] = option(None, ge=1, methods=SFT, description="LISA: steps between two draws of the trained layers.")
    lisa_layers_attribute: str = option("model.layers", methods=SFT, description="LISA: the path of the layer list inside the model (model.layers for Llama-like models, transformer.h for GPT-2).")
    eval_prompts: list[str] = option(default_factory=list, ftkit_only=True, description="ftkit: prompts generated before and after training to show what the model learned.")
    max_new_tokens: int = option(48, ge=1, ftkit_only=True, description="ftkit: tokens generated per prompt by infer and the before/after samples.")

    @model_validator(mode="before")
    @classmethod
    def _accumulation_from_batch_size(cls, data: Any):
        """batch_size without gradient_accumulation_steps -> the accumulation that makes it (Axolotl's rule)."""
        if isinstance(data, dict) and data.get("batch_size") and data.get("gradient_accumulation_steps") is None:
            mbs = data.get("micro_batch_size") or 1
            if isinstance(data["batch_size"], int) and isinstance(mbs, int) and mbs > 0:
                data = {**data, "gradient_accumulation_steps": max(1, data["batch_size"] // mbs)}
        return data


class PackingOptions(Strict):
    sample_packing: bool = option(False, methods=SFT, description="Pack whole examples into rows of up to sequence_len tokens; position_ids restart per example so attention never crosses examples.")
    eval_sample_packing: Optional[bool] = option(None, methods=SFT, description="Pack the eval set too (default: same as sample_packing).")
    pad_to_sequence_len: bool = option(False, description="Pad every batch row to sequence_len (constant shapes; less memory fragmentation). Padding never changes what is trained; under rl: TRL pads its own batches.")
    sample_packing_group_size: int = option(100_000, ge=1, methods=SFT, description="Examples binned together in one packing pass; each group ends in at most one partial row.")
    sample_packing_sequentially: bool = option(False, methods=SFT, description="Pack examples in the data's order (next-fit: a new row when the next example does not fit) instead of by length; fewer examples share rows.")
    curriculum_sampling: bool = option(False, methods=SFT, description="Draw batches in the data's order (a sequential sampler, no shuffle of a single dataset): the order of the data file is the curriculum.")
    group_by_length: bool = option(False, methods=SFT, description="Unpacked path: batch examples of similar length to cut padding (loss may oscillate).")
