"""`ftkit bench packing RECIPE`: how full the rows are, and how many real tokens/s packing buys.

Part 1 (the recipe's own rows): efficiency = real tokens / token slots of ftkit packing, TRL's
best-fit-decreasing, in-order concatenation, and padding each micro-batch to its longest example.
Part 2 (speed): a Llama twin big enough that matmuls, not Python, dominate a step (default hidden 256,
4 layers) trains each layout side by side: packed rows with the block-diagonal mask (sdpa), padded batches,
and on CUDA with flash-attention packed rows padding-free (varlen: one flattened row, cu_seqlens); step k
of every layout runs on the same examples (those of packed micro-batch k), steps interleaved so machine
load hits all alike.
"""
from __future__ import annotations

import math
import random
import time

import numpy as np

from ftkit import data, models
from ftkit.plugins import packing
from ftkit.errors import FtkitError, Problem
from ftkit.log import log


def naive_bins(lengths: list[int], capacity: int) -> int:
    """Bins used by in-order concatenation of whole examples (a new row when the next one does not fit)."""
    return len(packing.next_fit(np.asarray(lengths, dtype=np.int64), capacity))


def padded_slots(lengths: list[int], batch_size: int) -> int:
    """Token slots when each batch of `batch_size` examples (in order) is padded to its longest."""
    return sum(len(b) * max(b) for b in (lengths[i:i + batch_size] for i in range(0, len(lengths), batch_size)))


def efficiency_table(rows, recipe) -> list[tuple[str, int, float]]:
    """(method, rows or batches, efficiency) for the same examples, in the prepared (shuffled) order."""
    import pyarrow.compute as pc
    from trl import pack_dataset

    lengths = pc.list_value_length(rows.with_format("arrow")["input_ids"]).to_numpy().tolist()
    tokens, L, mbs = sum(lengths), recipe.sequence_len, recipe.micro_batch_size
    _, ours = packing.pack(rows, L, recipe.sample_packing_group_size)
    trl = packing.stats_of(pack_dataset(rows.select_columns(["input_ids", "labels"]), L, "bfd", {"batch_size": None}), L)
    naive = naive_bins(lengths, L)
    padded = padded_slots(lengths, mbs)
    return [("ftkit packing (histogram BFD/min slack)", ours.bins, ours.efficiency),
            ("TRL pack_dataset bfd", trl.bins, trl.efficiency),
            ("in-order concatenation", naive, tokens / (naive * L)),
            (f"padding to longest, batches of {mbs}", math.ceil(len(lengths) / mbs), tokens / padded),
            ("padding to sequence_len", len(lengths), tokens / (len(lengths) * L))]


