"""Data preparation, one path for every method: read -> convert per dataset (drops counted) -> mix -> shuffle
-> shard -> split -> cache -> pack (sample_packing: plugins/packing.py, through ftkit/hooks.py).

The per-dataset conversion is the method's: SFT rows become input_ids/labels (data/sft.py); a method beyond SFT
brings its own through ftkit/hooks.py (`rows`: preference pairs become TRL's conversational rows, GRPO rows
prompts; ftkit/plugins/). Everything around it is shared: the fingerprinted cache (the method is part of the
fingerprint), dataset_processes, the seeded shuffle, dataset_shard_num/idx and the val_set_size split.
Packing applies to SFT rows only.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ftkit import hooks
from ftkit.data import cache
from ftkit.data import sft as sft_rows
from ftkit.data.cache import fingerprint  # noqa: F401  (part of this module's interface)
from ftkit.data.files import load_raw, locate_files
from ftkit.data.sft import show_mask  # noqa: F401  (part of this module's interface)
from ftkit.env import idle_cores, usable_cores
from ftkit.errors import ConfigError, Problem
from ftkit.formats.prompt import Prompt
from ftkit.log import log
from ftkit.recipe import Recipe
from ftkit.recipe.base import GRPO, PAIRED, method_of

AUTO_PROCESSES_FROM = 20_000  # rows; below this, worker start-up costs more than it saves
# how each drop reason reads in the summary: (total line, per-dataset line)
DROP_LABELS = {"too_long": ("longer than sequence_len={n}", "too long"),
               "too_short": ("shorter than min_sample_len={m} tokens", "too short"),
               "no_trainable": ("with nothing to train on", "untrainable"),
               "empty": ("with an empty field", "empty"), "identical": ("with chosen == rejected", "identical"),
               "duplicate": ("as exact duplicates (dataset_exact_deduplication)", "duplicate")}


@dataclass
class Prepared:
    """Train (and eval) rows for the recipe's method, with the counts of what was kept and dropped."""

    train: object
    eval: object | None
    stats: dict = field(default_factory=dict)
    cache_hit: bool = False
    cache_dir: str | None = None
    data: dict = field(default_factory=dict)  # what the rows were made from (cache.data_record), kept with checkpoints

    @property
    def n_train(self) -> int:
        """Rows the Trainer is given (a stream, with no length, says how many max_steps reads)."""
        return len(self.train)

    def summary(self) -> str:
        s = self.stats

        def counts(d: dict, total: bool) -> str:
            said = [f"{d[f'dropped_{r}']} " + (f"dropped {DROP_LABELS[r][0]}" if total else DROP_LABELS[r][1]).format(
                    n=s["sequence_len"], m=s.get("min_sample_len")) for r in s["reasons"]
                    if f"dropped_{r}" in d and (r != "too_short" or d[f"dropped_{r}"])]
            return ", ".join(said[:1] + ([f"{d['truncated']} truncated"] if "truncated" in d else []) + said[1:])

        rows = "preference pairs" if s["method"] in PAIRED else "prompts" if s["method"] in GRPO else "rows"
        lines = [f"data ({s['method']}): {s['rows_in']} {rows} in, {s['kept']} kept ({counts(s, True)}); "
                 f"{s['train_rows']} train / {s['eval_rows']} eval"]
        if s.get("len_mean") is not None:
            lines.append(f"tokens per row: mean {s['len_mean']:.1f}, p95 {s['len_p95']}, max {s['len_max']}; "
                         f"trained-token fraction {s['trained_fraction']:.2f}")
        for name, d in s.get("per_dataset", {}).items():
            mean = f"; mean {d['len_mean']:.1f} tokens" if "len_mean" in d else ""
            lines.append(f"  {name}: {d['rows_in']} in, {d['kept']} kept, {counts(d, False)}{mean}")
        if self.cache_dir:
            lines.append(f"prepared cache {'re-used' if self.cache_hit else 'written'}: {self.cache_dir}")
        return "\n".join(lines)


