"""Every Axolotl option that is not a recipe field, with its status: alias, speed-only, internal or refused.

The recipe fields (recipe/*_options.py) are the implemented options. Every other name Axolotl's current
schema declares (and the older names its examples and docs still use) is listed here, so an Axolotl config
never meets "unknown option" for a real Axolotl key:

    alias       another name of an implemented option; the saved recipe.yml uses the canonical name
    speed_only  accepted and announced, never changes what is trained (kernels, memory placement, logging
                extras, other commands' settings, keys Axolotl itself reads nowhere)
    internal    values Axolotl computes or its launcher sets; accepted and ignored
    refused     changes what is trained and ftkit does not do it: an error naming the feature, why, and the
                nearest supported option. A value equal to Axolotl's default (what a dumped config holds) is
                accepted as "off".

Levels: "top", "dataset" (an entry of datasets/test_datasets), or the parent key of a nested option
(fsdp_config, trl, vllm, type, ...). Names here are facts about Axolotl's schema, in ftkit's words.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import yaml

ALIAS, SPEED_ONLY, INTERNAL, REFUSED, IMPLEMENTED = "alias", "speed_only", "internal", "refused", "implemented"
NO_DEFAULT = object()  # a refused option with no "off" value: any value is refused


@dataclass(frozen=True)
class Entry:
    """One catalogued Axolotl option."""

    level: str
    name: str
    status: str
    why: str = ""
    nearest: str | None = None  # refused: the closest thing ftkit supports
    canonical: str | None = None  # alias: the implemented option (dotted for nested ones, e.g. fsdp_config.version)
    default: Any = NO_DEFAULT  # refused/speed_only: Axolotl's value when unset (accepted as "off")
    convert: Callable[[Any], Any] | None = None  # alias: value -> canonical value (None result: unset)


CATALOGUE: dict[tuple[str, str], Entry] = {}


def _add(status: str, why: str, names: str, level: str = "top", nearest: str | None = None) -> None:
    """Names separated by whitespace; `name=value` records Axolotl's default (YAML) for that name."""
    for token in names.split():
        name, _, default = token.partition("=")
        value = yaml.safe_load(default) if default else (None if status == SPEED_ONLY else NO_DEFAULT)
        assert (level, name) not in CATALOGUE, (level, name)
        CATALOGUE[(level, name)] = Entry(level, name, status, why, nearest, default=value)


def _alias(name: str, canonical: str, level: str = "top", convert=None, why: str = "") -> None:
    assert (level, name) not in CATALOGUE, (level, name)
    CATALOGUE[(level, name)] = Entry(level, name, ALIAS, why, canonical=canonical, convert=convert)


def _attention(kernel: str):
    return lambda on: kernel if on else None  # `flash_attention: false` = unset


# ---------------------------------------------------------------- aliases
_alias("model_config", "overrides_of_model_config")
_alias("model_kwargs", "overrides_of_model_kwargs")
_alias("type_of_model", "model_type")
_alias("model_revision", "revision_of_model")
_alias("noisy_embedding_alpha", "neftune_noise_alpha")
_alias("dpo_beta", "rl_beta")
_alias("evaluation_strategy", "eval_strategy")
_alias("dataset_num_proc", "dataset_processes", why="Axolotl's current name")
_alias("fsdp_version", "fsdp_config.version")
_alias("chat_template_jinja", "chat_template", why="Jinja text, or a file holding it")
_alias("chat_template_jinja", "chat_template", level="dataset", why="Jinja text, or a file holding it")
for _flag, _kernel in (("flash_attention", "flash_attention_2"), ("sdp_attention", "sdpa"), ("eager_attention", "eager"),
                       ("flex_attention", "flex_attention"), ("xformers_attention", "xformers")):
    _alias(_flag, "attn_implementation", convert=_attention(_kernel), why=f"true = attn_implementation: {_kernel}")