def twin(tokenizer, sequence_len: int, hidden: int, layers: int, attn: str, device):
    """A random-init Llama of the given size on the tokenizer's vocabulary (float32 on CPU, bf16 on GPU)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=4 * hidden,
                      num_hidden_layers=layers, num_attention_heads=max(hidden // 64, 1),
                      num_key_value_heads=max(hidden // 64, 1), max_position_embeddings=sequence_len,
                      pad_token_id=tokenizer.pad_token_id, attn_implementation=attn)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    return LlamaForCausalLM(cfg).to(device=device, dtype=dtype)


def _step(model, opt, batch, device) -> float:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    model(**{k: v.to(device) for k, v in batch.items()}, use_cache=False).loss.backward()
    opt.step()
    opt.zero_grad()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


STEP_TOKENS = 8192  # packed tokens per timed step at most: sdpa keeps rows x heads x sequence_len^2 on CPU


def layouts(attn: str, device) -> dict:
    """name -> (attention kernel, packed?, one flattened row?): packed rows with the block-diagonal mask on `attn`
    (sdpa by default), padded batches on it, and on CUDA with flash-attention the padding-free varlen layout."""
    from transformers.utils import import_utils as iu

    out = {"packed masked": (attn, True, packing.flatten_for_kernel(attn)), "padded": (attn, False, False)}
    if device.type == "cuda" and "flash" not in attn:
        for kernel, ok in (("flash_attention_3", iu.is_flash_attn_3_available()),
                           ("flash_attention_2", iu.is_flash_attn_2_available())):
            if ok:
                out["packed varlen"] = (kernel, True, True)
                break
    return out


def speed(rows, recipe, tokenizer, steps: int, hidden: int, layers: int, attn: str) -> dict:
    """Real tokens/s of each layout (layouts()) on the same examples, same steps, steps interleaved.

    A step holds at most STEP_TOKENS packed tokens (the recipe's micro_batch_size, fewer rows at long
    sequence_len): sdpa on CPU materializes each packed row's sequence_len^2 block mask and attention
    weights, so 16 rows of 2048 tokens held over 6 GB for a 4.7M-parameter twin."""
    import copy

    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    packed, _ = packing.pack(rows, recipe.sequence_len, recipe.sample_packing_group_size)
    mbs = max(1, min(recipe.micro_batch_size, STEP_TOKENS // recipe.sequence_len))
    steps = min(steps, len(packed) // mbs - 1)
    if steps < 1:  # step 0 only warms up: at least one more is needed to time anything
        raise FtkitError(Problem(f"{len(packed)} packed rows make no timed step of {mbs} rows after the warm-up step",
                                 recipe.source, "micro_batch_size",
                                 fix=f"use more rows, or a smaller micro_batch_size (--micro_batch_size={max(1, len(packed) // 2)})"))
    base = twin(tokenizer, recipe.sequence_len, hidden, layers, attn, device)
    kinds = layouts(attn, device)
    runs = {name: copy.deepcopy(base) for name in kinds}
    for name, (kernel, _, _) in kinds.items():
        runs[name].set_attn_implementation(kernel)
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in runs.items()}
    collate = {name: packing.PackedCollator(tokenizer.pad_token_id, flatten=flat) if is_packed else
               DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)
               for name, (_, is_packed, flat) in kinds.items()}
    # padded: the same examples (those of the timed packed rows) in shuffled order, split into as many steps,
    # each padded to its longest; packed micro-batches group similar lengths, so padding those would flatter it
    # rows drawn at random: bins are built longest-first, so the first rows hold the longest examples
    picked = random.Random(recipe.seed).sample(range(len(packed)), (steps + 1) * mbs)
    groups = [[packed[i] for i in picked[k * mbs:(k + 1) * mbs]] for k in range(steps + 1)]
    examples = [{"input_ids": b["input_ids"][s:s + n], "labels": b["labels"][s:s + n]}
                for g in groups for b in g for s, n in zip(_starts(b["seq_lengths"]), b["seq_lengths"])]
    random.Random(recipe.seed).shuffle(examples)
    per = [len(examples) * k // (steps + 1) for k in range(steps + 2)]
    secs, slots = dict.fromkeys(kinds, 0.0), 0
    for k in range(steps + 1):  # step 0 warms up every layout and is not timed
        for name, (_, is_packed, _) in kinds.items():
            batch = collate[name](groups[k] if is_packed else examples[per[k]:per[k + 1]])
            t = _step(runs[name], opts[name], batch, device)
            if k:
                secs[name] += t
                slots += 0 if is_packed else batch["input_ids"].numel()
    real = sum(len(e["input_ids"]) for e in examples[per[1]:])  # the timed steps' real tokens, for every layout
    n_params = sum(p.numel() for p in base.parameters())
    return {"device": str(device), "attn": attn, "hidden": hidden, "layers": layers, "params": n_params, "rows": mbs,
            "steps": steps, "real_tokens": real, "tok_s": {name: real / secs[name] for name in kinds},
            "padded_efficiency": real / max(slots, 1)}


def _starts(lengths: list[int]) -> list[int]:
    return [sum(lengths[:i]) for i in range(len(lengths))]


def run(recipe, steps: int | None = None, hidden: int = 256, layers: int = 4, attn: str = "sdpa") -> dict:
    """Print the efficiency table and the packed/padded speed ratio; return the figures. steps: 6 when None."""
    quiet = recipe.model_copy(update={"sample_packing": False, "eval_sample_packing": False})
    tokenizer = models.load_tokenizer(quiet)
    rows = data.prepare(quiet, tokenizer).train
    table = efficiency_table(rows, recipe)
    log.info(f"\n== packing efficiency: {len(rows)} examples, sequence_len {recipe.sequence_len} "
             f"(real tokens / token slots, last partial row included) ==")
    for name, count, eff in table:
        log.info(f"  {name:<40} {count:>6} rows/batches  efficiency {eff:.4f}  ({eff / table[0][2]:.3f}x ftkit)")
    s = speed(rows, recipe, tokenizer, steps or 6, hidden, layers, attn)
    log.info(f"\n== training speed: Llama twin hidden {s['hidden']}, {s['layers']} layers, {s['params'] / 1e6:.1f}M "
             f"params, {s['device']}; {s['steps']} steps x {s['rows']} packed rows, vs the same examples shuffled "
             f"into {s['steps']} padded batches ==")
    padded = s["tok_s"]["padded"]
    for name, rate in s["tok_s"].items():
        note = f"  (padding efficiency {s['padded_efficiency']:.3f})" if name == "padded" else ""
        log.info(f"  {name:<14} {rate:>10,.0f} real tokens/s  {rate / padded:.2f}x padded{note}")
    if "packed varlen" not in s["tok_s"]:
        log.info("  (packed varlen: needs CUDA and flash-attn)")
    log.info(f"  ({s['real_tokens']:,} real tokens in the timed steps of each layout)")
    return {"efficiency": table, **s}
