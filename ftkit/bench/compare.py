"""`ftkit bench compare`: ftkit next to what a user would otherwise run, printed as ratios.

Sections (each case runs in interleaved rounds, ftkit then its peer, so machine load hits both alike;
the printed ratio is the median of the per-round ratios ftkit / peer, below 1 = ftkit takes less):
  packing      ftkit's packer vs TRL's `pack_dataset(..., "bfd")` on whole datasets (map batch_size=None,
               TRL's best bins): time, bins (and the fewest possible), peak RSS added. Lengths come from
               every data_samples set tokenized by the tiny tokenizer (resampled to the row count) and from
               a long-tailed synthetic set (log-normal, median 180 tokens, rows longer than the bin redrawn).
  preprocess   `ftkit prepare` (cold: read, tokenize, label, filter, split, cache write) vs a bare loop:
               read the JSON lines, batched tokenizer calls for prompt and answer, labels, filter, save_to_disk.
  training     `ftkit train` vs a bare TRL SFTTrainer script, same tiny model, rows, batch and steps, packing
               off: seconds per optimizer step of the training loop (model load and saving not counted), wall
               and CPU (user + system of this process: less moved by other processes), medians with their
               spread; a load average above the core count is flagged.
  axolotl      the same YAML through Axolotl's CLI and ftkit's (training loop time and per-step losses;
               preprocess time), with Axolotl in its own venv (--axolotl-python); see bench/versus_axolotl.py.
Ratios are measurements of this machine at this moment, not claims: they are printed, never asserted.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ftkit.bench.timing import busy, cpu_seconds, load, spread
from ftkit.resources import shipped

TINY = "tiny:llama"


# ---------------------------------------------------------------- measuring

def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def measured(fn):
    """(result, seconds, peak resident bytes added while fn ran or None where /proc can't tell)."""
    before = _status_kb("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # the high-water mark restarts at the current RSS
    except OSError:
        before = None
    t = time.perf_counter()
    out = fn()
    secs = time.perf_counter() - t
    peak = _status_kb("VmHWM")
    return out, secs, (None if before is None or peak is None else max(peak - before, 0) * 1024)


def _trim() -> None:
    """Hand freed memory back to the OS (Python, Arrow's pool, glibc), so a forked child can't reuse it."""
    import ctypes
    import gc

    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def in_child(fn):
    """measured(fn) in a forked copy of this process, so each run starts from the same heap (allocators keep
    freed memory, which would flatter whichever runs second); fn's result must pickle. In-process without fork."""
    import pickle

    if not hasattr(os, "fork"):
        return measured(fn)
    _trim()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: measure, send, leave without running the parent's exit handlers
        os.close(read)
        try:
            payload = pickle.dumps(("ok", measured(fn)))
        except BaseException as e:  # noqa: BLE001 - reported by the parent
            payload = pickle.dumps(("error", repr(e)))
        with os.fdopen(write, "wb") as f:
            f.write(payload)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        status, value = pickle.loads(f.read())
    os.waitpid(pid, 0)
    if status != "ok":
        raise RuntimeError(f"benchmark child failed: {value}")
    return value


def median_ratio(pairs: list[tuple[float, float]]) -> float:
    """Median of a / b over paired rounds."""
    return statistics.median(a / b for a, b in pairs if b)


# ---------------------------------------------------------------- length sets

def sample_lengths(work: Path) -> np.ndarray:
    """Token lengths of every data_samples set (data_samples/make_samples.py's CATALOG) with the tiny tokenizer."""
    cached = work / "sample_lengths.npy"
    if cached.is_file():
        return np.load(cached)
    from ftkit import data, models
    from ftkit.bench.preprocess import catalog
    from ftkit.recipe import load_recipe

    import pyarrow.compute as pc

    parts = []
    for name, stanza in catalog().items():  # one recipe per set: `pretokenized` rows carry int64 ids, the rest int32
        recipe = load_recipe({"base_model": TINY, "datasets": [{"path": str(shipped("data_samples") / name), **stanza}],
                              "sequence_len": 4096, "val_set_size": 0, "dataset_prepared_path": str(work / "prepared")})
        rows = data.prepare(recipe, models.load_tokenizer(recipe)).train
        parts.append(pc.list_value_length(rows.data.table["input_ids"]).to_numpy().astype(np.int64))
    lengths = np.concatenate(parts)
    work.mkdir(parents=True, exist_ok=True)
    np.save(cached, lengths)
    return lengths


def long_tailed(n: int, capacity: int, seed: int = 0, median: int = 180, sigma: float = 1.0) -> np.ndarray:
    """Log-normal lengths (median 180 tokens, a tail past any sequence_len); rows longer than the bin redrawn."""
    rng = np.random.default_rng(seed)
    out = np.zeros(0, dtype=np.int64)
    while len(out) < n:
        x = np.rint(rng.lognormal(np.log(median), sigma, 2 * n)).astype(np.int64)
        out = np.concatenate([out, x[(x >= 1) & (x <= capacity)]])
    return out[:n]


def length_set(kind: str, n: int, capacity: int, samples: np.ndarray, seed: int = 0) -> np.ndarray:
    if kind == "samples":
        pool = samples[samples <= capacity]
        return np.random.default_rng(seed).choice(pool, n)
    return long_tailed(n, capacity, seed)


def token_dataset(lengths: np.ndarray, seed: int = 0):
    """A datasets.Dataset shaped like prepared rows: input_ids (int32) and labels (int64) of these lengths."""
    import datasets
    import pyarrow as pa

    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    ids = np.random.default_rng(seed).integers(3, 400, int(offsets[-1]), dtype=np.int32)
    return datasets.Dataset(pa.table({"input_ids": pa.ListArray.from_arrays(pa.array(offsets), pa.array(ids)),
                                      "labels": pa.ListArray.from_arrays(pa.array(offsets), pa.array(ids.astype(np.int64)))}))


# ---------------------------------------------------------------- packing

def trl_bfd(dataset, capacity: int):
    from trl import pack_dataset

    return pack_dataset(dataset, capacity, "bfd", {"batch_size": None})


def _packed_stats(fn, ds, capacity: int):
    """Run a packer; what comes back is its PackStats (rows, bins, tokens), read from the packed rows."""
    from ftkit.plugins import packing

    return packing.stats_of(fn(ds, capacity), capacity)


def packing_case(lengths: np.ndarray, capacity: int, rounds: int, packer=None) -> dict:
    """ftkit's pack vs TRL's bfd on the same rows, interleaved, each run in a fresh fork of this process;
    `packer(dataset, capacity) -> packed dataset` stands in for ftkit's (e.g. an older version)."""
    from ftkit.plugins import packing

    packer = packer or (lambda ds, cap: packing.pack(ds, cap, group_size=len(ds))[0])
    ds = token_dataset(lengths)
    for fn in (packer, trl_bfd):  # imports and first-call set-up happen here, not in the timed children
        fn(token_dataset(np.array([2, 3, 1])), 4)
    runs = {"ftkit": packer, "trl": trl_bfd}
    times, bins, peaks = [], {}, {}
    for name, fn in runs.items():  # peak RSS: one run each in a fresh fork (same starting heap for both)
        st, _, peaks[name] = in_child(lambda fn=fn: _packed_stats(fn, ds, capacity))
        # every token once, in rows of at most capacity (stats_of reads the packed seq_lengths)
        assert st.tokens == int(lengths.sum()) and st.rows == len(lengths), (name, st)
        bins[name] = st.bins
    for r in range(rounds):  # time: in this process, who goes first alternating round by round
        secs = {}
        for name in (("ftkit", "trl") if r % 2 == 0 else ("trl", "ftkit")):
            t = time.perf_counter()
            runs[name](ds, capacity)
            secs[name] = time.perf_counter() - t
        times.append((secs["ftkit"], secs["trl"]))
    hist = np.bincount(lengths, minlength=capacity + 1)
    return {"rows": len(lengths), "capacity": capacity, "bins": bins, "bound": packing.lower_bound(hist, capacity),
            "seconds": {k: statistics.median(t[i] for t in times) for i, k in enumerate(("ftkit", "trl"))},
            "time_ratio": median_ratio(times),
            "peak": peaks}


def _mb(b) -> str:
    return "n/a" if b is None else f"{b / 1e6:,.0f} MB"


def packing_section(rows: list[int], seq_lens: list[int], rounds: int, work: Path, print_=print,
                    packer=None, sets: tuple = ("samples", "longtail")) -> list[dict]:
    samples = sample_lengths(work) if "samples" in sets else None
    results = []
    print_(f"\n== packing: ftkit vs TRL pack_dataset bfd (whole dataset), {rounds} interleaved rounds ==")
    print_(f"{'set':10} {'seq':>5} {'rows':>7} | {'ftkit s':>8} {'TRL s':>8} {'time ratio':>10} | "
           f"{'ftkit bins':>10} {'TRL bins':>9} {'fewest':>7} | {'ftkit peak':>10} {'TRL peak':>9}")
    for kind in sets:
        for capacity in seq_lens:
            for n in rows:
                r = packing_case(length_set(kind, n, capacity, samples), capacity, rounds, packer)
                r["set"] = kind
                results.append(r)
                print_(f"{kind:10} {capacity:5} {n:7} | {r['seconds']['ftkit']:8.3f} {r['seconds']['trl']:8.3f} "
                       f"{r['time_ratio']:9.2f}x | {r['bins']['ftkit']:10} {r['bins']['trl']:9} {r['bound']:7} | "
                       f"{_mb(r['peak']['ftkit']):>10} {_mb(r['peak']['trl']):>9}")
    return results


# ---------------------------------------------------------------- preprocessing

def repeated_rows(n: int, work: Path) -> Path:
    """data_samples/alpaca.jsonl repeated (cycled) to n rows, written once under `work`."""
    path = work / f"alpaca-{n}.jsonl"
    if not path.is_file():
        lines = shipped("data_samples/alpaca.jsonl").read_text().splitlines()
        work.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(lines[i % len(lines)] + "\n" for i in range(n)))
    return path


def bare_prepare(path: Path, tokenizer, sequence_len: int, out: Path) -> int:
    """What a user would write by hand: JSON lines -> batched tokenizer calls (prompt, answer) -> labels with
    the prompt masked -> drop rows over sequence_len -> save_to_disk. Returns the rows kept."""
    import datasets

    from ftkit.formats.alpaca import NO_INPUT, WITH_INPUT

    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    eos = [tokenizer.eos_token_id]

    def tokenize(batch):
        prompts = [(WITH_INPUT if inp else NO_INPUT).format(instruction=ins, input=inp)
                   for ins, inp in zip(batch["instruction"], batch["input"])]
        p_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
        a_ids = tokenizer(batch["output"], add_special_tokens=False)["input_ids"]
        ids = [bos + p + a + eos for p, a in zip(p_ids, a_ids)]
        labels = [[-100] * (len(bos) + len(p)) + a + eos for p, a in zip(p_ids, a_ids)]
        return {"input_ids": ids, "labels": labels}

    raw = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(out / "hf"))
    rows = raw.map(tokenize, batched=True, remove_columns=raw.column_names)
    rows = rows.filter(lambda b: [len(x) <= sequence_len for x in b["input_ids"]], batched=True)
    rows.save_to_disk(str(out / "rows"))
    return len(rows)


