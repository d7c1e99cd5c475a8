"""Inference with the recipe's own prompt template (the same segments and encoder as training)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .config import Recipe
from .errors import FtkitError
from .prompts import strategy_for
from .prompts.tokenize import encode_prompt_text


def prompt_ids(recipe: Recipe, tokenizer, text: str) -> list[int]:
    """Token ids fed at inference for a user's text: the first dataset's prompt format (for chat datasets
    the user turn rendered by the chat template with add_generation_prompt), tokenized as one string."""
    if getattr(recipe, "rl", None):  # preference-tuned: the chat-template prompt TRL trained with
        from .preference_data import prompt_ids as chat_prompt_ids

        return chat_prompt_ids(recipe, tokenizer, text)
    strategy = strategy_for(recipe.datasets[0], recipe, tokenizer)
    return encode_prompt_text(strategy.prompt_for(text), tokenizer, add_bos=strategy.add_bos)


def stop_token_ids(recipe: Recipe, tokenizer) -> list[int]:
    """eos plus the chat template's end-of-turn token (e.g. <|eot_id|>), so generation stops after a turn."""
    if getattr(recipe, "rl", None):  # chat answers end with the template's end-of-turn token
        from .preference_data import end_of_turn_ids

        return end_of_turn_ids(tokenizer)
    ids = [tokenizer.eos_token_id]
    strategy = strategy_for(recipe.datasets[0], recipe, tokenizer)
    eot = getattr(strategy, "eot", None)
    if eot and tokenizer.convert_tokens_to_ids(eot) not in (None, tokenizer.unk_token_id):
        ids.append(tokenizer.convert_tokens_to_ids(eot))
    return list(dict.fromkeys(ids))


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
    for text in prompts:
        ids = torch.tensor([prompt_ids(recipe, tokenizer, text)], device=device)
        kwargs = dict(max_new_tokens=max_new_tokens or recipe.max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=stop_token_ids(recipe, tokenizer), do_sample=temperature > 0, streamer=streamer)
        if temperature > 0:
            kwargs.update(temperature=temperature, top_p=top_p)
        with torch.no_grad():
            gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)
        out.append(tokenizer.decode(gen[0, ids.shape[1]:], skip_special_tokens=True).strip())
    model.train(was_training)
    return out


def load_trained(recipe: Recipe, announce=print, dequantize: bool = False):
    """(model, tokenizer) after training: base + adapter (lora_model_dir or output_dir), or the full model.

    The base is loaded as it was trained (4/8-bit when the recipe says so); `dequantize=True` turns a
    quantized base back into plain weights in the recipe's dtype first (what merge-lora needs).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from . import adapters, models

    out = Path(recipe.output_dir)
    adapter_dir = Path(recipe.lora_model_dir or out)
    if recipe.adapter and (adapter_dir / "adapter_config.json").is_file():
        tok = AutoTokenizer.from_pretrained(adapter_dir) if (adapter_dir / "tokenizer_config.json").is_file() \
            else models.load_tokenizer(recipe, announce)
        precision = models.resolve_precision(recipe, announce=lambda *_: None)
        base = models.load_base(recipe, tok, precision, announce)
        if dequantize and (recipe.load_in_4bit or recipe.load_in_8bit):
            announce(f"[ftkit] dequantizing the {4 if recipe.load_in_4bit else 8}-bit base to {precision.dtype} "
                     "(the exact weights the adapter trained against) before merging")
            base = base.dequantize().to(precision.dtype)
        return adapters.load_adapter(base, adapter_dir, where="lora_model_dir" if recipe.lora_model_dir else "output_dir"), tok
    if (out / "config.json").is_file():  # full fine-tune, or a ReLoRA run (saved merged)
        return AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    if recipe.adapter:
        if recipe.lora_model_dir:
            raise FtkitError(f"no LoRA adapter (adapter_config.json) in {adapter_dir}", where="lora_model_dir",
                             fix="point it at the output_dir of a LoRA/QLoRA run")
        raise FtkitError(f"no LoRA adapter in {adapter_dir}", where="output_dir",
                         fix="train first (ftkit train RECIPE) or pass --lora_model_dir=DIR")
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