_alias("beta", "rl_beta", level="trl")
for _key in ("activation_checkpointing", "auto_wrap_policy", "cpu_ram_efficient_loading", "offload_params",
             "reshard_after_forward", "state_dict_type", "sync_module_states", "transformer_layer_cls_to_wrap",
             "use_orig_params", "version"):
    _alias(f"fsdp_{_key}", f"fsdp_config.{_key}", level="fsdp_config", why="the fsdp_ prefix is optional")

# fsdp_config keys ftkit passes to TrainingArguments (distributed.py), and other nested keys of fields
NESTED_FIELDS = {
    "fsdp_config": "version activation_checkpointing offload_params sync_module_states cpu_ram_efficient_loading "
                   "use_orig_params state_dict_type auto_wrap_policy transformer_layer_cls_to_wrap min_num_params "
                   "reshard_after_forward",
    "special_tokens": "bos_token eos_token pad_token unk_token additional_special_tokens",
    "peft": "loftq_config",
    "peft.loftq_config": "loftq_bits loftq_iter",
}

# ---------------------------------------------------------------- speed only
_add(SPEED_ONLY, "a faster kernel for the same computation; ftkit uses transformers' kernels", """
    flash_attn_cross_entropy flash_attn_fuse_mlp flash_optimum use_kernels large_head_attention flash_attn_d512
    gemma4_hybrid_attn_impl sdpa_varlen fused_attn_kernel experts_implementation lora_mlp_kernel lora_qkv_kernel
    lora_o_kernel lora_embedding_kernel chunked_cross_entropy chunked_cross_entropy_num_chunks tiled_mlp
    tiled_mlp_num_shards tiled_mlp_use_original_mlp=true
    liger_rms_norm_gated liger_swiglu use_scattermoe use_sonicmoe use_dsv4_kernels use_glm_dsa_kernels
    dsv4_fp8_lora_kernel dsv4_shared_mlp_lora_kernel expert_backend moe_grouped_backend moe_dequant_chunk_size
    moe_bnb_fast dpo_use_liger_kernel dpo_padding_free batch_flattening flex_attn_compile_kwargs
    torch_compile_options deepcompile embeddings_skip_upcast precompute_ref_log_probs""")
_add(SPEED_ONLY, "memory and placement: where tensors live and how processes share the work, not what is computed", """
    experimental_skip_move_to_device=true qlora_sharded_model_loading=false lora_on_cpu torchdistx_path
    activation_offloading=false layer_offloading=false selective_checkpointing gc_steps torch_empty_cache_steps
    gc_collect_steps float32 gpu_memory_limit low_cpu_mem_usage dp_shard_size dp_replicate_size
    context_parallel_size sequence_parallel_degree heads_k_stride ring_attn_func tensor_parallel_size
    expert_parallel_size=1 expert_parallel_backend=deep_ep expert_parallel_num_nvl_bytes
    expert_parallel_num_rdma_bytes=0 expert_parallel_fallback_on_unsupported=true use_ray=false ray_run_name
    ray_num_workers=1 resources_per_worker ddp_timeout ddp_bucket_cap_mb ddp_broadcast_buffers
    ddp_find_unused_parameters sample_packing_mp_start_method num_dataset_shards_to_save dataset_keep_in_memory
    dataloader_pin_memory dataloader_num_workers dataloader_prefetch_factor""")
_add(SPEED_ONLY, "padding and batch layout only (padding is masked; ftkit's packer fills rows by length)", """
    pad_to_multiple_of multipack_real_batches sample_packing_bin_size=200 remove_unused_columns""")
