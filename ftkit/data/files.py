"""Reading datasets: local json/jsonl/parquet/csv/arrow files and directories, save_to_disk directories
and hub names, with checks that name the file, the line and the fix where datasets/pyarrow report badly.

Loading itself is datasets' (Arrow). Fast path: a JSON-lines file is read once, line by line (each line one
object, each field one JSON type), which also gives the line of every row for later row errors; other text
files are checked for UTF-8. When datasets fails anyway ("An error occurred while generating the dataset"),
`explain_failure` re-reads the files strictly to say which rows are bad and why: duplicate keys, lone
surrogates, a trailing comma in a JSON array, an empty file. Every check lists the first few bad lines and the
total, never only the first.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

from ftkit.env import offline_switch
from ftkit.errors import DataError, DiskFull, Problem, is_disk_full
from ftkit.log import log
from ftkit.recipe import DatasetSpec, Recipe

BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv", ".arrow": "arrow"}
SAVED_MARKERS = ("dataset_info.json", "dataset_dict.json", "state.json")  # a datasets.save_to_disk directory
PROJECT_MARKERS = (".git", "pyproject.toml", "setup.cfg")  # a folder holding one of these is a project root
_ANNOUNCED: set[tuple[str, str]] = set()
LISTED = 5  # bad lines shown per file; the total is always given
_LINES: dict[tuple, list[int]] = {}  # (path, size, mtime) -> line number of each row of a JSON-lines file
_KINDS = {str: "text", int: "a number", float: "a number", bool: "true/false", list: "a list", dict: "a mapping",
          type(None): None}  # a JSON value's Python type -> how the type check names it


# ---------------------------------------------------------------- locating and checking files

def _search_folders(recipe_file: Path) -> list[Path]:
    """The recipe's folder and its parents up to the project root (the first holding .git or pyproject.toml);
    only the recipe's folder when it lies in no project. Never the whole way up to / (etc/passwd)."""
    folders = []
    for folder in recipe_file.resolve().parents:
        folders.append(folder)
        if any((folder / m).exists() for m in PROJECT_MARKERS):
            return folders
    return folders[:1]


def resolve_data_path(path: str, recipe: Recipe) -> Path:
    """A dataset path relative to the working directory, else to the recipe's folder or a parent of it inside
    the recipe's project (see _search_folders). A file found beside the recipe is announced once."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    if recipe.source:
        for folder in _search_folders(Path(recipe.source)):
            if (folder / p).exists():
                found = folder / p
                if (path, str(found)) not in _ANNOUNCED:
                    _ANNOUNCED.add((path, str(found)))
                    log.info(f"dataset {path}: using {found} (relative to {folder}, found from the recipe's folder)")
                return found
    return p


def _looks_like_hub(path: str) -> bool:
    """`owner/name` or `name`: no file suffix, not explicitly relative or absolute."""
    p = Path(path)
    return p.suffix not in BUILDERS and not path.startswith((".", "/", "~")) and path.count("/") <= 1


def _listing(root: Path, n: int = 5) -> str:
    names = sorted(str(f.relative_to(root)) for f in root.rglob("*") if f.is_file())
    more = f", ... ({len(names)} files)" if len(names) > n else ""
    return (", ".join(names[:n]) + more) if names else "nothing"


def _data_files(spec: DatasetSpec, root: Path, recipe: Recipe, where: str, suffixes=BUILDERS) -> list[Path]:
    """The files of one entry: data_files names or glob patterns inside `path`, else every data file under it."""
    if not root.is_dir():
        return [root]
    if not spec.data_files:
        return sorted(f for f in root.rglob("*") if f.suffix in suffixes and f.is_file()
                      and not any(part.startswith(".") for part in f.relative_to(root).parts))
    out = []
    for name in [spec.data_files] if isinstance(spec.data_files, str) else spec.data_files:
        matched = sorted(f for f in root.glob(name) if f.is_file()) if any(c in name for c in "*?[") else \
            [root / name] if (root / name).is_file() else []
        if not matched:
            raise DataError(Problem(f"data_files {name!r} matches no file in {root} (it holds {_listing(root)})",
                                    recipe.source, f"{where}.data_files",
                                    fix="name files relative to path, or a glob such as train-*.jsonl"))
        out += matched
    return out


def locate_row(files: list[str], idx: int) -> tuple[str, int | None, int]:
    """(file, line or None, row index in that file) of the idx-th row across a dataset's files."""
    for f in files:
        if not f.endswith(".jsonl"):
            return f, None, idx
        lines = check_json_lines(Path(f))
        if idx < len(lines):
            return f, lines[idx], idx
        idx -= len(lines)
    return files[0], None, idx


