"""`rl: dpo | ipo | kto | orpo | simpo`: recipe -> TRL preference trainer -> saved run with reward margins.

TRL does the training; ftkit maps the recipe onto TRL's configs (Axolotl's option names -> TRL 1.16's):

    rl: dpo    DPOTrainer  loss_type [sigmoid]   rl_beta -> beta; dpo_label_smoothing > 0 -> loss_type [robust]
                                                 + label_smoothing; rpo_alpha -> + [sft] with loss_weights [1, a]
    rl: ipo    DPOTrainer  loss_type [ipo]       rl_beta -> beta (IPO's tau)
    rl: kto    KTOTrainer                        rl_beta -> beta; kto_(un)desirable_weight -> (un)desirable_weight
    rl: orpo   trl.experimental ORPOTrainer      orpo_alpha -> beta (ORPO's lambda); no reference model
    rl: simpo  trl.experimental CPOTrainer       loss_type simpo; rl_beta -> beta, simpo_gamma, cpo_alpha

Reference model: with LoRA the base model is given to TRL with a peft_config, and TRL computes the
reference log-probs with the adapter disabled (no second copy). With a full fine-tune ftkit passes
an explicit frozen copy taken before training (TRL would otherwise reload base_model from disk, which
misses resized embeddings). ORPO and SimPO need no reference.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

from ftkit import models
from ftkit.data import preference as preference_data
from ftkit.infer.generate import generate
from ftkit.log import log
from ftkit.models import adapters
from ftkit.recipe import Recipe
from ftkit.train import callbacks as train_callbacks
from ftkit.train import preference_report

HISTORY_KEYS = {"loss": "loss", "rewards/margins": "margin", "rewards/accuracies": "accuracy",
                "logps/chosen": "logps_chosen", "logps/rejected": "logps_rejected",
                "rewards/chosen": "reward_chosen", "rewards/rejected": "reward_rejected",
                "nll_loss": "nll", "log_odds_ratio": "log_odds_ratio", "kl": "kl"}  # ORPO/SimPO NLL, ORPO, KTO
NEEDS_REFERENCE = ("dpo", "ipo", "kto")


@dataclass
class PreferenceResult:
    """What a preference run showed; also written to output_dir/metrics.json."""

    output_dir: str
    method: str
    steps: int = 0
    seconds: float = 0.0
    history: list = field(default_factory=list)  # one dict per logged step: step, loss, margin, logps_chosen, ...
    heldout_before: dict = field(default_factory=dict)  # preference_report.pair_scores on held-out pairs
    heldout_after: dict = field(default_factory=dict)
    samples_before: list = field(default_factory=list)
    samples_after: list = field(default_factory=list)
    trainable_params: int = 0
    total_params: int = 0
    data: dict = field(default_factory=dict)

    def series(self, key: str) -> list[float]:
        """One logged metric over steps, e.g. series('margin')."""
        return [h[key] for h in self.history if h.get(key) is not None]

    def summary(self) -> str:
        m = self.series("margin")
        lines = [f"{self.method}: {self.steps} steps in {self.seconds:.1f}s "
                 f"({self.trainable_params:,} of {self.total_params:,} params trained)"]
        if m:
            lines.append(f"reward margin {m[0]:+.3f} -> {m[-1]:+.3f} (first -> last logged step)")
        if self.heldout_before:
            b, a = self.heldout_before, self.heldout_after
            lines.append(f"held-out logp(chosen) - logp(rejected): {b['margin']:+.2f} -> {a['margin']:+.2f}; "
                         f"pairs preferred {b['accuracy']:.0%} -> {a['accuracy']:.0%} (n={b['n']})")
        for before, after in zip(self.samples_before, self.samples_after):
            lines += [f"prompt: {before['prompt']}", f"  before: {before['completion']!r}",
                      f"  after:  {after['completion']!r}"]
        return "\n".join(lines)


def rl_config(recipe: Recipe, precision: models.Precision):
    """The recipe as the method's TRL config (TrainingArguments options shared with SFT)."""
    from ftkit.train.args import training_args

    common = dict(training_args(recipe, precision), max_length=recipe.sequence_len)
    method = recipe.rl
    if method in ("dpo", "ipo"):
        from trl import DPOConfig

        loss, extra = ["ipo" if method == "ipo" else "sigmoid"], {}
        if recipe.dpo_label_smoothing > 0:  # TRL 1.16's sigmoid loss has no smoothing; robust DPO takes it
            log.info(f"dpo_label_smoothing={recipe.dpo_label_smoothing}: using TRL's robust DPO loss")
            loss, extra = ["robust"], {"label_smoothing": recipe.dpo_label_smoothing}
        if recipe.rpo_alpha:  # RPO = the preference loss + rpo_alpha x NLL of the chosen answer
            loss, extra = loss + ["sft"], {**extra, "loss_weights": [1.0, recipe.rpo_alpha]}
        return DPOConfig(**common, beta=recipe.rl_beta or 0.1, loss_type=loss, **extra)
    if method == "kto":
        from trl import KTOConfig

        return KTOConfig(**common, beta=recipe.rl_beta or 0.1, desirable_weight=recipe.kto_desirable_weight,
                         undesirable_weight=recipe.kto_undesirable_weight)
    if method == "orpo":
        from trl.experimental.orpo import ORPOConfig

        return ORPOConfig(**common, beta=recipe.orpo_alpha or 0.1, remove_unused_columns=False)
    from trl.experimental.cpo import CPOConfig

    return CPOConfig(**common, loss_type="simpo", beta=recipe.rl_beta or 2.0, simpo_gamma=recipe.simpo_gamma,
                     cpo_alpha=recipe.cpo_alpha, remove_unused_columns=False)