_add(SPEED_ONLY, "logging and monitoring extras ftkit does not provide (it logs to tensorboard, W&B, MLflow, Comet)", """
    use_wandb use_mlflow mlflow_run_name hf_mlflow_log_artifacts comet_api_key comet_workspace comet_project_name
    comet_experiment_key comet_mode comet_online comet_experiment_config use_trackio trackio_project_name
    trackio_run_name trackio_space_id use_otel_metrics=false otel_metrics_host=localhost otel_metrics_port=8000
    use_tensorboard profiler_steps profiler_steps_start=0 include_tokens_per_second include_tkps=true
    use_swanlab=true swanlab_project swanlab_experiment_name swanlab_description swanlab_mode swanlab_workspace
    swanlab_api_key swanlab_log_model=false swanlab_web_host swanlab_api_host swanlab_lark_webhook_url
    swanlab_lark_secret swanlab_log_completions=true swanlab_completion_log_interval=100
    swanlab_completion_max_buffer=128 generate_samples=false num_generation_samples=3 generation_max_new_tokens=50
    generation_temperature=0.7 generation_top_p generation_top_k generation_prompt_ratio=0.5
    generation_do_sample=true do_causal_lm_eval eval_causal_lm_metrics do_bench_eval bench_dataset bench_split
    lm_eval_tasks lm_eval_batch_size=8 lm_eval_post_train=true lm_eval_model""")
_add(SPEED_ONLY, "a setting of another command (inference UI, merge, quantize) or of Axolotl's CLI", """
    gradio_title gradio_share gradio_server_name gradio_server_port gradio_max_new_tokens gradio_temperature
    merge_method=memory_efficient strict=false quantization tokenizer_save_jinja_files=true""")
_add(SPEED_ONLY, "extra checkpoints or hub transport of the data; the training is the same", """
    save_first_step dynamic_checkpoint push_dataset_to_hub hf_use_auth_token""")
_add(SPEED_ONLY, "Axolotl reads it nowhere (it has no effect there either)", """
    lr_div_factor max_prompt_len base_model_ignore_patterns debug flash_attn_fuse_qkv gptq_groupsize gptq_model_v1
    gptq_disable_exllama test_value sample_packing_seq_len_multiplier lora_exclude_modules rl_adapter_ref_model""")
_add(SPEED_ONLY, "a misspelling Axolotl ignores too (the epsilon stays 1e-8); write adam_epsilon to set it", "adam_eps")
_add(SPEED_ONLY, "Axolotl reads it nowhere (it has no effect there either)", "input_format field_thinking train_on_split",
     level="dataset")
_add(SPEED_ONLY, "datasets has no loading scripts to trust", "trust_remote_code=false", level="dataset")
_add(SPEED_ONLY, "tokenizes in pieces to save memory; the rows are the same", "preprocess_shards", level="dataset")
_add(SPEED_ONLY, "post-training quantization settings of another command", "weight_dtype activation_dtype quantize_embedding group_size",
     level="quantization")
_add(SPEED_ONLY, "trigger-file checkpoints: extra saves only", "enabled check_interval trigger_file_path",
     level="dynamic_checkpoint")
_add(SPEED_ONLY, "which activations are kept vs recomputed: memory only", "save save_sliding_window recompute_layer_types offload",
     level="selective_checkpointing")
_add(SPEED_ONLY, "Axolotl drops this FSDP1 setting (and FSDP2 has none); memory and speed only", """
    sharding_strategy fsdp_sharding_strategy limit_all_gathers fsdp_limit_all_gathers backward_prefetch
    fsdp_backward_prefetch forward_prefetch fsdp_forward_prefetch cpu_offload_pin_memory final_state_dict_type""",
     level="fsdp_config")
_add(SPEED_ONLY, "how the final FSDP weights are gathered for saving; the saved model is the same",
     "fsdp_final_state_dict_type")

# ---------------------------------------------------------------- internal
_add(INTERNAL, "a value Axolotl computes or its launcher sets; ftkit computes its own", """
    device world_size local_rank ddp is_preprocess preprocess_iterable total_num_tokens total_supervised_tokens
    axolotl_config_path capabilities env_capabilities model_config_type model_config_type_text torch_dtype
    is_multimodal processor_config attn_supports_packing attn_decontaminates_packing attn_uses_flash_lib
    attn_needs_dtype_cast inference mlp_kernel is_falcon_derived_model is_llama_derived_model
    is_mistral_derived_model is_qwen_derived_model sample_packing_eff_est""")
