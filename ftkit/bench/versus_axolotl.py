"""`ftkit bench compare --axolotl-python PY`: the same YAML through Axolotl's CLI and ftkit's, side by side.

Axolotl pins other versions of transformers/TRL than ftkit, so it lives in its own environment: PY is that
environment's python (e.g. a venv made with `pip install torch==2.13.0 axolotl`). Both tools run as
subprocesses on one config (the tiny Llama twin saved on disk, alpaca rows, no packing), in interleaved
rounds:
  training     the Trainer's own `train_runtime` for the same steps (the loop only: no imports, data
               preparation, model loading or saving), and the loss at each logged step of both (parity:
               the same YAML should train the same way, so the largest relative difference is printed).
  preprocess   wall time of `preprocess` on N rows (cold caches) minus the same command on 100 rows, so
               interpreter start-up and imports, which differ a lot between the two, are not counted.
"""
from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from ftkit.env import OFFLINE_ENV

LOSS = re.compile(r"'loss': '?([0-9.eE+-]+)'?")
RUNTIME = re.compile(r"'train_runtime': '?([0-9.]+)'?")
ENV = {**OFFLINE_ENV, "AXOLOTL_DO_NOT_TRACK": "1", "DO_NOT_TRACK": "1", "TOKENIZERS_PARALLELISM": "false"}


def config(twin: str, data: Path, steps: int, out: Path) -> dict:
    """One config both tools read with the same meaning (every option a default would decide is written)."""
    return {"base_model": twin, "datasets": [{"path": str(data), "type": "alpaca", "ds_type": "json"}],
            "dataset_prepared_path": str(out / "prepared"), "output_dir": str(out / "model"), "val_set_size": 0,
            "sequence_len": 256, "sample_packing": False, "micro_batch_size": 16, "gradient_accumulation_steps": 1,
            "max_steps": steps, "learning_rate": 0.003, "optimizer": "adamw_torch", "lr_scheduler": "cosine",
            "warmup_steps": 0, "weight_decay": 0.0, "bf16": False, "fp16": False, "tf32": False,
            "save_strategy": "no", "logging_steps": min(10, steps), "seed": 42, "dataset_num_proc": 1}


def command(tool: str, verb: str, python: str, cfg: Path) -> list[str]:
    if tool == "axolotl":
        return [python, "-m", f"axolotl.cli.{verb}", str(cfg)]
    return [sys.executable, "-m", "ftkit", verb, str(cfg)]


def run_tool(tool: str, verb: str, python: str, cfg_dict: dict, work: Path) -> tuple[float, str]:
    """(wall seconds, stdout + stderr) of one CLI run; a failure raises with the output's tail."""
    cfg = work / f"{tool}-{verb}.yml"
    cfg.write_text(yaml.safe_dump(cfg_dict, sort_keys=False))  # the same YAML for both tools
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}  # both print the Trainer's dicts
    if tool == "ftkit-lean":  # ftkit handing freed memory back to the OS (train/allocator.py)
        env["FTKIT_CPU_MALLOC"] = "lean"
    t = time.perf_counter()
    proc = subprocess.run(command(tool, verb, python, cfg), capture_output=True, text=True,
                          env={**env, **ENV}, cwd=work)
    seconds = time.perf_counter() - t
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"{tool} {verb} failed (rc {proc.returncode}):\n{out[-3000:]}")
    return seconds, out


TOOLS = ("ftkit", "ftkit-lean", "axolotl")


