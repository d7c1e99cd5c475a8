"""Recipe options of the `rl:` methods and the reward model: TRL's DPO/KTO/ORPO/CPO trainers
(ftkit/plugins/preference.py), GRPOTrainer with the `trl:` block (ftkit/plugins/grpo.py) and RewardTrainer for
`reward_model: true` (ftkit/plugins/reward.py)."""
from __future__ import annotations

from typing import Any, Literal, Optional, Union

from ftkit.recipe.base import GRPO, REWARD, Strict, option, problem

RLMethod = Literal["dpo", "ipo", "kto", "orpo", "simpo", "grpo", "gdpo"]
GRPOLoss = Literal["grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo", "luspo", "vespo"]
TRL_GENERATIONS = 8  # GRPOConfig.num_generations when the recipe is silent


class TRLBlock(Strict):
    """`trl:` (Axolotl's block of GRPO settings): passed to TRL's GRPOConfig under the same names. Empty = TRL's
    default. trl.beta is rl_beta; vLLM settings are speed only (ftkit generates with transformers) and the async
    pipeline is refused (ftkit/axolotl/catalogue.yaml)."""

    reward_funcs: Optional[list[str]] = option(None, description="Reward functions by import path, e.g. rewards.correct_sum: a module next to the recipe (or in the working directory) defining fn(completions, **columns) -> list[float]; or a local reward-model directory (e.g. a reward_model: true run's output_dir).")
    reward_weights: Optional[list[float]] = option(None, description="One weight per reward function (default: 1.0 each).")
    multi_objective_aggregation: Optional[Literal["sum_then_normalize", "normalize_then_sum"]] = option(None, description="Weigh and sum the rewards, then normalize per group (rl: grpo's default), or normalize each reward first (rl: gdpo's default).")
    num_generations: Optional[int] = option(None, ge=2, description=f"Completions sampled per prompt (a group; default {TRL_GENERATIONS}). micro_batch_size x gradient_accumulation_steps (or generation_batch_size) counts completions and must be a multiple of it.")
    generation_batch_size: Optional[int] = option(None, ge=1, description="Completions generated at once (default micro_batch_size x gradient_accumulation_steps x processes); a multiple of num_generations.")
    max_completion_length: Optional[int] = option(None, ge=1, description="Most tokens generated per completion (default 512, TRL's).")
    temperature: Optional[float] = option(None, gt=0, description="Sampling temperature (default 1.0).")
    top_p: Optional[float] = option(None, gt=0, le=1, description="Nucleus sampling (default 1.0: off).")
    top_k: Optional[int] = option(None, ge=0, description="Top-k sampling (default 0: off).")
    min_p: Optional[float] = option(None, ge=0, le=1, description="Minimum token probability relative to the most likely token (default off).")
    repetition_penalty: Optional[float] = option(None, gt=0, description="Penalty for tokens already in the prompt or completion (default 1.0: off).")
    generation_kwargs: Optional[dict[str, Any]] = option(None, description="More GenerationConfig arguments (e.g. suppress_tokens); they override the ones above.")
    chat_template_kwargs: Optional[dict[str, Any]] = option(None, description="Extra arguments of apply_chat_template when rendering prompts, e.g. {enable_thinking: false}.")
    num_iterations: Optional[int] = option(None, ge=1, description="Optimization passes over each generated batch (GRPO's mu; default 1).")
    epsilon: Optional[float] = option(None, gt=0, description="PPO clipping range of the probability ratio (default 0.2).")
    epsilon_high: Optional[float] = option(None, gt=0, description="Upper clipping bound (default: epsilon; DAPO uses 0.28).")
    loss_type: Optional[GRPOLoss] = option(None, description="How token losses are averaged: grpo (per sequence), bnpo, dr_grpo, dapo (TRL's default: per active token), cispo, sapo, luspo, vespo.")
    scale_rewards: Union[bool, Literal["group", "batch", "none"]] = option(True, description="Divide advantages by the reward std of the group (true/group), of the batch, or not at all (false/none: Dr. GRPO).")
    mask_truncated_completions: bool = option(False, description="Leave completions cut at max_completion_length out of the loss.")
    importance_sampling_level: Optional[Literal["token", "sequence"]] = option(None, description="Probability ratios per token (GRPO, default) or per sequence (GSPO).")
    off_policy_mask_threshold: Optional[float] = option(None, gt=0, description="Leave out of the loss completions with a negative advantage whose KL to the sampling policy exceeds this (DeepSeek-V3.2's off-policy masking; default off).")
    use_bias_correction_kl: Optional[bool] = option(None, description="Weigh the KL term by the probability ratio (unbiased reverse-KL gradient; TRL's default true; matters with rl_beta > 0).")
    sync_ref_model: bool = option(False, description="Move the reference model towards the policy every ref_model_sync_steps (needs rl_beta > 0 and a full fine-tune).")
    ref_model_mixup_alpha: float = option(0.9, ge=0, le=1, description="With sync_ref_model: reference = alpha x policy + (1 - alpha) x reference.")
    ref_model_sync_steps: int = option(64, ge=1, description="With sync_ref_model: steps between reference updates.")
    log_completions: bool = option(False, description="Print a table of prompts, completions and rewards at each logged step.")
    num_completions_to_print: Optional[int] = option(None, ge=1, description="Rows of that table (default all).")