_add(INTERNAL, "merging is its own command here: ftkit merge-lora", "merge_lora")

# ---------------------------------------------------------------- refused
_R = REFUSED
_add(_R, "multimodal (image/audio) training is not supported", """
    processor_type processor_kwargs image_size image_resize_algorithm freeze_mm_modules""")
_add(_R, "multimodal role boundaries are not supported", "role_boundaries", nearest="datasets[].roles_to_train")
_add(_R, "multimodal role boundaries are not supported", "role start end include_start include_end", level="role_boundaries",
     nearest="datasets[].roles_to_train")
_add(_R, "the mistral-common tokenizer renders chats its own way, which ftkit does not use",
     "tokenizer_use_mistral_common", nearest="chat_template: tokenizer_default")
_add(_R, "a pre-quantized base in another format (torchao/compressed) is not loaded by ftkit",
     "model_quantization_config model_quantization_config_kwargs", nearest="load_in_4bit with bnb_config_kwargs")
_add(_R, "ternary-weight (1.58-bit) training is not implemented", "use_onebitllms")
_add(_R, "Axolotl's ReLoRA also prunes optimizer state and wraps the schedule; ftkit's ReLoRA restarts the adapter only",
     "relora relora_prune_ratio relora_prune_method=magnitude jagged_restart_steps jagged_restart_warmup_steps "
     "jagged_restart_anneal_steps relora_anneal_steps", nearest="relora_steps and relora_warmup_steps")
_add(_R, "per-group learning rates need optimizer parameter groups, not implemented",
     "embedding_lr embedding_lr_scale lr_groups loraplus_lr_ratio loraplus_lr_embedding=1e-6", nearest="learning_rate")
_add(_R, "per-group learning rates need optimizer parameter groups, not implemented", "name modules lr",
     level="lr_groups", nearest="learning_rate")
_add(_R, "settings of optimizers ftkit does not provide (CAME, Dion, Q-GaLore)", """
    adam_epsilon2 adam_beta3 dion_lr dion_momentum dion_rank_fraction=1.0 dion_rank_multiple_of=1 qgalore_rank=256
    qgalore_update_proj_gap=200 qgalore_scale=0.25 qgalore_proj_type=std qgalore_proj_quant=true qgalore_proj_bits=4
    qgalore_proj_group_size=256 qgalore_cos_threshold=0.4 qgalore_gamma_proj=2 qgalore_queue_size=5""",
     nearest="optimizer (transformers' optimizers) with adam_beta1/adam_beta2/adam_epsilon")
_add(_R, "LISA (training a random subset of layers at a time) is not implemented",
     "lisa_n_layers lisa_step_interval lisa_layers_attribute=model.layers", nearest="unfrozen_parameters")
_add(_R, "removed from Axolotl (it refuses it too)", "max_packed_sequence_len", nearest="sample_packing")
_add(_R, "removed from Axolotl (it refuses it too)", "rope_scaling", nearest="overrides_of_model_config: {rope_scaling: ...}")
_add(_R, "removed from Axolotl (it refuses it too)", "s2_attention flash_attn_rms_norm unsloth_cross_entropy_loss "
     "unsloth_lora_mlp unsloth_lora_qkv unsloth_lora_o unsloth_rms_norm unsloth_rope", nearest="attn_implementation")
_add(_R, "removed with TRL 0.29 (no longer an Axolotl option)", "dpo_use_logits_to_keep dpo_generate_during_eval dpo_norm_loss",
     nearest="rl: dpo")
_add(_R, "DPO loss variants beyond ftkit's mapping are not implemented", "dpo_loss_type dpo_loss_weights dpo_use_weighting",
     nearest="rl: ipo, rpo_alpha (adds the sft loss) or dpo_label_smoothing (robust DPO)")
