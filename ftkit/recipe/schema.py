"""The recipe schema: every option with Axolotl's name, its type, default and one description.

Declared once, here; each field's description is its only documentation (`ftkit options` prints
the reference generated from it). Cross-field checks live beside the fields they relate.
"""
from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Every option name Axolotl documents (a fixed list, never edited when ftkit grows). Those that the
# schema below does not declare are "known but unsupported": setting one is an error that says so,
# rather than a run that silently ignores it. Adding a field to the schema makes it supported.
AXOLOTL_OPTIONS = frozenset("""
base_model base_model_ignore_patterns base_model_config revision_of_model tokenizer_config model_type
tokenizer_type trust_remote_code tokenizer_use_fast tokenizer_legacy resize_token_embeddings_to_32x
is_falcon_derived_model is_llama_derived_model is_qwen_derived_model is_mistral_derived_model
overrides_of_model_config bnb_config_kwargs gptq load_in_8bit load_in_4bit bf16 fp16 tf32 bfloat16 float16
gpu_memory_limit lora_on_cpu datasets test_datasets rl rl_beta dpo_label_smoothing orpo_alpha rpo_alpha
kto_desirable_weight kto_undesirable_weight chat_template default_system_message dataset_prepared_path
push_dataset_to_hub dataset_processes dataset_keep_in_memory hub_model_id hub_strategy hf_use_auth_token
val_set_size dataset_shard_num dataset_shard_idx sequence_len pad_to_sequence_len sample_packing
eval_sample_packing sample_packing_eff_est total_num_tokens sample_packing_group_size sample_packing_bin_size
device_map max_memory adapter lora_model_dir lora_r lora_alpha lora_dropout lora_target_modules
lora_target_linear peft_layers_to_transform lora_modules_to_save lora_fan_in_fan_out peft peft_use_dora
peft_use_rslora peft_init_lora_weights loftq_config relora_steps relora_warmup_steps relora_anneal_steps
relora_prune_ratio relora_cpu_offload wandb_mode wandb_project wandb_entity wandb_watch wandb_name
wandb_run_id wandb_log_model mlflow_tracking_uri mlflow_experiment_name hf_mlflow_log_artifacts use_comet
output_dir torch_compile torch_compile_backend gradient_accumulation_steps micro_batch_size eval_batch_size
num_epochs warmup_steps warmup_ratio learning_rate lr_quadratic_warmup logging_steps eval_steps
evals_per_epoch save_strategy save_steps saves_per_epoch save_total_limit max_steps eval_table_size
eval_max_new_tokens eval_causal_lm_metrics loss_watchdog_threshold loss_watchdog_patience save_safetensors
train_on_inputs group_by_length gradient_checkpointing gradient_checkpointing_kwargs early_stopping_patience
lr_scheduler lr_scheduler_kwargs cosine_min_lr_ratio cosine_constant_lr_ratio lr_div_factor optimizer
weight_decay adam_beta1 adam_beta2 adam_epsilon max_grad_norm neftune_noise_alpha flash_optimum
xformers_attention flash_attention flash_attn_cross_entropy flash_attn_rms_norm flash_attn_fuse_qkv
flash_attn_fuse_mlp sdp_attention s2_attention resume_from_checkpoint auto_resume_from_checkpoints
local_rank special_tokens tokens fsdp fsdp_config deepspeed ddp_timeout ddp_bucket_cap_mb
ddp_broadcast_buffers torchdistx_path pretraining_dataset debug seed strict
""".split())
AXOLOTL_DATASET_OPTIONS = frozenset("""
path type ds_type data_files shards shards_idx preprocess_shards name train_on_split split conversation
field_human field_model field_messages message_field_role message_field_content roles roles_to_train
train_on_eos chat_template field system_prompt system_format field_system field_instruction field_input
field_output format no_input_format
""".split())

