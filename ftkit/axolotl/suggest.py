"""Did-you-mean by meaning, then by spelling: which real option an unknown key is a near miss of, if any.

A near miss stays an error with its suggestion; any other unknown key is one Axolotl would drop, accepted and
said. So a suggestion must be a real near miss, not the closest string: names are split at `_` into words,
each word read through the meaning table of catalogue.yaml (rank -> r, lr -> learning rate, plurals singular,
fillers such as num/max dropped), and a key matches an option when

    1. the meaning table names it whole           model_name_or_path -> base_model
    2. both have the same words                   lora_rank -> lora_r, train_on_input -> train_on_inputs
    3. both are the same letters without `_`      micro_batchsize -> micro_batch_size
    4. one word, or the whole key, is misspelt (1 edit; 2 from 8 letters; short words: a letter more or less):
                                                  lerning_rate -> learning_rate, feild -> field
but lora_rank is not local_rank (lora/local is 2 edits in short words) and report_to is not eot_tokens.
"""
from __future__ import annotations

import difflib
from typing import Iterable


def edits(a: str, b: str) -> int:
    """Optimal-string-alignment distance: insertions, deletions, substitutions, adjacent swaps (feild/field: 1)."""
    rows = [list(range(len(b) + 1))]
    for i, ca in enumerate(a, 1):
        row = [i]
        for j, cb in enumerate(b, 1):
            row.append(min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + (ca != cb)))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                row[j] = min(row[j], rows[-2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


def _singular(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def words(name: str, meaning: dict) -> list[str]:
    """'micro_batchsize' -> ['micro', 'batch', 'size']; 'num_epochs' -> ['epoch'] (num is a filler)."""
    out = []
    for word in name.lower().replace("-", "_").split("_"):
        mapped = meaning["words"].get(word, word) if word else []
        for w in mapped if isinstance(mapped, list) else [mapped]:
            if _singular(w) not in meaning["fillers"]:
                out.append(_singular(w))
    return out


def _misspelt(a: str, b: str) -> int | None:
    """The edit count when a and b are one misspelling apart: 1 edit (2 from 8 letters); in words of under 4
    letters only a letter too many or too few (nrm/norm, rr/r; gpu/cpu is another word)."""
    n = edits(a, b)
    if min(len(a), len(b)) < 4 and n != abs(len(a) - len(b)):
        return None
    return n if 0 < n <= (2 if min(len(a), len(b)) >= 8 else 1) else None


def _tier(key: str, kw: list[str], name: str, meaning: dict) -> tuple[int, int] | None:
    """(how the key matches this option: lower is surer, the edits it took), or None when it does not."""
    nw = words(name, meaning)
    if kw and sorted(kw) == sorted(nw):
        return 2, 0
    if key.replace("_", "") == name.replace("_", ""):
        return 3, 0
    if len(kw) == len(nw):
        diff = [(a, b) for a, b in zip(kw, nw) if a != b]
        if len(diff) == 1 and (n := _misspelt(*diff[0])) is not None:
            return 4, n
    n = _misspelt(key, name)
    return (4, n) if n is not None else None


def suggest(key: str, names: Iterable[str], meaning: dict, prefer: Iterable[str] = ()) -> str | None:
    """The option `key` is a near miss of, or None (then it is not an option Axolotl reads). Between equally
    good matches a name in `prefer` (the recipe fields, not their other names) wins, then the closer spelling."""
    names, prefer = [n for n in dict.fromkeys(names) if n != key], set(prefer)
    if meaning["names"].get(key) in names:
        return meaning["names"][key]
    kw = words(key, meaning)
    found = [(t, n not in prefer, -difflib.SequenceMatcher(None, key, n).ratio(), n) for n in names
             if (t := _tier(key, kw, n, meaning)) is not None]
    return min(found)[-1] if found else None
