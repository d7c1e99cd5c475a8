"""Inference with the recipe's own prompt template (the same segments and encoder as training)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .config import Recipe
from .errors import FtkitError
from .prompts import get_strategy
from .prompts.tokenize import encode_prompt


def prompt_ids(recipe: Recipe, tokenizer, text: str) -> list[int]:
    """Token ids fed at inference for a user's text: the training prompt segments, encoded identically."""
    if getattr(recipe, "rl", None):  # preference-tuned: the chat template TRL trained with
        from .preference_data import prompt_ids as chat_prompt_ids

        return chat_prompt_ids(recipe, tokenizer, text)
    strategy = get_strategy(recipe.datasets[0].type, file=recipe.source, where="datasets.0.type")
    return encode_prompt(strategy.prompt_segments(strategy.inference_row(text)), tokenizer)


def generate(model, tokenizer, recipe: Recipe, prompts: list[str], *, max_new_tokens: int | None = None,
             temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None, streamer=None) -> list[str]:
    """Complete each prompt (greedy unless temperature > 0); returns only the new text."""
    import torch

    if seed is not None:
        torch.manual_seed(seed)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    eos = tokenizer.eos_token_id
    if getattr(recipe, "rl", None):  # chat answers end with the template's end-of-turn token
        from .preference_data import end_of_turn_ids

        eos = end_of_turn_ids(tokenizer)
    for text in prompts:
        ids = torch.tensor([prompt_ids(recipe, tokenizer, text)], device=device)
        kwargs = dict(max_new_tokens=max_new_tokens or recipe.max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=eos, do_sample=temperature > 0, streamer=streamer)
        if temperature > 0:
            kwargs.update(temperature=temperature, top_p=top_p)
        with torch.no_grad():
            gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)
        out.append(tokenizer.decode(gen[0, ids.shape[1]:], skip_special_tokens=True).strip())
    model.train(was_training)
    return out


def load_trained(recipe: Recipe, announce=print):
    """(model, tokenizer) after training: base + adapter (lora_model_dir or output_dir), or the full model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from . import models

    out = Path(recipe.output_dir)
    if recipe.adapter:
        adapter_dir = Path(getattr(recipe, "lora_model_dir", None) or out)
        if not (adapter_dir / "adapter_config.json").is_file():
            raise FtkitError(f"no LoRA adapter in {adapter_dir}", where="output_dir",
                             fix="train first (ftkit train RECIPE) or pass --lora_model_dir=DIR")
        from peft import PeftModel

        tok = AutoTokenizer.from_pretrained(adapter_dir) if (adapter_dir / "tokenizer_config.json").is_file() \
            else models.load_tokenizer(recipe, announce)
        base = models._from_pretrained(AutoModelForCausalLM, recipe.base_model, "model")
        if len(tok) > base.get_input_embeddings().weight.shape[0]:
            base.resize_token_embeddings(len(tok))
        return PeftModel.from_pretrained(base, adapter_dir), tok
    if (out / "config.json").is_file():
        return AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    announce(f"[ftkit] no trained model in {out}: using the base model {recipe.base_model}")
    tok = models.load_tokenizer(recipe, announce)
    return models.load_model(recipe, tok, announce=announce), tok


def run(recipe: Recipe, prompt: str | None = None, *, max_new_tokens=None, temperature=0.0, top_p=1.0,
        seed=None, stream=True, stdin=None, stdout=None) -> list[str]:
    """`ftkit infer`: one --prompt (streamed), or one prompt per stdin line -> one JSON line each."""
    from transformers import TextStreamer

    stdout = stdout or sys.stdout
    model, tok = load_trained(recipe, announce=lambda m: print(m, file=sys.stderr))
    if prompt is not None:
        streamer = TextStreamer(tok, skip_prompt=True, skip_special_tokens=True) if stream else None
        text = generate(model, tok, recipe, [prompt], max_new_tokens=max_new_tokens, temperature=temperature,
                        top_p=top_p, seed=seed, streamer=streamer)
        if not stream:
            print(text[0], file=stdout)
        return text
    answers = []
    for line in (stdin or sys.stdin):
        line = line.rstrip("\n")
        if not line.strip():
            continue
        ans = generate(model, tok, recipe, [line], max_new_tokens=max_new_tokens, temperature=temperature,
                       top_p=top_p, seed=seed)[0]
        print(json.dumps({"prompt": line, "completion": ans}, ensure_ascii=False), file=stdout, flush=True)
        answers.append(ans)
    return answers
