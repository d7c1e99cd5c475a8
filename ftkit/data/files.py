"""Reading datasets: local json/jsonl/parquet/csv/arrow files and directories, save_to_disk directories
and hub names, with row-level checks that name the file and line (JSON lines) of the first bad row.

Loading itself is datasets' (Arrow). ftkit checks what datasets reports badly: malformed or non-UTF-8
lines, a field whose JSON type changes between lines, empty files, offline hub names.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from ftkit.data.file_checks import check_json_lines, check_utf8, explain_failure
from ftkit.env import offline_switch
from ftkit.errors import DataError, DiskFull, Problem, is_disk_full
from ftkit.log import log
from ftkit.recipe import DatasetSpec, Recipe

BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv", ".arrow": "arrow"}
SAVED_MARKERS = ("dataset_info.json", "dataset_dict.json", "state.json")  # a datasets.save_to_disk directory
PROJECT_MARKERS = (".git", "pyproject.toml", "setup.cfg")  # a folder holding one of these is a project root
_ANNOUNCED: set[tuple[str, str]] = set()


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