def ftkit_prepare(path: Path, sequence_len: int, out: Path) -> int:
    """`ftkit preprocess`'s work on the same file, cold (a new cache directory)."""
    from ftkit import data, models
    from ftkit.recipe import load_recipe

    recipe = load_recipe({"base_model": TINY, "datasets": [{"path": str(path), "type": "alpaca"}],
                          "sequence_len": sequence_len, "val_set_size": 0, "dataset_prepared_path": str(out)})
    return len(data.prepare(recipe, models.load_tokenizer(recipe)).train)


def preprocess_section(rows: list[int], rounds: int, work: Path, print_=print, sequence_len: int = 256) -> list[dict]:
    import datasets
    from transformers import AutoTokenizer

    from ftkit.log import quiet
    from ftkit.models.tiny import tiny_path

    datasets.disable_progress_bars()
    tok = AutoTokenizer.from_pretrained(tiny_path(TINY))
    results = []
    print_(f"\n== preprocess: ftkit prepare (cold) vs a bare batched tokenize-and-label loop, alpaca rows, "
           f"{rounds} interleaved rounds ==")
    print_(f"{'rows':>8} | {'ftkit s':>8} {'bare s':>8} {'time ratio':>10} | {'ftkit ms/row':>12} {'bare ms/row':>11}")
    for n in rows:
        path = repeated_rows(n, work)
        times = []
        for r in range(rounds):
            secs = {}
            for name in (("ftkit", "bare") if r % 2 == 0 else ("bare", "ftkit")):
                with tempfile.TemporaryDirectory(dir=work) as out, quiet():
                    t = time.perf_counter()
                    kept = (ftkit_prepare(path, sequence_len, Path(out)) if name == "ftkit"
                            else bare_prepare(path, tok, sequence_len, Path(out)))
                    secs[name] = time.perf_counter() - t
                assert kept > 0.9 * n, (name, kept)
            times.append((secs["ftkit"], secs["bare"]))
        res = {"rows": n, "time_ratio": median_ratio(times),
               "seconds": {k: statistics.median(t[i] for t in times) for i, k in enumerate(("ftkit", "bare"))}}
        results.append(res)
        s = res["seconds"]
        print_(f"{n:8} | {s['ftkit']:8.2f} {s['bare']:8.2f} {res['time_ratio']:9.2f}x | "
               f"{1000 * s['ftkit'] / n:12.3f} {1000 * s['bare'] / n:11.3f}")
    return results


