"""`ftkit bench memory`: the memory estimate next to the measured peak of real CPU training runs.

How it measures: each run is a fresh process (`python -m ftkit.bench.memory RECIPE.json`) in the
caller's environment, nothing tuned (no MALLOC_* variables): what `ftkit train` shows a user. After the
imports and the tokenized data are in memory, it records the resident set (VmRSS) and resets the
kernel's high-water mark (`echo 5 > /proc/self/clear_refs`); it then runs `ftkit train`'s own path
(train.run: model load, SFTTrainer, 3 steps) and reads the high-water mark (VmHWM) when training ends
(saving is not counted). Measured peak = VmHWM - VmRSS before the model existed; the RSS after each step
shows what the allocator kept. Runs: full fine-tune and LoRA (all linear layers) of a ~58M random-init
Llama on rows of 85-100% of sequence_len.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ftkit.resources import shipped

MID_SIZE = dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=8, num_attention_heads=12,
                num_key_value_heads=12, max_position_embeddings=512)  # ~58M params with the tiny tokenizer


def build_twin(sizes: dict, where: Path) -> Path:
    """A random-init Llama of the given sizes with the tiny twin's tokenizer, saved as a local model dir."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from ftkit.models.tiny import tiny_path

    if (where / "config.json").is_file():
        return where
    tok = AutoTokenizer.from_pretrained(tiny_path("tiny:llama"))
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, **sizes)
    LlamaForCausalLM(cfg).save_pretrained(where)
    tok.save_pretrained(where)
    return where


def long_rows(tokenizer, seq_len: int, n: int, where: Path) -> Path:
    """Alpaca rows of 85-100% of seq_len tokens (alpaca outputs joined), so every batch is full length."""
    source = shipped("data_samples/alpaca.jsonl")
    outputs = [json.loads(line)["output"] for line in source.read_text().splitlines()]
    rows, text, i = [], "", 0
    while len(rows) < n:
        text = f"{text} {outputs[i % len(outputs)]}".strip()
        i += 1
        if len(tokenizer(text)["input_ids"]) >= 0.85 * seq_len - 16:
            rows.append({"instruction": "Recite the facts.", "input": "", "output": text})
            text = ""
    where.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return where


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(recipe_json: str) -> dict:
    """Run in the child process: `ftkit train`'s own path on the recipe; the peak resident bytes it added.

    Phases (resident bytes above the pre-load RSS): after the model is loaded, at the start of training,
    after each step, and the high-water mark at the end of training (saving the model is not counted)."""
    from transformers import TrainerCallback

    from ftkit import data, models
    from ftkit.recipe import load_recipe
    from ftkit.train import run as train_run

    recipe = load_recipe(json.loads(Path(recipe_json).read_text()))
    data.prepare(recipe, models.load_tokenizer(recipe))  # tokenized once: train.run re-uses the cache
    phases: dict = {}

    class Phases(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            phases["train_begin"] = _status_kb("VmRSS") - before
            phases["t0"], phases["cpu0"] = time.perf_counter(), os.times()

        def on_step_end(self, args, state, control, **kw):
            phases.setdefault("steps", []).append(_status_kb("VmRSS") - before)

        def on_train_end(self, args, state, control, **kw):
            phases["peak"] = _status_kb("VmHWM") - before
            phases["seconds"] = time.perf_counter() - phases["t0"]
            cpu = os.times()
            phases["user"], phases["sys"] = cpu.user - phases["cpu0"].user, cpu.system - phases["cpu0"].system

    import torch  # noqa: F401 - imported before the baseline, as a training process has it

    before = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    train_run(recipe, callbacks=[Phases()], overwrite=True)  # the bench's scratch folder, whoever wrote it last
    return {"peak_bytes": phases["peak"] * 1024, "train_begin_bytes": phases["train_begin"] * 1024,
            "step_bytes": [kb * 1024 for kb in phases.get("steps", [])], "train_seconds": phases["seconds"],
            "train_cpu": {"user": phases["user"], "sys": phases["sys"]}}


def _measure_in_child(recipe, env: dict | None = None) -> dict:
    """A fresh `python -m ftkit.bench.memory RECIPE.json` under the user's default environment (no malloc
    tuning): what `ftkit train` would show."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(recipe.dump(), f)
    env = {**os.environ, "PYTHONPATH": str(shipped("")), **(env or {})}
    out = subprocess.run([sys.executable, "-m", "ftkit.bench.memory", f.name], capture_output=True, text=True, env=env)
    os.unlink(f.name)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(recipes: dict) -> list[dict]:
    """For each named recipe: estimate, measured peak, ratio."""
    from ftkit.bench.estimate import estimate

    rows = []
    for name, recipe in recipes.items():
        est = estimate(recipe)
        got = _measure_in_child(recipe)
        measured = got["peak_bytes"]
        rows.append({"name": name, "estimate": est.total, "measured": measured, "ratio": est.total / measured,
                     "table": est.table(), "phases": got})
    return rows


def bench_recipes(work: Path, sizes: dict = MID_SIZE, seq_len: int = 256, micro_batch_size: int = 4) -> dict:
    """Full fine-tune and LoRA of the random-init twin on full-length rows, 3 steps each."""
    from transformers import AutoTokenizer

    from ftkit.recipe import load_recipe

    model_dir = build_twin(sizes, work / "model")
    rows = long_rows(AutoTokenizer.from_pretrained(model_dir), seq_len, 4 * micro_batch_size, work / "rows.jsonl")
    base = {"base_model": str(model_dir), "datasets": [{"path": str(rows), "type": "alpaca"}],
            "sequence_len": seq_len, "micro_batch_size": micro_batch_size, "max_steps": 3, "bf16": False,
            "learning_rate": 1e-4, "val_set_size": 0, "logging_steps": 1,
            "dataset_prepared_path": str(work / "prepared"), "eval_prompts": []}
    return {"full": load_recipe({**base, "output_dir": str(work / "out-full")}),
            "lora": load_recipe({**base, "output_dir": str(work / "out-lora"), "adapter": "lora",
                                 "lora_target_linear": True})}


def run() -> str:
    """`ftkit bench memory`: print estimate vs measured for full and LoRA training of the ~58M twin."""
    work = Path(os.environ.get("FTKIT_CACHE") or Path.home() / ".cache" / "ftkit") / "bench-memory"
    work.mkdir(parents=True, exist_ok=True)
    rows = compare(bench_recipes(work))
    lines = ["== ftkit bench memory: `ftkit memory`'s estimate vs the measured peak RSS of `ftkit train` "
             "(fresh process, default environment) ==", ""]
    for row in rows:
        steps = ", ".join(f"{b / 1e9:.2f}" for b in row["phases"]["step_bytes"])
        lines += [row["table"], f"  measured: peak {row['measured'] / 1e9:.3f} GB above the RSS before the model "
                                f"loaded; resident after each step: {steps} GB", ""]
    lines.append(f"{'run':6} {'estimate':>9} {'measured':>9} {'estimate / measured':>20}")
    lines += [f"{row['name']:6} {row['estimate'] / 1e9:8.3f}G {row['measured'] / 1e9:8.3f}G {row['ratio']:19.2f}x"
              for row in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1])))
