"""SFT rows: a dataset's prompt format -> input_ids / labels / attention_mask, too-long and untrainable rows
dropped (or truncated) and counted.

Tokenizing is the prompt formats' (ftkit/formats/); data/prepare.py runs this per dataset, then mixes,
splits, caches and packs.
"""
from __future__ import annotations

import statistics
from pathlib import Path

from ftkit.data import order
from ftkit.data.files import RawData, locate_row
from ftkit.errors import DataError, Problem
from ftkit.formats import RowError, strategy_for
from ftkit.formats.tokenize import IGNORE
from ftkit.recipe import DatasetSpec, Recipe

REASONS = ("too_long", "no_trainable")  # why a row is dropped, counted as stats["dropped_<reason>"]


def _row_error(e: RowError, files: list[str], idx: int) -> DataError:
    file, line, row = locate_row(files, idx)
    where = e.field if line is not None else f"row {row + 1}, field {e.field}"
    return DataError(Problem(e.problem, file, where, line, e.fix))


def tokenize_dataset(raw: RawData, spec: DatasetSpec, recipe: Recipe, tokenizer, where: str,
                     num_proc: int | None = None, fingerprint: str | None = None):
    """Map rows to input_ids/labels/attention_mask with the spec's prompt strategy (batched, one tokenizer call)."""
    strategy = strategy_for(spec, recipe, tokenizer, where)

    def encode(batch, idxs):
        rows = [dict(zip(batch.keys(), values)) for values in zip(*batch.values())]
        try:
            return strategy.encode_batch(rows, tokenizer)
        except RowError as e:
            raise _row_error(e, raw.files, raw.first_row + idxs[e.row]) from None

    ds = raw.rows
    return ds.map(encode, batched=True, with_indices=True, remove_columns=ds.column_names, num_proc=num_proc,
                  load_from_cache_file=False, new_fingerprint=fingerprint and f"{fingerprint}-tok",
                  desc=f"tokenizing {Path(spec.path).name}")


def _filter(ds, recipe: Recipe, fingerprint: str | None = None) -> tuple[object, int, int, int]:
    """Drop (or truncate) rows longer than sequence_len and drop rows with no trained token; all counted."""
    limit = recipe.sequence_len
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
    """Length mean / p95 / max, token count and the fraction of tokens that are trained."""
    lengths = [len(x) for x in ds["input_ids"]]
    if not lengths:
        return {}
    trained = sum(sum(1 for t in labels if t != IGNORE) for labels in ds["labels"])
    ordered = sorted(lengths)
    return {"len_mean": statistics.fmean(lengths), "len_p95": ordered[int(0.95 * (len(ordered) - 1))],
            "len_max": ordered[-1], "tokens": sum(lengths), "trained_fraction": trained / sum(lengths)}


def convert(raw: RawData, spec: DatasetSpec, recipe: Recipe, tokenizer, where: str, num_proc: int | None,
            fingerprint: str) -> tuple[object, dict]:
    """One dataset tokenized and filtered -> (kept rows, its counts); no usable row at all is an error."""
    tokenized = tokenize_dataset(raw, spec, recipe, tokenizer, where, num_proc, fingerprint)
    tokenized = tokenized.add_column(order.ROW, list(range(len(tokenized))))  # for Axolotl's shuffle-then-filter order
    kept, too_long, empty, truncated = _filter(tokenized, recipe, fingerprint)
    stats = {"rows_in": len(raw.rows), "tokenized_rows": len(tokenized), "kept": len(kept),
             "dropped_too_long": too_long, "truncated": truncated, "dropped_no_trainable": empty, **token_stats(kept)}
    if not len(kept):
        longest = max(len(x) for x in tokenized["input_ids"])
        raise DataError(Problem(f"no usable rows: {too_long} of {len(raw.rows)} are longer than sequence_len="
                                f"{recipe.sequence_len} (the longest has {longest} tokens), {empty} have nothing to "
                                "train on", raw.files[0], f"{where}.path",
                                fix=f"raise sequence_len to at least {longest}, set excess_length_strategy: truncate, "
                                    "or check that the dataset type matches the rows"))
    return kept, stats


def mixed_stats(ds) -> dict:
    """Statistics of the mixed train split (token lengths)."""
    return token_stats(ds)


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