_add(_R, "a custom trainer class is arbitrary code", "trainer_cls")
_add(_R, "online RL (generation with a vLLM server, reward functions) is not implemented", "vllm ebft nemo_gym_enabled=true "
     "nemo_gym_dir nemo_gym_auto_clone nemo_gym_config_paths nemo_gym_head_port=11000 nemo_gym_server_timeout=360 "
     "nemo_gym_verify_timeout=30 nemo_gym_run_timeout=300 nemo_gym_datasets nemo_gym_auto_start=true "
     "nemo_gym_model_name nemo_gym_multi_turn nemo_gym_max_turns", nearest="rl: dpo (offline preference pairs)")
_add(_R, "quantization-aware training (fake-quantized forward) is not implemented", "qat", nearest="adapter: qlora")
_add(_R, "reward-model and process-reward-model training (a classification head) is not implemented",
     "reward_model process_reward_model center_rewards_coefficient num_labels", nearest="rl: dpo")
_add(_R, "training straight from raw rows without preparation is not implemented", "skip_prepare_dataset=false",
     nearest="datasets (prepared and cached by ftkit)")
_add(_R, "streaming pre-training datasets are not implemented", """
    pretraining_dataset pretrain_multipack_attn=true pretraining_sample_concatenation streaming
    streaming_multipack_buffer_size=10000 pretrain_multipack_buffer_size""",
     nearest="datasets with type: completion (long rows are split) and sample_packing")
_add(_R, "fp8 matmuls change the numerics", "fp8 fp8_enable_fsdp_float8_all_gather", nearest="bf16")
_add(_R, "fp32 copies of the norm layers change parameter precision", "fp32_norms fp32_norm_classes", nearest="bf16: false (fp32 training)")
_add(_R, "an order-preserving packer is not implemented", "sample_packing_sequentially", nearest="sample_packing")
_add(_R, "training in the data's own order (no shuffled sampler) is not implemented", "curriculum_sampling",
     nearest="shuffle_merged_datasets: false (rows keep their order when mixed; batches are still drawn at random)")
_add(_R, "PoSE (positional skip-wise training) rewrites position ids", "use_pose pose_split_on_token_ids pose_max_context_len pose_num_chunks",
     nearest="overrides_of_model_config: {rope_scaling: ...}")
_add(_R, "quantized MoE expert weights are not implemented", "quantize_moe_experts=false", nearest="load_in_4bit")
_add(_R, "SageAttention approximates attention (int8 scores)", "sage_attention=false", nearest="attn_implementation: sdpa")
_add(SPEED_ONLY, "plugins only add options; each of those has its own status (a plugin that changes training is refused)",
     "plugins")
_add(_R, "scalable softmax changes the attention function", "scaling_softmax scaling_softmax_factor scaling_softmax_bias")
_add(_R, "EAFT changes the loss", "use_eaft eaft_alpha=1.0 eaft_k=20")
_add(_R, "token-scaled Liger loss changes the loss", "liger_use_token_scaling", nearest="liger_* kernels (speed only)")
_add(_R, "model surgery on Llama 4 experts is not implemented", "llama4_linearized_experts")
_add(_R, "overriding tokenizer files' token texts is not implemented", "added_tokens_overrides", nearest="tokens, special_tokens")
_add(_R, "re-initialising untrained token embeddings from data is not implemented", "fix_untrained_tokens")
_add(_R, "DenseMixer changes MoE router gradients", "dense_mixer=true")
_add(_R, "the diffusion objective is not implemented", "diffusion")
_add(_R, "capped expert parallelism drops routed tokens", "expert_parallel_token_capacity")
_add(_R, "Grokfast filters the gradients", "grokfast_alpha=0.98 grokfast_lamb=2.0")
_add(_R, "remote training services are not supported", "hatchery")
_add(_R, "knowledge distillation is not implemented", """
    kd_trainer kd_ce_alpha kd_alpha kd_temperature kd_beta=0.0 kd_normalize_topk kd_online_server_base_url
    kd_online_topk kd_online_server kd_online_timeout=120 kd_temperature_min""")
