"""The prepared-data cache: a fingerprint of everything that shapes the prepared rows, and atomic writes.

Layout under dataset_prepared_path:
    <fingerprint>/ftkit_prepared.json     the marker, written last: fingerprint, version, stats, splits
    <fingerprint>/train, eval             the prepared rows (datasets.save_to_disk)
    <fingerprint>/packed-<split>-<key>/   a packed layout of that split (sample_packing), keyed by what the
                                          packer reads (packing version, sequence_len, group size), own marker
A directory is trusted only if its marker names the same fingerprint (or key) and version, and every split
the marker names exists and reads back with the row count it recorded: a preprocess killed mid-write, or a
cache missing a split, is prepared again. Writes go to a `.ftkit-tmp-*` directory that is renamed when
complete; the writer holds a lock file in it that says ftkit made it, so a temp directory left by a killed run
is recognised (its lock says ftkit's, and no live process holds it) and removed. Nothing else is: the folder may
be shared, and another program's `.tmp-*` folders are its own.
"""
from __future__ import annotations

import contextlib
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


def data_record(fp: str, sources: list[str]) -> dict:
    """The fingerprint of the prepared rows and each data file's size and mtime: recorded with every checkpoint,
    so a resume sees that a data file was edited since (train/checkpoints.py) and can name which one."""
    files = {}
    for s in sources:
        p = Path(s)
        for f in [p] if p.is_file() else sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else []:
            st = f.stat()
            files[str(f.absolute())] = [st.st_size, st.st_mtime_ns]
    return {"fingerprint": fp, "files": files}


def changed_files(then: dict, now: dict) -> list[str]:
    """Data files whose size or mtime differ between two data_records, and those added or gone."""
    a, b = then.get("files", {}), now.get("files", {})
    return sorted(f for f in set(a) | set(b) if a.get(f) != b.get(f))


# ---------------------------------------------------------------- temp dirs: atomic writes, stale ones removed

def _lock(tmp: Path) -> None:
    """Hold an exclusive lock on tmp/.lock until the dir is renamed or removed (released by the kernel if killed)."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): stale dirs are then recognised by age alone
        return
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
        import fcntl
    except ImportError:  # no flock (Windows): nothing can be proven stale
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


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def clean_stale(*folders: Path) -> list[str]:
    """Remove the `.tmp-*` dirs killed preprocess runs left in these folders (announced); returns their names."""
    removed, freed = [], 0
    for folder in folders:
        if not folder.is_dir():
            continue
        for tmp in sorted(folder.glob(TMP_PREFIX + "*")):
            if tmp.is_dir() and not tmp.is_symlink() and _is_stale(tmp):
                with contextlib.suppress(OSError):
                    freed += _size(tmp)
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


# ---------------------------------------------------------------- prepared rows

def _read_splits(path: Path, rows: dict) -> dict | None:
    """{split: dataset} for every split the marker names, each with the row count it recorded; else None."""
    import datasets

    out = {}
    for split, n in rows.items():
        if not (path / split).is_dir():
            log.info(f"prepared cache {path} is missing its {split} split; preparing again")
            return None
        ds = datasets.load_from_disk(str(path / split))
        if len(ds) != n:
            log.info(f"prepared cache {path}: {split} has {len(ds)} rows, its marker says {n}; preparing again")
            return None
        out[split] = ds
    return out


def load(path: Path, fp: str) -> tuple[object, object | None, dict] | None:
    """(train, eval, stats) cached at path, only if its marker names this fingerprint and every split it names
    reads back with its row count; else None."""
    marker = path / MARKER
    if not marker.is_file():
        return None
    try:
        meta = json.loads(marker.read_text())
        if meta.get("fingerprint") != fp or meta.get("version") != PREPARE_VERSION:
            return None
        splits = _read_splits(path, meta["rows"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.info(f"prepared cache {path} is unreadable ({e}); preparing again")
        return None
    if splits is None:
        return None
    return splits["train"], splits.get("eval"), meta["stats"]


def save(train, ev, stats: dict, path: Path, fp: str) -> tuple[object, object | None]:
    """Write to a temp dir and rename: a killed preprocess never leaves a cache that looks complete.
    Returns the splits as read back from the cache (memory-mapped, rows in their final order)."""
    import datasets

    splits = {"train": train, **({"eval": ev} if ev is not None else {})}
    with _atomic_dir(path) as tmp:
        for name, ds in splits.items():
            ds.save_to_disk(str(tmp / name))
        meta = {"fingerprint": fp, "version": PREPARE_VERSION, "rows": {k: len(v) for k, v in splits.items()},
                "stats": stats}
        (tmp / MARKER).write_text(json.dumps(meta, indent=1))  # the marker: written last
    back = {name: datasets.load_from_disk(str(path / name)) for name in splits}
    return back["train"], back.get("eval")


# ---------------------------------------------------------------- packed layouts

class PackedStore:
    """Packed rows of one prepared cache, one directory per split and packing key (see packing.layout_key)."""

    def __init__(self, path: Path):
        self.path = path

    def _dir(self, split: str, key: str) -> Path:
        return self.path / f"packed-{split}-{key}"

    def load(self, split: str, key: str) -> tuple[object, dict] | None:
        """(packed rows, their pack stats) when this layout was written completely; else None."""
        where = self._dir(split, key)
        try:
            meta = json.loads((where / MARKER).read_text())
            if meta.get("key") != key or meta.get("version") != PREPARE_VERSION:
                return None
            rows = _read_splits(where, {"rows": meta["rows"]})
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return (rows["rows"], meta["stats"]) if rows is not None else None

    def save(self, split: str, key: str, packed, stats: dict):
        """Write the packed rows (atomically); returns them read back from the cache."""
        import datasets

        where = self._dir(split, key)
        with _atomic_dir(where) as tmp:
            packed.save_to_disk(str(tmp / "rows"))
            (tmp / MARKER).write_text(json.dumps({"key": key, "version": PREPARE_VERSION, "rows": len(packed),
                                                  "stats": stats}, indent=1))
        return datasets.load_from_disk(str(where / "rows"))
