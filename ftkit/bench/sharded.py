"""`python -m ftkit.bench.sharded`: `ftkit memory --num_processes 2` (what each device holds) for DDP and
DeepSpeed ZeRO-1/2/3, next to the measured peak of each of two CPU processes (gloo) training that recipe.

The recipes are `ftkit bench memory`'s (bench/memory.py: the ~58M Llama twin on full-length rows, full fine-tune
and LoRA, fp32); each run is `torchrun --nproc_per_node 2 -m ftkit.bench.memory RECIPE.json`, so every rank
measures itself as `ftkit bench memory` does (VmHWM above its RSS before the model loaded, saving not counted).
The data is prepared once beforehand, so both ranks read the same cache. FSDP is not measured: accelerate runs
it as DDP on CPU processes (docs/cloud.md says why).

    python -m ftkit.bench.sharded [--steps 3] [--engines ddp,zero1,zero2,zero3] [--kinds full,lora]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ftkit.bench.memory import bench_recipes
from ftkit.bench.timing import busy, load
from ftkit.resources import shipped

ENGINES = {"ddp": None, "zero1": "zero1.json", "zero2": "zero2.json", "zero3": "zero3.json"}


def measure_ranks(recipe, processes: int = 2) -> list[dict]:
    """Each rank's `bench.memory.measure` record, the larger peak first."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(recipe.dump(), f)
    env = {**os.environ, "PYTHONPATH": str(shipped(""))}
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          f"--nproc_per_node={processes}", "-m", "ftkit.bench.memory", f.name], capture_output=True, text=True,
                         env=env)
    os.unlink(f.name)
    records = [json.loads(line) for line in out.stdout.splitlines() if line.startswith('{"peak_bytes"')]
    if out.returncode != 0 or len(records) != processes:
        raise RuntimeError(out.stderr[-3000:])
    return sorted(records, key=lambda r: -r["peak_bytes"])


def run(engines=tuple(ENGINES), kinds=("full", "lora"), steps: int = 3, processes: int = 2) -> list[dict]:
    """Print, per engine and kind, `ftkit memory`'s per-device figure and each process's measured peak."""
    from ftkit import data, models
    from ftkit.bench.estimate import estimate

    work = Path(os.environ.get("FTKIT_CACHE") or Path.home() / ".cache" / "ftkit") / "bench-memory"
    recipes = bench_recipes(work, steps=steps)
    start, rows = load(), []
    print(f"ftkit bench sharded: {processes} CPU processes (gloo), ~58M twin, {steps} steps, fp32; load average "
          f"{start:.1f}")
    print(f"{'engine':7} {'kind':5} {'estimate GB':>12} {'tensors GB':>11} {'measured GB per process':>24} "
          f"{'estimate / measured':>20}")
    for kind in kinds:
        base = recipes[kind]
        data.prepare(base, models.load_tokenizer(base))
        for engine in engines:
            ds = ENGINES[engine]
            recipe = base.model_copy(update={"deepspeed": str(shipped("recipes/deepspeed") / ds) if ds else None,
                                             "output_dir": f"{base.output_dir}-{engine}"})
            est, got = estimate(recipe, processes, cpu=True), measure_ranks(recipe, processes)
            peaks = [g["peak_bytes"] for g in got]
            rows.append({"engine": engine, "kind": kind, "estimate": est.resident, "tensors": est.total,
                         "measured": peaks})
            print(f"{engine:7} {kind:5} {est.resident / 1e9:12.3f} {est.total / 1e9:11.3f} "
                  f"{' '.join(f'{p / 1e9:.3f}' for p in peaks):>24} "
                  f"{' '.join(f'{est.resident / p:.2f}' for p in peaks):>20}", flush=True)
    end = load()
    print(f"load average {start:.1f} at the start, {end:.1f} at the end" +
          (f"\n{busy([start, end])}" if busy([start, end]) else ""))
    return rows


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--engines", default=",".join(ENGINES))
    p.add_argument("--kinds", default="full,lora")
    a = p.parse_args()
    run(a.engines.split(","), a.kinds.split(","), a.steps)
