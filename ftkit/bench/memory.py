"""`ftkit bench memory`: the memory estimate next to the measured peak of real CPU training runs, what the
chunked LM head saves, and what the CPU allocator setting costs.

How it measures: each run is a fresh process (`python -m ftkit.bench.memory RECIPE.json`) in the
caller's environment, nothing tuned (no MALLOC_* variables): what `ftkit train` shows a user. After the
imports and the tokenized data are in memory, it records the resident set (VmRSS) and resets the
kernel's high-water mark (`echo 5 > /proc/self/clear_refs`); it then runs `ftkit train`'s own path
(train.run: model load, SFTTrainer, the steps) and reads the high-water mark (VmHWM) when training ends
(saving is not counted). Measured peak = VmHWM - VmRSS before the model existed; the RSS after each step
shows what the allocator kept. Each step's CPU seconds (this process, all threads) and wall seconds are
recorded, and the load average at the start and end; on CUDA also torch's peak allocated bytes.
Sections:
  estimate   full fine-tune and LoRA (all linear layers) of a ~58M random-init Llama on rows of 85-100% of
             sequence_len, 3 steps: `ftkit memory`'s estimate vs the measured peak.
  lm-head    LoRA of a twin with Llama 3's 128,256-token vocabulary, 4 x 512 tokens per micro-batch: the
             chunked LM head (the default) vs the model's own loss over the full logits, no step logged (so
             neither computes TRL's entropy/accuracy metrics); then the loss alone
             (bench/lm_head.py): full logits, TRL's CPU tiles, ftkit's kernel.
  allocator  the estimate's runs under glibc's malloc (the default) and FTKIT_CPU_MALLOC=lean, interleaved
             rounds: CPU seconds per step, peak, estimate / peak.
  kernels    CUDA only: torch's peak and step time of a 1B-shaped twin with the chunked head, the full
             logits, Cut Cross-Entropy and Liger's kernels.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ftkit.bench.timing import busy, cpu_seconds, load, spread
from ftkit.resources import shipped

MID_SIZE = dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=8, num_attention_heads=12,
                num_key_value_heads=12, max_position_embeddings=512)  # ~58M params with the tiny tokenizer
VOCAB_SIZE = dict(hidden_size=128, intermediate_size=344, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=2, max_position_embeddings=512, vocab_size=128_256)  # Llama 3's vocabulary
GPU_TWIN = dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=8, num_attention_heads=32,
                num_key_value_heads=8, max_position_embeddings=4096, vocab_size=128_256)  # Llama 3.2 1B, 8 layers


def build_twin(sizes: dict, where: Path) -> Path:
    """A random-init Llama of the given sizes with the tiny twin's tokenizer, saved as a local model dir."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from ftkit.models.tiny import tiny_path

    if (where / "config.json").is_file():
        return where
    tok = AutoTokenizer.from_pretrained(tiny_path("tiny:llama"))
    torch.manual_seed(0)
    sizes = {"vocab_size": len(tok), **sizes}  # a larger vocabulary than the tokenizer's: ids it never emits
    cfg = LlamaConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      **sizes)
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

    Phases (resident bytes above the pre-load RSS): at the start of training, after each step, and the
    high-water mark at the end of training (saving the model is not counted); each step's wall and CPU
    seconds. FTKIT_BENCH_LM_HEAD=logits trains with the model's own loss over the full logits instead of
    the chunked LM head (the side-by-side figure)."""
    import torch
    from transformers import TrainerCallback

    from ftkit import data, models
    from ftkit.recipe import load_recipe
    from ftkit.train import run as train_run

    recipe = load_recipe(json.loads(Path(recipe_json).read_text()))
    data.prepare(recipe, models.load_tokenizer(recipe))  # tokenized once: train.run re-uses the cache
    if os.environ.get("FTKIT_BENCH_LM_HEAD") == "logits":
        _full_logits_loss()
    phases: dict = {"steps": [], "step_wall": [], "step_cpu": [], "load": [load()], "cuda_peak": None}

    class Phases(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            phases["train_begin"] = _status_kb("VmRSS") - before
            phases["t"], phases["c"] = time.perf_counter(), cpu_seconds()
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()

        def on_step_end(self, args, state, control, **kw):
            t, c = time.perf_counter(), cpu_seconds()
            phases["steps"].append(_status_kb("VmRSS") - before)
            phases["step_wall"].append(t - phases["t"])
            phases["step_cpu"].append(c - phases["c"])
            phases["t"], phases["c"] = t, c

        def on_train_end(self, args, state, control, **kw):
            phases["peak"] = _status_kb("VmHWM") - before
            phases["load"].append(load())
            if torch.cuda.is_available():
                phases["cuda_peak"] = torch.cuda.max_memory_allocated()

    before = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    train_run(recipe, callbacks=[Phases()], overwrite=True)  # the bench's scratch folder, whoever wrote it last
    return {"peak_bytes": phases["peak"] * 1024, "train_begin_bytes": phases["train_begin"] * 1024,
            "step_bytes": [kb * 1024 for kb in phases["steps"]], "step_wall": phases["step_wall"],
            "step_cpu": phases["step_cpu"], "load": phases["load"], "cuda_peak_bytes": phases["cuda_peak"]}


def _full_logits_loss() -> None:
    """Train with the model's own loss (transformers' ForCausalLMLoss over the full [tokens, vocab] logits)
    instead of the chunked LM head: what the head saves, measured."""
    from ftkit.train import sft

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        out = model(**inputs, use_cache=False, num_items_in_batch=num_items_in_batch)
        return (out.loss, out) if return_outputs else out.loss

    sft.trainer_class().compute_loss = compute_loss


def _measure_in_child(recipe, env: dict | None = None) -> dict:
    """A fresh `python -m ftkit.bench.memory RECIPE.json` under the user's environment plus `env` (a None value
    removes that variable): what `ftkit train` would show."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(recipe.dump(), f)
    env = {**os.environ, "PYTHONPATH": str(shipped("")), **(env or {})}
    out = subprocess.run([sys.executable, "-m", "ftkit.bench.memory", f.name], capture_output=True, text=True,
                         env={k: v for k, v in env.items() if v is not None})
    os.unlink(f.name)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_recipes(work: Path, sizes: dict = MID_SIZE, seq_len: int = 256, micro_batch_size: int = 4,
                  steps: int = 3) -> dict:
    """Full fine-tune and LoRA of the random-init twin on full-length rows, `steps` steps each."""
    from transformers import AutoTokenizer

    from ftkit.recipe import load_recipe

    model_dir = build_twin(sizes, work / "model")
    rows = long_rows(AutoTokenizer.from_pretrained(model_dir), seq_len, steps * micro_batch_size, work / "rows.jsonl")
    base = {"base_model": str(model_dir), "datasets": [{"path": str(rows), "type": "alpaca"}],
            "sequence_len": seq_len, "micro_batch_size": micro_batch_size, "max_steps": steps, "bf16": False,
            "learning_rate": 1e-4, "val_set_size": 0, "logging_steps": 1,
            "dataset_prepared_path": str(work / "prepared"), "eval_prompts": []}
    return {"full": load_recipe({**base, "output_dir": str(work / "out-full")}),
            "lora": load_recipe({**base, "output_dir": str(work / "out-lora"), "adapter": "lora",
                                 "lora_target_linear": True})}


