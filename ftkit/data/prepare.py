"""Data preparation: load files -> prompt strategy -> tokens + labels -> filter (counted) -> mix -> split -> cache.

Reading files is files.py's; tokenizing is the prompt formats' (ftkit/formats/). This module runs them,
counts what it drops, mixes and splits, and keeps a prepared-data cache keyed by a fingerprint of
everything that shapes the tokens, written atomically.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ftkit.data import dedup, order, packing
from ftkit.data.files import check_json_lines, load_raw, locate_files
from ftkit.errors import DataError, Problem
from ftkit.formats import RowError, strategy_for
from ftkit.formats.tokenize import IGNORE
from ftkit.log import log
from ftkit.recipe import DatasetSpec, Recipe

PREPARE_VERSION = "4"  # bump when tokenization changes, so older caches are never trusted
AUTO_PROCESSES_FROM = 20_000  # rows; below this, worker start-up costs more than it saves


@dataclass
class Prepared:
    """Tokenized train (and eval) sets with the counts of what was kept and dropped."""

    train: object
    eval: object | None
    stats: dict = field(default_factory=dict)
    cache_hit: bool = False
    cache_dir: str | None = None

    def summary(self) -> str:
        s = self.stats
        lines = [f"[ftkit] data: {s['rows_in']} rows in, {s['kept']} kept "
                 f"({s['dropped_too_long']} dropped longer than sequence_len={s['sequence_len']}, "
                 f"{s.get('truncated', 0)} truncated, "
                 f"{s['dropped_no_trainable']} dropped with nothing to train on); "
                 f"{s['train_rows']} train / {s['eval_rows']} eval"]
        if s.get("kept"):
            lines.append(f"[ftkit] tokens per row: mean {s['len_mean']:.1f}, p95 {s['len_p95']}, max {s['len_max']}; "
                         f"trained-token fraction {s['trained_fraction']:.2f}")
        for name, d in s.get("per_dataset", {}).items():
            lines.append(f"[ftkit]   {name}: {d['rows_in']} in, {d['kept']} kept, "
                         f"{d['dropped_too_long']} too long, {d.get('truncated', 0)} truncated, "
                         f"{d['dropped_no_trainable']} untrainable; mean {d.get('len_mean', 0):.1f} tokens")
        if self.cache_dir:
            lines.append(f"[ftkit] prepared cache {'re-used' if self.cache_hit else 'written'}: {self.cache_dir}")
        return "\n".join(lines)


# ---------------------------------------------------------------- tokenizing

def _locate_row(files: list[str], idx: int) -> tuple[str, int | None, int]:
    """(file, line or None, row index in that file) of the idx-th row across a dataset's files."""
    for f in files:
        if not f.endswith(".jsonl"):
            return f, None, idx
        lines = check_json_lines(Path(f))
        if idx < len(lines):
            return f, lines[idx], idx
        idx -= len(lines)
    return files[0], None, idx


def _row_error(e: RowError, files: list[str], idx: int) -> DataError:
    file, line, row = _locate_row(files, idx)
    where = e.field if line is not None else f"row {row + 1}, field {e.field}"
    return DataError(Problem(e.problem, file, where, line, e.fix))


def tokenize_dataset(ds, spec: DatasetSpec, recipe: Recipe, tokenizer, files: list[str], where: str,
                     num_proc: int | None = None, fingerprint: str | None = None):
    """Map rows to input_ids/labels/attention_mask with the spec's prompt strategy (batched, one tokenizer call)."""
    strategy = strategy_for(spec, recipe, tokenizer, where)
    offset = getattr(ds, "ftkit_row_offset", 0)

    def encode(batch, idxs):
        rows = [dict(zip(batch.keys(), values)) for values in zip(*batch.values())]
        try:
            return strategy.encode_batch(rows, tokenizer)
        except RowError as e:
            raise _row_error(e, files, offset + idxs[e.row]) from None

    return ds.map(encode, batched=True, with_indices=True, remove_columns=ds.column_names, num_proc=num_proc,
                  load_from_cache_file=False, new_fingerprint=fingerprint and f"{fingerprint}-tok",
                  desc=f"tokenizing {Path(spec.path).name}")