# ---------------------------------------------------------------- training loop

def _timer():
    from transformers import TrainerCallback

    class Timer(TrainerCallback):
        """Wall and CPU seconds from the first to the last optimizer step: the loop, not model loading or saving."""

        def __init__(self):
            self.start = self.end = None
            self.steps = 0

        def on_step_begin(self, args, state, control, **kw):
            if self.start is None and state.global_step == 1:  # step 0 warms up (first allocations)
                self.start = (time.perf_counter(), cpu_seconds())

        def on_step_end(self, args, state, control, **kw):
            self.end, self.steps = (time.perf_counter(), cpu_seconds()), state.global_step

        def per_step(self) -> dict:
            """{"wall": s/step, "cpu": s/step} over the timed steps."""
            n = self.steps - 1
            return {"wall": (self.end[0] - self.start[0]) / n, "cpu": (self.end[1] - self.start[1]) / n}

    return Timer()


def _train_recipe(steps: int, out: Path) -> dict:
    return {"base_model": TINY, "datasets": [{"path": str(shipped("data_samples/alpaca.jsonl")), "type": "alpaca"}],
            "sequence_len": 256, "micro_batch_size": 16, "max_steps": steps, "learning_rate": 3e-3,
            "logging_steps": min(10, steps), "val_set_size": 0, "eval_prompts": [], "bf16": False, "seed": 42,
            "output_dir": str(out / "ftkit"), "dataset_prepared_path": str(out / "prepared")}


