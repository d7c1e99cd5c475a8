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


def main() -> None:
    write_jsonl("alpaca.jsonl", alpaca_rows(random.Random(0), 2400))
    (HERE.parent / "ftkit" / "assets" / "tiny_corpus.txt").write_text(corpus_text(), encoding="utf-8")
    print("wrote", HERE / "alpaca.jsonl", "and ftkit/assets/tiny_corpus.txt")


if __name__ == "__main__":
    main()
