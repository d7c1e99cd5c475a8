"""Writes the synthetic sample datasets in data_samples/ (deterministic; run from the repo root).

The rows are written for this project: small templated facts with one right answer each, so that
the tiny random-init model visibly learns the format and the facts in about a minute on a CPU.

    python data_samples/make_samples.py
"""
from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent

CAPITALS = {
    "France": "Paris", "Spain": "Madrid", "Italy": "Rome", "Germany": "Berlin", "Japan": "Tokyo",
    "Egypt": "Cairo", "Kenya": "Nairobi", "Peru": "Lima", "Chile": "Santiago", "Canada": "Ottawa",
    "Norway": "Oslo", "Sweden": "Stockholm", "Greece": "Athens", "Poland": "Warsaw", "Ireland": "Dublin",
    "Austria": "Vienna", "Portugal": "Lisbon", "Cuba": "Havana", "India": "Delhi", "China": "Beijing",
    "Russia": "Moscow", "Mexico": "Mexico City", "Brazil": "Brasilia", "Ghana": "Accra", "Nepal": "Kathmandu",
    "Iran": "Tehran", "Iraq": "Baghdad", "Chad": "Ndjamena", "Mali": "Bamako", "Laos": "Vientiane",
}
OPPOSITES = {
    "hot": "cold", "big": "small", "fast": "slow", "up": "down", "light": "dark", "happy": "sad",
    "open": "closed", "early": "late", "full": "empty", "hard": "soft", "high": "low", "new": "old",
    "rich": "poor", "strong": "weak", "wet": "dry", "loud": "quiet", "long": "short", "thick": "thin",
    "near": "far", "clean": "dirty", "young": "old", "heavy": "light", "wide": "narrow", "deep": "shallow",
}
COLORS = {
    "the sky": "blue", "grass": "green", "snow": "white", "coal": "black", "a banana": "yellow",
    "a tomato": "red", "an orange": "orange", "a plum": "purple", "chocolate": "brown", "milk": "white",
    "a lemon": "yellow", "the sea": "blue", "a leaf": "green", "blood": "red", "soot": "black",
}
SOUNDS = {
    "dog": "woof", "cat": "meow", "cow": "moo", "duck": "quack", "sheep": "baa", "owl": "hoot",
    "lion": "roar", "horse": "neigh", "pig": "oink", "frog": "croak", "mouse": "squeak", "bee": "buzz",
}
PLURALS = {
    "cat": "cats", "box": "boxes", "child": "children", "mouse": "mice", "city": "cities", "man": "men",
    "leaf": "leaves", "foot": "feet", "tooth": "teeth", "bus": "buses", "wolf": "wolves", "baby": "babies",
    "goose": "geese", "knife": "knives", "story": "stories", "woman": "women", "dish": "dishes", "day": "days",
}


def alpaca_rows(rng: random.Random, n: int) -> list[dict]:
    """Instruction rows in the Alpaca shape: instruction, input (may be empty), output."""
    def one() -> dict:
        kind = rng.randrange(6)
        if kind == 0:
            c = rng.choice(list(CAPITALS))
            ins, inp, out = f"What is the capital of {c}?", "", f"The capital of {c} is {CAPITALS[c]}."
        elif kind == 1:
            w = rng.choice(list(OPPOSITES))
            ins, inp, out = f"Give the opposite of the word {w}.", "", f"The opposite of {w} is {OPPOSITES[w]}."
        elif kind == 2:
            a, b = rng.randrange(10), rng.randrange(10)
            ins, inp, out = f"Add {a} and {b}.", "", f"{a} plus {b} is {a + b}."
        elif kind == 3:
            t = rng.choice(list(COLORS))
            ins, inp, out = f"What color is {t}?", "", f"{t[0].upper() + t[1:]} is {COLORS[t]}."
        elif kind == 4:
            a = rng.choice(list(SOUNDS))
            ins, inp, out = "Name the sound this animal makes.", a, f"The {a} says {SOUNDS[a]}."
        else:
            w = rng.choice(list(PLURALS))
            ins, inp, out = "Write the plural of the word.", w, f"The plural of {w} is {PLURALS[w]}."
        return {"instruction": ins, "input": inp, "output": out}

    return [one() for _ in range(n)]