def training(python: str, twin: str, data: Path, steps: int, rounds: int, work: Path, print_=print) -> dict:
    """ftkit as a user runs it on a CPU (glibc's malloc, as Axolotl runs), ftkit with FTKIT_CPU_MALLOC=lean
    (memory back to the OS: train/allocator.py), and Axolotl, in rotating order."""
    times, losses = [], {}
    print_(f"\n== training vs Axolotl (its own venv): same YAML, tiny Llama twin, {steps} steps x 16 rows, "
           f"{rounds} interleaved rounds; the Trainer's train_runtime ==")
    for r in range(rounds):
        secs = {}
        for tool in TOOLS[r % 3:] + TOOLS[:r % 3]:
            with tempfile.TemporaryDirectory(dir=work) as out:
                _, text = run_tool(tool, "train", python, config(twin, data, steps, Path(out)), Path(out))
            secs[tool] = float(RUNTIME.findall(text)[-1])
            losses[tool] = [float(x) for x in LOSS.findall(text)]
        times.append(secs)
    a, b = losses["ftkit"], losses["axolotl"]
    gap = max((abs(x - y) / abs(y) for x, y in zip(a, b)), default=float("nan"))
    res = {"seconds": {k: statistics.median(t[k] for t in times) for k in TOOLS},
           "time_ratio": statistics.median(t["ftkit"] / t["axolotl"] for t in times),
           "time_ratio_lean": statistics.median(t["ftkit-lean"] / t["axolotl"] for t in times),
           "losses": losses, "max_rel_loss_gap": gap}
    s = res["seconds"]
    print_(f"  train_runtime: ftkit {s['ftkit']:.3f} s, ftkit with FTKIT_CPU_MALLOC=lean {s['ftkit-lean']:.3f} s, "
           f"Axolotl {s['axolotl']:.3f} s\n  ftkit / Axolotl {res['time_ratio']:.2f}x (glibc's malloc, both), "
           f"{res['time_ratio_lean']:.2f}x with FTKIT_CPU_MALLOC=lean")
    print_(f"  logged losses ftkit   {', '.join(f'{x:.4f}' for x in a)}\n"
           f"  logged losses Axolotl {', '.join(f'{x:.4f}' for x in b)}\n"
           f"  largest relative difference at a logged step: {gap:.1e}")
    return res


def preprocess(python: str, twin: str, rows: list[int], rounds: int, work: Path, rows_file, print_=print) -> list:
    results = []
    print_(f"\n== preprocess vs Axolotl: `preprocess` on N alpaca rows, cold, minus the same on 100 rows "
           f"(start-up and imports), {rounds} interleaved rounds ==")
    print_(f"{'rows':>8} | {'ftkit s':>8} {'axolotl s':>9} {'time ratio':>10}")
    small = rows_file(100, work)
    for n in rows:
        path, times = rows_file(n, work), []
        for r in range(rounds):
            secs = {}
            for tool in (("ftkit", "axolotl") if r % 2 == 0 else ("axolotl", "ftkit")):
                took = []
                for data in (path, small):
                    with tempfile.TemporaryDirectory(dir=work) as out:
                        took.append(run_tool(tool, "preprocess", python, config(twin, data, 1, Path(out)),
                                             Path(out))[0])
                secs[tool] = max(took[0] - took[1], 1e-3)
            times.append((secs["ftkit"], secs["axolotl"]))
        res = {"rows": n, "seconds": {k: statistics.median(t[i] for t in times)
                                      for i, k in enumerate(("ftkit", "axolotl"))},
               "time_ratio": statistics.median(f / x for f, x in times)}
        results.append(res)
        s = res["seconds"]
        print_(f"{n:8} | {s['ftkit']:8.2f} {s['axolotl']:9.2f} {res['time_ratio']:9.2f}x")
    return results


def run(python: str, steps: int, rounds: int, prep_rows: list[int], work: Path, rows_file, print_=print) -> dict:
    """Both sections; `rows_file(n, work)` writes n alpaca rows (bench.compare.repeated_rows)."""
    from ftkit.models.tiny import tiny_path
    from ftkit.resources import shipped

    check = subprocess.run([python, "-c", "import axolotl; print(axolotl.__version__)"], capture_output=True,
                           text=True, env={**os.environ, **ENV})
    if check.returncode != 0:
        print_(f"\n== axolotl: {python} cannot import axolotl; skipped ({check.stderr.strip()[-200:]}) ==")
        return {}
    print_(f"\n== Axolotl {check.stdout.strip()} from {python} ==")
    twin = str(tiny_path("tiny:llama"))
    work.mkdir(parents=True, exist_ok=True)
    return {"training": training(python, twin, shipped("data_samples/alpaca.jsonl"), steps, rounds, work, print_),
            "preprocess": preprocess(python, twin, prep_rows, rounds, work, rows_file, print_)}
