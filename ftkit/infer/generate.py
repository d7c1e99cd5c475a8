"""Inference with the recipe's own prompt template (the same segments and encoder as training)."""
from __future__ import annotations

import json
import sys

from ftkit.errors import FtkitError
from ftkit.formats import strategy_for
from ftkit.formats.chat import end_of_turn_ids
from ftkit.formats.tokenize import encode_prompt_text
from ftkit.log import log, to_stderr
from ftkit.models.trained import load_trained
from ftkit.recipe import Recipe


def prompt_ids(recipe: Recipe, tokenizer, text: str) -> list[int]:
    """Token ids fed at inference for a user's text: the first dataset's prompt format (for chat datasets
    the user turn rendered by the chat template with add_generation_prompt), tokenized as one string."""
    if getattr(recipe, "rl", None):  # preference-tuned: the chat-template prompt TRL trained with
        from ftkit.data.preference import prompt_ids as chat_prompt_ids

        return chat_prompt_ids(recipe, tokenizer, text)
    strategy = strategy_for(recipe.datasets[0], recipe, tokenizer)
    return encode_prompt_text(strategy.prompt_for(text), tokenizer, add_bos=strategy.add_bos)


def keeps_turns(recipe: Recipe, tokenizer) -> bool:
    """Does the recipe's prompt format hold a conversation? Chat templates (and preference data) do, so a chat
    sends earlier turns along; the alpaca family holds one instruction, so each message is answered alone."""
    from ftkit.formats.chat import ChatTemplateStrategy

    return bool(getattr(recipe, "rl", None)) or isinstance(strategy_for(recipe.datasets[0], recipe, tokenizer),
                                                           ChatTemplateStrategy)


def conversation_ids(recipe: Recipe, tokenizer, messages: list[dict]) -> list[int]:
    """Prompt ids for a conversation ([{role, content}], the user's turn last) rendered as training rendered
    conversations; for single-turn formats, the last user message alone (see keeps_turns)."""
    if getattr(recipe, "rl", None):
        from ftkit.data.preference import trained_prompt_ids

        return trained_prompt_ids(tokenizer, messages)
    strategy = strategy_for(recipe.datasets[0], recipe, tokenizer)
    if not keeps_turns(recipe, tokenizer):
        return prompt_ids(recipe, tokenizer, messages[-1]["content"])
    return encode_prompt_text(strategy.render(messages, gen=True), tokenizer, add_bos=strategy.add_bos)


def stop_token_ids(recipe: Recipe, tokenizer) -> list[int]:
    """eos plus the chat template's end-of-turn token (e.g. <|eot_id|>), so generation stops after a turn.

    The template: the tokenizer's own for preference-tuned models (TRL renders with it), else the first
    dataset's (chat formats); formats without a template stop at eos.
    """
    if getattr(recipe, "rl", None):
        return end_of_turn_ids(tokenizer)
    jinja = getattr(strategy_for(recipe.datasets[0], recipe, tokenizer), "jinja", None)
    return end_of_turn_ids(tokenizer, jinja) if jinja else [tokenizer.eos_token_id]


def generate(model, tokenizer, recipe: Recipe, prompts: list[str], *, max_new_tokens: int | None = None,
             temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None, streamer=None) -> list[str]:
    """Complete each prompt, a text or a conversation (a list of {role, content}: conversation_ids), greedy unless
    temperature > 0; returns only the new text."""
    import torch

    if seed is not None:
        torch.manual_seed(seed)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    for text in prompts:
        ids = conversation_ids(recipe, tokenizer, text) if isinstance(text, list) else prompt_ids(recipe, tokenizer, text)
        ids = torch.tensor([ids], device=device)
        kwargs = dict(max_new_tokens=max_new_tokens or recipe.max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=stop_token_ids(recipe, tokenizer), do_sample=temperature > 0, streamer=streamer)
        if temperature > 0:
            kwargs.update(temperature=temperature, top_p=top_p)
        with torch.no_grad():
            gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)
        out.append(tokenizer.decode(gen[0, ids.shape[1]:], skip_special_tokens=True).strip())
    model.train(was_training)
    return out


def refuse_reward_model(recipe: Recipe) -> None:
    """A reward model (a score head) has nothing to generate with: say so before loading it."""
    if getattr(recipe, "reward_model", False):
        raise FtkitError("this recipe trains a reward model: it scores a conversation with one number, it does not "
                         "generate", file=recipe.source, where="reward_model",
                         fix="score with ftkit.train.reward.score(model, tokenizer, messages), or use the output_dir "
                             "as a GRPO reward (trl: {reward_funcs: [OUTPUT_DIR]})")


def run(recipe: Recipe, prompt: str | None = None, *, max_new_tokens=None, temperature=0.0, top_p=1.0,
        seed=None, stream=True, stdin=None, stdout=None, load: dict | None = None) -> list[str]:
    """`ftkit infer`: one --prompt (streamed), or one prompt per stdin line -> one JSON line each (on a terminal
    it first says it is waiting for prompts). `load`: load_trained's untrained / allow_other_base."""
    from transformers import TextStreamer

    stdout = stdout or sys.stdout
    refuse_reward_model(recipe)
    with to_stderr():  # stdout carries only the answers
        model, tok = load_trained(recipe, **(load or {}))
    if prompt is not None:
        streamer = TextStreamer(tok, skip_prompt=True, skip_special_tokens=True) if stream else None
        text = generate(model, tok, recipe, [prompt], max_new_tokens=max_new_tokens, temperature=temperature,
                        top_p=top_p, seed=seed, streamer=streamer)
        if not stream:
            print(text[0], file=stdout)
        return text
    stdin = stdin or sys.stdin
    if stdin.isatty():  # a person at a terminal, not a pipe: say what the silence means
        with to_stderr():
            log.info("waiting for prompts: type one per line and press Enter; each answer prints as one JSON line. "
                     "Ctrl-D ends (or pass --prompt \"...\" for a single answer)")
    answers = []
    for line in stdin:
        line = line.rstrip("\n")
        if not line.strip():
            continue
        ans = generate(model, tok, recipe, [line], max_new_tokens=max_new_tokens, temperature=temperature,
                       top_p=top_p, seed=seed)[0]
        print(json.dumps({"prompt": line, "completion": ans}, ensure_ascii=False), file=stdout, flush=True)
        answers.append(ans)
    return answers