def write_jsonl(name: str, rows: list[dict]) -> None:
    with open(HERE / name, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def corpus_text() -> str:
    """Text the tiny tokenizer is trained on: every word the samples use, in sentences."""
    rng = random.Random(1)
    rows = alpaca_rows(rng, 600)
    lines = [f"{r['instruction']} {r['input']} {r['output']}" for r in rows]
    lines += [" ".join(sorted(set(" ".join(lines).split())))]
    return "\n".join(lines) + "\n"


def facts(rng: random.Random, n: int) -> list[dict]:
    """Facts with a question, an optional input, a short answer and a one-sentence answer."""
    def one() -> dict:
        kind = rng.choice(["capital", "opposite", "color", "sound", "plural"])
        if kind == "capital":
            c = rng.choice(list(CAPITALS))
            return dict(kind=kind, q=f"What is the capital of {c}?", inp="", short=CAPITALS[c],
                        say=f"The capital of {c} is {CAPITALS[c]}.")
        if kind == "opposite":
            w = rng.choice(list(OPPOSITES))
            return dict(kind=kind, q=f"Give the opposite of the word {w}.", inp="", short=OPPOSITES[w],
                        say=f"The opposite of {w} is {OPPOSITES[w]}.")
        if kind == "color":
            t = rng.choice(list(COLORS))
            return dict(kind=kind, q=f"What color is {t}?", inp="", short=COLORS[t],
                        say=f"{t[0].upper() + t[1:]} is {COLORS[t]}.")
        if kind == "sound":
            a = rng.choice(list(SOUNDS))
            return dict(kind=kind, q="Name the sound this animal makes.", inp=a, short=SOUNDS[a],
                        say=f"The {a} says {SOUNDS[a]}.")
        w = rng.choice(list(PLURALS))
        return dict(kind=kind, q="Write the plural of the word.", inp=w, short=PLURALS[w],
                    say=f"The plural of {w} is {PLURALS[w]}.")

    return [one() for _ in range(n)]


def _ask(f: dict) -> str:
    return f"{f['q']} {f['inp']}".strip()


def _wrong(f: dict, rng: random.Random) -> list[str]:
    pool = {"capital": CAPITALS, "opposite": OPPOSITES, "color": COLORS, "sound": SOUNDS, "plural": PLURALS}[f["kind"]]
    others = sorted({v for v in pool.values() if v != f["short"]})
    return rng.sample(others, 2)


SYSTEM = "You answer in one short sentence."
# type -> (row builder from a fact, extra stanza options). One file per type under data_samples/instruct/.
INSTRUCT_ROWS = {
    "alpaca_chat": lambda f, r: {"instruction": f["q"], "input": f["inp"], "response": f["say"]},
    "alpaca_chat.load_qa": lambda f, r: {"question": _ask(f), "answer": f["say"]},
    "alpaca_chat.load_concise": lambda f, r: {"instruction": f["q"], "input": f["inp"], "response": f["short"]},
    "alpaca_chat.load_camel_ai": lambda f, r: {"message_1": _ask(f), "message_2": f["say"]},
    "alpaca_w_system": lambda f, r: {"system": SYSTEM, "instruction": f["q"], "input": f["inp"], "output": f["say"]},
    "alpaca_w_system.load_open_orca": lambda f, r: {"system_prompt": SYSTEM, "question": _ask(f), "response": f["say"]},
    "jeopardy": lambda f, r: {"question": _ask(f), "category": f["kind"].upper() + "S", "answer": f["short"]},
    "oasst": lambda f, r: {"INSTRUCTION": _ask(f), "RESPONSE": f["say"]},
    "gpteacher": lambda f, r: {"instruction": f["q"], "input": f["inp"], "response": f["say"]},
    "reflection": lambda f, r: {"instruction": f["q"], "input": f["inp"], "output": f"Maybe {_wrong(f, r)[0]}.",
                                "reflection": "That guess does not fit the question.", "corrected": f["say"]},
    "explainchoice": lambda f, r: {"question": _ask(f), "choices": sorted([f["short"], *_wrong(f, r)]),
                                   "explanation": f"{f['say']} So the answer is {f['short']}."},
    "concisechoice": lambda f, r: {"question": _ask(f), "choices": sorted([f["short"], *_wrong(f, r)]),
                                   "solution": f["short"]},
    "summarizetldr": lambda f, r: {"article": f"{f['say']} People often ask this. {f['say']}", "summary": f["say"]},
    "context_qa": lambda f, r: {"article": f"{f['say']} This is a well known fact.", "question": _ask(f),
                                "answer": f["short"]},
    "context_qa.load_v2": lambda f, r: {"context": f["say"], "question": _ask(f), "answer": f["short"]},
    "context_qa.load_404": lambda f, r: {"article": f["say"], "unanswerable_question": "Who wrote this fact down?"},
    "metharme": lambda f, r: {"prompt": f"<|user|>{_ask(f)}<|model|>", "generation": f["say"]},
    "creative_acr.load_answer": lambda f, r: {"instruction": _ask(f), "revision": f["say"]},
    "creative_acr.load_critique": lambda f, r: {
        "instruction": _ask(f), "answer": f["short"], "scores": {"refusal": 10, "creativity": 3},
        "critiques": {"creativity": {"explanation": "Only one word.", "improvements": "Use a sentence."}}},
    "creative_acr.load_revise": lambda f, r: {
        "instruction": _ask(f), "answer": f["short"], "scores": {"refusal": 10, "creativity": 3},
        "critiques": {"creativity": {"explanation": "Only one word.", "improvements": "Use a sentence."}},
        "revision": f["say"]},
}


def chat_rows(rng: random.Random, n: int, role="role", content="content", user="user", bot="assistant",
              key="messages") -> list[dict]:
    """Conversations: one turn (most), with a system message (1 in 6), or two turns (1 in 6)."""
    out = []
    for _ in range(n):
        a, b = facts(rng, 2)
        kind = rng.randrange(6)
        msgs = [{role: "system", content: SYSTEM}] if kind == 0 else []
        msgs += [{role: user, content: _ask(a)}, {role: bot, content: a["say"]}]
        if kind == 1:
            msgs += [{role: user, content: _ask(b)}, {role: bot, content: b["say"]}]
        out.append({key: msgs})
    return out


def raw_rows(rng: random.Random, n: int) -> dict[str, list[dict]]:
    """completion, input_output and user-defined (custom) rows."""
    fs = facts(rng, 3 * n)
    return {
        "completion.jsonl": [{"text": " ".join(f["say"] for f in fs[3 * i:3 * i + 3])} for i in range(n)],
        "input_output.jsonl": [{"segments": [{"label": False, "text": f"<|begin_of_text|>Q: {_ask(f)}\nA:"},
                                             {"label": True, "text": f" {f['say']}<|end_of_text|>"}]} for f in fs[:n]],
        "custom.jsonl": [{"question": _ask(f), "answer": f["say"]} for f in fs[:n]],
    }


def pretokenized_rows(n: int) -> list[dict]:
    """Alpaca rows tokenized with the tiny:llama tokenizer (ids are only valid for that tokenizer)."""
    import sys

    sys.path.insert(0, str(HERE.parent))
    from transformers import AutoTokenizer

    from ftkit.formats import AlpacaStrategy
    from ftkit.formats.tokenize import encode_segments
    from ftkit.models.tiny import tiny_path

    tok = AutoTokenizer.from_pretrained(tiny_path("tiny:llama"))
    strategy = AlpacaStrategy()
    out = []
    for row in alpaca_rows(random.Random(7), n):
        ex = encode_segments(strategy.segments(row), tok)
        out.append({"input_ids": ex["input_ids"], "labels": ex["labels"]})
    return out


# file -> the `datasets:` stanza that reads it (the README and `ftkit bench preprocess` use this table)
CATALOG = {
    "alpaca.jsonl": {"type": "alpaca"},
    "chat.jsonl": {"type": "chat_template", "roles_to_train": ["assistant"], "train_on_eos": "turn"},
    "sharegpt.jsonl": {"type": "sharegpt", "conversation": "llama3"},
    "completion.jsonl": {"type": "completion", "field": "text"},
    "input_output.jsonl": {"type": "input_output"},
    "pretokenized.jsonl": {"type": "pretokenized"},
    "custom.jsonl": {"type": {"field_instruction": "question", "field_output": "answer",
                              "format": "### Question:\n{instruction}\n### Answer:\n",
                              "no_input_format": "### Question:\n{instruction}\n### Answer:\n"}},
    **{f"instruct/{t}.jsonl": {"type": t} for t in INSTRUCT_ROWS},
}


def readme() -> str:
    """data_samples/README.md: each file's row shape and the recipe stanza that reads it (generated)."""
    import yaml

    parts = [README_HEAD]
    for name, stanza in CATALOG.items():
        with open(HERE / name, encoding="utf-8") as f:
            first = json.loads(f.readline())
        if "input_ids" in first:
            first = {k: v[:8] + ["..."] for k, v in first.items()}
        block = yaml.safe_dump({"datasets": [{"path": f"data_samples/{name}", **stanza}]}, sort_keys=False, width=120)
        parts.append(f"### `{name}`\n\nRow:\n\n```json\n{json.dumps(first, ensure_ascii=False)}\n```\n\n"
                     f"Recipe:\n\n```yaml\n{block}```\n")
    return "\n".join(parts)


README_HEAD = """# data_samples: one small dataset per format

Generated by `python data_samples/make_samples.py` (deterministic; do not edit by hand; a test checks
this file is current). Rows are synthetic facts written for this project (capitals, opposites,
colours, animal sounds, plurals), so the tiny model can learn them on a CPU. `ftkit bench preprocess`
measures every file below. Exact token ids and masks for each format are asserted in
`tests/test_prompts.py`.

| format family | types | file |
|---|---|---|
| instruction (alpaca family) | alpaca, alpaca:chat/:chatml/:phi/:instruct (Axolotl's prompt styles), alpaca_chat(.load_qa/.load_concise/.load_camel_ai), alpaca_w_system(.load_instruct/.load_open_orca), jeopardy, oasst, gpteacher, reflection, explainchoice, concisechoice, summarizetldr, context_qa(.load_v2/.load_404), metharme, creative_acr.load_answer/.load_critique/.load_revise | `alpaca.jsonl`, `instruct/<type>.jsonl` |
| conversation | chat_template (options: field_messages, message_property_mappings, message_field_role, message_field_content, message_field_training, roles, roles_to_train, train_on_eos, train_on_eot, drop_system_message, field_tools, chat_template), sharegpt (conversation, field_human, field_model) | `chat.jsonl`, `sharegpt.jsonl` |
| template-free | completion (field, chunk_long_rows), input_output, pretokenized (also: no `type:` and rows with input_ids) | `completion.jsonl`, `input_output.jsonl`, `pretokenized.jsonl` |
| custom | `type:` as a mapping (system_prompt, system_format, field_system, field_instruction, field_input, field_output, format, no_input_format) | `custom.jsonl` |
| preference (`rl:`) | chat_template.prompt_pairs / .intel / .ultra / .argilla_chat / .default, KTO prompt/completion/label | see [PREFERENCE.md](PREFERENCE.md) (`make_preference_samples.py`) |

## What is trained (labels), in one place: `ftkit/formats/tokenize.py`

- Text formats: bos first when the tokenizer habitually adds one (masked), the prompt masked, the answer
  trained, then eos (trained; metharme writes 3). `train_on_inputs: true` trains the prompt too.
- input_output: exactly the segments; nothing is added (write bos/eos into the text if you want them).
- pretokenized: `input_ids` and `labels` as given (labels default to input_ids). A dataset with no `type:`
  whose rows carry `input_ids` is read this way (Axolotl passes such rows through); other rows are alpaca.
- completion: rows longer than `sequence_len` are split into chunks of `sequence_len` tokens (bos only in
  the first, eos only in the last), as Axolotl does; `chunk_long_rows: false` drops them instead (counted).
- Neighbouring segments with the same label are joined and tokenized as one string, and each piece is
  tokenized on its own, so the prompt tokens are exactly what an inference server gets for the prompt
  string. `ftkit preprocess RECIPE --check-parity` proves it for sampled rows.
- chat_template / sharegpt: the conversation is rendered by `tokenizer.apply_chat_template`; turn
  boundaries come from rendering prefixes of the conversation. Trained: the content of turns whose role is
  in `roles_to_train` (default `[assistant]`; all roles with `train_on_inputs`; a message may carry
  `"training": true/false`, key `message_field_training`), never the role headers or bos. Content is
  trained as the template writes it: a template that keeps it verbatim (chatml) trains an answer's trailing
  whitespace too ("ok\\n"), and an answer starting with a space is tokenized as the model generates it after
  the header. The end-of-turn token (`eot_tokens`, default the template's own: `<|eot_id|>`, `<|im_end|>`,
  `<end_of_turn>`, `<|end|>`, or eos for mistral and unknown templates) follows `train_on_eot` (default
  `train_on_eos`): `turn` (default: after trained turns, so with `train_on_inputs` after every turn), `last`
  (after the last trained turn), `all`, `none`. Messages' keys follow `message_property_mappings` (other
  properties, e.g. name, reach the template); a `system` column opens the conversation, as in Axolotl.
- `chat_template:` (recipe level, or per dataset): `tokenizer_default`, `tokenizer_default_fallback_NAME`,
  a name (chatml, llama3, mistral, gemma, qwen, phi3, and Axolotl's qwen_25, qwen3, gemma3, phi_3; their
  special tokens are added) or Jinja text (`chat_template_jinja`: the text or a file). The
  recipe-level one is written into the saved tokenizer.
- sharegpt with `conversation:` names a FastChat template (vicuna_v1.1, alpaca, llama-2, mistral, chatml,
  llama3, zephyr, gemma, ...): the rows are rendered as FastChat wrote them, as Axolotl's sharegpt type did,
  and the assistant turns are trained (see docs/axolotl-data.md for the list and the masking). Without
  `conversation:` sharegpt rows are rendered by the tokenizer's chat template, like chat_template.
"""


def main() -> None:
    write_jsonl("alpaca.jsonl", alpaca_rows(random.Random(0), 2400))
    (HERE.parent / "ftkit" / "assets" / "tiny_corpus.txt").write_text(corpus_text(), encoding="utf-8")
    write_jsonl("chat.jsonl", chat_rows(random.Random(11), 2400))
    write_jsonl("sharegpt.jsonl", chat_rows(random.Random(12), 200, "from", "value", "human", "gpt", "conversations"))
    for name, rows in raw_rows(random.Random(13), 200).items():
        write_jsonl(name, rows)
    (HERE / "instruct").mkdir(exist_ok=True)
    rng = random.Random(14)
    for t, build in INSTRUCT_ROWS.items():
        write_jsonl(f"instruct/{t}.jsonl", [build(f, rng) for f in facts(rng, 40)])
    write_jsonl("pretokenized.jsonl", pretokenized_rows(100))
    (HERE / "README.md").write_text(readme(), encoding="utf-8")
    print("wrote", len(CATALOG), "sample files, data_samples/README.md and ftkit/assets/tiny_corpus.txt")


if __name__ == "__main__":
    main()
