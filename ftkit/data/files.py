"""Reading datasets: local json/jsonl/parquet/csv/arrow files and directories, save_to_disk directories
and hub names, with row-level checks that name the file and line (JSON lines) of the first bad row.

Loading itself is datasets' (Arrow). ftkit checks what datasets reports badly: malformed or non-UTF-8
lines, a field whose JSON type changes between lines, empty files, offline hub names.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ftkit.errors import DataError, Problem
from ftkit.recipe import DatasetSpec, Recipe

BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv", ".arrow": "arrow"}
SAVED_MARKERS = ("dataset_info.json", "dataset_dict.json", "state.json")  # a datasets.save_to_disk directory
_LINES: dict[tuple, list[int]] = {}  # (path, size, mtime) -> line number of each row of a JSON-lines file


# ---------------------------------------------------------------- locating and checking files

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


def _looks_like_hub(path: str) -> bool:
    """`owner/name` or `name`: no file suffix, not explicitly relative or absolute."""
    p = Path(path)
    return p.suffix not in BUILDERS and not path.startswith((".", "/", "~")) and path.count("/") <= 1


def _data_files(spec: DatasetSpec, root: Path) -> list[Path]:
    if root.is_dir():
        if spec.data_files:
            names = [spec.data_files] if isinstance(spec.data_files, str) else spec.data_files
            return [root / n for n in names]
        return sorted(f for f in root.rglob("*") if f.suffix in BUILDERS and f.is_file()
                      and not any(part.startswith(".") for part in f.relative_to(root).parts))
    return [root]


def _json_kind(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true/false"
    return {str: "text", int: "a number", float: "a number", list: "a list", dict: "a mapping"}[type(value)]


def check_json_lines(path: Path) -> list[int]:
    """Every line parses to an object and each field keeps one JSON type; returns the line of each row."""
    key = (str(path), path.stat().st_size, path.stat().st_mtime_ns)
    if key in _LINES:
        return _LINES[key]
    rows, kinds = [], {}
    with open(path, "rb") as f:
        for no, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(Problem(f"not UTF-8 text (byte {raw[e.start]:#x} at column {e.start + 1})", str(path),
                                        line=no, fix="re-save the file as UTF-8")) from None
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
            for k, v in value.items():
                kind = _json_kind(v)
                first = kinds.setdefault(k, (kind, no)) if kind else None
                if first and first[0] != kind:
                    raise DataError(Problem(f"field {k!r} is {kind} here but {first[0]} on line {first[1]}", str(path),
                                            where=k, line=no, fix=f"give {k} the same type on every line"))
            rows.append(no)
    _LINES[key] = rows
    return rows


def _check_utf8(path: Path) -> None:
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(Problem("not UTF-8 text", str(path), line=data[:e.start].count(b"\n") + 1,
                                fix="re-save the file as UTF-8")) from None


def locate_files(spec: DatasetSpec, recipe: Recipe, where: str) -> tuple[str, list[Path]]:
    """('files' | 'saved' | 'hub', paths) for one `datasets:` entry; missing local paths are errors."""
    root = resolve_data_path(spec.path, recipe)
    if root.is_dir() and any((root / m).is_file() for m in SAVED_MARKERS):
        return "saved", [root]
    if not root.exists():
        if _looks_like_hub(spec.path):
            return "hub", []
        raise DataError(Problem(f"dataset path {spec.path!r} does not exist", recipe.source, f"{where}.path",
                                fix="give a local file or directory (relative to the working directory or the "
                                    "recipe), or a hub dataset name like owner/name"))
    files = _data_files(spec, root)
    missing = [f for f in files if not f.is_file()]
    if missing or not files:
        raise DataError(Problem(f"no data files found ({', '.join(map(str, missing)) or root})", recipe.source,
                                f"{where}.data_files", fix="list existing .jsonl/.json/.parquet/.csv/.arrow files"))
    return "files", files


def _builder(spec: DatasetSpec, files: list[Path], recipe: Recipe, where: str) -> str:
    if spec.ds_type:
        return spec.ds_type
    kinds = {BUILDERS.get(f.suffix) for f in files}
    if None in kinds or len(kinds) != 1:
        raise DataError(Problem(f"cannot tell the file format of {[str(f) for f in files]}", recipe.source,
                                f"{where}.path", fix="use one of .jsonl .json .parquet .csv .arrow for all files, "
                                                    "or set ds_type"))
    return kinds.pop()


# ---------------------------------------------------------------- loading

def _load_hub(spec: DatasetSpec, recipe: Recipe, where: str):
    import datasets

    try:
        names = spec.name if isinstance(spec.name, list) else [spec.name]  # several configurations: concatenated
        parts = [datasets.load_dataset(spec.path, name=n, data_files=spec.data_files, split=spec.split,
                                       revision=spec.revision) for n in names]
        return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    except Exception as e:  # offline / not found / wrong split: one clear message, not datasets' traceback
        offline = os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"
        why = "is not in the local datasets cache and downloads are off (offline)" if offline else \
            f"could not be loaded ({str(e).splitlines()[0][:200]})"
        raise DataError(Problem(f"hub dataset {spec.path!r} {why}", recipe.source, f"{where}.path",
                                fix=f"on a machine with network run: python -c \"import datasets; datasets.load_dataset("
                                    f"'{spec.path}', split='{spec.split}').to_json('data/{spec.path.split('/')[-1]}.jsonl')\""
                                    " and point path at that file")) from None


def _load_saved(root: Path, spec: DatasetSpec, recipe: Recipe, where: str):
    import datasets

    ds = datasets.load_from_disk(str(root))
    if isinstance(ds, datasets.DatasetDict):
        if spec.split not in ds:
            raise DataError(Problem(f"split {spec.split!r} not in {root} (it has {', '.join(ds)})", recipe.source,
                                    f"{where}.split", fix=f"set split: to one of {', '.join(ds)}"))
        ds = ds[spec.split]
    return ds


def _csv_as_text(files: list[Path], builder: str) -> dict:
    """CSV cells are text: `15` stays "15" (arrow would infer a number and the row check would reject it)."""
    if builder != "csv":
        return {}
    import csv

    import datasets

    with open(files[0], encoding="utf-8", newline="") as f:
        header = next(csv.reader(f), [])
    return {"features": datasets.Features({name: datasets.Value("string") for name in header})}


def load_raw(spec: DatasetSpec, recipe: Recipe, where: str):
    """Load one `datasets:` entry as a datasets.Dataset -> (dataset, [files]); clear errors for bad input."""
    import datasets

    kind, files = locate_files(spec, recipe, where)
    if kind == "hub":
        ds = _load_hub(spec, recipe, where)
    elif kind == "saved":
        ds = _load_saved(files[0], spec, recipe, where)
    else:
        if spec.name:
            raise DataError(Problem("name selects a configuration of a hub dataset; local files have none",
                                    recipe.source, f"{where}.name", fix="remove name"))
        builder = _builder(spec, files, recipe, where)
        for f in files:
            if f.suffix == ".jsonl" and not check_json_lines(f):
                raise DataError(Problem("the file has no rows", str(f), f"{where}.path",
                                        fix="add JSON lines, or remove this entry from datasets:"))
            if f.suffix != ".jsonl" and builder in ("json", "csv", "text"):
                _check_utf8(f)
        if spec.split.split("[")[0] != "train":  # slices such as train[:264] or train[10%:] are fine
            raise DataError(Problem(f"local files have only the split 'train', not {spec.split!r}", recipe.source,
                                    f"{where}.split", fix="remove split, or list the files you want in data_files"))
        try:
            ds = datasets.load_dataset(builder, data_files=[str(f) for f in files], split=spec.split,
                                       **_csv_as_text(files, builder))
        except Exception as e:  # datasets raises many types; report which file and why, without its traceback
            raise DataError(Problem(f"could not read: {str(e).splitlines()[0][:300]}", ", ".join(map(str, files)),
                                    fix="check the file is valid " + builder)) from None
    if len(ds) == 0:
        raise DataError(Problem("the dataset has no rows", ", ".join(map(str, files)) or spec.path, f"{where}.path",
                                fix="add rows, or remove this entry from datasets:"))
    if spec.shards:
        n, k = len(ds), spec.shards_idx
        ds = ds.shard(num_shards=spec.shards, index=k, contiguous=True)
        ds.ftkit_row_offset = (n // spec.shards) * k + min(k, n % spec.shards)  # first row of the shard, for errors
    return ds, [str(f) for f in files] or [spec.path]
