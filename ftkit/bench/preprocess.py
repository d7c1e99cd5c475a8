"""`ftkit bench preprocess`: rows/s and tokens/s of tokenization for every data_samples file.

Each file is read with the stanza data_samples/make_samples.py lists for it (CATALOG), on the chosen
tokenizer. Printed side by side in one run: the cold prepare (load + tokenize + filter + cache write)
and the warm re-run that re-uses the cache, with their ratio.
"""
from __future__ import annotations

import importlib.util
import tempfile
import time
from pathlib import Path

from ftkit.resources import shipped

ROOT = shipped("")


def catalog() -> dict:
    """data_samples/make_samples.py's CATALOG: file -> datasets stanza."""
    spec = importlib.util.spec_from_file_location("make_samples", ROOT / "data_samples" / "make_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CATALOG


def measure(name: str, stanza: dict, base_model: str, work: Path) -> dict:
    """Cold and warm prepare() of one sample file; returns rows, tokens and seconds."""
    from ftkit import data, models
    from ftkit.recipe import load_recipe

    recipe = load_recipe({"base_model": base_model, "sequence_len": 1024, "dataset_prepared_path": str(work),
                          "datasets": [{"path": str(ROOT / "data_samples" / name), **stanza}]})
    tok = models.load_tokenizer(recipe)
    t0 = time.perf_counter()
    prepared = data.prepare(recipe, tok)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = data.prepare(recipe, tok)
    warm = time.perf_counter() - t0
    assert again.cache_hit, name
    return {"rows": prepared.stats["rows_in"], "tokens": prepared.stats.get("tokens", 0), "cold": cold, "warm": warm}


def run(base_model: str = "tiny:llama") -> list[dict]:
    import datasets

    datasets.disable_progress_bars()
    rows = []
    print(f"ftkit bench preprocess ({base_model}): cold = load + tokenize + filter + cache write; warm = cache re-use")
    print(f"{'file':44} {'rows':>6} {'tokens':>8} {'rows/s':>9} {'tokens/s':>10} {'cold s':>7} {'warm s':>7} {'cold/warm':>9}")
    with tempfile.TemporaryDirectory() as work:
        for name, stanza in catalog().items():
            r = measure(name, stanza, base_model, Path(work))
            rows.append({"file": name, **r})
            print(f"{name:44} {r['rows']:6d} {r['tokens']:8d} {r['rows'] / r['cold']:9.0f} {r['tokens'] / r['cold']:10.0f} "
                  f"{r['cold']:7.2f} {r['warm']:7.3f} {r['cold'] / r['warm']:8.0f}x")
    total_rows, total_tok = sum(r["rows"] for r in rows), sum(r["tokens"] for r in rows)
    total_cold = sum(r["cold"] for r in rows)
    print(f"{'all':44} {total_rows:6d} {total_tok:8d} {total_rows / total_cold:9.0f} {total_tok / total_cold:10.0f} "
          f"{total_cold:7.2f} {sum(r['warm'] for r in rows):7.3f}")
    return rows