def ftkit_train(steps: int, out: Path) -> dict:
    """`ftkit train` on the tiny twin; wall and CPU seconds per step of its training loop."""
    from ftkit import train
    from ftkit.recipe import load_recipe

    timer = _timer()
    train.run(load_recipe(_train_recipe(steps, out)), callbacks=[timer])
    return timer.per_step()


@contextlib.contextmanager
def _trls_own_head():
    """TRL's fused LM head as TRL ships it, for the bare script: ftkit puts its CPU kernel under TRL's head
    process-wide (plugins/kernels.install) once an ftkit run has started in this process."""
    from trl.trainer import utils

    from ftkit.plugins.kernels import Dispatch

    patched = utils._ChunkedLogProbFunction, utils._use_triton
    if Dispatch.trl is not None:
        utils._ChunkedLogProbFunction, utils._use_triton = Dispatch.trl, Dispatch.trl_compacts
    try:
        yield
    finally:
        utils._ChunkedLogProbFunction, utils._use_triton = patched


def bare_train(steps: int, out: Path) -> dict:
    """A bare TRL script: the same twin, rows (alpaca prompt/completion text), batch, steps and learning rate,
    with TRL's own LM head."""
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from ftkit.formats.alpaca import NO_INPUT, WITH_INPUT
    from ftkit.models.tiny import tiny_path

    rows = [json.loads(line) for line in shipped("data_samples/alpaca.jsonl").read_text().splitlines()]
    ds = datasets.Dataset.from_list([{"prompt": (WITH_INPUT if r["input"] else NO_INPUT).format(**r),
                                      "completion": r["output"]} for r in rows])
    tok = AutoTokenizer.from_pretrained(tiny_path(TINY))
    model = AutoModelForCausalLM.from_pretrained(tiny_path(TINY))
    args = SFTConfig(output_dir=str(out / "trl"), max_steps=steps, per_device_train_batch_size=16, learning_rate=3e-3,
                     logging_steps=min(10, steps), max_length=256, bf16=False, use_cpu=True, report_to=[], save_strategy="no",
                     gradient_checkpointing=False, dataloader_pin_memory=False, seed=42, disable_tqdm=True)
    timer = _timer()
    with _trls_own_head():
        SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, callbacks=[timer]).train()
    return timer.per_step()