def _per_step(got: dict, key: str) -> float:
    """Median seconds per step, the first step (first allocations) left out."""
    return statistics.median(got[key][1:] or got[key])


def estimate_section(work: Path, print_=print) -> list[dict]:
    """`ftkit memory`'s estimate vs the measured peak, full fine-tune and LoRA of the ~58M twin."""
    from ftkit.bench.estimate import estimate

    print_("\n== estimate: `ftkit memory` vs the measured peak RSS of `ftkit train` (fresh process, default "
           "environment), ~58M twin ==")
    rows = []
    for name, recipe in bench_recipes(work).items():
        est, got = estimate(recipe), _measure_in_child(recipe)
        rows.append({"name": name, "estimate": est.resident, "tensors": est.total, "measured": got["peak_bytes"],
                     "ratio": est.resident / got["peak_bytes"], "phases": got})
        steps = ", ".join(f"{b / 1e9:.2f}" for b in got["step_bytes"])
        print_(f"{est.table()}\n  measured: peak {got['peak_bytes'] / 1e9:.3f} GB above the RSS before the model "
               f"loaded; resident after each step: {steps} GB\n")
    print_(f"{'run':6} {'estimate':>9} {'measured':>9} {'estimate / measured':>20} {'tensors only / measured':>24}")
    for row in rows:
        print_(f"{row['name']:6} {row['estimate'] / 1e9:8.3f}G {row['measured'] / 1e9:8.3f}G {row['ratio']:19.2f}x "
               f"{row['tensors'] / row['measured']:23.2f}x")
    return rows