def prepare(recipe: Recipe, tokenizer, *, prompt: Prompt | None = None) -> Prepared:
    """The recipe's rows for its method, converted, counted, mixed and split (from the cache when nothing changed).
    The eval rows are the val_set_size split, or test_datasets (converted and mixed the same way), as in Axolotl.
    SFT rows are read in the formats of `prompt`, the run's Prompt (train/run.py hands its own; else one is built)."""
    if problems := [p for found in hooks.call(recipe, "refused_options", recipe) for p in found]:
        raise ConfigError(problems)
    if streamed := hooks.call(recipe, "prepare", recipe, tokenizer):  # raw text read while training: no cache
        return streamed[0]
    method = method_of(recipe)
    rows = next(iter(hooks.call(recipe, "rows", recipe)), sft_rows)  # the conversion: SFT's, or a plug-in's
    # test_datasets are the eval set of an SFT run; with rl: or a reward model they are the held-out rows
    # the method's plug-in measures, read there
    keys = ("datasets", "test_datasets") if method == "sft" else ("datasets",)
    entries = {f"{key}.{i}": spec for key in keys for i, spec in enumerate(getattr(recipe, key))}
    located = {where: locate_files(spec, recipe, where) for where, spec in entries.items()}
    hub = {where: load_raw(entries[where], recipe, where) for where, (kind, _) in located.items() if kind == "hub"}
    sources = [str(f) for _, found in located.values() for f in found]
    sources += [f"hub:{raw.rows._fingerprint}" for raw in hub.values()]
    sources += [f for files in hooks.call(recipe, "data_files", recipe) for f in files]  # GRPO: the transforms' code
    fp = cache.fingerprint(recipe, tokenizer, sources)
    record = cache.data_record(fp, sources)
    cache_dir = Path(recipe.dataset_prepared_path) / fp if recipe.dataset_prepared_path else None
    if cache_dir is not None:
        cache.clean_stale(cache_dir.parent, cache_dir)  # temp dirs of killed runs
        if (hit := cache.load(cache_dir, fingerprint=fp)) is not None:
            log.info(f"re-using prepared data from {cache_dir} (fingerprint {fp} matches)")
            splits, meta = hit
            return _packed(recipe, Prepared(splits["train"], splits.get("eval"), meta["stats"], cache_hit=True,
                                            cache_dir=str(cache_dir), data=record))

    # prepared afresh: each dataset converted (drops counted), mixed, split, counted, cached, packed;
    # SFT rows read with the run's prompt formats, the other methods' rows with the tokenizer's template (TRL's)
    reader = (prompt or Prompt(recipe, tokenizer)) if rows is sft_rows else tokenizer
    convert = dict(rows=rows, hub=hub, recipe=recipe, reader=reader, fp=fp)
    parts, per_dataset = _convert("datasets", **convert)
    train, ev, duplicates = _split(_merge(parts, per_dataset, recipe), recipe)
    totals = {k: sum(d[k] for d in per_dataset.values()) for k in next(iter(per_dataset.values()))
              if k in ("rows_in", "kept", "truncated") or k.startswith("dropped_")}  # the training rows'
    if "test_datasets" in keys and recipe.test_datasets:
        test_parts, test_counts = _convert("test_datasets", **convert)
        ev = _merge(test_parts, test_counts, recipe)
        per_dataset.update(test_counts)
    stats = {"method": method, "reasons": list(rows.REASONS) + ["duplicate"], **totals, "dropped_duplicate": duplicates,
             "train_rows": len(train), "eval_rows": len(ev) if ev is not None else 0,
             "sequence_len": recipe.sequence_len, "min_sample_len": recipe.min_sample_len, "per_dataset": per_dataset,
             **rows.mixed_stats(train)}
    if cache_dir is not None:  # written, then read back: memory-mapped, as a cache hit returns them
        splits = cache.save(cache_dir, {"train": train, **({"eval": ev} if ev is not None else {})},
                            {"fingerprint": fp, "stats": stats})
        train, ev = splits["train"], splits.get("eval")
    return _packed(recipe, Prepared(train, ev, stats, cache_dir=cache_dir and str(cache_dir), data=record))


def _packed(recipe: Recipe, prepared: Prepared) -> Prepared:
    """sample_packing (plugins/packing.py) replaces the splits by packed rows, cached beside them."""
    hooks.call(recipe, "pack_prepared", recipe, prepared)
    return prepared


def _convert(key: str, rows, hub: dict, recipe: Recipe, reader, fp: str) -> tuple[list, dict]:
    """The `key` entries converted by the method (`reader`: SFT's Prompt, the others' tokenizer): their kept rows,
    and the counts per dataset."""
    parts, per_dataset = [], {}
    for i, spec in enumerate(getattr(recipe, key)):
        where, test = f"{key}.{i}", "test " * (key == "test_datasets")
        raw = hub.get(where) or load_raw(spec, recipe, where)
        kept, per_dataset[f"{test}{i}:{Path(spec.path).name}"] = rows.convert(
            raw, spec, recipe, reader, where, _processes(recipe, len(raw.rows)), f"{fp}-{test.strip()}{i}")
        parts.append(kept)
    return parts, per_dataset