Precision = Union[bool, Literal["auto"]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class UserDefinedFormat(_Strict):
    """`type:` given as a mapping: a prompt format written in the recipe (Axolotl's custom prompt)."""

    system_prompt: str = Field("", description="System text used when a row has no `field_system` value.")
    system_format: str = Field("{system}", description="How the system text is written; must contain {system}.")
    field_system: str = Field("system", description="Column holding a per-row system text.")
    field_instruction: str = Field("instruction", description="Column holding the instruction.")
    field_input: str = Field("input", description="Column holding the optional input.")
    field_output: str = Field("output", description="Column holding the trained answer.")
    format: str = Field("{instruction} {input} ", description="Prompt for rows with an input; uses {instruction} and {input}.")
    no_input_format: str = Field("{instruction} ", description="Prompt for rows without input; uses {instruction} only.")


class DatasetLoadOptions(_Strict):
    """Where a dataset's rows come from (local files, a saved dataset directory, or a hub name)."""

    data_files: Optional[Union[str, list[str]]] = Field(None, description="Files inside `path` to read (default: all).")
    split: str = Field("train", description="Split to read from the loaded dataset.")
    ds_type: Optional[Literal["json", "parquet", "csv", "arrow", "text"]] = Field(
        None, description="File format when the suffix does not tell (json covers .jsonl).")
    name: Optional[str] = Field(None, description="Configuration (subset) of a hub dataset.")
    shards: Optional[int] = Field(None, ge=1, description="Split this dataset into N shards and keep one (see shards_idx).")
    shards_idx: int = Field(0, ge=0, description="Which shard to keep when `shards` is set.")


class DatasetFormatOptions(_Strict):
    """Options of the prompt formats (which ones apply depends on `type`; see data_samples/README.md)."""

    field: Optional[str] = Field(None, description="completion: the text column (default: text).")
    field_messages: Optional[str] = Field(None, description="chat_template: column with the message list (default: messages; sharegpt: conversations).")
    message_field_role: Optional[str] = Field(None, description="chat_template: role key inside a message (default: role; sharegpt: from).")
    message_field_content: Optional[str] = Field(None, description="chat_template: text key inside a message (default: content; sharegpt: value).")
    roles: Optional[dict[str, list[str]]] = Field(None, description="chat_template: ftkit role -> role names used in the data, e.g. {assistant: [gpt, bot]}.")
    roles_to_train: Optional[list[str]] = Field(None, description="chat_template: roles whose turns are trained (default: [assistant]).")
    train_on_eos: Optional[Literal["turn", "last", "all", "none"]] = Field(
        None, description="chat_template: which end-of-turn tokens are trained: turn (of trained turns; default), last, all, none.")
    chat_template: Optional[str] = Field(None, description="chat_template: tokenizer_default, a name (chatml, llama3, mistral, gemma, qwen, phi3) or Jinja text; default: the recipe's.")
    conversation: Optional[str] = Field(None, description="sharegpt: chat template name the conversations are rendered with (default: the tokenizer's).")
    field_human: Optional[str] = Field(None, description="sharegpt: the data's role name for the user (added to roles.user).")
    field_model: Optional[str] = Field(None, description="sharegpt: the data's role name for the model (added to roles.assistant).")


class DatasetSpec(DatasetLoadOptions, DatasetFormatOptions):
    """One entry of `datasets:`."""

    path: str = Field(description="Local file or directory (json/jsonl/parquet/csv/arrow), a save_to_disk directory, or a hub dataset name.")
    type: Union[str, UserDefinedFormat] = Field("alpaca", description="Prompt format (see data_samples/README.md), or a mapping for a format written in the recipe.")


class ModelOptions(_Strict):
    base_model: str = Field(description="Hub id or local path of the base model; `tiny:<family>` builds the offline tiny twin.")
    tokenizer_config: Optional[str] = Field(None, description="Tokenizer to use instead of base_model's.")
    model_type: str = Field("AutoModelForCausalLM", description="transformers Auto class used to load the model.")
    trust_remote_code: bool = Field(False, description="Allow model code from the hub repo (off: only native transformers architectures).")
    special_tokens: dict[str, str] = Field(default_factory=dict, description="Set bos_token/eos_token/pad_token/unk_token; new ones are added and embeddings resized.")


class DataOptions(_Strict):
    datasets: list[DatasetSpec] = Field(min_length=1, description="Training data; see data_samples/README.md for the formats.")
    sequence_len: int = Field(512, ge=8, le=1_048_576, description="Longest example in tokens; longer rows are dropped and counted.")
    train_on_inputs: bool = Field(False, description="Also train on prompt tokens (default: only the response is trained).")
    val_set_size: float = Field(0.0, ge=0, description="Held-out fraction (<1) or row count (>=1) for evaluation.")
    dataset_prepared_path: Optional[str] = Field(None, description="Directory for the tokenized-data cache (keyed by a fingerprint).")


class AdapterOptions(_Strict):
    adapter: Optional[Literal["lora", "qlora"]] = Field(None, description="`lora` trains a LoRA adapter; `qlora` trains one on a 4-bit base (with load_in_4bit); empty = full fine-tune.")
    lora_r: int = Field(8, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(16, ge=1, description="LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input.")
    lora_target_modules: Optional[list[str]] = Field(None, description="Module names to adapt (default: the architecture's attention projections).")
    lora_target_linear: bool = Field(False, description="Adapt every linear layer except the output head.")
    lora_modules_to_save: list[str] | None = Field(None, description="Modules trained in full and saved with the adapter (set to the embeddings automatically when tokens are added).")


class PromptOptions(_Strict):
    """Tokenizer-side options of the data path: chat template, added tokens, preprocessing."""

    chat_template: Optional[str] = Field(None, description="Chat template written into the tokenizer (and used by chat datasets): tokenizer_default, chatml, llama3, mistral, gemma, qwen, phi3 or Jinja text.")
    tokens: list[str] = Field(default_factory=list, description="Extra (non-special) tokens added to the vocabulary; embeddings are resized.")
    dataset_processes: Optional[int] = Field(None, ge=1, description="Processes for tokenizing (datasets.map num_proc); default 1 below 20,000 rows, else the CPU count.")
    excess_length_strategy: Literal["drop", "truncate"] = Field("drop", description="Rows longer than sequence_len: drop them (counted) or truncate them to sequence_len.")
    shuffle_merged_datasets: bool = Field(True, description="Shuffle the rows after mixing the datasets (seeded).")
    dataset_shard_num: Optional[int] = Field(None, ge=1, description="Split the mixed training data into N shards and keep one (see dataset_shard_idx).")
    dataset_shard_idx: int = Field(0, ge=0, description="Which shard of the mixed data to keep.")


class LoftQOptions(_Strict):
    """`loftq_config:` LoftQ initialisation (peft): LoRA starts at the SVD of W minus its quantized copy."""

    loftq_bits: Literal[4, 8] = Field(4, description="Bits of the quantized base that LoftQ initialises against (4 = nf4, 8 = int8).")
    loftq_iter: int = Field(1, ge=1, le=8, description="Alternating quantize/SVD iterations.")


class PeftBlock(_Strict):
    """Axolotl's `peft:` block (only loftq_config lives there)."""

    loftq_config: Optional[LoftQOptions] = Field(None, description="Same as the top-level loftq_config.")


class PeftOptions(_Strict):
    """Adapter variants, quantized bases and ReLoRA (ftkit/adapters.py, ftkit/quant.py, ftkit/relora.py)."""

    lora_model_dir: Optional[str] = Field(None, description="A trained adapter directory: training continues from it; infer and merge-lora load it.")
    lora_fan_in_fan_out: bool = Field(False, description="The base stores weights as (fan_in, fan_out), e.g. GPT-2 Conv1D.")
    peft_use_dora: bool = Field(False, description="DoRA: learn a magnitude vector on top of LoRA's direction update.")
    peft_use_rslora: bool = Field(False, description="rsLoRA: scale by alpha / sqrt(r) instead of alpha / r (stable at high rank).")
    peft_init_lora_weights: Optional[Union[bool, Literal["gaussian", "loftq", "pissa", "olora", "orthogonal"]]] = Field(
        None, description="LoRA init (peft init_lora_weights); default: A random, B zero. `loftq` needs loftq_config.")
    loftq_config: Optional[LoftQOptions] = Field(None, description="LoftQ init (e.g. {loftq_bits: 4}); the base weights become their quantized values.")
    peft: Optional[PeftBlock] = Field(None, description="Axolotl's spelling: peft.loftq_config.")
    load_in_8bit: bool = Field(False, description="Load the base in 8-bit (bitsandbytes LLM.int8) and train a LoRA on it.")
    load_in_4bit: bool = Field(False, description="Load the base in 4-bit (bitsandbytes nf4, double quant); use with adapter: qlora.")
    bnb_config_kwargs: dict[str, Any] = Field(default_factory=dict, description="Extra transformers BitsAndBytesConfig arguments (e.g. bnb_4bit_quant_type: fp4).")
    gptq: bool = Field(False, description="The base is already GPTQ-quantized; transformers loads it (needs optimum + gptqmodel).")
    relora_steps: Optional[int] = Field(None, ge=1, description="ReLoRA: merge the adapter into the base and restart it every N steps.")
    relora_warmup_steps: Optional[int] = Field(None, ge=0, description="ReLoRA: steps of linear LR re-warm-up after each restart.")
    relora_cpu_offload: bool = Field(False, description="ReLoRA: do the merge on the CPU (saves GPU memory, slower).")

    @property
    def loftq(self) -> Optional[LoftQOptions]:
        """The LoftQ settings, from either spelling."""
        return self.loftq_config or (self.peft.loftq_config if self.peft else None)

    @model_validator(mode="after")
    def _adapter_consistent(self):
        problems = [p for p in _adapter_problems(self) if p]
        if problems:
            raise ValueError("|".join(";".join(p) for p in problems))
        return self


def _adapter_problems(r) -> list:
    """(key, problem, fix) for each adapter/quantization conflict."""
    adapter = getattr(r, "adapter", None)
    loftq = r.loftq
    return [
        r.load_in_4bit and r.load_in_8bit and ("load_in_8bit", "load_in_4bit and load_in_8bit are both true", "choose one"),
        r.load_in_4bit and adapter != "qlora" and ("load_in_4bit", f"a 4-bit base needs adapter: qlora (adapter is {adapter})",
                                                  "set adapter: qlora, or remove load_in_4bit"),
        adapter == "qlora" and not r.load_in_4bit and ("adapter", "qlora trains on a 4-bit base but load_in_4bit is not set",
                                                       "add load_in_4bit: true (or use adapter: lora)"),
        r.load_in_8bit and adapter != "lora" and ("load_in_8bit", f"8-bit weights cannot be trained directly (adapter is {adapter})",
                                                  "set adapter: lora"),
        r.gptq and (r.load_in_4bit or r.load_in_8bit) and ("gptq", "a GPTQ base is already quantized",
                                                           "remove load_in_4bit/load_in_8bit"),
        r.gptq and adapter != "lora" and ("gptq", "a GPTQ base can only be trained through an adapter", "set adapter: lora"),
        r.loftq_config and r.peft and r.peft.loftq_config and ("loftq_config", "set both here and under peft:", "keep one"),
        loftq and adapter != "lora" and ("loftq_config", "LoftQ initialises a LoRA on the full-precision base",
                                         "set adapter: lora without load_in_4bit/load_in_8bit"),
        loftq and r.peft_init_lora_weights not in (None, "loftq") and (
            "peft_init_lora_weights", f"{r.peft_init_lora_weights!r} conflicts with loftq_config", "set it to loftq or remove loftq_config"),
        r.peft_init_lora_weights == "loftq" and not loftq and (
            "peft_init_lora_weights", "loftq needs its settings", "add loftq_config: {loftq_bits: 4}"),
        r.lora_model_dir and not adapter and ("lora_model_dir", "an adapter directory is set but adapter is empty",
                                              "set adapter: lora (or qlora)"),
        r.relora_steps and not adapter and ("relora_steps", "ReLoRA restarts a LoRA adapter but adapter is empty",
                                            "set adapter: lora (or qlora)"),
        r.relora_steps and (r.load_in_4bit or r.load_in_8bit) and (
            "relora_steps", "ReLoRA merges into the base at every restart, and a quantized base would be re-rounded each time",
            "use adapter: lora on an unquantized base"),
        r.relora_steps and r.peft_use_dora and ("relora_steps", "ReLoRA restarts are not defined for DoRA's magnitude vector",
                                                "remove peft_use_dora"),
        r.relora_warmup_steps is not None and not r.relora_steps and (
            "relora_warmup_steps", "has no effect without relora_steps", "set relora_steps"),
        r.relora_steps and r.relora_warmup_steps and r.relora_warmup_steps >= r.relora_steps and (
            "relora_warmup_steps", f"must be below relora_steps ({r.relora_steps})", "use a shorter warm-up"),
    ]


class TrainOptions(_Strict):
    output_dir: str = Field("./outputs/run", description="Where the model/adapter, tokenizer, recipe and metrics.json are written.")
    micro_batch_size: int = Field(2, ge=1, description="Rows per device per forward pass.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    num_epochs: float = Field(1.0, gt=0, description="Passes over the data (ignored when max_steps is set).")
    max_steps: Optional[int] = Field(None, ge=1, description="Stop after this many optimizer steps.")
    learning_rate: float = Field(2e-4, gt=0, le=1, description="Peak learning rate.")
    optimizer: str = Field("adamw_torch", description="transformers optimizer name (adamw_torch, adamw_bnb_8bit, paged_adamw_8bit, sgd, ...).")
    lr_scheduler: str = Field("cosine", description="transformers scheduler name (cosine, linear, constant, constant_with_warmup, ...).")
    warmup_steps: int = Field(0, ge=0, description="Linear warm-up steps.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clipping norm (0 = off).")
    seed: int = Field(42, description="Seed for data order, splits and init.")
    logging_steps: int = Field(1, ge=1, description="Log the loss every N steps.")
    save_steps: Optional[int] = Field(None, ge=1, description="Checkpoint every N steps (default: only the final model).")
    bf16: Precision = Field("auto", description="bfloat16 mixed precision; auto = on where the device supports it.")
    fp16: Optional[Precision] = Field(None, description="float16 mixed precision; auto/empty = on only for GPUs without bf16.")
    tf32: Precision = Field("auto", description="TF32 matmuls on Ampere+ GPUs; auto = on where supported.")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in backward to save memory.")
    eval_prompts: list[str] = Field(default_factory=list, description="ftkit: prompts generated before and after training to show what the model learned.")
    max_new_tokens: int = Field(48, ge=1, description="ftkit: tokens generated per prompt by infer and the before/after samples.")


RLMethod = Literal["dpo", "ipo", "kto", "orpo", "simpo"]


class RLOptions(_Strict):
    """Preference tuning (`rl:`): TRL's DPO/KTO/ORPO/CPO trainers; see ftkit/train/preference.py for the mapping."""

    rl: Optional[RLMethod] = Field(None, description="Preference tuning method: dpo, ipo, kto, orpo or simpo (empty = supervised fine-tuning).")
    rl_beta: Optional[float] = Field(None, gt=0, description="beta: how far the policy may move from the reference (dpo/kto default 0.1; ipo: tau, default 0.1; simpo default 2.0).")
    dpo_label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="Assumed fraction of flipped preference labels; > 0 selects TRL's robust DPO loss (rDPO).")
    rpo_alpha: Optional[float] = Field(None, ge=0, description="Weight of an NLL term on the chosen answer added to the dpo/ipo loss (RPO).")
    orpo_alpha: Optional[float] = Field(None, gt=0, description="ORPO's lambda: weight of the odds-ratio term next to the NLL loss (default 0.1).")
    kto_desirable_weight: float = Field(1.0, gt=0, description="KTO: loss weight of desirable (label true) rows.")
    kto_undesirable_weight: float = Field(1.0, gt=0, description="KTO: loss weight of undesirable (label false) rows.")
    simpo_gamma: float = Field(0.5, ge=0, description="SimPO: target reward margin gamma (TRL's simpo_gamma).")
    cpo_alpha: float = Field(0.0, ge=0, description="SimPO: weight of the NLL term on the chosen answer (0 = pure SimPO, 1 = CPO-SimPO).")
    test_datasets: list[DatasetSpec] = Field(default_factory=list, description="Held-out preference pairs (same types as datasets); with rl, logp(chosen) - logp(rejected) is measured on them before and after training.")

    @model_validator(mode="after")
    def _rl_consistent(self):
        """Options that only one method reads are errors elsewhere, rather than silently ignored."""
        only = {"orpo_alpha": ("orpo",), "rpo_alpha": ("dpo", "ipo"), "dpo_label_smoothing": ("dpo",),
                "kto_desirable_weight": ("kto",), "kto_undesirable_weight": ("kto",)}
        problems = []
        for key, methods in only.items():
            # a value other than the default (not "was the key written": a dumped recipe.yml writes every key)
            if getattr(self, key) != type(self).model_fields[key].default and self.rl not in methods:
                problems.append((key, f"is only read with rl: {' or '.join(methods)} (rl is {self.rl})",
                                 f"remove {key}, or set rl: {methods[0]}"))
        if self.test_datasets and not self.rl:
            problems.append(("test_datasets", "is only read with rl: (supervised runs use val_set_size)",
                             "remove test_datasets, or use val_set_size"))
        if self.rl == "orpo" and self.rl_beta is not None:
            problems.append(("rl_beta", "ORPO has no reference model, so no beta",
                             "use orpo_alpha for the odds-ratio weight"))
        if problems:
            raise ValueError("|".join(";".join(p) for p in problems))
        return self


class ScaleOptions(_Strict):
    """Distributed engines, experiment logging, checkpoints/resume, evaluation schedule and callbacks."""

    deepspeed: Optional[str] = Field(None, description="DeepSpeed JSON config, e.g. recipes/deepspeed/zero2.json (ZeRO-1/2/3 shipped; `auto` values are filled from the recipe).")
    fsdp: Optional[Union[list[str], str]] = Field(None, description="FSDP options, e.g. [full_shard, auto_wrap] (launch with `accelerate launch` or --num_processes).")
    fsdp_config: Optional[dict[str, Any]] = Field(None, description="FSDP settings (fsdp_ prefix optional): version, cpu_offload/offload_params, state_dict_type, transformer_layer_cls_to_wrap, ...")
    wandb_project: Optional[str] = Field(None, description="Log to Weights & Biases under this project.")
    wandb_entity: Optional[str] = Field(None, description="W&B team or user.")
    wandb_name: Optional[str] = Field(None, description="W&B run name.")
    wandb_run_id: Optional[str] = Field(None, description="W&B run id (set it to resume the same W&B run).")
    wandb_mode: Optional[Literal["online", "offline", "disabled"]] = Field(None, description="online, offline (writes a local run dir, no network) or disabled.")
    mlflow_tracking_uri: Optional[str] = Field(None, description="Log to MLflow here (a file store such as file:./mlruns works offline).")
    mlflow_experiment_name: Optional[str] = Field(None, description="MLflow experiment name.")
    use_comet: bool = Field(False, description="Log to Comet (needs the comet_ml package).")
    saves_per_epoch: Optional[int] = Field(None, ge=1, description="Checkpoints per epoch (instead of save_steps).")
    save_total_limit: Optional[int] = Field(None, ge=1, description="Keep only the newest N checkpoints.")
    resume_from_checkpoint: Optional[str] = Field(None, description="Checkpoint directory to resume from (weights, optimizer, scheduler, RNG, data position).")
    auto_resume_from_checkpoints: bool = Field(False, description="Resume from the newest complete checkpoint in output_dir, if any (half-written ones are skipped).")
    eval_steps: Optional[int] = Field(None, ge=1, description="Evaluate on the val_set_size split every N steps.")
    evals_per_epoch: Optional[int] = Field(None, ge=1, description="Evaluations per epoch (instead of eval_steps).")
    early_stopping_patience: Optional[int] = Field(None, ge=1, description="Stop after N evaluations without a lower eval loss.")
    loss_watchdog_threshold: Optional[float] = Field(None, gt=0, description="Stop when the training loss stays above this (or is NaN/inf) for loss_watchdog_patience logged steps.")
    loss_watchdog_patience: int = Field(3, ge=1, description="Consecutive logged steps above loss_watchdog_threshold before stopping.")
    neftune_noise_alpha: Optional[float] = Field(None, gt=0, description="NEFTune: noise added to embeddings during training (TRL/transformers implementation).")


class PackingOptions(_Strict):
    sample_packing: bool = Field(False, description="Pack whole examples into rows of up to sequence_len tokens; position_ids restart per example so attention never crosses examples.")
    eval_sample_packing: Optional[bool] = Field(None, description="Pack the eval set too (default: same as sample_packing).")
    pad_to_sequence_len: bool = Field(False, description="Pad every batch row to sequence_len (constant shapes; less memory fragmentation).")
    sample_packing_group_size: int = Field(100_000, ge=1, description="Examples binned together in one packing pass; each group ends in at most one partial row.")
    group_by_length: bool = Field(False, description="Unpacked path: batch examples of similar length to cut padding (loss may oscillate).")

    @model_validator(mode="after")
    def _packing_consistent(self):
        if self.group_by_length and self.sample_packing:
            raise ValueError("group_by_length;has no effect with sample_packing: true (packed rows have no padding "
                             "to save);remove group_by_length, or set sample_packing: false")
        return self


class Recipe(ModelOptions, DataOptions, PromptOptions, AdapterOptions, PeftOptions, TrainOptions, RLOptions,
             ScaleOptions, PackingOptions):
    """A validated recipe. `source` is the file it came from (for error messages)."""

    source: Optional[str] = Field(None, exclude=True, description="Internal: the file this recipe was read from.")

    @model_validator(mode="after")
    def _consistent(self):
        problems = []
        if self.max_steps is None and self.num_epochs <= 0:
            problems.append(("num_epochs", "must be > 0 when max_steps is not set", "set num_epochs: 1 or max_steps"))
        if self.lora_target_modules is not None and self.lora_target_linear:
            problems.append(("lora_target_linear", "conflicts with lora_target_modules",
                             "keep one: lora_target_linear: true adapts every linear layer"))
        if self.bf16 is True and self.fp16 is True:
            problems.append(("fp16", "bf16 and fp16 are both true", "choose one precision"))
        from ftkit.formats.options import (
            recipe_problems,  # dataset types and format options
        )

        problems += recipe_problems(self)
        problems += _scale_problems(self)
        if problems:
            raise ValueError("|".join(";".join(p) for p in problems))
        return self

    def dump(self) -> dict:
        """The resolved recipe as plain data (written next to the trained model)."""
        return self.model_dump(mode="json", exclude={"source"})


def _scale_problems(r) -> list[tuple[str, str, str]]:
    """Cross-field checks of ScaleOptions, as (key, problem, fix)."""
    out = []
    if r.save_steps and r.saves_per_epoch:
        out.append(("saves_per_epoch", "conflicts with save_steps", "keep one of save_steps / saves_per_epoch"))
    if r.eval_steps and r.evals_per_epoch:
        out.append(("evals_per_epoch", "conflicts with eval_steps", "keep one of eval_steps / evals_per_epoch"))
    if (r.eval_steps or r.evals_per_epoch or r.early_stopping_patience) and not r.val_set_size:
        key = "early_stopping_patience" if r.early_stopping_patience else "eval_steps" if r.eval_steps else "evals_per_epoch"
        out.append((key, "needs an evaluation split", "set val_set_size (e.g. 0.05)"))
    if r.early_stopping_patience and not (r.eval_steps or r.evals_per_epoch):
        out.append(("early_stopping_patience", "needs evaluations during training", "set eval_steps or evals_per_epoch"))
    if r.deepspeed and r.fsdp:
        out.append(("fsdp", "conflicts with deepspeed", "use one engine: deepspeed or fsdp"))
    if r.fsdp_config and not r.fsdp:
        out.append(("fsdp_config", "is set but fsdp is not", "add fsdp: [full_shard, auto_wrap]"))
    if r.resume_from_checkpoint and r.auto_resume_from_checkpoints:
        out.append(("auto_resume_from_checkpoints", "conflicts with resume_from_checkpoint", "keep one"))
    return out