def lm_head_section(work: Path, print_=print) -> dict:
    """LoRA of a twin with Llama 3's vocabulary: peak and step time with the chunked LM head and with the
    model's own loss over the full logits; then the loss alone, three ways."""
    from ftkit.bench.estimate import estimate

    # no logged step: both sides compute the loss only (a logged step adds the entropy and top-1 accuracy)
    recipe = bench_recipes(work, VOCAB_SIZE, seq_len=512, micro_batch_size=4)["lora"].model_copy(
        update={"logging_steps": 100})
    tokens, vocab = recipe.micro_batch_size * recipe.sequence_len, VOCAB_SIZE["vocab_size"]
    print_(f"\n== lm head: LoRA of a twin with a {vocab:,}-token vocabulary (hidden {VOCAB_SIZE['hidden_size']}, "
           f"{VOCAB_SIZE['num_hidden_layers']} layers), {recipe.micro_batch_size} x {recipe.sequence_len} = "
           f"{tokens:,} tokens per micro-batch ({tokens * vocab * 4 / 1e9:.2f} GB of fp32 logits), 3 steps ==")
    est = estimate(recipe)
    runs = {"chunked (default)": _measure_in_child(recipe),
            "full logits": _measure_in_child(recipe, {"FTKIT_BENCH_LM_HEAD": "logits"})}
    for name, got in runs.items():
        print_(f"  {name:<18} peak {got['peak_bytes'] / 1e9:6.3f} GB   s/step: CPU {_per_step(got, 'step_cpu'):.2f}, "
               f"wall {_per_step(got, 'step_wall'):.2f}")
    saved = runs["full logits"]["peak_bytes"] - runs["chunked (default)"]["peak_bytes"]
    print_(f"  the chunked head saves {saved / 1e9:.3f} GB of peak RSS; `ftkit memory`: {est.resident / 1e9:.3f} GB "
           f"(estimate / measured {est.resident / runs['chunked (default)']['peak_bytes']:.2f}), of which lm head "
           f"{est.bytes('lm head') / 1e9:.3f} GB")
    kernels = kernel_table(8 * 512, vocab, 256, print_)
    loads = [x for got in runs.values() for x in got["load"]]
    if busy(loads):
        print_(busy(loads))
    return {"saved": saved, "estimate": est.resident, **runs, "kernels": kernels}


def kernel_table(tokens: int, vocab: int, hidden: int, print_=print) -> dict:
    """The loss alone (bench/lm_head.py): full logits, TRL's CPU tiles, ftkit's kernel, fresh processes."""
    from ftkit.bench import lm_head

    print_(f"  the loss alone, one forward + backward: {tokens:,} tokens (a third labelled -100) x {vocab:,} "
           f"vocabulary, hidden {hidden}")
    got = {k: lm_head.in_child(k, tokens, vocab, hidden) for k in lm_head.KERNELS}
    for name, g in got.items():
        print_(f"    {name:<12} peak {g['peak_bytes'] / 1e9:6.3f} GB   CPU {g['cpu']:6.2f} s   wall {g['wall']:6.2f} s   "
               f"loss {g['loss']:.2f}")
    return got


ALLOCATORS = {"glibc (default)": {"FTKIT_CPU_MALLOC": None}, "lean": {"FTKIT_CPU_MALLOC": "lean"}}


