"""SFT rows: a dataset's prompt format -> input_ids / labels / attention_mask, too-long and untrainable rows
dropped (or truncated) and counted.

Tokenizing is the prompt formats' (ftkit/formats/); data/prepare.py runs this per dataset, then mixes,
splits, caches and packs. After the tokenizer, everything is columnar: lengths and trained-token counts
are read from the Arrow columns with numpy (never as Python lists of rows), once per dataset, and the
filters are index selections.

Rows whose text cannot fit are not tokenized at all: a row whose formatted text has more than
sequence_len x BYTES_PER_TOKEN bytes would need tokens of more than BYTES_PER_TOKEN bytes on average to
fit, so it is dropped as too long before the tokenizer sees it (a 50 MB row once took 7.7 GB and 130 s to
tokenize, only to be dropped). With excess_length_strategy: truncate, its text fields are cut to that
many characters instead, and the row is tokenized and truncated as usual.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ftkit.data.files import RawData, locate_row
from ftkit.errors import DataError, Problem
from ftkit.formats import Prompt, RowError, row_errors
from ftkit.formats.tokenize import IGNORE
from ftkit.log import log
from ftkit.recipe import DatasetSpec, Recipe

REASONS = ("too_long", "too_short", "no_trainable")  # why a row is dropped, counted as stats["dropped_<reason>"]
BYTES_PER_TOKEN = 32  # rows with more text bytes than sequence_len x this are too long without tokenizing
TOKEN_COLUMNS = ("input_ids", "labels", "attention_mask")
ROW = "_row"  # each tokenized row's index in its dataset: data/prepare.py orders the kept rows by it, then drops it


def _row_error(e: RowError, files: list[str], idx: int) -> DataError:
    file, line, row = locate_row(files, idx)
    where = e.field if line is not None else f"row {row + 1}, field {e.field}"
    return DataError(Problem(e.problem, file, where, line, e.fix))


# ---------------------------------------------------------------- rows too big to tokenize

def _text_bytes(array) -> np.ndarray:
    """Bytes of every string inside each element of an Arrow array (lists and structs walked), as int64."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = array.type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return pc.binary_length(array).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    if pa.types.is_list(t) or pa.types.is_large_list(t):  # each element's bytes summed into its row
        inner = _text_bytes(pc.list_flatten(array))
        return np.bincount(pc.list_parent_indices(array).to_numpy(), inner, len(array)).astype(np.int64)
    if pa.types.is_struct(t):
        return sum((_text_bytes(child) for child in array.flatten()), np.zeros(len(array), dtype=np.int64))
    return np.zeros(len(array), dtype=np.int64)


def row_bytes(ds) -> np.ndarray:
    """Bytes of text in each row of a datasets.Dataset, from its Arrow columns (no Python values)."""
    batches = ds.data.table.to_batches()  # a batch of rows is a struct array of its columns
    total = np.concatenate([np.zeros(0, dtype=np.int64)] + [_text_bytes(b.to_struct_array()) for b in batches])
    mapping = getattr(ds, "_indices", None)
    return total if mapping is None else total[mapping.column(0).to_numpy()]


def _oversized(raw: RawData, strategy, recipe: Recipe, where: str) -> np.ndarray:
    """Indices of the rows whose formatted text (the segments the tokenizer would get) exceeds sequence_len x
    BYTES_PER_TOKEN bytes, announced with the first one's file and line. The rows' raw bytes (every string
    field) screen them first, so only rare big rows are formatted here."""
    limit, out = recipe.sequence_len * BYTES_PER_TOKEN, []
    for i in np.flatnonzero(row_bytes(raw.rows) > limit).tolist():
        try:
            text = sum(len(seg.text.encode("utf-8", "surrogatepass")) for seg in strategy.segments(raw.rows[i]))
        except (RowError, NotImplementedError):  # a bad row is reported by the tokenizing pass, with its line
            continue
        if text > limit:
            out.append(i)
    if out:
        file, line, row = locate_row(raw.files, raw.first_row + out[0])
        first = f"{file}:{line}" if line is not None else f"{file} row {row + 1}"
        what = (f"cut to {limit:,} characters per field before tokenizing, then truncated"
                if recipe.excess_length_strategy == "truncate" else "dropped as too long without tokenizing")
        log.warning(f"{where}: {len(out)} row(s) hold more than {limit:,} bytes of text (sequence_len "
                    f"{recipe.sequence_len} x {BYTES_PER_TOKEN}), {what}; the first is {first}")
    return np.asarray(out, dtype=np.int64)


def _cut(value, chars: int):
    """Every string inside a row value cut to `chars` characters."""
    if isinstance(value, str):
        return value[:chars]
    if isinstance(value, dict):
        return {k: _cut(v, chars) for k, v in value.items()}
    if isinstance(value, list):
        return [_cut(v, chars) for v in value]
    return value


# ---------------------------------------------------------------- tokenizing