_add(_R, "mixed low-precision weights (fp8/nvfp4 outside the experts) are not implemented", """
    nonexpert_quantization dsv4_fp8_nonexpert_mode dsv4_bf16_all dsv4_fp4_grouped_mode gemma4_fp8_nonexpert
    gemma4_nf4_nonexpert nvfp4_merge_aware nvfp4_merge_aware_start_step""", nearest="load_in_4bit")
_add(_R, "sparse fine-tuning (llm-compressor recipes) is not implemented", "llmcompressor")
_add(_R, "MoRA is a different adapter", "mora", nearest="adapter: lora")
_add(_R, "Spectrum picks layers from signal-to-noise files ftkit does not compute",
     "spectrum_top_fraction=0.5 spectrum_model_name", nearest="unfrozen_parameters")
_add(_R, "a separate length limit for test_datasets is not implemented", "eval_sequence_len", nearest="sequence_len")
_add(_R, "a minimum row length other than Axolotl's 2 tokens is not implemented (ftkit drops rows with nothing to train)",
     "min_sample_len=2")
_add(_R, "moving <think> blocks into a reasoning field is not implemented", "split_thinking template_thinking_key",
     level="dataset", nearest="keep the reasoning in the message content")
_add(_R, "character-offset masks inside a message are not implemented", "message_field_training_detail", level="dataset",
     nearest="message_field_training (a whole message)")
_add(_R, "the messages strategy's input transforms are not implemented", "input_transform", level="dataset",
     nearest="type: chat_template")
_add(_R, "knowledge-distillation datasets are not implemented", "logprobs_field temperature", level="dataset")
_add(_R, "process-reward-model datasets are not implemented", "step_separator max_completion_length train_on_last_step_only",
     level="dataset")
_add(_R, "synthetic benchmark datasets are not implemented", "length=1000 sequence_length min_input_id=100 max_input_id seed",
     level="dataset", nearest="data_samples/ files")
_add(_R, "custom preference formats (type: as a mapping) are not implemented", """
    field_prompt prompt_format field_chosen field_rejected chosen_format rejected_format field_completion field_label
    completion_format""", level="type", nearest="a preference type such as chat_template.prompt_pairs (data_samples/PREFERENCE.md)")
_add(_R, "FSDP mixed-precision policies set parameter and reduction dtypes", "mixed_precision_policy", level="fsdp_config",
     nearest="bf16")
_add(_R, "streaming pre-training datasets are not implemented", "text_column=text skip", level="pretraining_dataset",
     nearest="datasets with type: completion")
_add(_R, "online RL (GRPO and friends) is not implemented", """
    max_completion_length use_vllm=false vllm_mode vllm_server_host=0.0.0.0 vllm_server_port=8000 vllm_server_timeout
    vllm_guided_decoding_regex reward_funcs reward_weights generation_batch_size num_generations log_completions=false
    num_completions_to_print importance_sampling_level sync_ref_model=false ref_model_mixup_alpha=0.9
    ref_model_sync_steps=64 scale_rewards=true temperature top_p top_k min_p repetition_penalty generation_kwargs
    chat_template_kwargs num_iterations epsilon epsilon_high use_liger_loss loss_type mask_truncated_completions=false
    vllm_enable_sleep_mode rollout_func multi_objective_aggregation use_data_producer=false async_prefetch=false
    prefetch_depth vllm_sync_interval streaming_partial_batch streaming_min_groups vllm_importance_sampling_correction
    vllm_importance_sampling_mode vllm_importance_sampling_cap off_policy_mask_threshold use_bias_correction_kl
    reward_num_workers=1 replay_buffer_size=0 replay_recompute_logps=true reroll_start_fraction=1.0
    reroll_max_groups=1 skip_zero_advantage_batches=true vllm_lora_sync=false""", level="trl", nearest="rl: dpo")
_add(_R, "online RL's vLLM generation server is not implemented", """
    device=auto tensor_parallel_size data_parallel_size gpu_memory_utilization=0.9 dtype=auto max_model_len
    enable_prefix_caching host=0.0.0.0 port=8000 enable_reasoning reasoning_parser enforce_eager serve_module
    worker_extension_cls""", level="vllm", nearest="rl: dpo")