def _merge(parts: list, per_dataset: dict, recipe: Recipe):
    """The datasets' kept rows as one set, in the order Axolotl's shuffle-then-filter gives them.

    Axolotl shuffles the tokenized rows of all datasets before its length filter; ftkit tokenizes and filters each
    dataset on its own (drops counted per dataset), so each SFT row carries its tokenized index (sft.ROW;
    `per_dataset[...]["tokenized_rows"]` counts them before filtering), the seeded permutations are drawn over all
    tokenized rows (as datasets' own shuffle draws them) and the kept rows sorted by their place in them: same seed
    and data -> Axolotl's order. E.g. datasets of 3 and 2 tokenized rows, row 4 dropped as too long, permutation
    [3, 0, 4, 2, 1]: kept rows 0 1 2 | 3, ordered by their place in it -> 3, 0, 2, 1.

    shuffle_before_merging_datasets shuffles each dataset first, shuffle_merged_datasets (default) the
    concatenation; curriculum_sampling keeps a single dataset in its file order (Axolotl skips the shuffle then).
    Rows without ROW (preference pairs, prompts) are shuffled after mixing.
    """
    import datasets

    ds = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    if sft_rows.ROW not in ds.column_names:
        return ds.shuffle(seed=recipe.seed) if recipe.shuffle_merged_datasets else ds
    sizes = [d["tokenized_rows"] for d in per_dataset.values()]
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    place = np.arange(int(sum(sizes)), dtype=np.int64)  # place[global row] = its position in the final order
    keep = recipe.curriculum_sampling and len(parts) == 1  # Axolotl takes a single dataset as it is then
    if recipe.shuffle_before_merging_datasets and not keep:
        for off, n in zip(offsets, sizes):
            place[off:off + n] = off + np.argsort(_permutation(n, recipe.seed))
    shuffle = recipe.shuffle_merged_datasets and not keep
    if shuffle and recipe.curriculum_sampling:
        log.warning("curriculum_sampling: the mixed datasets are shuffled (shuffle_merged_datasets), so batches follow "
                    "that order; set shuffle_merged_datasets: false to keep the files' order")
    if shuffle:
        order = np.argsort(place)  # rows in the order so far
        place[order[_permutation(len(order), recipe.seed)]] = np.arange(len(order))
    if not len(ds):
        return ds.remove_columns(sft_rows.ROW)
    # each row's global index, read through Arrow (indexing the Dataset reads it row by row)
    rows = np.concatenate([p.with_format("arrow")[sft_rows.ROW].to_numpy().astype(np.int64) + off
                           for p, off in zip(parts, offsets)])
    # an indices mapping: the rows are copied once, when the cache is written
    return ds.select(np.argsort(place[rows], kind="stable")).remove_columns(sft_rows.ROW)


def _permutation(n: int, seed: int) -> np.ndarray:
    """The permutation `datasets.Dataset.shuffle(seed=seed)` applies to n rows."""
    return np.random.default_rng(seed).permutation(n)


def _processes(recipe: Recipe, rows: int) -> int | None:
    """dataset_processes, else (auto) one worker per idle core from AUTO_PROCESSES_FROM rows. Workers only pay
    off on idle cores: measured on 2 cores busy with other work (load 5), 2 workers took 1.2x one process's
    time at 20k alpaca rows and the same time at 100k (`ftkit bench compare --sections preprocess`)."""
    if recipe.dataset_processes:
        return recipe.dataset_processes if recipe.dataset_processes > 1 else None
    if rows >= AUTO_PROCESSES_FROM and (n := idle_cores()) > 1:
        log.info(f"dataset_processes: {n} (auto: {rows} rows, {n} of {usable_cores()} cores idle; "
                 "set dataset_processes to change)")
        return n
    return None


def _split(ds, recipe: Recipe) -> tuple[object, object, int]:
    """(train, eval or None, duplicates dropped): dataset_exact_deduplication, keep one dataset_shard_num
    shard, hold out val_set_size: the last rows of the (shuffled) set, as Axolotl does."""
    duplicates = 0
    if recipe.dataset_exact_deduplication:  # Axolotl's rule: the whole row, hashed; the first one kept
        seen, keep = set(), []
        for i, row in enumerate(ds):
            if (h := hashlib.sha256(json.dumps(row, sort_keys=True, default=str).encode()).digest()) not in seen:
                seen.add(h)
                keep.append(i)
        duplicates = len(ds) - len(keep)
        log.info(f"dataset_exact_deduplication: {duplicates} duplicate rows dropped, {len(keep)} kept")
        ds = ds.select(keep) if duplicates else ds
    if recipe.dataset_shard_num:
        ds = ds.shard(num_shards=recipe.dataset_shard_num, index=recipe.dataset_shard_idx)
    if not recipe.val_set_size:
        return ds, None, duplicates
    size = recipe.val_set_size if recipe.val_set_size < 1 else int(recipe.val_set_size)
    held = math.ceil(size * len(ds)) if size < 1 else size  # datasets rounds a fraction's eval rows up
    if held >= len(ds):
        raise ConfigError(Problem(
            f"val_set_size {recipe.val_set_size:g} holds out {held} of the {len(ds)} rows left after filtering, so "
            "no row is left to train on", recipe.source, "val_set_size",
            fix=f"hold out fewer rows: a count below {len(ds)} or a smaller fraction, e.g. {max(1, len(ds) // 20)} "
                "rows (or add data)"))
    split = ds.train_test_split(test_size=size, seed=recipe.seed, shuffle=False)
    return split["train"], split["test"], duplicates