def _as_table(cols: dict):
    """The tokenizer's column lists as one typed Arrow table, the same types for every dataset (input_ids int32,
    labels int64, attention_mask int8, what datasets infers for tokenizer output), so pretokenized rows (int64 from
    JSON) and tokenized ones concatenate into one mix; datasets writes it as is (no per-batch inference and casting)."""
    import pyarrow as pa

    types = {"input_ids": pa.int32(), "labels": pa.int64(), "attention_mask": pa.int8()}
    return pa.table({k: pa.array(v, pa.list_(types.get(k, pa.int64()))) for k, v in cols.items()})


def _bad_rows(e: RowError, strategy, raw: RawData, tokenizer, idx: int) -> DataError:
    """Once a bad row stopped tokenizing: every row checked (no tokenizing), the first 5 bad ones with file and line,
    and how many there are, so one run lists what to fix (the row that stopped it when the check misses it)."""
    shown, total = row_errors(strategy, raw.rows, tokenizer)
    if not total:
        return _row_error(e, raw.files, idx)
    problems = [_row_error(err, raw.files, raw.first_row + i).problems[0] for i, err in shown]
    if total > len(shown):
        problems.append(Problem(f"{total} of {len(raw.rows)} rows are bad ({len(shown)} shown)", raw.files[0],
                                fix="fix or remove them; each line above names one"))
    return DataError(problems)


def tokenize_dataset(raw: RawData, spec: DatasetSpec, recipe: Recipe, tokenizer, strategy, num_proc: int | None = None,
                     fingerprint: str | None = None, skip=()):
    """Map rows to input_ids/labels/attention_mask with the spec's prompt strategy (batched, one tokenizer call).

    Rows listed in `skip` (indices into raw.rows) are not tokenized: they come out empty (drop them after),
    or, with excess_length_strategy: truncate, with their strings cut to sequence_len x BYTES_PER_TOKEN chars."""
    skip = frozenset(int(i) for i in skip)
    cut = recipe.excess_length_strategy == "truncate"
    chars = recipe.sequence_len * BYTES_PER_TOKEN

    def encode(batch, idxs):
        rows = [dict(zip(batch.keys(), values)) for values in zip(*batch.values())]
        over = {j for j, i in enumerate(idxs) if i in skip}
        if cut:  # the big rows' strings cut, then tokenized with the others
            rows = [_cut(row, chars) if j in over else row for j, row in enumerate(rows)]
            over = set()
        keep = [j for j in range(len(rows)) if j not in over]
        try:
            cols = strategy.encode_batch([rows[j] for j in keep], tokenizer) if keep else \
                {k: [] for k in TOKEN_COLUMNS}
        except RowError as e:
            raise _bad_rows(e, strategy, raw, tokenizer, raw.first_row + idxs[keep[e.row]]) from None
        if over:  # the skipped rows stay, empty, so row indices keep their place
            placed = {k: [[] for _ in rows] for k in cols}
            for k, values in cols.items():
                for j, v in zip(keep, values):
                    placed[k][j] = v
            cols = placed
        return _as_table(cols)

    ds = raw.rows
    return ds.map(encode, batched=True, with_indices=True, remove_columns=ds.column_names, num_proc=num_proc,
                  load_from_cache_file=False, new_fingerprint=fingerprint and f"{fingerprint}-tok",
                  desc=f"tokenizing {Path(spec.path).name}")


# ---------------------------------------------------------------- counting and filtering, columnar