def allocator_section(work: Path, rounds: int = 3, steps: int = 8, print_=print) -> dict:
    """The estimate's runs under glibc's malloc (ftkit's CPU default) and FTKIT_CPU_MALLOC=lean
    (train/allocator.py), interleaved rounds in fresh processes: CPU and wall seconds per step (the first step
    left out), peak, and the estimate that applies (with the allocator row under glibc, without under lean)."""
    from ftkit.bench.estimate import estimate

    recipes = bench_recipes(work, steps=steps)
    print_(f"\n== allocator: glibc's malloc vs FTKIT_CPU_MALLOC=lean, ~58M twin, {steps} steps, {rounds} interleaved "
           "rounds, fresh processes ==")
    got: dict = {}
    for r in range(rounds):
        for kind, recipe in recipes.items():
            for name in (list(ALLOCATORS) if r % 2 == 0 else list(ALLOCATORS)[::-1]):
                got.setdefault((kind, name), []).append(_measure_in_child(recipe, ALLOCATORS[name]))
    out, loads = {}, []
    for kind, recipe in recipes.items():
        est = estimate(recipe, cpu=True)
        for name in ALLOCATORS:
            runs = got[(kind, name)]
            loads += [x for g in runs for x in g["load"]]
            expected = est.total if name == "lean" else est.resident
            peaks = [g["peak_bytes"] for g in runs]
            out[(kind, name)] = {"cpu": [_per_step(g, "step_cpu") for g in runs], "peaks": peaks,
                                 "wall": [_per_step(g, "step_wall") for g in runs],
                                 "ratios": [expected / p for p in peaks]}
            print_(f"  {kind:4} {name:<16} CPU s/step {spread(out[(kind, name)]['cpu'])}   wall s/step "
                   f"{spread(out[(kind, name)]['wall'])}   peak GB {spread(p / 1e9 for p in peaks)}   estimate / "
                   f"peak {spread(out[(kind, name)]['ratios'])}")
        lean = [a / b for a, b in zip(out[(kind, "lean")]["cpu"], out[(kind, "glibc (default)")]["cpu"])]
        print_(f"  {kind:4} CPU time per step, lean / glibc: {spread(lean)}")
    if busy(loads):
        print_(busy(loads))
    return out


GPU_VARIANTS = {"chunked head (default)": ({}, {}), "full logits": ({}, {"FTKIT_BENCH_LM_HEAD": "logits"}),
                "cut_cross_entropy": ({"cut_cross_entropy": True}, {}),
                "liger rms_norm+glu+rope": ({"liger_rms_norm": True, "liger_glu_activation": True, "liger_rope": True}, {}),
                "cce + liger": ({"cut_cross_entropy": True, "liger_rms_norm": True, "liger_glu_activation": True,
                                 "liger_rope": True}, {})}


def kernels_section(work: Path, steps: int = 8, print_=print) -> dict:
    """CUDA: LoRA of a Llama-3.2-1B-shaped twin (8 layers), bf16, 8 x 2,048 tokens, under each GPU_VARIANTS
    entry: torch's peak allocated bytes and seconds per step (first step left out). Says so and skips on CPU."""
    import torch

    if not torch.cuda.is_available():
        print_("\n== kernels: needs a CUDA device (ftkit/bench/gpu_speed.sh runs it on a GPU machine) ==")
        return {}
    recipe = bench_recipes(work, GPU_TWIN, seq_len=2048, micro_batch_size=8, steps=steps)["lora"]
    print_(f"\n== kernels: LoRA, Llama-3.2-1B-shaped twin with 8 layers, bf16, 8 x 2,048 tokens, {steps} steps, "
           f"{torch.cuda.get_device_name()} ==")
    out = {}
    for name, (fields, env) in GPU_VARIANTS.items():
        got = out[name] = _measure_in_child(recipe.model_copy(update={"bf16": True, **fields}), env)
        secs = _per_step(got, "step_wall")
        print_(f"  {name:<26} CUDA peak {got['cuda_peak_bytes'] / 1e9:6.2f} GB   s/step {secs:.3f}   "
               f"tokens/s {8 * 2048 / secs:,.0f}")
    return out


def run(sections=("estimate", "lm-head"), rounds: int = 3, steps: int = 8) -> dict:
    """`ftkit bench memory`: the sections asked for (estimate, lm-head, allocator, kernels), printed as they end."""
    work = Path(os.environ.get("FTKIT_CACHE") or Path.home() / ".cache" / "ftkit") / "bench-memory"
    work.mkdir(parents=True, exist_ok=True)
    start = load()
    print(f"ftkit bench memory: {os.cpu_count()} CPUs, load average {start:.1f} at the start; sections "
          f"{', '.join(sections)}")
    out = {}
    if "estimate" in sections:
        out["estimate"] = estimate_section(work)
    if "lm-head" in sections:
        out["lm-head"] = lm_head_section(work / "vocab")
    if "allocator" in sections:
        out["allocator"] = allocator_section(work, rounds, steps)
    if "kernels" in sections:
        out["kernels"] = kernels_section(work / "gpu", steps)
    print(f"\nload average {start:.1f} at the start, {load():.1f} at the end" +
          (f"\n{busy([start, load()])}" if busy([start, load()]) else ""))
    return out


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1])))