def _filter(ds, recipe: Recipe, fingerprint: str | None = None) -> tuple[object, int, int, int]:
    """Drop (or truncate) rows longer than sequence_len and drop rows with no trained token; all counted."""
    n, limit = len(ds), recipe.sequence_len
    too_long = sum(1 for ids in ds["input_ids"] if len(ids) > limit)
    truncated = 0
    if too_long and recipe.excess_length_strategy == "truncate":
        ds = ds.map(lambda b: {k: [v[:limit] for v in b[k]] for k in ("input_ids", "labels", "attention_mask")},
                    batched=True, load_from_cache_file=False,
                    new_fingerprint=fingerprint and f"{fingerprint}-cut", desc="truncating to sequence_len")
        truncated, too_long = too_long, 0
    elif too_long:
        ds = ds.filter(lambda b: [len(x) <= limit for x in b["input_ids"]], batched=True, load_from_cache_file=False,
                       new_fingerprint=fingerprint and f"{fingerprint}-len", desc="dropping rows > sequence_len")
    n = len(ds)
    ds = ds.filter(lambda b: [any(t != IGNORE for t in labels) for labels in b["labels"]], batched=True,
                   load_from_cache_file=False, new_fingerprint=fingerprint and f"{fingerprint}-empty",
                   desc="dropping rows with nothing to train")
    return ds, too_long, n - len(ds), truncated


def token_stats(ds) -> dict:
    lengths = [len(x) for x in ds["input_ids"]]
    if not lengths:
        return {}
    trained = sum(sum(1 for t in labels if t != IGNORE) for labels in ds["labels"])
    ordered = sorted(lengths)
    return {"len_mean": statistics.fmean(lengths), "len_p95": ordered[int(0.95 * (len(ordered) - 1))],
            "len_max": ordered[-1], "tokens": sum(lengths), "trained_fraction": trained / sum(lengths)}


# ---------------------------------------------------------------- cache

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


RECIPE_KEYS = ("sequence_len", "train_on_inputs", "val_set_size", "seed", "excess_length_strategy",
               "shuffle_merged_datasets", "dataset_shard_num", "dataset_shard_idx", "chat_template", "eot_tokens",
               "chat_template_kwargs", "default_system_message", "dataset_exact_deduplication",
               "shuffle_before_merging_datasets")


def fingerprint(recipe: Recipe, tokenizer, sources: list[str]) -> str:
    """Everything that shapes the prepared tokens: data bytes, formats, tokenizer, length, masking."""
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


def _load_cache(path: Path, fp: str):
    """The prepared data at path, only if its marker (written last) names this fingerprint."""
    import datasets

    marker = path / "ftkit_prepared.json"
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
    return Prepared(train, ev, meta["stats"], cache_hit=True, cache_dir=str(path))


