"""Inference with the recipe's own prompt template (the same segments and encoder as training)."""
from __future__ import annotations

import json
import sys

from ftkit.errors import FtkitError
from ftkit.formats.prompt import Prompt
from ftkit.log import log, to_stderr
from ftkit.models.trained import load_trained
from ftkit.recipe import Recipe


def prompt_ids(recipe: Recipe, tokenizer, text: str) -> list[int]:
    """Token ids fed at inference for a user's text: the training prompt (formats/prompt.py)."""
    return Prompt(recipe, tokenizer).ids(text)


def keeps_turns(recipe: Recipe, tokenizer) -> bool:
    """Does the recipe's prompt hold a conversation (so a chat sends earlier turns along)?"""
    return Prompt(recipe, tokenizer).keeps_turns


def conversation_ids(recipe: Recipe, tokenizer, messages: list[dict]) -> list[int]:
    """Prompt ids for a conversation ([{role, content}], the user's turn last) rendered as training rendered it."""
    return Prompt(recipe, tokenizer).ids(messages)


def stop_token_ids(recipe: Recipe, tokenizer) -> list[int]:
    """eos plus the chat template's end-of-turn token (e.g. <|eot_id|>), so generation stops after a turn."""
    return Prompt(recipe, tokenizer).stop_ids()


def generate(model, tokenizer, recipe: Recipe, prompts: list[str], *, max_new_tokens: int | None = None,
             temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None, streamer=None,
             prompt: Prompt | None = None) -> list[str]:
    """Complete each prompt, a text or a conversation (a list of {role, content}: Prompt.ids), greedy unless
    temperature > 0; returns only the new text. `prompt`: the run's or session's Prompt (else one is built)."""
    import torch

    if seed is not None:
        torch.manual_seed(seed)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    prompt = prompt or Prompt(recipe, tokenizer)
    kwargs = dict(max_new_tokens=max_new_tokens or recipe.max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                  eos_token_id=prompt.stop_ids(), do_sample=temperature > 0, streamer=streamer)
    if temperature > 0:
        kwargs.update(temperature=temperature, top_p=top_p)
    out = []
    for text in prompts:
        ids = torch.tensor([prompt.ids(text)], device=device)
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
                         fix="score with ftkit.plugins.reward.score(model, tokenizer, messages), or use the output_dir "
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
    sampling = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed,
                    prompt=Prompt(recipe, tok))  # the saved folder's prompt, built once for every answer
    if prompt is not None:
        streamer = TextStreamer(tok, skip_prompt=True, skip_special_tokens=True) if stream else None
        text = generate(model, tok, recipe, [prompt], streamer=streamer, **sampling)
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
        ans = generate(model, tok, recipe, [line], **sampling)[0]
        print(json.dumps({"prompt": line, "completion": ans}, ensure_ascii=False), file=stdout, flush=True)
        answers.append(ans)
    return answers
