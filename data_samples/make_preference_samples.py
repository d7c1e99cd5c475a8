"""Writes the preference sample sets in data_samples/ (deterministic; run from the repo root).

Written for this project so the tiny random-init model can learn the preference within a few dozen
steps: every chosen answer is a calm sentence that ends with a period ("The sky is blue."), every
rejected answer breaks that rule by exclaiming ("The sky is blue!"). Both have the same number of
tokens, so before training the random model prefers neither (a shouted, longer answer would look
"worse" to any model just by being longer); the rule is one token, so a margin learned on training
pairs carries over to held-out prompts.

    python data_samples/make_preference_samples.py

Files (one per dataset shape; see data_samples/PREFERENCE.md):
    preference_pairs.jsonl    prompt / chosen / rejected strings           type: chat_template.prompt_pairs
    preference_intel.jsonl    system / question / chosen / rejected        type: chat_template.intel (Intel orca_dpo_pairs)
    preference_ultra.jsonl    prompt + chosen/rejected message lists       type: chat_template.ultra (ultrafeedback binarized)
    preference_chat.jsonl     chosen/rejected message lists, multi-turn   type: chat_template.argilla_chat
    kto.jsonl                 prompt / completion / label                  type: chat_template.prompt_pairs with rl: kto
    preference_heldout.jsonl  prompt / chosen / rejected, unseen facts     for before/after comparisons
"""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import make_samples as _facts  # noqa: E402

# The facts are the supervised samples' own (make_samples.py), a subset of them.
CAPITALS = dict(list(_facts.CAPITALS.items())[:20])
OPPOSITES = dict(list(_facts.OPPOSITES.items())[:16])
COLORS = {"the sky": "blue", "grass": "green", "snow": "white", "a banana": "yellow", "a plum": "purple",
          "coal": "black", "a leaf": "green", "an orange": "orange", "a cherry": "red", "milk": "white"}
SOUNDS = {"dog": "woof", "cat": "meow", "cow": "moo", "duck": "quack", "sheep": "baa", "owl": "hoot"}
SYSTEM = "You are a calm assistant."


def facts() -> list[tuple[str, str]]:
    """(question, calm answer) pairs."""
    out = [(f"What is the capital of {c}?", f"The capital of {c} is {city}.") for c, city in CAPITALS.items()]
    out += [(f"Give the opposite of the word {w}.", f"The opposite of {w} is {o}.") for w, o in OPPOSITES.items()]
    out += [(f"What color is {t}?", f"{t[0].upper() + t[1:]} is {c}.") for t, c in COLORS.items()]
    out += [(f"What sound does a {a} make?", f"The {a} says {s}.") for a, s in SOUNDS.items()]
    return out


def shout(answer: str) -> str:
    """The rejected style: the same words, exclaimed ("The sky is blue." -> "The sky is blue!")."""
    return answer.rstrip(".") + "!"


def split() -> tuple[list, list]:
    """Every fifth fact is held out, so held-out prompts are never trained on."""
    rows = facts()
    random.Random(0).shuffle(rows)
    return [r for i, r in enumerate(rows) if i % 5], [r for i, r in enumerate(rows) if not i % 5]


def write(name: str, rows: list[dict]) -> None:
    with open(HERE / name, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {name}: {len(rows)} rows")


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def main() -> None:
    train, heldout = split()
    rng = random.Random(1)
    reps = 4  # 4 x 41 training facts = 164 pairs per file, shuffled
    many = [r for _ in range(reps) for r in train]
    rng.shuffle(many)
    write("preference_pairs.jsonl", [{"prompt": q, "chosen": a, "rejected": shout(a)} for q, a in many])
    write("preference_intel.jsonl", [{"system": SYSTEM, "question": q, "chosen": a, "rejected": shout(a)}
                                     for q, a in many])
    write("preference_ultra.jsonl", [{"prompt": q, "chosen": [user(q), assistant(a)],
                                      "rejected": [user(q), assistant(shout(a))]} for q, a in many])
    chat = []
    for (q1, a1), (q2, a2) in zip(many[::2], many[1::2]):  # two-turn chats; only the last answer differs
        turns = [user(q1), assistant(a1), user(q2)]
        chat.append({"chosen": turns + [assistant(a2)], "rejected": turns + [assistant(shout(a2))]})
    write("preference_chat.jsonl", chat)
    kto = [{"prompt": q, "completion": a if i % 2 == 0 else shout(a), "label": i % 2 == 0}
           for i, (q, a) in enumerate(many)]
    write("kto.jsonl", kto)
    write("preference_heldout.jsonl", [{"prompt": q, "chosen": a, "rejected": shout(a)} for q, a in heldout])


if __name__ == "__main__":
    main()