_add(_R, "EBFT is not implemented", """
    feature_layers=[0.25,0.5,0.75] embed_method=last_token use_whitening=false alignment_coef=1.0 diversity_coef=1.0
    ce_coef=0.0 adaptive_max_tokens=true gt_length_multiplier=1.5 mode=structured stride=8 context_length=8
    generate_max_len=8 n_samples_per_prompt=4 temperature=0.6 top_p=1.0 rl_coef=1.0 advantage_estimator=rloo
    min_completion_prefix=0""", level="ebft")
_add(_R, "quantization-aware training is not implemented", "activation_dtype weight_dtype quantize_embedding group_size "
     "fake_quant_after_n_steps", level="qat", nearest="adapter: qlora")
_add(_R, "the diffusion objective is not implemented", """
    noise_schedule min_mask_ratio max_mask_ratio num_diffusion_steps eps importance_weighting mask_token_id
    mask_token_str generate_samples generation_interval num_generation_samples generation_steps
    generation_temperature generation_max_length""", level="diffusion")
_add(_R, "remote training services are not supported", """
    backend base_url api_key project_id lora_rank train_attn train_mlp train_unembed loss_fn loss_fn_config pipeline
    max_sample_tokens sample_temperature num_samples reward_funcs save_steps save_name_prefix future_timeout""",
     level="hatchery")
_add(_R, "MoRA is a different adapter", "use_mora mora_type", level="mora", nearest="adapter: lora")
_add(_R, "sparse fine-tuning (llm-compressor recipes) is not implemented", "recipe save_compressed", level="llmcompressor")
_add(_R, "online RL settings (GRPO and friends) are not implemented", "trl", nearest="rl: dpo")

# Blocks whose keys are checked one by one (a dumped Axolotl config writes them with every default):
# only values other than Axolotl's defaults are refused. Other refused blocks are refused when present.
CHECKED_BLOCKS = ("trl", "vllm")

# ---------------------------------------------------------------- refused values of implemented options
_ONLINE_RL = ("online RL (generation + reward functions) is not implemented", "rl: dpo (offline preference pairs)")
_NOT_PROVIDED_TEMPLATE = ("ftkit has no copy of this chat template", "chat_template: tokenizer_default (the model's own "
                          "tokenizer ships it), or a Jinja text")