def locate_files(spec: DatasetSpec, recipe: Recipe, where: str, suffixes=BUILDERS) -> tuple[str, list[Path]]:
    """('files' | 'saved' | 'hub', paths) for one `datasets:` entry (a folder: its files with `suffixes`); missing
    local paths are errors."""
    root = resolve_data_path(spec.path, recipe)
    if root.is_dir() and any((root / m).is_file() for m in SAVED_MARKERS):
        return "saved", [root]
    if not root.exists():
        if _looks_like_hub(spec.path):
            return "hub", []
        raise DataError(Problem(f"dataset path {spec.path!r} does not exist", recipe.source, f"{where}.path",
                                fix="give a local file or directory (relative to the working directory or the "
                                    "recipe), or a hub dataset name like owner/name"))
    files = _data_files(spec, root, recipe, where, suffixes)
    for f in files:
        if not f.is_file():  # a FIFO, /dev/zero, a socket: reading it may block forever or never end
            raise DataError(Problem(f"dataset path {str(f)!r} is not a regular file ({_kind(f)}): reading it could "
                                    "wait forever or never end", recipe.source, f"{where}.path",
                                    fix="save the rows to a file first and point path at that file"))
    if not files:
        raise DataError(Problem(f"no {'/'.join(suffixes)} files in {root} (it holds {_listing(root)})",
                                recipe.source, f"{where}.path", fix="point path at a data file or a folder of them"))
    return "files", files


def _kind(path: Path) -> str:
    import stat

    mode = path.stat().st_mode
    return ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "not a plain file")


def file_format(spec: DatasetSpec, files: list[Path], recipe: Recipe, where: str, suffixes=BUILDERS) -> str:
    """The datasets builder reading these files: ds_type, else the one their suffixes name."""
    kinds = {spec.ds_type or suffixes.get(f.suffix) for f in files}
    if None in kinds or len(kinds) != 1:
        raise DataError(Problem(f"cannot tell the file format of {[str(f) for f in files][:4]}", recipe.source,
                                f"{where}.path", fix=f"use one of {' '.join(suffixes)} for all files, or set ds_type"))
    return kinds.pop()


# ---------------------------------------------------------------- loading

def load_hub(spec: DatasetSpec, recipe: Recipe, where: str, streaming: bool = False):
    """A hub dataset (streamed: a datasets.IterableDataset); offline or not found: one clear DataError."""
    import datasets

    try:
        names = spec.name if isinstance(spec.name, list) else [spec.name]  # several configurations: concatenated
        parts = [datasets.load_dataset(spec.path, name=n, data_files=spec.data_files, split=spec.split,
                                       revision=spec.revision, streaming=streaming) for n in names]
        return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    except Exception as e:  # offline / not found / wrong split: one clear message, not datasets' traceback
        offline = offline_switch(("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"))  # 1/true/yes/on, as datasets reads them
        why = "is not in the local datasets cache and downloads are off (offline)" if offline else \
            f"could not be loaded ({str(e).splitlines()[0][:200]})"
        raise DataError(Problem(f"hub dataset {spec.path!r} {why}", recipe.source, f"{where}.path",
                                fix=f"on a machine with network run: python -c \"import datasets; datasets.load_dataset("
                                    f"'{spec.path}', split='{spec.split}').to_json('data/{spec.path.split('/')[-1]}.jsonl')\""
                                    " and point path at that file")) from None


def load_saved(root: Path, spec: DatasetSpec, recipe: Recipe, where: str):
    """A save_to_disk folder's rows (its `split` when it holds several)."""
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


class RawData(NamedTuple):
    """One `datasets:` entry as loaded: its rows, the files they came from, and (for a shard) the index of
    the shard's first row in those files, so a row error names the right line."""

    rows: object  # datasets.Dataset
    files: list[str]
    first_row: int = 0


