"""The prepared-data cache: a fingerprint of everything that shapes the prepared rows, and atomic writes.

A cache directory is trusted only if its marker (written last) names the same fingerprint and version,
so a preprocess killed mid-write never leaves a cache that looks complete.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from ftkit.log import log
from ftkit.recipe import Recipe

PREPARE_VERSION = "5"  # bump when row preparation changes, so older caches are never trusted
MARKER = "ftkit_prepared.json"
RECIPE_KEYS = ("rl", "sequence_len", "train_on_inputs", "val_set_size", "seed", "excess_length_strategy",
               "shuffle_merged_datasets", "dataset_shard_num", "dataset_shard_idx", "chat_template", "eot_tokens",
               "chat_template_kwargs", "default_system_message", "dataset_exact_deduplication",
               "shuffle_before_merging_datasets")


def _hash_file(path: str, h) -> None:
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)


def tokenizer_fingerprint(tokenizer) -> str:
    """Vocabulary, merges and added tokens (the backend's JSON), chat template and special tokens."""
    h = hashlib.sha256()
    h.update(tokenizer.backend_tokenizer.to_str().encode() if hasattr(tokenizer, "backend_tokenizer") else
             json.dumps(tokenizer.get_vocab(), sort_keys=True).encode())
    h.update(str(tokenizer.chat_template).encode())
    h.update(json.dumps([str(tokenizer.bos_token), str(tokenizer.eos_token), str(tokenizer.pad_token),
                         len(tokenizer)]).encode())
    return h.hexdigest()


def fingerprint(recipe: Recipe, tokenizer, sources: list[str]) -> str:
    """Everything that shapes the prepared rows: data bytes, formats, method (dpo and kto rows differ),
    tokenizer and template, length, masking, mixing and split."""
    h = hashlib.sha256(PREPARE_VERSION.encode())
    for s in sources:
        h.update(s.encode())
        p = Path(s)
        for f in ([p] if p.is_file() else sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else []):
            _hash_file(str(f), h)
    h.update(json.dumps([d.model_dump(mode="json") for d in recipe.datasets], sort_keys=True).encode())
    h.update(json.dumps([getattr(recipe, k) for k in RECIPE_KEYS]).encode())
    h.update(tokenizer_fingerprint(tokenizer).encode())
    return h.hexdigest()[:16]


def load(path: Path, fp: str) -> tuple[object, object | None, dict] | None:
    """(train, eval, stats) cached at path, only if its marker names this fingerprint; else None."""
    import datasets

    marker = path / MARKER
    if not marker.is_file():
        return None
    try:
        meta = json.loads(marker.read_text())
        if meta.get("fingerprint") != fp or meta.get("version") != PREPARE_VERSION:
            return None
        train = datasets.load_from_disk(str(path / "train"))
        ev = datasets.load_from_disk(str(path / "eval")) if (path / "eval").exists() else None
    except (OSError, ValueError, KeyError) as e:
        log.info(f"prepared cache {path} is unreadable ({e}); preparing again")
        return None
    return train, ev, meta["stats"]


def save(train, ev, stats: dict, path: Path, fp: str) -> None:
    """Write to a temp dir and rename: a killed preprocess never leaves a cache that looks complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=path.parent))
    try:
        train.save_to_disk(str(tmp / "train"))
        if ev is not None:
            ev.save_to_disk(str(tmp / "eval"))
        meta = {"fingerprint": fp, "version": PREPARE_VERSION, "stats": stats}
        (tmp / MARKER).write_text(json.dumps(meta, indent=1))  # the marker: written last
        if path.exists():
            shutil.rmtree(path)
        os.rename(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
