"""The prepared-data cache: a fingerprint of everything that shapes the prepared rows, and atomic writes.

Layout under dataset_prepared_path:
    <fingerprint>/ftkit_prepared.json     the marker, written last: fingerprint, version, stats, splits
    <fingerprint>/train, eval             the prepared rows (datasets.save_to_disk)
    <fingerprint>/packed-<split>-<key>/   a packed layout of that split (sample_packing), keyed by what the
                                          packer reads (plugins/packing.py: layout_key), own marker
A directory is trusted only if its marker names the same fingerprint (or key) and version, and every split
the marker names exists and reads back with the row count it recorded: a preprocess killed mid-write, or a
cache missing a split, is prepared again. Writes go to a `.ftkit-tmp-*` directory that is renamed when
complete; the writer holds a lock file in it that says ftkit made it, so a temp directory left by a killed run
is recognised (its lock says ftkit's, and no live process holds it) and removed. Nothing else is: the folder may
be shared, and another program's `.tmp-*` folders are its own.
"""
from __future__ import annotations

import contextlib
import fcntl  # POSIX only, as training's output lock (train/outputs.py)
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from ftkit.log import log
from ftkit.recipe import Recipe

PREPARE_VERSION = "6"  # bump when row preparation changes, so older caches are never trusted
MARKER = "ftkit_prepared.json"
TMP_PREFIX = ".ftkit-tmp-"
LOCK = ".ftkit-prepare.lock"  # inside a temp dir: says ftkit made it, flock-ed by the process writing it
RECIPE_KEYS = ("rl", "reward_model", "sequence_len", "train_on_inputs", "val_set_size", "seed", "excess_length_strategy",
               "shuffle_merged_datasets", "dataset_shard_num", "dataset_shard_idx", "chat_template", "eot_tokens",
               "chat_template_kwargs", "default_system_message", "dataset_exact_deduplication",
               "shuffle_before_merging_datasets", "curriculum_sampling")
_HELD: dict[str, int] = {}  # temp dir -> the descriptor of its lock file, while this process writes it


def _files(source: str) -> list[Path]:
    """A source's data files: itself, or every file under a folder (a hub name has none here)."""
    p = Path(source)
    return [p] if p.is_file() else sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else []


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
        for path in _files(s):
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
    h.update(json.dumps([d.model_dump(mode="json") for d in recipe.datasets], sort_keys=True).encode())
    h.update(json.dumps([getattr(recipe, k) for k in RECIPE_KEYS]).encode())
    h.update(tokenizer_fingerprint(tokenizer).encode())
    return h.hexdigest()[:16]


def data_record(fp: str, sources: list[str]) -> dict:
    """The fingerprint of the prepared rows and each data file's size and mtime: recorded with every checkpoint,
    so a resume sees that a data file was edited since (train/checkpoints.py) and can name which one."""
    stats = {str(f.absolute()): f.stat() for s in sources for f in _files(s)}
    return {"fingerprint": fp, "files": {f: [st.st_size, st.st_mtime_ns] for f, st in stats.items()}}


def changed_files(then: dict, now: dict) -> list[str]:
    """Data files whose size or mtime differ between two data_records, and those added or gone."""
    a, b = then.get("files", {}), now.get("files", {})
    return sorted(f for f in set(a) | set(b) if a.get(f) != b.get(f))


# ---------------------------------------------------------------- temp dirs: atomic writes, stale ones removed

def _lock(tmp: Path) -> None:
    """Hold an exclusive lock on tmp/.lock until the dir is renamed or removed (released by the kernel if killed)."""
    fd = os.open(tmp / LOCK, os.O_CREAT | os.O_RDWR, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, json.dumps({"written_by": "ftkit", "pid": os.getpid()}).encode())
    _HELD[str(tmp)] = fd


def _unlock(tmp: Path) -> None:
    fd = _HELD.pop(str(tmp), None)
    if fd is not None:
        os.close(fd)


def _is_stale(tmp: Path) -> bool:
    """Left by a killed ftkit run: its lock file says ftkit wrote it and no live process holds the lock. A temp
    dir without that proof (another program's, or older than lock files) is not ftkit's to remove."""
    if str(tmp) in _HELD:
        return False
    try:
        fd = os.open(tmp / LOCK, os.O_RDWR | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        if json.loads(os.pread(fd, 4096, 0) or b"{}").get("written_by") != "ftkit":
            return False
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True  # ftkit's, and nobody holds it
    except (OSError, ValueError, AttributeError):
        return False  # a live process is writing this dir, or the lock file is not ftkit's
    finally:
        os.close(fd)


def clean_stale(*folders: Path) -> list[str]:
    """Remove the `.tmp-*` dirs killed preprocess runs left in these folders (announced); returns their names."""
    removed, freed = [], 0
    for folder in folders:
        for tmp in sorted(folder.glob(TMP_PREFIX + "*")):  # none in a folder that does not exist
            if tmp.is_dir() and not tmp.is_symlink() and _is_stale(tmp):
                with contextlib.suppress(OSError):
                    freed += sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file())
                shutil.rmtree(tmp, ignore_errors=True)
                if not tmp.exists():
                    removed.append(str(tmp))
    if removed:
        log.info(f"removed {len(removed)} temporary dir(s) left by killed preprocess runs ({freed / 1e6:,.1f} MB): "
                 f"{', '.join(Path(r).name for r in removed)}")
    return removed


@contextlib.contextmanager
def _atomic_dir(path: Path):
    """A locked temp dir beside `path`, renamed to `path` when the block completes (replacing what was there)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=path.parent))
    try:
        _lock(tmp)
        yield tmp
        (tmp / LOCK).unlink(missing_ok=True)
        if path.exists():
            shutil.rmtree(path)
        os.rename(tmp, path)
    finally:
        _unlock(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- prepared rows and packed layouts

def load(path: Path, **expect) -> tuple[dict, dict] | None:
    """({split: dataset}, marker) of a directory `save` wrote, when its marker holds `expect` (the fingerprint,
    or a packed layout's key) and this PREPARE_VERSION, and every split it names reads back with the row count
    it recorded; else None."""
    import datasets

    if not (path / MARKER).is_file():
        return None
    try:
        meta = json.loads((path / MARKER).read_text())
        if any(meta.get(k) != v for k, v in {**expect, "version": PREPARE_VERSION}.items()):
            return None
        splits = {}
        for split, n in meta["rows"].items():
            if not (path / split).is_dir():
                log.info(f"prepared cache {path} is missing its {split} split; preparing again")
                return None
            splits[split] = datasets.load_from_disk(str(path / split))
            if len(splits[split]) != n:
                log.info(f"prepared cache {path}: {split} has {len(splits[split])} rows, its marker says {n}; "
                         "preparing again")
                return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        log.info(f"prepared cache {path} is unreadable ({e}); preparing again")
        return None
    return splits, meta


def save(path: Path, splits: dict, meta: dict) -> dict:
    """Write the splits to a temp dir, the marker last, and rename: a killed preprocess never leaves a cache that
    looks complete. Returns the splits as read back (memory-mapped, rows in their final order)."""
    import datasets

    with _atomic_dir(path) as tmp:
        for name, ds in splits.items():
            ds.save_to_disk(str(tmp / name))
        meta = {**meta, "version": PREPARE_VERSION, "rows": {k: len(v) for k, v in splits.items()}}
        (tmp / MARKER).write_text(json.dumps(meta, indent=1))
    return {name: datasets.load_from_disk(str(path / name)) for name in splits}
