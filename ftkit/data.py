"""Data preparation: load files -> prompt strategy -> tokens + labels -> filter (counted) -> split -> cache.

Loading and caching are datasets' (Arrow); ftkit adds row checks with file/line errors, counted drops
and a prepared-data cache keyed by a fingerprint of everything that shapes the tokens.
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

from . import packing
from .config import DatasetSpec, Recipe
from .errors import DataError, Problem
from .prompts import get_strategy
from .prompts.tokenize import IGNORE, encode_segments

PREPARE_VERSION = "1"  # bump when tokenization changes, so older caches are never trusted
BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv", ".arrow": "arrow"}


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
                 f"{s['dropped_no_trainable']} dropped with nothing to train on); "
                 f"{s['train_rows']} train / {s['eval_rows']} eval"]
        if s.get("kept"):
            lines.append(f"[ftkit] tokens per row: mean {s['len_mean']:.1f}, p95 {s['len_p95']}, max {s['len_max']}; "
                         f"trained-token fraction {s['trained_fraction']:.2f}")
        for name, d in s.get("per_dataset", {}).items():
            lines.append(f"[ftkit]   {name}: {d['rows_in']} in, {d['kept']} kept, "
                         f"{d['dropped_too_long']} too long, {d['dropped_no_trainable']} untrainable")
        if self.cache_dir:
            lines.append(f"[ftkit] prepared cache {'re-used' if self.cache_hit else 'written'}: {self.cache_dir}")
        return "\n".join(lines)


# ---------------------------------------------------------------- loading

def resolve_data_path(path: str, recipe: Recipe) -> Path:
    """A dataset path relative to the working directory, else to the recipe's folder or its parents."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    if recipe.source:
        for parent in Path(recipe.source).resolve().parents:
            if (parent / p).exists():
                return parent / p
    return p


def _data_files(spec: DatasetSpec, root: Path) -> list[Path]:
    if root.is_dir():
        if spec.data_files:
            names = [spec.data_files] if isinstance(spec.data_files, str) else spec.data_files
            files = [root / n for n in names]
        else:
            files = sorted(f for f in root.rglob("*") if f.suffix in BUILDERS and f.is_file())
    else:
        files = [root]
    return files


def _check_json_lines(path: Path) -> None:
    """Find the first unreadable line of a JSON-lines file, to report it by number."""
    with open(path, "rb") as f:
        for no, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(Problem("not UTF-8 text", str(path), line=no,
                                        fix="re-save the file as UTF-8")) from None
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(Problem(f"malformed JSON ({e.msg} at column {e.colno})", str(path), line=no,
                                        fix="each line must be one JSON object; fix or delete that line")) from None
            if not isinstance(value, dict):
                raise DataError(Problem(f"a JSON line must be an object, got {type(value).__name__}", str(path),
                                        line=no, fix='write rows as {"field": "value", ...}'))


def load_raw(spec: DatasetSpec, recipe: Recipe, where: str):
    """Load one `datasets:` entry as a datasets.Dataset (local files; clear errors for missing/bad files)."""
    import datasets

    root = resolve_data_path(spec.path, recipe)
    if not root.exists():
        raise DataError(Problem(f"dataset path {spec.path!r} does not exist", recipe.source, f"{where}.path",
                                fix="give a local file or directory (relative to the working directory or the "
                                    "recipe); hub datasets must be saved locally first"))
    files = _data_files(spec, root)
    missing = [f for f in files if not f.is_file()]
    if missing or not files:
        raise DataError(Problem(f"no data files found ({', '.join(map(str, missing)) or root})", recipe.source,
                                f"{where}.data_files", fix="list existing .jsonl/.json/.parquet/.csv/.arrow files"))
    kinds = {BUILDERS.get(f.suffix) for f in files}
    if None in kinds or len(kinds) != 1:
        raise DataError(Problem(f"cannot tell the file format of {[str(f) for f in files]}", recipe.source,
                                f"{where}.path", fix="use one of .jsonl .json .parquet .csv .arrow for all files"))
    builder = kinds.pop()
    if builder == "json":
        for f in files:
            if f.suffix == ".jsonl":
                _check_json_lines(f)
    try:
        ds = datasets.load_dataset(builder, data_files=[str(f) for f in files], split=spec.split)
    except Exception as e:  # datasets raises many types; report which file and why, without its traceback
        raise DataError(Problem(f"could not read: {str(e).splitlines()[0][:300]}", ", ".join(map(str, files)),
                                fix="check the file is valid " + builder)) from None
    return ds, [str(f) for f in files]


# ---------------------------------------------------------------- tokenizing

def _check_row(row: dict, idx: int, strategy, file: str) -> None:
    for name in strategy.required_fields:
        value = row.get(name)
        if value is None:
            raise DataError(Problem(f"row has no {name!r} field", file, line=idx + 1,
                                    fix=f"every row needs {', '.join(strategy.required_fields)}; see data_samples/README.md"))
        if not isinstance(value, str):
            raise DataError(Problem(f"field {name!r} must be text, got {type(value).__name__}", file, line=idx + 1,
                                    fix=f"store {name} as a string"))


def tokenize_dataset(ds, spec: DatasetSpec, recipe: Recipe, tokenizer, files: list[str], where: str):
    """Map rows to input_ids/labels/attention_mask with the spec's prompt strategy."""
    strategy = get_strategy(spec.type, file=recipe.source, where=f"{where}.type")
    label = files[0] if len(files) == 1 else spec.path

    def encode(row, idx):
        _check_row(row, idx, strategy, label)
        return encode_segments(strategy.segments(row), tokenizer, train_on_inputs=recipe.train_on_inputs)

    return ds.map(encode, with_indices=True, remove_columns=ds.column_names,
                  desc=f"tokenizing {Path(spec.path).name}")


