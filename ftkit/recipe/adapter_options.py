"""Recipe options of adapters (LoRA and its variants), quantized bases, ReLoRA and partial full fine-tunes.

ftkit/models/adapters.py, quant.py, freeze.py and plugins/relora.py apply them.
"""
from __future__ import annotations

from typing import Any, Literal, Optional, Union

from ftkit.recipe.base import SFT, Strict, option, problem

# ReLoRA merges the adapter into the base at each restart: with a reference model (dpo, ipo, kto: the base with
# the adapter's step-0 copy) the reference would move, so only methods without one read the relora_* options.
NO_REFERENCE = ("sft", "orpo", "simpo")


class AdapterOptions(Strict):
    adapter: Optional[Literal["lora", "qlora"]] = option(None, description="`lora` trains a LoRA adapter; `qlora` trains one on a 4-bit base (with load_in_4bit); empty = full fine-tune.")
    lora_r: int = option(8, ge=1, description="LoRA rank.")
    lora_alpha: int = option(16, ge=1, description="LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = option(0.0, ge=0, lt=1, description="Dropout on the LoRA input (Axolotl's default 0.0).")
    lora_target_modules: Optional[Union[str, list[str]]] = option(None, description="Module names (or one regex) to adapt; default: the architecture's attention projections. With lora_target_linear both sets are adapted.")
    lora_target_linear: bool = option(False, description="Adapt every linear layer except the output head.")
    lora_target_parameters: Optional[list[str]] = option(None, description="Parameter names adapted directly (peft target_parameters, e.g. MoE expert weights).")
    lora_modules_to_save: list[str] | None = option(None, description="Modules trained in full and saved with the adapter (set to the embeddings automatically when tokens are added).")
    lora_rank_pattern: Optional[dict[str, int]] = option(None, description="Rank per module-name pattern (peft rank_pattern), overriding lora_r.")
    lora_alpha_pattern: Optional[dict[str, int]] = option(None, description="Alpha per module-name pattern (peft alpha_pattern), overriding lora_alpha.")
    peft_layers_to_transform: Optional[Union[int, list[int]]] = option(None, description="Only these layer indices get adapters (peft layers_to_transform).")
    peft_layers_pattern: Optional[Union[str, list[str]]] = option(None, description="Name of the layer list that peft_layers_to_transform indexes (e.g. layers).")
    peft_layer_replication: Optional[list[list[int]]] = option(None, description="Stack layer ranges [[start, end], ...] into a deeper model sharing base weights (peft layer_replication).")
    peft_trainable_token_indices: Optional[Union[list[int], dict[str, list[int]]]] = option(None, description="Token ids whose embedding rows are trained (peft trainable_token_indices).")
    peft_autocast_adapter_dtype: bool = option(True, methods=SFT, description="Keep adapter weights in fp32 on a half-precision base (peft autocast_adapter_dtype).")
    peft_ensure_weight_tying: bool = option(False, description="Keep tied embedding/output weights tied when both are adapted or saved (peft ensure_weight_tying).")
    unfrozen_parameters: Optional[list[str]] = option(None, methods=SFT, description="Regexes of the parameters to train, all others frozen (a `.` is literal; matched from the start of the name; a trailing [a:b] trains only those rows). With an adapter: base parameters trained besides it.")


class LoftQOptions(Strict):
    """`loftq_config:` LoftQ initialisation (peft): LoRA starts at the SVD of W minus its quantized copy."""

    loftq_bits: Literal[4, 8] = option(4, description="Bits of the quantized base that LoftQ initialises against (4 = nf4, 8 = int8).")
    loftq_iter: int = option(1, ge=1, le=8, ftkit_only=True, description="Alternating quantize/SVD iterations.")


class PeftBlock(Strict):
    """Axolotl's `peft:` block (only loftq_config lives there)."""

    loftq_config: Optional[LoftQOptions] = option(None, description="Same as the top-level loftq_config.")


class PeftOptions(Strict):
    """Adapter variants, quantized bases and ReLoRA."""

    lora_model_dir: Optional[str] = option(None, description="A trained adapter directory: training continues from it; infer and merge-lora load it.")
    lora_fan_in_fan_out: bool = option(False, description="The base stores weights as (fan_in, fan_out), e.g. GPT-2 Conv1D.")
    peft_use_dora: bool = option(False, description="DoRA: learn a magnitude vector on top of LoRA's direction update.")
    peft_use_rslora: bool = option(False, description="rsLoRA: scale by alpha / sqrt(r) instead of alpha / r (stable at high rank).")
    peft_init_lora_weights: Optional[Union[bool, Literal["gaussian", "loftq", "pissa", "olora", "orthogonal"]]] = option(
        None, description="LoRA init (peft init_lora_weights); default: A random, B zero. `loftq` needs loftq_config.")
    loftq_config: Optional[LoftQOptions] = option(None, description="LoftQ init (e.g. {loftq_bits: 4}); the base weights become their quantized values. Axolotl: peft.loftq_config.")
    peft: Optional[PeftBlock] = option(None, description="Axolotl's spelling: peft.loftq_config.")
    load_in_8bit: bool = option(False, description="Load the base in 8-bit (bitsandbytes LLM.int8) and train a LoRA on it.")
    load_in_4bit: bool = option(False, description="Load the base in 4-bit (bitsandbytes nf4, double quant) and train adapter: qlora on it. With adapter: lora it is read as Axolotl (v0.13 on) reads it: the base loads unquantized (said).")
    bnb_config_kwargs: dict[str, Any] = option(default_factory=dict, description="Extra transformers BitsAndBytesConfig arguments (e.g. bnb_4bit_quant_type: fp4).")
    gptq: bool = option(False, description="The base is already GPTQ-quantized; transformers loads it (needs optimum + gptqmodel).")
    relora: bool = option(False, methods=NO_REFERENCE, description="ReLoRA (Axolotl's switch): every jagged_restart_steps steps, merge the adapter into the base, re-initialise it and prune its optimizer state; jagged_restart_steps without it is the jagged schedule alone.")
    relora_steps: Optional[int] = option(None, ge=1, methods=NO_REFERENCE, description="ReLoRA every N steps (Axolotl's former name; on its own it turns ReLoRA on, like relora: true with jagged_restart_steps: N).")
    relora_prune_ratio: Optional[float] = option(None, ge=0, le=1, methods=NO_REFERENCE, description="ReLoRA: fraction of the adapter's optimizer moments zeroed at each restart (default 0.9; 0.999 with relora_prune_method: reset).")
    relora_prune_method: Optional[Literal["magnitude", "random", "reset"]] = option("magnitude", methods=NO_REFERENCE, description="ReLoRA: which moments are zeroed: the smallest by |value| (magnitude), a random draw (random), or nearly all (reset: random at 0.999).")
    relora_cpu_offload: bool = option(False, methods=NO_REFERENCE, description="ReLoRA on a 4-bit base: keep the full-precision copy each restart merges into in CPU RAM, not on the GPU (4 bytes per adapted parameter).")

    @property
    def restart_steps(self) -> Optional[int]:
        """The ReLoRA / jagged-schedule cycle length, from either name."""
        return self.relora_steps or getattr(self, "jagged_restart_steps", None)

    @property
    def relora_active(self) -> bool:
        """Merges and restarts happen: relora_steps alone (Axolotl <= 0.11), or relora: true with a cycle length."""
        return bool(self.relora_steps or (self.relora and self.restart_steps))

    @property
    def loftq(self) -> Optional[LoftQOptions]:
        """The LoftQ settings, from either spelling."""
        return self.loftq_config or (self.peft.loftq_config if self.peft else None)


def adapter_problems(r) -> list:
    """One Problem per adapter/quantization conflict (None entries for the checks that pass)."""
    adapter = getattr(r, "adapter", None)
    loftq = r.loftq
    p = problem
    return [
        r.load_in_4bit and r.load_in_8bit and p("load_in_8bit", "load_in_4bit and load_in_8bit are both true", "choose one"),
        r.load_in_4bit and not adapter and p("load_in_4bit", "4-bit weights cannot be trained directly (adapter is empty)",
                                             "set adapter: qlora"),
        adapter == "qlora" and not r.load_in_4bit and p("adapter", "qlora trains on a 4-bit base but load_in_4bit is not set",
                                                        "add load_in_4bit: true (or use adapter: lora)"),
        r.load_in_8bit and adapter != "lora" and p("load_in_8bit", f"8-bit weights cannot be trained directly (adapter is {adapter})",
                                                   "set adapter: lora"),
        r.gptq and (r.load_in_4bit or r.load_in_8bit) and p("gptq", "a GPTQ base is already quantized",
                                                            "remove load_in_4bit/load_in_8bit"),
        r.gptq and adapter != "lora" and p("gptq", "a GPTQ base can only be trained through an adapter", "set adapter: lora"),
        r.loftq_config and r.peft and r.peft.loftq_config and p("loftq_config", "set both here and under peft:", "keep one"),
        loftq and (adapter != "lora" or r.load_in_4bit or r.load_in_8bit) and p("loftq_config", "LoftQ initialises a LoRA on the full-precision base",
                                          "set adapter: lora without load_in_4bit/load_in_8bit"),
        loftq and r.peft_init_lora_weights not in (None, "loftq") and p(
            "peft_init_lora_weights", f"{r.peft_init_lora_weights!r} conflicts with loftq_config", "set it to loftq or remove loftq_config"),
        r.peft_init_lora_weights == "loftq" and not loftq and p(
            "peft_init_lora_weights", "loftq needs its settings", "add loftq_config: {loftq_bits: 4}"),
        r.lora_model_dir and not adapter and p("lora_model_dir", "an adapter directory is set but adapter is empty",
                                               "set adapter: lora (or qlora)"),
        *relora_problems(r, adapter),
    ]


def relora_problems(r, adapter) -> list:
    """ReLoRA and the jagged schedule: what Axolotl refuses too, and what ftkit does not do (an 8-bit merge)."""
    p, on, every = problem, r.relora_active, r.restart_steps
    key = "relora_steps" if r.relora_steps else "relora"
    jagged = [k for k in ("jagged_restart_warmup_steps", "jagged_restart_anneal_steps") if getattr(r, k) is not None]
    return [
        r.relora and not every and p("relora", "ReLoRA needs a cycle length", "add jagged_restart_steps: N"),
        r.relora_steps and r.jagged_restart_steps and p(
            "jagged_restart_steps", "conflicts with relora_steps (the same cycle length)", "keep one"),
        on and not adapter and p(key, "ReLoRA restarts a LoRA adapter but adapter is empty", "set adapter: lora (or qlora)"),
        on and r.load_in_8bit and p(key, "ReLoRA merges into an 8-bit base are not implemented",
                                    "use adapter: qlora with load_in_4bit, or an unquantized base"),
        on and r.peft_use_dora and p(key, "ReLoRA restarts are not defined for DoRA's magnitude vector", "remove peft_use_dora"),
        on and (r.deepspeed or r.fsdp) and p(key, "ReLoRA merges need the whole base on each process (Axolotl refuses "
                                                  "DeepSpeed and FSDP too)", "remove deepspeed/fsdp"),
        on and "adam" not in r.optimizer and p(key, f"ReLoRA prunes Adam's moments at each restart; {r.optimizer} has none",
                                                "use an Adam optimizer (adamw_torch, adamw_bnb_8bit, ...)"),
        *[not every and p(k, "has no effect without jagged_restart_steps (or relora_steps)", "set jagged_restart_steps")
          for k in jagged],
        every and r.lr_scheduler in ("reduce_lr_on_plateau", "greedy") and p(
            "lr_scheduler", f"{r.lr_scheduler} is not a function of the step, so the jagged schedule cannot shape it",
            "use cosine, linear or constant"),
        every and r.jagged_restart_warmup_steps and r.jagged_restart_warmup_steps >= every and p(
            "jagged_restart_warmup_steps", f"must be below the cycle length ({every})", "use a shorter warm-up"),
    ]