def _save_cache(prepared: Prepared, path: Path, fp: str) -> None:
    """Write to a temp dir and rename: a killed preprocess never leaves a cache that looks complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=path.parent))
    try:
        prepared.train.save_to_disk(str(tmp / "train"))
        if prepared.eval is not None:
            prepared.eval.save_to_disk(str(tmp / "eval"))
        meta = {"fingerprint": fp, "version": PREPARE_VERSION, "stats": prepared.stats}
        (tmp / "ftkit_prepared.json").write_text(json.dumps(meta, indent=1))  # the marker: written last
        if path.exists():
            shutil.rmtree(path)
        os.rename(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    prepared.cache_dir = str(path)


# ---------------------------------------------------------------- the one entry point

def _processes(recipe: Recipe, rows: int) -> int | None:
    if recipe.dataset_processes:
        return recipe.dataset_processes if recipe.dataset_processes > 1 else None
    if rows >= AUTO_PROCESSES_FROM and (os.cpu_count() or 1) > 1:
        log.info(f"dataset_processes: {os.cpu_count()} (auto: {rows} rows; set dataset_processes to change)")
        return os.cpu_count()
    return None


def _prepare_one(i: int, spec: DatasetSpec, raw, files, recipe, tokenizer, fp):
    """Tokenize and filter one dataset; returns (kept dataset, its per-dataset stats)."""
    where = f"datasets.{i}"
    tokenized = tokenize_dataset(raw, spec, recipe, tokenizer, files, where, _processes(recipe, len(raw)),
                                 f"{fp}-{i}")
    tokenized = tokenized.add_column(order.ROW, list(range(len(tokenized))))  # for Axolotl's shuffle-then-filter order
    kept, too_long, empty, truncated = _filter(tokenized, recipe, f"{fp}-{i}")
    stats = {"rows_in": len(raw), "tokenized_rows": len(tokenized), "kept": len(kept), "dropped_too_long": too_long,
             "truncated": truncated, "dropped_no_trainable": empty, **token_stats(kept)}
    if not len(kept):
        longest = max(len(x) for x in tokenized["input_ids"])
        raise DataError(Problem(f"no usable rows: {too_long} of {len(raw)} are longer than sequence_len="
                                f"{recipe.sequence_len} (the longest has {longest} tokens), {empty} have nothing to "
                                "train on", files[0], f"{where}.path",
                                fix=f"raise sequence_len to at least {longest}, set excess_length_strategy: truncate, "
                                    "or check that the dataset type matches the rows"))
    return kept, stats


def prepare(recipe: Recipe, tokenizer) -> Prepared:
    """Tokenized, filtered, mixed and split data for the recipe (from the cache when nothing changed)."""

    located = [locate_files(spec, recipe, f"datasets.{i}") for i, spec in enumerate(recipe.datasets)]
    hub = {i: load_raw(spec, recipe, f"datasets.{i}") for i, (spec, (kind, _)) in
           enumerate(zip(recipe.datasets, located)) if kind == "hub"}
    sources = [str(f) for _, fs in located for f in fs] + [f"hub:{ds._fingerprint}" for ds, _ in hub.values()]
    fp = fingerprint(recipe, tokenizer, sources)
    cache = Path(recipe.dataset_prepared_path) / fp if recipe.dataset_prepared_path else None
    if cache is not None and (hit := _load_cache(cache, fp)) is not None:
        log.info(f"re-using prepared data from {cache} (fingerprint {fp} matches)")
        return packing.apply(hit, recipe)  # sample_packing: rows -> packed rows

    parts, per_dataset = [], {}
    for i, spec in enumerate(recipe.datasets):
        raw, files = hub[i] if i in hub else load_raw(spec, recipe, f"datasets.{i}")
        kept, per_dataset[f"{i}:{Path(spec.path).name}"] = _prepare_one(i, spec, raw, files, recipe, tokenizer, fp)
        parts.append(kept)
    ds = order.merge(parts, [d["tokenized_rows"] for d in per_dataset.values()], recipe)  # shuffled as Axolotl does
    duplicates = 0
    if recipe.dataset_exact_deduplication:
        ds, duplicates = dedup.drop_exact_duplicates(ds)
    if recipe.dataset_shard_num:
        ds = ds.shard(num_shards=recipe.dataset_shard_num, index=recipe.dataset_shard_idx)
    ev = None
    if recipe.val_set_size:
        size = recipe.val_set_size if recipe.val_set_size < 1 else int(recipe.val_set_size)
        split = ds.train_test_split(test_size=size, seed=recipe.seed, shuffle=False)  # eval = the last rows (Axolotl)
        ds, ev = split["train"], split["test"]
    totals = {k: sum(d[k] for d in per_dataset.values())
              for k in ("rows_in", "kept", "dropped_too_long", "truncated", "dropped_no_trainable")}
    stats = {**totals, "dropped_duplicate": duplicates, "train_rows": len(ds), "eval_rows": len(ev) if ev is not None else 0,
             "sequence_len": recipe.sequence_len, "per_dataset": per_dataset, **token_stats(ds)}
    prepared = Prepared(ds, ev, stats)
    if cache is not None:
        _save_cache(prepared, cache, fp)
    return packing.apply(prepared, recipe)  # sample_packing: rows -> packed rows


def show_mask(example: dict, tokenizer, color: bool = False) -> str:
    """One example as text, trained tokens marked: `[[answer]]` (or green with color=True), masked plain.

    A pure function, used by `ftkit preprocess --debug` and the notebooks' mask inspector.
    """
    out, trained_run = [], []

    def flush():
        if trained_run:
            text = tokenizer.decode(trained_run)
            out.append(f"\x1b[32m{text}\x1b[0m" if color else f"[[{text}]]")
            trained_run.clear()

    masked_run: list[int] = []
    for tok, lab in zip(example["input_ids"], example["labels"]):
        if lab == IGNORE:
            flush()
            masked_run.append(tok)
        else:
            if masked_run:
                out.append(tokenizer.decode(masked_run))
                masked_run = []
            trained_run.append(tok)
    if masked_run:
        out.append(tokenizer.decode(masked_run))
    flush()
    return "".join(out)