def row_token_counts(ds, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, trained tokens) per row, read from the Arrow columns; with `limit`, trained tokens among the
    first `limit` only (what truncation keeps). Follows an indices mapping (a selected or split dataset)."""
    import pyarrow.compute as pc

    table = ds.data.table
    trained = [np.zeros(0, dtype=np.int64)]
    for chunk in table["labels"].chunks:  # chunk by chunk: a few thousand rows of flat int64 at a time
        n = pc.list_value_length(chunk).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        hit = pc.list_flatten(chunk).to_numpy(zero_copy_only=False) != IGNORE
        ends = np.cumsum(n)
        if limit is not None:  # position of each token inside its row
            hit &= (np.arange(len(hit)) - np.repeat(ends - n, n)) < limit
        edges = np.concatenate([[0], np.cumsum(hit, dtype=np.int64)])
        trained.append(edges[ends] - edges[ends - n])
    lengths = pc.list_value_length(table["input_ids"]).fill_null(0).to_numpy().astype(np.int64)
    mapping = getattr(ds, "_indices", None)
    rows = slice(None) if mapping is None else mapping.column(0).to_numpy()
    return lengths[rows], np.concatenate(trained)[rows]


def _truncated(ds, limit: int, fingerprint: str | None):
    """The rows with input_ids/labels/attention_mask cut to their first `limit` tokens (Arrow list slices)."""
    import datasets
    import pyarrow.compute as pc

    table = ds.flatten_indices().data.table if getattr(ds, "_indices", None) is not None else ds.data.table
    for name in TOKEN_COLUMNS:
        sliced = pc.list_slice(table[name], 0, limit).cast(table[name].type)
        table = table.set_column(table.column_names.index(name), name, sliced)
    return datasets.Dataset(table, info=ds.info.copy(), fingerprint=fingerprint and f"{fingerprint}-cut")


def _filter(ds, recipe: Recipe, fingerprint: str | None = None, skipped=()):
    """Drop (or truncate) rows longer than sequence_len, drop rows shorter than min_sample_len tokens (Axolotl's
    filter, default 2: one token has nothing to predict) and rows with no trained token; all counted.

    Returns (kept rows, their counts as convert's stats name them, tokens per kept row, trained tokens per kept
    row). `skipped` rows (too big to tokenize, so empty here) count as too long."""
    limit = recipe.sequence_len
    truncate = recipe.excess_length_strategy == "truncate"
    lengths, trained = row_token_counts(ds, limit if truncate else None)
    over = lengths > limit
    over[np.asarray(skipped, dtype=np.int64)] = True
    short = ~over & (lengths < recipe.min_sample_len)
    if truncate and over.any():
        ds = _truncated(ds, limit, fingerprint)
        lengths = np.minimum(lengths, limit)
    fits = ~short if truncate else ~over & ~short
    keep = fits & (trained > 0)
    counts = {"dropped_too_long": 0 if truncate else int(over.sum()), "truncated": int(over.sum()) if truncate else 0,
              "dropped_too_short": int(short.sum()), "dropped_no_trainable": int((fits & (trained == 0)).sum())}
    if not keep.all():
        ds = ds.select(np.flatnonzero(keep))
    return ds, counts, lengths[keep], trained[keep]


def _stats(lengths: np.ndarray, trained: np.ndarray) -> dict:
    """Length mean / p95 / max, token count and the fraction of tokens that are trained (JSON-ready numbers)."""
    if not len(lengths):
        return {}
    total = int(lengths.sum())
    k = int(0.95 * (len(lengths) - 1))
    return {"len_mean": total / len(lengths), "len_p95": int(np.partition(lengths, k)[k]),
            "len_max": int(lengths.max()), "tokens": total, "trained_fraction": int(trained.sum()) / total}


def mixed_stats(ds) -> dict:
    """Length mean / p95 / max, token count and trained fraction of the mixed train split (data/prepare.py asks
    each row module)."""
    return _stats(*row_token_counts(ds))


def convert(raw: RawData, spec: DatasetSpec, recipe: Recipe, prompt: Prompt, where: str, num_proc: int | None,
            fingerprint: str) -> tuple[object, dict]:
    """One dataset read in the run's prompt format, tokenized and filtered -> (kept rows, its counts); no usable row
    at all is an error."""
    tokenizer, strategy = prompt.tokenizer, prompt.strategy(spec, where)
    skip = np.zeros(0, dtype=np.int64) if getattr(strategy, "chunk", None) else _oversized(raw, strategy, recipe, where)
    tokenized = tokenize_dataset(raw, spec, recipe, tokenizer, strategy, num_proc, fingerprint, skip)
    tokenized = tokenized.add_column(ROW, np.arange(len(tokenized), dtype=np.int64))  # Axolotl's order
    dropped = skip if recipe.excess_length_strategy != "truncate" else ()  # truncate: cut and tokenized
    kept, counts, lengths, trained = _filter(tokenized, recipe, fingerprint, dropped)
    stats = {"rows_in": len(raw.rows), "tokenized_rows": len(tokenized), "kept": len(kept), **counts,
             **({"over_byte_limit": len(skip)} if len(skip) else {}), **_stats(lengths, trained)}
    if not len(kept):
        longest = int(row_token_counts(tokenized)[0].max(initial=0))
        limit, few = recipe.sequence_len * BYTES_PER_TOKEN, counts["dropped_too_short"]
        unread = f"; {len(skip)} hold more than {limit:,} bytes and were not tokenized" if len(skip) else ""
        short = f", {few} are shorter than {recipe.min_sample_len} tokens" if few else ""
        raise DataError(Problem(f"no usable rows: {counts['dropped_too_long']} of {len(raw.rows)} are longer than "
                                f"sequence_len={recipe.sequence_len} (the longest has {longest} tokens{unread})"
                                f"{short}, {counts['dropped_no_trainable']} have nothing to train on", raw.files[0],
                                f"{where}.path", fix=f"raise sequence_len to at least {longest}, set "
                                "excess_length_strategy: truncate, or check that the dataset type matches the rows"))
    return kept, stats


def show_mask(example: dict, tokenizer, color: bool = False) -> str:
    """One example as text, trained tokens marked: `[[answer]]` (or green with color=True), masked plain.

    A pure function, used by `ftkit preprocess --debug` and the notebooks' mask inspector.
    """
    from itertools import groupby

    out = []
    for trained, run in groupby(zip(example["input_ids"], example["labels"]), key=lambda t: t[1] != IGNORE):
        text = tokenizer.decode([tok for tok, _ in run])
        out.append((f"\x1b[32m{text}\x1b[0m" if color else f"[[{text}]]") if trained else text)
    return "".join(out)
