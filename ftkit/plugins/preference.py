"""`rl: dpo | ipo | kto | orpo | simpo`, the part that differs from SFT: TRL's config and trainer, the
reference model, and held-out pair scores as the before/after measurement (the rows and the pairs: pairs.py).
train/run.py does the rest: it reaches this plug-in through ftkit/hooks.py (`method`).

TRL does the training: DPOTrainer (dpo, ipo), KTOTrainer, trl.experimental's ORPOTrainer and CPOTrainer (simpo);
train/args.py maps the recipe onto their configs (Axolotl's option names -> TRL 1.16's).

Reference model (DPO, IPO, KTO): with an adapter (LoRA or QLoRA) the policy is a peft model and TRL
computes the reference log-probs from the same model with the adapter as it was at step 0 (TRL 1.16
keeps a frozen copy of the adapter named "ref"; a fresh adapter is zero, so that is the base model):
no second copy of the base. With a full fine-tune ftkit passes a frozen copy taken before training
(TRL would otherwise reload base_model from disk, which misses resized embeddings). ORPO and SimPO
need no reference.
"""
from __future__ import annotations

import copy
import importlib

from ftkit.log import log
from ftkit.plugins import pairs
from ftkit.recipe import Recipe
from ftkit.recipe.base import PREFERENCE
from ftkit.train.result import Method

HISTORY_KEYS = {"loss": "loss", "rewards/margins": "margin", "rewards/accuracies": "accuracy",
                "logps/chosen": "logps_chosen", "logps/rejected": "logps_rejected",
                "rewards/chosen": "reward_chosen", "rewards/rejected": "reward_rejected",
                "nll_loss": "nll", "log_odds_ratio": "log_odds_ratio", "kl": "kl"}  # ORPO/SimPO NLL, ORPO, KTO
NEEDS_REFERENCE = ("dpo", "ipo", "kto")


TRAINERS = {"dpo": ("trl", "DPOTrainer"), "ipo": ("trl", "DPOTrainer"), "kto": ("trl", "KTOTrainer"),
            "orpo": ("trl.experimental.orpo", "ORPOTrainer"), "simpo": ("trl.experimental.cpo", "CPOTrainer")}


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
    rows = pairs.heldout_rows(recipe, tokenizer, prepared, say=before)
    return {"heldout": pairs.pair_scores(trainer.model, tokenizer, rows)}


def applies(recipe: Recipe) -> bool:
    return recipe.rl in PREFERENCE


def method(recipe: Recipe) -> Method:
    """The Method for the recipe's `rl:` value."""
    module, trainer = TRAINERS[recipe.rl]
    return Method(recipe.rl, lambda: getattr(importlib.import_module(module), trainer), reference, measure,
                  HISTORY_KEYS)
