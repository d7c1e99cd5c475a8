"""Every tiny twin builds offline, carries its family's tokens and template, takes LoRA on its targets,
learns, and generates (one parametrized test per family in ftkit.models.families.FAMILIES)."""
import json

import pytest
import torch

from ftkit import infer, models
from ftkit.errors import FtkitError
from ftkit.formats import get_strategy
from ftkit.formats.chat_templates import TEMPLATES
from ftkit.formats.tokenize import IGNORE, encode_segments
from ftkit.models import adapters
from ftkit.models.families import ALIASES, FAMILIES
from ftkit.models.tiny import tiny_path

LR = 1e-2  # random-init twin + fresh LoRA (B = 0): a clear but modest fall in 10 steps
STEPS = 10
ROWS = [{"instruction": "What is the capital of Spain?", "input": "", "output": "The capital of Spain is Madrid."},
        {"instruction": "What color is the sky?", "input": "", "output": "The sky is blue."}]

@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_twin_tokens_and_template(family):
    spec = FAMILIES[family].twin
    path = tiny_path(f"tiny:{family}")
    assert json.loads((path / "TINY_TWIN.json").read_text())["family"] == family
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    for t in [spec.bos, spec.eos, spec.pad, *TEMPLATES[spec.template].special_tokens]:
        if t:  # every special token is one vocabulary entry, never split into pieces
            assert tok(t, add_special_tokens=False)["input_ids"] == [tok.convert_tokens_to_ids(t)], t
    name = spec.template
    assert name in TEMPLATES
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}],
                                   tokenize=False)
    end = TEMPLATES[name].end_of_turn or spec.eos
    assert "Hi" in text and text.rstrip().endswith(end), text
    first = tok("a")["input_ids"][0]
    assert (first == tok.bos_token_id) == (spec.add_bos and spec.bos is not None)  # bos habit of the family

def adapted_modules(model) -> set[str]:
    """Short names of the modules carrying a LoRA A matrix ('...layers.0.self_attn.q_proj.lora_A...' -> q_proj)."""
    return {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n, _ in model.named_parameters() if ".lora_A" in n}

@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_twin_lora_learns_and_generates(family, make_recipe):
    spec = FAMILIES[family]
    recipe = make_recipe(base_model=f"tiny:{family}", adapter="lora", lora_r=8, lora_alpha=16, lora_dropout=0.0,
                         max_new_tokens=6)
    tok = models.load_tokenizer(recipe)
    model = models.load_model(recipe, tok)  # no targets given: the family default
    defaults = set(adapters.lora_targets(recipe, model))
    assert defaults <= adapted_modules(model), (defaults, adapted_modules(model))

    model = models.load_model(recipe.model_copy(update={"lora_target_modules": list(spec.lora_targets)}), tok)
    assert adapted_modules(model) == set(spec.lora_targets)  # every listed module exists in this architecture

    strategy = get_strategy("alpaca")
    rows = [encode_segments(strategy.segments(r), tok) for r in ROWS]
    n = max(len(r["input_ids"]) for r in rows)
    pad = tok.pad_token_id
    ids = torch.tensor([r["input_ids"] + [pad] * (n - len(r["input_ids"])) for r in rows])
    labels = torch.tensor([r["labels"] + [IGNORE] * (n - len(r["labels"])) for r in rows])
    mask = (torch.arange(n)[None] < torch.tensor([len(r["input_ids"]) for r in rows])[:, None]).long()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR)
    losses = []
    for _ in range(STEPS):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.95, losses  # e.g. gemma 6.82 -> 6.47, llama 6.83 -> 5.8
    out = infer.generate(model, tok, recipe, ["What is the capital of Spain?"], max_new_tokens=6)
    assert isinstance(out[0], str) and len(out) == 1

def test_aliases_and_unknown_family():
    assert tiny_path("tiny:pythia") == tiny_path("tiny:gpt_neox")  # Axolotl's name for the family
    assert set(ALIASES.values()) <= set(FAMILIES)
    with pytest.raises(FtkitError, match=r"no tiny twin for family 'mistrel'.*did you mean tiny:mistral"):
        tiny_path("tiny:mistrel")
