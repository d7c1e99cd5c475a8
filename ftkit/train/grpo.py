"""`rl: grpo` (and `rl: gdpo`), the part that differs from SFT: TRL's GRPOConfig + GRPOTrainer, the reward
functions, and the mean reward on held-out prompts as the before/after measurement. train/run.py does the rest.

Each step TRL samples `trl.num_generations` completions per prompt with transformers' generate (on the policy
itself: on-policy, on a CPU too), scores each with the reward functions (weighted sum), and turns the rewards
into advantages relative to the prompt's group: A = (r - mean(group)) / std(group). The loss raises the
log-probability of completions with A > 0 and lowers it for A < 0 (PPO-clipped ratio), plus rl_beta x KL to the
reference model when rl_beta > 0. GDPO (rl: gdpo) normalizes each reward within the group before summing.
micro_batch_size counts completions: 2 prompts x 4 generations fill micro_batch_size 8.

Reference model (rl_beta > 0): with an adapter, the policy with its adapter at step 0 (TRL: adapter disabled
for a fresh one); with a full fine-tune TRL loads base_model again, so a run whose model differs from the file
(added tokens, config overrides, reinit_weights) is refused there.
"""
from __future__ import annotations

import inspect
from pathlib import Path

from ftkit import models
from ftkit.data import prompts
from ftkit.data.user_code import load_function, search_dirs
from ftkit.errors import FtkitError
from ftkit.log import log
from ftkit.recipe import Recipe
from ftkit.train import preference_report
from ftkit.train.result import Method

HISTORY_KEYS = {"loss": "loss", "reward": "reward", "reward_std": "reward_std", "kl": "kl", "entropy": "entropy",
                "completions/mean_length": "completion_length", "frac_reward_zero_std": "zero_std_groups"}
SIGNATURE = "NAME(completions, **kwargs) -> list[float], one reward per completion"


def trainer_class():
    from trl import GRPOTrainer

    return GRPOTrainer


def _model_dir(name: str, recipe: Recipe) -> Path | None:
    """A local directory holding a sequence-classification model (or its adapter): a reward model for TRL."""
    for base in search_dirs(recipe):
        path = Path(base) / name
        if path.is_dir() and any((path / f).is_file() for f in ("config.json", "adapter_config.json")):
            return path.resolve()
    return None


def reward_functions(recipe: Recipe) -> list:
    """trl.reward_funcs as TRL takes them: functions (by import path, next to the recipe) or reward-model
    directories. A path that does not import, or a function TRL cannot call, is an error naming the key."""
    out = []
    for i, name in enumerate(recipe.trl.reward_funcs or []):
        key = f"trl.reward_funcs.{i}"
        if (path := _model_dir(name, recipe)) is not None:
            log.info(f"{key}: the reward model in {path} scores prompt + completion")
            out.append(str(path))
            continue
        fn = load_function(name, recipe, key, "reward function", SIGNATURE)
        params = inspect.signature(fn).parameters.values()
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            raise FtkitError(f"reward function {name!r} takes no **kwargs: TRL calls it with prompts=, completions=, "
                             "completion_ids= and every column of the dataset", file=recipe.source, where=key,
                             fix=f"define it as {SIGNATURE}")
        out.append(fn)
    return out


def _reward_tokenizers(funcs: list) -> dict:
    """A reward-model directory scores text rendered by its own tokenizer and chat template (saved beside it); TRL
    would take the base model's (an adapter's config names the base)."""
    from transformers import AutoTokenizer

    toks = [AutoTokenizer.from_pretrained(f) if isinstance(f, str) and (Path(f) / "tokenizer_config.json").is_file()
            else None for f in funcs]
    return {"reward_processing_classes": toks} if any(t is not None for t in toks) else {}


def _check_reference(recipe: Recipe, model, tokenizer) -> None:
    """TRL builds a full fine-tune's reference by loading base_model again: refuse when that is not this model."""
    from peft import PeftModel

    if not recipe.rl_beta or isinstance(model, PeftModel):
        return
    from transformers import AutoConfig

    on_disk = AutoConfig.from_pretrained(models.resolve_model_path(recipe.base_model),
                                         trust_remote_code=recipe.trust_remote_code)
    grew = getattr(on_disk, "vocab_size", None) != model.config.vocab_size
    differs = [why for why, bad in ((f"its embeddings grew to {model.config.vocab_size} rows", grew),
                                    ("overrides_of_model_config changed it", bool(recipe.overrides_of_model_config)),
                                    ("reinit_weights gave it new weights", recipe.reinit_weights)) if bad]
    if differs:
        raise FtkitError(f"rl_beta > 0 needs a reference model; with a full fine-tune TRL loads base_model again as "
                         f"the reference, which would not be the model trained here ({'; '.join(differs)})",
                         file=recipe.source, where="rl_beta",
                         fix="use adapter: lora (the reference is the adapter at step 0), or rl_beta: 0 (no reference)")


def method(recipe: Recipe) -> Method:
    """The GRPO Method; the reward functions are imported now, before any data or model loads."""
    funcs = reward_functions(recipe)

    def trainer_kwargs(recipe: Recipe, model, tokenizer) -> dict:
        _check_reference(recipe, model, tokenizer)
        return {"reward_funcs": funcs, **_reward_tokenizers(funcs)}

    return Method(recipe.rl, trainer_class, trainer_kwargs, measure, HISTORY_KEYS)


# ---------------------------------------------------------------- before / after

def measure(recipe: Recipe, trainer, tokenizer, prepared, before: bool) -> dict:
    """Mean reward of completions sampled for held-out prompts (num_generations each), by TRL's own evaluation.
    The sampling is seeded the same before and after training, and leaves the training's random stream alone."""
    import torch

    rows = preference_report.heldout(recipe, tokenizer, prepared, prompts.convert, say=before)
    if rows is None:
        return {"reward": {}}
    if before and (recipe.fsdp or recipe.deepspeed):
        log.info("no held-out reward before training under fsdp/deepspeed (the engine prepares the model in train())")
        return {"reward": {}}
    with torch.random.fork_rng():
        torch.manual_seed(recipe.seed)
        trainer.evaluate(eval_dataset=rows)
    logged = trainer.state.log_history[-1]
    per_func = {k.split("/")[1]: v for k, v in logged.items() if k.startswith("eval_rewards/") and k.endswith("/mean")}
    return {"reward": {"n": len(rows), "generations": trainer.num_generations_eval, "mean": logged["eval_reward"],
                       "per_func": per_func, "completion_length": logged.get("eval_completions/mean_length")}}