def trainer_class(method: str):
    if method in ("dpo", "ipo"):
        from trl import DPOTrainer as T
    elif method == "kto":
        from trl import KTOTrainer as T
    elif method == "orpo":
        from trl.experimental.orpo import ORPOTrainer as T
    else:
        from trl.experimental.cpo import CPOTrainer as T
    return T


def load_policy(recipe: Recipe, tokenizer, precision):
    """(model, peft_config, ref_model): the base model; LoRA as a peft_config TRL applies; a reference if needed."""
    base_recipe = recipe.model_copy(update={"adapter": None})  # TRL wraps LoRA itself (its no-copy reference)
    model = models.load_model(base_recipe, tokenizer, precision)
    if recipe.adapter == "lora":
        return model, adapters.lora_config(recipe, model), None
    ref = None
    if recipe.rl in NEEDS_REFERENCE:
        ref = copy.deepcopy(model).eval().requires_grad_(False)
        log.info("full fine-tune: the reference model is a frozen copy of the base model")
    return model, None, ref


def _history(log_history: list[dict]) -> list[dict]:
    return [{"step": h["step"], **{short: h.get(key) for key, short in HISTORY_KEYS.items()}}
            for h in log_history if "loss" in h and "step" in h]


def run_preference(recipe: Recipe) -> PreferenceResult:
    """Preference-tune as the recipe says and report how the margin and held-out preferences moved."""
    from ftkit.train.save import save_run

    t0 = time.time()
    precision = models.resolve_precision(recipe)  # bf16/fp16/tf32: auto -> what this device has
    tokenizer = models.load_tokenizer(recipe)  # special tokens, pad check
    preference_data.apply_chat_template(recipe, tokenizer)  # the template TRL and inference share
    data = preference_data.prepare(recipe, tokenizer)  # conversational rows, drops counted
    log.info(data.summary())
    model, peft_config, ref = load_policy(recipe, tokenizer, precision)
    heldout = preference_report.heldout_rows(recipe, tokenizer, data)  # test_datasets, else the eval split
    before = preference_report.pair_scores(model, tokenizer, heldout)
    prompts = recipe.eval_prompts
    samples_before = generate(model, tokenizer, recipe, prompts) if prompts else []

    extra = {"ref_model": ref} if recipe.rl in NEEDS_REFERENCE else {}
    trainer = trainer_class(recipe.rl)(model=model, args=rl_config(recipe, precision),
                                       train_dataset=data.train, processing_class=tokenizer,
                                       peft_config=peft_config, **extra)
    train_callbacks.plain_progress(trainer)  # TQDM_DISABLE=1 (batch runs): a few plain lines, no dict per step
    trainable, total = models.count_parameters(trainer.model)
    trainer.train()

    after = preference_report.pair_scores(trainer.model, tokenizer, heldout)
    samples_after = generate(trainer.model, tokenizer, recipe, prompts) if prompts else []
    result = PreferenceResult(
        output_dir=recipe.output_dir, method=recipe.rl, steps=trainer.state.global_step, seconds=time.time() - t0,
        history=_history(trainer.state.log_history), heldout_before=before, heldout_after=after,
        samples_before=[{"prompt": p, "completion": c} for p, c in zip(prompts, samples_before)],
        samples_after=[{"prompt": p, "completion": c} for p, c in zip(prompts, samples_after)],
        trainable_params=trainable, total_params=total, data=data.stats)
    save_run(recipe, trainer, tokenizer, result)
    log.info(result.summary())
    log.info(f"saved to {recipe.output_dir}")
    return result