def _filter(ds, recipe: Recipe) -> tuple[object, int, int]:
    """Drop (and count) rows longer than sequence_len and rows with no trained token."""
    n = len(ds)
    ds = ds.filter(lambda r: len(r["input_ids"]) <= recipe.sequence_len, desc="dropping rows > sequence_len")
    too_long = n - len(ds)
    n = len(ds)
    ds = ds.filter(lambda r: any(t != IGNORE for t in r["labels"]), desc="dropping rows with nothing to train")
    return ds, too_long, n - len(ds)


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
    h = hashlib.sha256()
    h.update(tokenizer.backend_tokenizer.to_str().encode() if hasattr(tokenizer, "backend_tokenizer") else
             json.dumps(tokenizer.get_vocab(), sort_keys=True).encode())
    h.update(str(tokenizer.chat_template).encode())
    h.update(json.dumps([str(tokenizer.bos_token), str(tokenizer.eos_token), str(tokenizer.pad_token),
                         len(tokenizer)]).encode())
    return h.hexdigest()


def fingerprint(recipe: Recipe, tokenizer, files: list[str]) -> str:
    """Everything that shapes the prepared tokens: data bytes, formats, tokenizer, length, masking."""
    h = hashlib.sha256(PREPARE_VERSION.encode())
    for f in files:
        h.update(f.encode())
        _hash_file(f, h)
    h.update(json.dumps([d.model_dump(mode="json") for d in recipe.datasets], sort_keys=True).encode())
    h.update(json.dumps([recipe.sequence_len, recipe.train_on_inputs, recipe.val_set_size, recipe.seed]).encode())
    h.update(tokenizer_fingerprint(tokenizer).encode())
    return h.hexdigest()[:16]


def _load_cache(path: Path):
    import datasets

    marker = path / "ftkit_prepared.json"
    if not marker.is_file():
        return None
    meta = json.loads(marker.read_text())
    train = datasets.load_from_disk(str(path / "train"))
    ev = datasets.load_from_disk(str(path / "eval")) if (path / "eval").exists() else None
    return Prepared(train, ev, meta["stats"], cache_hit=True, cache_dir=str(path))


def _save_cache(prepared: Prepared, path: Path) -> None:
    """Write to a temp dir and rename: a killed preprocess never leaves a cache that looks complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=path.parent))
    try:
        prepared.train.save_to_disk(str(tmp / "train"))
        if prepared.eval is not None:
            prepared.eval.save_to_disk(str(tmp / "eval"))
        (tmp / "ftkit_prepared.json").write_text(json.dumps({"stats": prepared.stats}, indent=1))
        if path.exists():
            shutil.rmtree(path)
        os.rename(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    prepared.cache_dir = str(path)


# ---------------------------------------------------------------- the one entry point

def prepare(recipe: Recipe, tokenizer, announce=print) -> Prepared:
    """Tokenized, filtered, split data for the recipe (from the cache when nothing changed)."""
    import datasets

    raws = [load_raw(spec, recipe, f"datasets.{i}") for i, spec in enumerate(recipe.datasets)]
    files = [f for _, fs in raws for f in fs]
    cache = None
    if recipe.dataset_prepared_path:
        cache = Path(recipe.dataset_prepared_path) / fingerprint(recipe, tokenizer, files)
        hit = _load_cache(cache)
        if hit is not None:
            announce(f"[ftkit] re-using prepared data from {cache} (fingerprint matches)")
            return packing.apply(hit, recipe, announce)  # sample_packing: rows -> packed rows

    parts, per_dataset, totals = [], {}, {"rows_in": 0, "dropped_too_long": 0, "dropped_no_trainable": 0}
    for i, (spec, (raw, fs)) in enumerate(zip(recipe.datasets, raws)):
        tokenized = tokenize_dataset(raw, spec, recipe, tokenizer, fs, f"datasets.{i}")
        kept, too_long, empty = _filter(tokenized, recipe)
        name = f"{i}:{Path(spec.path).name}"
        per_dataset[name] = {"rows_in": len(raw), "kept": len(kept), "dropped_too_long": too_long,
                             "dropped_no_trainable": empty}
        totals["rows_in"] += len(raw)
        totals["dropped_too_long"] += too_long
        totals["dropped_no_trainable"] += empty
        parts.append(kept)
    ds = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    if len(ds) == 0:
        raise DataError(Problem(f"no usable rows: {totals['dropped_too_long']} longer than sequence_len="
                                f"{recipe.sequence_len}, {totals['dropped_no_trainable']} with nothing to train on",
                                recipe.source, "datasets",
                                fix="raise sequence_len, or check the dataset type matches the rows"))
    ds = ds.shuffle(seed=recipe.seed)
    ev = None
    if recipe.val_set_size:
        size = recipe.val_set_size if recipe.val_set_size < 1 else int(recipe.val_set_size)
        split = ds.train_test_split(test_size=size, seed=recipe.seed)
        ds, ev = split["train"], split["test"]
    stats = {**totals, "kept": totals["rows_in"] - totals["dropped_too_long"] - totals["dropped_no_trainable"],
             "train_rows": len(ds), "eval_rows": len(ev) if ev is not None else 0,
             "sequence_len": recipe.sequence_len, "per_dataset": per_dataset, **token_stats(ds)}
    prepared = Prepared(ds, ev, stats)
    if cache is not None:
        _save_cache(prepared, cache)
    return packing.apply(prepared, recipe, announce)  # sample_packing: rows -> packed rows


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