def load_raw(spec: DatasetSpec, recipe: Recipe, where: str) -> RawData:
    """Load one `datasets:` entry (rows, files, first_row); clear errors for bad input."""
    import datasets

    kind, files = locate_files(spec, recipe, where)
    if kind == "hub":
        ds = load_hub(spec, recipe, where)
    elif kind == "saved":
        ds = load_saved(files[0], spec, recipe, where)
    else:
        if spec.name:
            raise DataError(Problem("name selects a configuration of a hub dataset; local files have none",
                                    recipe.source, f"{where}.name", fix="remove name"))
        builder = file_format(spec, files, recipe, where)
        for f in files:
            if f.suffix == ".jsonl" and not check_json_lines(f):
                raise DataError(Problem("the file has no rows", str(f), f"{where}.path",
                                        fix="add JSON lines, or remove this entry from datasets:"))
            if f.suffix != ".jsonl" and builder in ("json", "csv", "text"):
                check_utf8(f)
        if spec.split.split("[")[0] != "train":  # slices such as train[:264] or train[10%:] are fine
            raise DataError(Problem(f"local files have only the split 'train', not {spec.split!r}", recipe.source,
                                    f"{where}.split", fix="remove split, or list the files you want in data_files"))
        try:
            ds = datasets.load_dataset(builder, data_files=[str(f) for f in files], split=spec.split,
                                       **_csv_as_text(files, builder))
        except Exception as e:  # datasets raises many types; say which rows and why, without its traceback
            if is_disk_full(e, datasets.config.HF_DATASETS_CACHE):  # its Arrow cache, not the data file, is at fault
                raise DiskFull(Problem(
                    f"the disk holding the datasets cache ({datasets.config.HF_DATASETS_CACHE}) is full while it "
                    f"converts {', '.join(f.name for f in files)} to Arrow", recipe.source, f"{where}.path",
                    fix="free space there, or set HF_DATASETS_CACHE (or HF_HOME) to a folder on a larger disk")
                ) from None
            raise explain_failure(files, builder, e) from None
    if len(ds) == 0:
        raise DataError(Problem("the dataset has no rows", ", ".join(map(str, files)) or spec.path, f"{where}.path",
                                fix="add rows, or remove this entry from datasets:"))
    first_row = 0
    if spec.shards:
        n, k = len(ds), spec.shards_idx
        ds = ds.shard(num_shards=spec.shards, index=k, contiguous=True)
        first_row = (n // spec.shards) * k + min(k, n % spec.shards)  # contiguous shards: the larger ones first
    return RawData(ds, [str(f) for f in files] or [spec.path], first_row)


# ---------------------------------------------------------------- checks that name the file and line

class _Collector:
    """The first LISTED problems of a file and how many lines were bad in all."""

    def __init__(self, path: Path):
        self.path, self.problems, self.bad, self.lines = path, [], 0, 0

    def add(self, line: int | None, problem: str, fix: str, where: str | None = None) -> None:
        self.bad += 1
        if len(self.problems) < LISTED:
            self.problems.append(Problem(problem, str(self.path), where, line, fix))

    def raise_if_bad(self) -> None:
        if not self.bad:
            return
        if self.bad > len(self.problems):
            self.problems.append(Problem(f"{self.bad} of {self.lines} lines are bad ({len(self.problems)} shown)",
                                         str(self.path), fix="fix or delete those lines; the first ones are above"))
        raise DataError(self.problems)


def check_json_lines(path: Path, strict: bool = False) -> list[int]:
    """Every line parses to an object and each field keeps one JSON type; returns the line of each row.
    `strict` (after datasets failed on the file) also finds a key written twice and lone surrogates.

    The type check runs per field only when a row's fields or their types differ from the row before (most
    files repeat one shape), so the pass costs little more than json.loads per line."""
    key = (str(path), path.stat().st_size, path.stat().st_mtime_ns)
    if key in _LINES and not strict:
        return _LINES[key]
    rows, kinds, bad = [], {}, _Collector(path)
    shape, no = None, 0  # shape: (field names, their value types) of the last row checked field by field
    with open(path, "rb") as f:
        for no, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
                value = json.loads(line, object_pairs_hook=_strict_object if strict else None)
            except UnicodeDecodeError as e:
                bad.add(no, f"not UTF-8 text (byte {raw[e.start]:#x} at column {e.start + 1})",
                        "re-save the file as UTF-8")
                continue
            except json.JSONDecodeError as e:
                if line.strip():  # a blank line is skipped (as datasets does)
                    bad.add(no, f"malformed JSON ({e.msg} at column {e.colno})",
                            "each line must be one JSON object; fix or delete that line")
                continue
            except ValueError as e:  # strict: a key written twice
                bad.add(no, str(e), "write each key once per row")
                continue
            if found := _row_problem(value, strict):
                bad.add(no, *found)
                continue
            now = (tuple(value), tuple(map(type, value.values())))
            if now != shape:
                shape = now
                for k, v in value.items():
                    kind = _KINDS[type(v)]
                    first = kinds.setdefault(k, (kind, no)) if kind else None
                    if first and first[0] != kind:
                        bad.add(no, f"field {k!r} is {kind} here but {first[0]} on line {first[1]}",
                                f"give {k} the same type on every line", where=k)
                        shape = None  # check the next row field by field again
            rows.append(no)
        bad.lines = no
    bad.raise_if_bad()
    _LINES[key] = rows
    return rows


def check_utf8(path: Path) -> None:
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(Problem("not UTF-8 text", str(path), line=data[:e.start].count(b"\n") + 1,
                                fix="re-save the file as UTF-8")) from None


def _strict_object(pairs: list[tuple]) -> dict:
    """json object hook: a key written twice is an error (json.loads would silently keep the last)."""
    seen = set()
    for k, _ in pairs:
        if k in seen:
            raise ValueError(f"key {k!r} appears twice in one row")
        seen.add(k)
    return dict(pairs)


def _lone_surrogate(value) -> str | None:
    """The first string holding half of a UTF-16 surrogate pair (JSON "\\ud800" alone), which Arrow cannot store."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value
        return None
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return next((s for s in map(_lone_surrogate, items) if s is not None), None)


def _row_problem(value, strict: bool) -> tuple[str, str] | None:
    if not isinstance(value, dict):
        return f"a row must be a JSON object, got {type(value).__name__}", 'write rows as {"field": "value", ...}'
    if strict and (s := _lone_surrogate(value)) is not None:
        return (f"text {s[:40]!r} holds a lone surrogate escape (\\ud800-\\udfff without its pair)",
                "write the character itself, or its full surrogate pair")
    return None


def _check_json_document(path: Path) -> None:
    """A .json file datasets could not read: an empty file, a trailing comma, a key twice, bad rows."""
    text, bad = path.read_text(encoding="utf-8", errors="replace"), _Collector(path)
    try:
        doc = json.loads(text, object_pairs_hook=_strict_object)
    except json.JSONDecodeError as e:
        before = text[:e.pos].rstrip()
        if not text.strip():
            bad.add(None, "the file is empty", "add rows (a JSON array of objects, or one object per line in a .jsonl)")
        elif e.msg == "Extra data":  # one object per line in a .json file: read it as JSON lines
            check_json_lines(path, strict=True)
        elif before.endswith(","):  # JSON allows no comma before ] or }: point at the comma, not the bracket
            bad.add(before.count("\n") + 1, "a trailing comma before ']' or '}' (JSON allows none)",
                    "delete that comma")
        else:
            bad.add(e.lineno, f"malformed JSON ({e.msg} at column {e.colno})", "fix the JSON at that line")
    except ValueError as e:
        bad.add(None, str(e), "write each key once per row")
    else:
        rows = doc if isinstance(doc, list) else [doc]
        bad.lines = len(rows)
        for i, row in enumerate(rows):
            if found := _row_problem(row, strict=True):
                bad.add(None, *found, where=f"row {i + 1}")
    bad.raise_if_bad()


def explain_failure(files: list[Path], builder: str, error: Exception) -> DataError:
    """The DataError for a file set datasets could not read: the bad rows found by a strict re-read, else its
    message."""
    for f in files:
        try:
            if f.stat().st_size == 0:
                raise DataError(Problem("the file is empty", str(f),
                                        fix="add rows, or remove the file from the dataset"))
            if builder == "json":
                check_json_lines(f, strict=True) if f.suffix == ".jsonl" else _check_json_document(f)
        except DataError as found:
            return found
    first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
    return DataError(Problem(f"could not read: {first[:300]}", ", ".join(map(str, files)),
                             fix=f"check the file is valid {builder}"))
