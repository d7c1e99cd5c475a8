"""`reward_model: true`, the part that differs from SFT: TRL's RewardConfig + RewardTrainer, and held-out pair
accuracy as the before/after measurement (its rows are preference pairs: pairs.py). train/run.py does the rest.

The model is AutoModelForSequenceClassification with one output (models/load.py): the base with a new score
head that reads the last token of prompt + answer (as the chat template renders them). RewardTrainer trains it
on chosen/rejected pairs with the Bradley-Terry loss -log sigmoid(score(chosen) - score(rejected)) (+
center_rewards_coefficient x mean score^2). With LoRA the head is trained in full and saved with the adapter
(peft's SEQ_CLS task); either way the output_dir loads with AutoModelForSequenceClassification and scores text,
e.g. as a GRPO reward function (trl.reward_funcs: [path/to/output_dir]).
"""
from __future__ import annotations

from ftkit.formats.prompt import encode_messages
from ftkit.plugins import pairs
from ftkit.recipe import Recipe
from ftkit.train.result import Method

HISTORY_KEYS = {"loss": "loss", "accuracy": "accuracy", "margin": "margin", "mean_reward": "mean_score"}


def trainer_class():
    from trl import RewardTrainer

    return RewardTrainer


def score(model, tokenizer, messages: list[dict]) -> float:
    """The reward model's score of one conversation (prompt + answer), rendered as RewardTrainer renders it."""
    import torch

    ids = torch.tensor([encode_messages(tokenizer, messages, generation_prompt=False)],
                       device=next(model.parameters()).device)
    with torch.no_grad():
        return float(model(input_ids=ids).logits[0, 0])


def pair_accuracy(model, tokenizer, rows) -> dict:
    """Held-out pairs: the fraction where score(prompt + chosen) > score(prompt + rejected), the mean margin and
    each pair's margin."""
    def text_score(model, tokenizer, prompt, answer):
        return score(model, tokenizer, prompt + answer)

    return pairs.pair_scores(model, tokenizer, rows, text_score, name="score")


def measure(recipe: Recipe, trainer, tokenizer, prepared, before: bool) -> dict:
    """Pair accuracy on held-out pairs: test_datasets, else the val_set_size split."""
    rows = pairs.heldout_rows(recipe, tokenizer, prepared, say=before)
    return {"heldout": pair_accuracy(trainer.model, tokenizer, rows)}


def applies(recipe: Recipe) -> bool:
    return recipe.reward_model


def method(recipe: Recipe) -> Method:
    return Method("reward", trainer_class, lambda recipe, model, tokenizer: {}, measure, HISTORY_KEYS)
