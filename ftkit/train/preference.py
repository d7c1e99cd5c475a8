"""`rl: dpo | ipo | kto | orpo | simpo`, the part that differs from SFT: TRL's config and trainer, the
reference model, and held-out pair scores as the before/after measurement. train/run.py does the rest.

TRL does the training; ftkit maps the recipe onto TRL's configs (Axolotl's option names -> TRL 1.16's):

    rl: dpo    DPOTrainer  loss_type [sigmoid]   rl_beta -> beta; dpo_label_smoothing > 0 -> loss_type [robust]
                                                 + label_smoothing; rpo_alpha -> + [sft] with loss_weights [1, a]
    rl: ipo    DPOTrainer  loss_type [ipo]       rl_beta -> beta (IPO's tau)
    rl: kto    KTOTrainer                        rl_beta -> beta; kto_(un)desirable_weight -> (un)desirable_weight
    rl: orpo   trl.experimental ORPOTrainer      orpo_alpha -> beta (ORPO's lambda); no reference model
    rl: simpo  trl.experimental CPOTrainer       loss_type simpo; rl_beta -> beta, simpo_gamma, cpo_alpha

Reference model (DPO, IPO, KTO): with an adapter (LoRA or QLoRA) the policy is a peft model and TRL
computes the reference log-probs from the same model with the adapter as it was at step 0 (TRL 1.16
keeps a frozen copy of the adapter named "ref"; a fresh adapter is zero, so that is the base model):
no second copy of the base. With a full fine-tune ftkit passes a frozen copy taken before training
(TRL would otherwise reload base_model from disk, which misses resized embeddings). ORPO and SimPO
need no reference.
"""
from __future__ import annotations

import copy

from ftkit import models
from ftkit.log import log
from ftkit.recipe import Recipe
from ftkit.train import preference_report
from ftkit.train.args import training_args
from ftkit.train.method import Method

HISTORY_KEYS = {"loss": "loss", "rewards/margins": "margin", "rewards/accuracies": "accuracy",
                "logps/chosen": "logps_chosen", "logps/rejected": "logps_rejected",
                "rewards/chosen": "reward_chosen", "rewards/rejected": "reward_rejected",
                "nll_loss": "nll", "log_odds_ratio": "log_odds_ratio", "kl": "kl"}  # ORPO/SimPO NLL, ORPO, KTO
NEEDS_REFERENCE = ("dpo", "ipo", "kto")


def rl_config(recipe: Recipe, precision: models.Precision, has_eval: bool = False, n_train: int = 0):
    """The recipe as the method's TRL config (the TrainingArguments options are SFT's, see args.py)."""
    common = dict(training_args(recipe, precision, has_eval, n_train), max_length=recipe.sequence_len,
                  dataset_num_proc=recipe.dataset_processes)  # TRL tokenizes the rows: same processes
    method = recipe.rl
    if recipe.pad_to_sequence_len and method in ("dpo", "ipo", "kto"):  # TRL's collators pad to a multiple of this
        common["pad_to_multiple_of"] = recipe.sequence_len
    elif recipe.pad_to_sequence_len:
        log.info(f"pad_to_sequence_len: TRL's {method} collator pads each batch to its longest pair (no option to "
                 "pad further); padding never changes what is trained")
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


def _trainer_class(method: str):
    if method in ("dpo", "ipo"):
        from trl import DPOTrainer as T
    elif method == "kto":
        from trl import KTOTrainer as T
    elif method == "orpo":
        from trl.experimental.orpo import ORPOTrainer as T
    else:
        from trl.experimental.cpo import CPOTrainer as T
    return T


def reference(recipe: Recipe, model, tokenizer=None) -> dict:
    """The trainer's reference-model argument: none with an adapter (TRL uses the adapter at step 0),
    a frozen copy for a full fine-tune, none for ORPO/SimPO."""
    from peft import PeftModel

    if recipe.rl not in NEEDS_REFERENCE or isinstance(model, PeftModel):
        return {}
    log.info("full fine-tune: the reference model is a frozen copy of the base model")
    return {"ref_model": copy.deepcopy(model).eval().requires_grad_(False)}


def measure(recipe: Recipe, trainer, tokenizer, prepared, before: bool) -> dict:
    """logp(chosen) - logp(rejected) on held-out pairs: test_datasets, else the eval split (paired methods)."""
    rows = preference_report.heldout_rows(recipe, tokenizer, prepared)
    return {"heldout": preference_report.pair_scores(trainer.model, tokenizer, rows)}


def method(name: str) -> Method:
    """The Method for one `rl:` value."""
    return Method(name, rl_config, lambda: _trainer_class(name), reference, measure, HISTORY_KEYS)