class RLOptions(Strict):
    """Each option names the methods that read it; a value set for another method is an error (schema.py)."""

    rl: Optional[RLMethod] = option(None, description="Preference tuning (dpo, ipo, kto, orpo, simpo) or online RL (grpo; gdpo = grpo normalizing each reward before summing); empty = supervised fine-tuning.")
    rl_beta: Optional[float] = option(None, gt=0, methods=("dpo", "ipo", "kto", "simpo") + GRPO, description="beta: how far the policy may move from the reference (dpo/kto default 0.1; ipo: tau, default 0.1; simpo default 2.0; grpo: the KL coefficient, default 0: no reference model). Axolotl: also dpo_beta, trl.beta.")
    dpo_label_smoothing: float = option(0.0, ge=0, lt=0.5, methods=("dpo",), description="Assumed fraction of flipped preference labels; > 0 selects TRL's robust DPO loss (rDPO).")
    rpo_alpha: Optional[float] = option(None, ge=0, methods=("dpo", "ipo"), description="Weight of an NLL term on the chosen answer added to the dpo/ipo loss (RPO).")
    orpo_alpha: Optional[float] = option(None, gt=0, methods=("orpo",), description="ORPO's lambda: weight of the odds-ratio term next to the NLL loss (default 0.1).")
    kto_desirable_weight: float = option(1.0, gt=0, methods=("kto",), description="KTO: loss weight of desirable (label true) rows.")
    kto_undesirable_weight: float = option(1.0, gt=0, methods=("kto",), description="KTO: loss weight of undesirable (label false) rows.")
    simpo_gamma: float = option(0.5, ge=0, methods=("simpo",), description="SimPO: target reward margin gamma (TRL's simpo_gamma).")
    cpo_alpha: float = option(0.0, ge=0, methods=("simpo",), description="SimPO: weight of the NLL term on the chosen answer (0 = pure SimPO, 1 = CPO-SimPO, TRL's default).")
    trl: TRLBlock = option(default_factory=TRLBlock, methods=GRPO, description="GRPO settings (Axolotl's trl: block): reward_funcs, num_generations, max_completion_length, ... (table below).")
    reward_model: bool = option(False, description="Train a reward model: a sequence-classification head (num_labels 1) scores prompt + answer, trained so chosen scores above rejected (TRL's RewardTrainer; datasets as for rl: dpo, or bradley_terry.chat_template).")
    num_labels: Optional[int] = option(None, ge=1, methods=REWARD, description="Outputs of the classification head; a reward model has 1 (the default with reward_model: true).")
    center_rewards_coefficient: Optional[float] = option(None, ge=0, methods=REWARD, description="Reward model: weight of a penalty on the squared scores, pulling them towards mean zero (TRL recommends 0.01).")


def method_problems(r) -> list:
    """GRPO and reward-model settings that TRL would reject deep inside its trainer, as recipe problems."""
    t, p = r.trl, problem
    generations = t.num_generations or TRL_GENERATIONS
    batch = t.generation_batch_size or r.micro_batch_size * r.gradient_accumulation_steps
    funcs = t.reward_funcs or []
    grpo = [
        not funcs and p("trl.reward_funcs", "rl: grpo needs at least one reward function",
                        "add trl: {reward_funcs: [rewards.my_reward]} with rewards.py next to the recipe"),
        t.reward_weights is not None and len(t.reward_weights) != len(funcs) and p(
            "trl.reward_weights", f"has {len(t.reward_weights)} weights for {len(funcs)} reward functions",
            "give one weight per reward function"),
        batch % generations and p(
            "trl.num_generations", f"{generations} completions per prompt do not divide the {batch} completions "
            "generated per step (generation_batch_size, else micro_batch_size x gradient_accumulation_steps)",
            f"make the step's completions a multiple of {generations}, e.g. micro_batch_size: {generations}"),
        r.eval_batch_size and r.eval_batch_size % generations and p(
            "eval_batch_size", f"{r.eval_batch_size} does not hold whole groups of {generations} completions",
            f"use a multiple of {generations}, or remove it (default: one group)"),
        t.sync_ref_model and not r.rl_beta and p("trl.sync_ref_model", "there is no reference model with rl_beta 0",
                                                 "set rl_beta (e.g. 0.04), or remove sync_ref_model"),
    ] if r.rl in GRPO else []
    reward = [
        r.num_labels not in (None, 1) and p("num_labels", f"a reward model has one output (a score), not {r.num_labels}",
                                            "use num_labels: 1 (process reward models, 2 labels per step, are not implemented)"),
        "SequenceClassification" not in r.model_type and p(
            "model_type", f"{r.model_type} has no classification head to score with",
            "use AutoModelForSequenceClassification (the default with reward_model: true)"),
        r.rl and p("reward_model", f"cannot be combined with rl: {r.rl}", "train the reward model in its own run"),
        r.eval_prompts and p("eval_prompts", "a reward model scores text; it does not generate",
                             "remove eval_prompts (held-out pairs are scored before and after instead)"),
    ] if r.reward_model else []
    return grpo + reward