REFUSED_VALUES: dict[tuple[str, str], dict[Any, tuple[str, str]]] = {
    ("top", "rl"): {v: _ONLINE_RL for v in ("grpo", "gdpo", "ebft")},
    ("top", "adapter"): {"llama-adapter": ("the LLaMA-Adapter (prefix tuning) is not implemented", "adapter: lora")},
    ("top", "lr_scheduler"): {v: (f"Axolotl's {v} schedule is not implemented", "lr_scheduler: cosine (with cosine_min_lr_ratio)")
                              for v in ("one_cycle", "rex")},
    ("top", "optimizer"): {v: ("this optimizer is Axolotl's own, not a transformers optimizer",
                               "optimizer: adamw_torch_fused, adamw_bnb_8bit, ...") for v in (
        "optimi_adamw", "ao_adamw_4bit", "ao_adamw_8bit", "ao_adamw_fp8", "adopt_adamw", "came_pytorch", "muon", "dion",
        "sinkgd", "flash_adamw", "flash_adam", "flash_sgd", "flash_sgdw", "flash_lion", "q_galore_adamw8bit")},
    ("top", "attn_implementation"): {v: ("this attention kernel approximates attention (low-precision scores)", "sdpa")
                                     for v in ("sage", "fp8", "kernels-community/sage-attention")},
    ("top", "excess_length_strategy"): {"raise": ("stopping at the first too-long row is not implemented",
                                                  "drop (too-long rows are counted in the data summary)")},
    ("top", "save_safetensors"): {False: ("ftkit writes safetensors only (Axolotl refuses false too)", "save_safetensors: true")},
    ("top", "bf16"): {"full": ("pure-bf16 training with bf16 evaluation is not implemented", "bfloat16: true")},
    ("top", "chat_template"): {v: _NOT_PROVIDED_TEMPLATE for v in (
        "alpaca", "mistral_v1", "mistral_v2v3", "mistral_v3_tekken", "mistral_v7_tekken", "cohere", "llama3_2_vision",
        "llama4", "phi_35", "phi_4", "deepseek_v2", "deepseek_v3", "jamba", "qwen3_5", "falcon_h1", "nemotron_h", "exaone",
        "exaone4", "metharme", "pixtral", "llava", "qwen2_vl", "gemma3n", "gemma4", "gemma4_unified", "command_a",
        "command_a_tool_use", "command_a_rag", "aya")},
}
REFUSED_VALUES[("dataset", "chat_template")] = REFUSED_VALUES[("top", "chat_template")]
# dataset types by prefix (what Axolotl loads them with)
REFUSED_TYPES = {
    "bradley_terry": ("reward-model training is not implemented", "rl: dpo with chosen/rejected pairs"),
    "stepwise_supervised": ("process-reward-model training is not implemented", "rl: dpo"),
    "pretrain": ("streaming pre-training datasets are not implemented", "type: completion"),
    "rwd": ("online RL reward transforms are not implemented", "rl: dpo"),
    "messages": ("the messages strategy is not implemented", "type: chat_template"),
    "user_defined": ("custom preference formats are not implemented", "a type from data_samples/PREFERENCE.md"),
}
# plugins: speed-only ones are accepted; those that change training are refused (matched on the class path)
SPEED_PLUGINS = ("liger", "cut_cross_entropy", "kernels", "lm_eval", "swanlab", "expert_parallel", "moe")
REFUSED_PLUGINS = {
    "spectrum": "Spectrum (layers picked from signal-to-noise files)", "kd": "knowledge distillation",
    "grokfast": "Grokfast gradient filtering", "diffusion": "the diffusion objective", "mora": "MoRA adapters",
    "hatchery": "remote training", "nemo_gym": "online RL environments", "llm_compressor": "sparse fine-tuning",
    "densemixer": "DenseMixer router gradients", "ebft": "EBFT",
}


def lookup(level: str, name: str) -> Entry | None:
    return CATALOGUE.get((level, name))


def refused_value(level: str, name: str, value) -> tuple[str, str] | None:
    """(why, nearest) when this value of an option is a feature ftkit refuses."""
    table = REFUSED_VALUES.get((level, name), {})
    try:
        if value in table:
            return table[value]
    except TypeError:  # unhashable values (lists, mappings) are never refused values
        return None
    if level == "dataset" and name == "type" and isinstance(value, str):
        head = value.split(".")[0].split(":")[0]
        if head in REFUSED_TYPES:
            return REFUSED_TYPES[head]
    return None


def plugin_status(path: str) -> tuple[str, str]:
    """(status, why) of one `plugins:` entry, e.g. axolotl.integrations.liger.LigerPlugin -> speed_only."""
    parts = path.lower().split(".")
    for key, feature in REFUSED_PLUGINS.items():
        if key in parts or any(p.startswith(key) for p in parts[2:3]):
            return REFUSED, f"{feature} is not implemented"
    if any(key in p for key in SPEED_PLUGINS for p in parts):
        return SPEED_ONLY, "its options are kernels or logging (each listed with its own status)"
    return REFUSED, "an Axolotl plugin ftkit does not know changes training in ways ftkit cannot check"


def counts(field_names: dict[str, list[str]]) -> dict[str, int]:
    """Options by status: the catalogue plus the implemented ones (recipe fields and nested field keys)."""
    out = {IMPLEMENTED: 0, ALIAS: 0, SPEED_ONLY: 0, INTERNAL: 0, REFUSED: 0}
    for entry in CATALOGUE.values():
        out[entry.status] += 1
    out[IMPLEMENTED] += sum(len(v) for v in field_names.values())
    return out