def training_section(steps: int, rounds: int, work: Path, print_=print) -> dict:
    """Interleaved rounds of `ftkit train` and the bare TRL script: seconds per step, wall and CPU (this process's
    user + system time over the loop: less moved by other processes' load), each with its spread."""
    from ftkit.log import quiet

    per = {"ftkit": [], "trl": []}
    loads = []
    print_(f"\n== training loop: ftkit train vs a bare TRL SFTTrainer script, tiny twin, {steps} steps x 16 rows, "
           f"packing off, {rounds} interleaved rounds ==")
    for r in range(rounds):
        for name in (("ftkit", "trl") if r % 2 == 0 else ("trl", "ftkit")):
            # quiet: the trainers print their metrics dicts; the figures that matter come from the timer
            with tempfile.TemporaryDirectory(dir=work) as out, quiet(), contextlib.redirect_stdout(io.StringIO()):
                loads.append(load())
                per[name].append((ftkit_train if name == "ftkit" else bare_train)(steps, Path(out)))
        loads.append(load())
    res = {"seconds_per_step": {k: {m: statistics.median(x[m] for x in v) for m in ("wall", "cpu")}
                                for k, v in per.items()},
           "time_ratio": median_ratio([(a["wall"], b["wall"]) for a, b in zip(per["ftkit"], per["trl"])]),
           "cpu_ratio": median_ratio([(a["cpu"], b["cpu"]) for a, b in zip(per["ftkit"], per["trl"])]),
           "max_load": max(loads)}
    res["steps_per_s"] = {k: 1 / v["wall"] for k, v in res["seconds_per_step"].items()}
    for name, label in (("ftkit", "ftkit   "), ("trl", "bare TRL")):
        print_(f"  {label} s/step: wall {spread(x['wall'] for x in per[name])}, "
               f"CPU {spread(x['cpu'] for x in per[name])}")
    print_(f"  steps/s: ftkit {res['steps_per_s']['ftkit']:.2f}, bare TRL {res['steps_per_s']['trl']:.2f}; "
           f"time per step ftkit / TRL {res['time_ratio']:.2f}x wall, {res['cpu_ratio']:.2f}x CPU")
    if busy(loads):
        print_(busy(loads))
    return res


def axolotl_section(python: str | None, steps: int, rounds: int, prep_rows: list[int], work: Path) -> dict:
    """The same YAML through Axolotl (bench/versus_axolotl.py), when an interpreter that has it is known."""
    import importlib.util
    import sys

    from ftkit.bench import versus_axolotl

    python = python or os.environ.get("FTKIT_AXOLOTL_PYTHON") or (
        sys.executable if importlib.util.find_spec("axolotl") else None)
    if not python:
        print("\n== axolotl: not importable here; its column is skipped. Axolotl pins other transformers/TRL "
              "versions: put it in its own venv (pip install torch==2.13.0 axolotl) and pass --axolotl-python "
              "VENV/bin/python ==")
        return {}
    return versus_axolotl.run(python, steps, rounds, prep_rows, work / "axolotl", repeated_rows)


# ---------------------------------------------------------------- the command

def run(rows: list[int] = (2000, 20000), seq_lens: list[int] = (512, 2048, 4096), prep_rows: list[int] = (20000,),
        steps: int = 30, rounds: int = 3, sections: list[str] = ("packing", "preprocess", "training"),
        sets: list[str] = ("samples", "longtail"), work: Path | None = None, axolotl_python: str | None = None) -> dict:
    """Print every section's table; return the figures."""
    work = Path(work or Path(os.environ.get("FTKIT_CACHE") or Path.home() / ".cache" / "ftkit") / "bench-compare")
    work.mkdir(parents=True, exist_ok=True)
    print(f"ftkit bench compare: ratios are ftkit / peer (below 1 = ftkit takes less), medians of paired rounds; "
          f"{os.cpu_count()} CPUs, load average {load():.1f} at the start")
    loads = [load()]
    out = {}
    if "packing" in sections:
        out["packing"] = packing_section(list(rows), list(seq_lens), rounds, work, sets=tuple(sets))
    if "preprocess" in sections:
        out["preprocess"] = preprocess_section(list(prep_rows), max(rounds - 1, 1), work)
    if "training" in sections:
        out["training"] = training_section(steps, max(rounds - 1, 1), work)
    if "axolotl" in sections or axolotl_python:
        out["axolotl"] = axolotl_section(axolotl_python, steps, max(rounds - 1, 1), list(prep_rows), work)
    loads += [load(), out.get("training", {}).get("max_load", 0.0)]
    print(f"\nload average {loads[0]:.1f} at the start, {loads[1]:.1f} at the end" + (f"\n{busy(loads)}" if busy(loads) else ""))
    return out
