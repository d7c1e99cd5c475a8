"""Sample packing: bins are dense and complete, packed rows give exactly the per-example loss and gradients."""
from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from ftkit import train
from ftkit.bench.packing import naive_bins
from ftkit.plugins import packing
from ftkit.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- bin assignment

def test_worked_example_bins_and_positions():
    # lengths 5, 3, 2 into rows of 8: [5+3] and [2]
    assert packing.assign_bins([5, 3, 2], 8) == [[0, 1], [2]]
    import datasets

    ds = datasets.Dataset.from_dict({"input_ids": [[1, 2, 3, 4, 5], [6, 7, 8], [9, 10]],
                                     "labels": [[-100, 2, 3, 4, 5], [-100, 7, 8], [-100, 10]]})
    packed, st = packing.pack(ds, 8)
    assert packed["input_ids"] == [[1, 2, 3, 4, 5, 6, 7, 8], [9, 10]]
    assert packed["seq_lengths"] == [[5, 3], [2]]
    assert (st.bins, st.tokens, st.lower_bound) == (2, 10, 2)
    assert st.efficiency == packing.efficiency(packed, 8) == 10 / 16  # the partial last row counts in full
    batch = packing.PackedCollator(pad_token_id=0)([packed[0], packed[1]])
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4, 0, 1, 2], [0, 1, 0, 0, 0, 0, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 2, 3, 4, 5, -100, 7, 8], [-100, 10, -100, -100, -100, -100, -100, -100]]
    assert "attention_mask" not in batch  # a mask would switch off transformers' packed-sequence detection


def test_bins_keep_every_example_once_and_fit():
    import random

    rng = random.Random(0)
    lengths = [rng.randint(1, 300) for _ in range(700)]
    bins = packing.assign_bins(lengths, 512)
    assert sorted(i for b in bins for i in b) == list(range(700))
    assert all(sum(lengths[i] for i in b) <= 512 for b in bins)
    assert len(bins) <= math.ceil(1.01 * math.ceil(sum(lengths) / 512))
    assert naive_bins(lengths, 512) > len(bins)


def test_too_long_example_is_refused():
    with pytest.raises(ValueError, match="longer than the bin"):
        packing.assign_bins([3, 9], 8)


# ---------------------------------------------------------------- never more bins than TRL's bfd

def _fixed_lengths(kind: str, n: int, capacity: int):
    """Fixed length sets: a few distinct lengths like the data_samples sets, or a long tail (log-normal)."""
    from ftkit.bench.compare import long_tailed

    if kind == "few":
        return np.random.default_rng(0).choice([15, 22, 24, 30, 42, 48, 55, 62, 66, 83, 99, 154, 215], n)
    return long_tailed(n, capacity)


def _examples(ds) -> Counter:
    return Counter(tuple(x) for x in ds.with_format("arrow")["input_ids"].to_pylist())


@pytest.mark.parametrize("capacity", [512, 2048, 4096])
@pytest.mark.parametrize("kind", ["few", "longtail"])
def test_bins_at_or_below_trl_bfd_and_a_valid_packing(kind, capacity):
    from trl import pack_dataset

    from ftkit.bench.compare import token_dataset

    lengths = _fixed_lengths(kind, 3000, capacity)
    ds = token_dataset(lengths, seed=1)
    packed, st = packing.pack(ds, capacity)
    trl = pack_dataset(ds, capacity, "bfd", {"batch_size": None})
    assert st.bins <= len(trl) and st.bound <= st.bins, (st.summary(), len(trl))
    # a valid packing: every example exactly once (same token sequences), no row over the bin, labels follow ids
    rows = packed.with_format("arrow")[:]
    seq = rows["seq_lengths"].to_pylist()
    assert max(sum(s) for s in seq) <= capacity and st.rows == len(lengths) == sum(len(s) for s in seq)
    assert [len(x) for x in rows["input_ids"].to_pylist()] == [sum(s) for s in seq]
    assert rows["labels"].to_pylist() == rows["input_ids"].to_pylist()  # token_dataset's labels equal its ids
    unpacked = [tuple(ids[a:a + n]) for ids, lens in zip(rows["input_ids"].to_pylist(), seq)
                for a, n in zip(np.cumsum([0] + lens[:-1]), lens)]
    assert Counter(unpacked) == _examples(ds)


def test_bfd_alone_matches_trl_and_minimum_slack_beats_it_on_few_lengths():
    """The two halves of plan_bins: histogram best-fit decreasing gives TRL's exact bin count; where it is
    above the bound (a few lengths, repeated), minimum bin slack reaches the bound."""
    from trl import pack_dataset

    from ftkit.bench.compare import token_dataset

    lengths = _fixed_lengths("few", 3000, 512)
    hist = np.bincount(lengths, minlength=513)
    bfd = sum(k for _, k in packing._bfd(hist, 512))
    assert bfd == len(pack_dataset(token_dataset(lengths), 512, "bfd", {"batch_size": None}))
    bound = packing.lower_bound(hist, 512)
    assert bfd > bound and sum(k for _, k in packing._min_slack(hist, 512, [10**6])) == bound
    assert packing._min_slack(hist, 512, [1]) is None  # out of budget: plan_bins keeps BFD


def test_halved_repetition_reaches_the_bound_on_a_long_tail():
    """Long tail at 512: repeating each fill fully drains the plentiful lengths and ends above BFD; repeating
    over half the stock at a time keeps every length in stock and reaches the bound (plan_bins tries both)."""
    from ftkit.bench.compare import long_tailed

    hist = np.bincount(long_tailed(5000, 512, seed=4), minlength=513)
    bound, bfd = packing.lower_bound(hist, 512), sum(k for _, k in packing._bfd(hist, 512))
    full = sum(k for _, k in packing._min_slack(hist, 512, [10**7], share=1))
    halved = sum(k for _, k in packing._min_slack(hist, 512, [10**7], share=2))
    assert halved == bound < bfd < full, (bound, bfd, full, halved)


def test_lower_bound_counts_rows_that_cannot_share():
    # three examples of 5 in bins of 8: 15 tokens -> ceil 2, but no two fit together -> 3
    assert packing.lower_bound([0, 0, 0, 0, 0, 3], 8) == 3 and math.ceil(15 / 8) == 2
    assert packing.plan_bins(np.array([5, 5, 5]), 8)[1] == 3


# ---------------------------------------------------------------- efficiency on every data_samples set

def _sample_catalog() -> list[tuple[Path, dict]]:
    """Every supervised data_samples set with the dataset stanza that reads it (data_samples/make_samples.py)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_samples", ROOT / "data_samples" / "make_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [(ROOT / "data_samples" / name, stanza) for name, stanza in module.CATALOG.items()]


SAMPLE_SETS = _sample_catalog()


def test_sample_sets_found():
    names = {p.name for p, _ in SAMPLE_SETS}
    assert {"alpaca.jsonl", "chat.jsonl"} <= names and len(SAMPLE_SETS) >= 20, names


@pytest.mark.parametrize("seq_len", [256, 512])
@pytest.mark.parametrize("path,stanza", SAMPLE_SETS, ids=[p.name for p, _ in SAMPLE_SETS])
def test_packing_efficiency_on_sample_sets(path, stanza, seq_len, tmp_path, tiny_tokenizer):
    from trl import pack_dataset

    from ftkit import data

    recipe = load_recipe({"base_model": "tiny:llama", "datasets": [{**stanza, "path": str(path)}],
                          "sequence_len": seq_len, "dataset_prepared_path": str(tmp_path)})
    prepared = data.prepare(recipe, tiny_tokenizer)
    packed, st = packing.pack(prepared.train, seq_len)
    assert st.rows == len(prepared.train) and st.tokens == prepared.stats["tokens"]
    # ceil(tokens / sequence_len) is not reachable on the 40-row sets: e.g. instruct/alpaca_chat at 256, 40 rows
    # of ~57 tokens fit 4 per row, so 10 rows are optimal against a bound of 9 (and rows of 100+ tokens leave
    # more slack). There the check is "never worse than TRL's bfd" (below); on the large sets, 1.01 x bound.
    if st.rows >= 1000:
        assert st.bins <= 1.01 * st.lower_bound, st.summary()
    if st.rows >= 2000 and seq_len == 512:
        assert st.efficiency >= 0.99, st.summary()
    # never worse than TRL's best-fit-decreasing on the same rows
    trl_bins = len(pack_dataset(prepared.train.select_columns(["input_ids", "labels"]), seq_len, "bfd",
                                {"batch_size": None}))
    assert st.bins <= trl_bins, (st.summary(), trl_bins)


# ---------------------------------------------------------------- equivalence: packed row == each example alone

@pytest.fixture(scope="module")
def lora_model_and_examples(tiny_llama_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftkit.formats import get_strategy
    from ftkit.formats.tokenize import encode_segments

    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    rows = [json.loads(line) for line in (ROOT / "data_samples" / "alpaca.jsonl").read_text().splitlines()[:6]]
    strategy = get_strategy("alpaca")
    examples = [encode_segments(strategy.segments(r), tok) for r in rows]
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32, attn_implementation="sdpa")
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                                             init_lora_weights=False))  # random B, so every LoRA grad is non-zero
    model.train()
    return model, tok, examples


def _summed_losses(logits, labels, lengths):
    """Summed next-token loss of each example, given where each starts in the row."""
    per_tok = torch.nn.functional.cross_entropy(logits[:-1], labels[1:], ignore_index=-100, reduction="none")
    per_tok = torch.cat([per_tok, per_tok.new_zeros(1)])  # loss of token t+1 sits at t
    out, start = [], 0
    for n in lengths:
        out.append(per_tok[start:start + n - 1].sum())
        start += n
    return out


def _lora_grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if "lora_" in n and p.grad is not None}


def _compare(model, examples, flatten=False, break_positions=False, keep_mask=False, use_cache=False):
    """(max |loss diff|, max |grad diff|) between packed rows and each example alone."""
    import datasets

    # alone: each example by itself, summed loss and summed gradients
    model.zero_grad()
    alone = []
    for ex in examples:
        ids = torch.tensor([ex["input_ids"]])
        loss = _summed_losses(model(input_ids=ids, use_cache=False).logits[0], torch.tensor(ex["labels"]),
                              [len(ex["input_ids"])])[0]
        loss.backward()
        alone.append(loss.detach())
    grads_alone = _lora_grads(model)

    # packed: rows of <= 160 tokens (2-3 examples each), two rows per micro-batch
    ds = datasets.Dataset.from_list([{"input_ids": e["input_ids"], "labels": e["labels"]} for e in examples])
    packed, _ = packing.pack(ds, 160)
    batch = packing.PackedCollator(pad_token_id=0, flatten=flatten)([packed[i] for i in range(len(packed))])
    if break_positions:  # negative control: one position count per row, no restart
        batch["position_ids"] = torch.arange(batch["input_ids"].shape[1]).expand_as(batch["input_ids"])
    if keep_mask:  # negative control: an all-ones attention mask, as a padding collator would send
        batch["attention_mask"] = torch.ones_like(batch["input_ids"])
    model.zero_grad()
    logits = model(**batch, use_cache=use_cache).logits
    losses, rows_lengths = {}, [r["seq_lengths"] for r in packed]  # examples are identified by their tokens
    flat_lengths = [[n for lens in rows_lengths for n in lens]] if flatten else rows_lengths
    row_ids = [r["input_ids"] for r in packed]
    flat_ids = [[t for ids in row_ids for t in ids]] if flatten else row_ids
    total = 0
    for b, (lens, ids) in enumerate(zip(flat_lengths, flat_ids)):
        for n, loss, start in zip(lens, _summed_losses(logits[b], batch["labels"][b], lens),
                                  [sum(lens[:i]) for i in range(len(lens))]):
            losses[tuple(ids[start:start + n])] = loss
            total = total + loss
    total.backward()
    grads_packed = _lora_grads(model)
    loss_diff = max(abs(losses[tuple(e["input_ids"])].detach() - a).item() for e, a in zip(examples, alone))
    # relative to each gradient's largest element: the sums are accumulated in a different order, so the
    # absolute float32 error grows with the gradient's scale (~1e-5 on gradients of ~1)
    grad_diff = max(((grads_packed[n] - g).abs().max() / g.abs().max()).item() for n, g in grads_alone.items())
    assert len(grads_alone) == 8 and all(g.abs().sum() > 0 for g in grads_alone.values())
    return loss_diff, grad_diff


@pytest.mark.parametrize("flatten", [False, True], ids=["rows", "flattened"])
def test_packed_loss_and_lora_grads_equal_each_example_alone(lora_model_and_examples, flatten):
    model, _, examples = lora_model_and_examples
    loss_diff, grad_diff = _compare(model, examples, flatten=flatten)
    assert loss_diff < 1e-5 and grad_diff < 1e-5, (loss_diff, grad_diff)


@pytest.mark.parametrize("control", ["break_positions", "keep_mask", "use_cache"])
def test_equivalence_check_fails_when_examples_can_see_each_other(lora_model_and_examples, control):
    """Proof the test above can fail: without restarting position_ids (or with a mask, or a KV cache)
    transformers uses one causal mask per row and later examples attend to earlier ones."""
    model, _, examples = lora_model_and_examples
    loss_diff, grad_diff = _compare(model, examples, **{control: True})
    assert loss_diff > 1e-3 and grad_diff > 1e-5, (loss_diff, grad_diff)


# ---------------------------------------------------------------- training with packing learns like without

@pytest.fixture(scope="module")
def packed_and_unpacked_runs(tmp_path_factory):
    """One epoch on the same 240 train rows (24 held out), ~10 examples per step either way."""
    from ftkit import train

    tmp = tmp_path_factory.mktemp("packing_runs")
    out = {}
    for packed in (False, True):
        recipe = load_recipe(ROOT / "recipes" / "quickstart.yml", {
            "datasets": [{"path": "data_samples/alpaca.jsonl", "type": "alpaca", "split": "train[:264]"}],
            "output_dir": str(tmp / f"out_{packed}"), "dataset_prepared_path": str(tmp / "prepared"),
            "eval_prompts": [], "val_set_size": 24, "num_epochs": 1, "warmup_steps": 2, "logging_steps": 1,
            "sample_packing": packed, "eval_sample_packing": False, "micro_batch_size": 2 if packed else 10})
        out[packed] = train.run(recipe)
    return out


def _quartiles(losses):
    values = [v for _, v in losses]
    return [sum(q) / len(q) for q in (values[i * len(values) // 4:(i + 1) * len(values) // 4] for i in range(4))]


def test_packed_training_learns_like_unpacked(packed_and_unpacked_runs):
    # Tolerances measured (seeds 42 and 7, this setup): eval loss after, unpacked 4.31/4.22, packed 4.17/4.27:
    # seed-to-seed spread ~0.1, packed-unpacked gap 0.14/0.06; quartile means of the loss curve differ <= 0.19.
    plain, packed = packed_and_unpacked_runs[False], packed_and_unpacked_runs[True]
    for r in (plain, packed):
        assert r.eval_loss_after < 0.75 * r.eval_loss_before, r.summary()
    assert abs(packed.eval_loss_after - plain.eval_loss_after) < 0.25, (plain.summary(), packed.summary())
    gaps = [abs(a - b) for a, b in zip(_quartiles(plain.losses), _quartiles(packed.losses))]
    assert max(gaps) < 0.3, gaps


def test_packed_run_records_efficiency_and_its_step_count(packed_and_unpacked_runs):
    packed = packed_and_unpacked_runs[True]
    metrics = json.loads((Path(packed.output_dir) / "metrics.json").read_text())
    stats = metrics["data"]["packing_train"]
    assert stats["rows"] == 240 and stats["efficiency"] == pytest.approx(stats["tokens"] / (stats["bins"] * 256), abs=1e-5)
    assert stats["efficiency"] > 0.9
    assert metrics["steps"] == stats["steps_per_epoch"] == math.ceil(stats["bins"] / 2)  # the scheduler's count
    assert "packing_train" not in packed_and_unpacked_runs[False].data


def test_real_tokens_of_a_packed_batch_equal_the_collators_mask():
    """Packed rows padded on the right, pad id also used inside examples (as when pad == eos): the count
    from (position 0, pad id) runs at the row ends equals the attention_mask TRL's collator built."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    rows = [{"input_ids": [5, 0, 7, 0, 9, 0], "labels": [-100, 0, -100, 0, 9, 0], "seq_lengths": [2, 4]},
            {"input_ids": [3, 4], "labels": [-100, 4], "seq_lengths": [2]},
            {"input_ids": [8, 0, 0], "labels": [-100, 0, 0], "seq_lengths": [3]}]
    trl = DataCollatorForLanguageModeling(pad_token_id=0, return_position_ids=True)(rows)
    batch = packing.PackedCollator(pad_token_id=0)(rows)
    assert "attention_mask" not in batch and batch["input_ids"].shape == (3, 6)
    assert packing.real_tokens(batch, 0) == int(trl["attention_mask"].sum()) == 11
    assert batch["position_ids"].size(1) == 6  # what TRL's num_tokens adds for such a batch
    flat = packing.PackedCollator(pad_token_id=0, flatten=True, pad_to_multiple_of=16)(rows)
    assert flat["input_ids"].shape == (1, 16) and packing.real_tokens(flat, 0) == 11


def _logged_tokens(tmp_path, packed: bool, fix: bool):
    """(last logged num_tokens, real tokens in the train rows) after one epoch through SFTTrainer, set up as
    ftkit.train.sft does it (sft_config + packing.collator)."""
    from trl import SFTTrainer

    from ftkit import data, models
    from ftkit.train.args import sft_config

    recipe = load_recipe(ROOT / "recipes" / "quickstart.yml", {
        "datasets": [{"path": "data_samples/alpaca.jsonl", "type": "alpaca", "split": "train[:60]"}],
        "output_dir": str(tmp_path / f"out{packed}{fix}"), "dataset_prepared_path": str(tmp_path / "prepared"),
        "val_set_size": 0, "num_epochs": 1, "logging_steps": 1, "micro_batch_size": 4, "sample_packing": packed,
        "sequence_len": 128, "eval_prompts": []})
    precision = models.resolve_precision(recipe)
    tok = models.load_tokenizer(recipe)
    prepared = data.prepare(recipe, tok)
    model = models.load_model(recipe, tok, precision)
    trainer = SFTTrainer(model=model, args=sft_config(recipe, precision, False, len(prepared.train)),
                         train_dataset=prepared.train, processing_class=tok,
                         data_collator=packing.collator(recipe, tok, model))
    if fix:
        packing.count_real_tokens(trainer)
    trainer.train()
    logged = [h["num_tokens"] for h in trainer.state.log_history if "num_tokens" in h][-1]
    real = sum(len(x) for x in prepared.train.with_format("arrow")["input_ids"].to_pylist())
    if packed:
        assert prepared.stats["packing_train"]["tokens"] == real
    return logged, real, len(prepared.train)


@pytest.mark.parametrize("packed", [False, True], ids=["unpacked", "packed"])
def test_num_tokens_equals_the_real_tokens_trained(tmp_path, packed):
    logged, real, _ = _logged_tokens(tmp_path, packed, fix=True)
    assert logged == real


def test_num_tokens_without_the_fix_is_short_with_packing(tmp_path):
    """The control: TRL alone counts one row's width per packed micro-batch."""
    logged, real, rows = _logged_tokens(tmp_path, packed=True, fix=False)
    assert logged < real / 2, (logged, real)


def test_bench_packing_prints_efficiencies_and_speed_ratio(tmp_path):
    from conftest import run_cli

    proc = run_cli("bench", "packing", str(ROOT / "recipes" / "quickstart.yml"), "--steps=1", "--hidden=64",
                   "--layers=1", f"--dataset_prepared_path={tmp_path}", "--datasets.0.split=train[:400]")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for name in ("ftkit packing (histogram BFD/min slack)", "TRL pack_dataset bfd", "in-order concatenation",
                 "padding to longest, batches of 16", "(packed varlen: needs CUDA and flash-attn)"):
        assert name in out, out
    assert "Llama twin hidden 64, 1 layers" in out, out
    assert re.search(r"packed masked +[\d,]+ real tokens/s  [\d.]+x padded", out), out
    assert re.search(r"padded +[\d,]+ real tokens/s  1.00x padded  \(padding efficiency 0\.\d+\)", out), out


@pytest.mark.parametrize("cuda,half,installed,named,expected,says", [
    (False, False, (), None, None, ""),  # CPU: sdpa's block-diagonal mask, exact
    (True, True, ("flash_attention_2",), None, "flash_attention_2", "padding-free"),
    (True, True, ("flash_attention_2", "flash_attention_3"), None, "flash_attention_3", "padding-free"),
    (True, True, ("flash_attention_2",), "sdpa", None, ""),  # the recipe's choice stands
    (True, False, ("flash_attention_2",), None, None, "need bf16/fp16"),
    (True, True, (), None, None, "pip install flash-attn"),
], ids=["cpu", "fa2", "fa3-first", "recipe-names-sdpa", "fp32", "not-installed"])
def test_packed_rows_use_a_varlen_kernel_where_one_runs(make_recipe, cuda, half, installed, named, expected, says):
    recipe = make_recipe(sample_packing=True, attn_implementation=named)
    kernel, line = packing.varlen_kernel(recipe, cuda, half, lambda name: name in installed)
    assert kernel == expected and says in line
    assert packing.varlen_kernel(make_recipe(), cuda, half, lambda name: True) == (None, "")  # not packed


def test_the_collator_flattens_for_flash_kernels_only():
    """varlen: a flash kernel reads example boundaries from one flattened row (cu_seqlens); sdpa gets rows."""
    rows = [{"input_ids": [5, 6, 7, 8], "labels": [5, 6, 7, 8], "seq_lengths": [2, 2]},
            {"input_ids": [9, 10, 11], "labels": [9, 10, 11], "seq_lengths": [3]}]
    for attn, shape in (("flash_attention_2", (1, 7)), ("sdpa", (2, 4))):
        batch = packing.PackedCollator(0, flatten=packing.flatten_for_kernel(attn))(rows)
        assert tuple(batch["input_ids"].shape) == shape, attn
        assert batch["position_ids"][0].tolist()[:4] == [0, 1, 0, 1]


def test_pad_to_sequence_len_and_group_by_length_reach_trl(make_recipe):
    from ftkit import models

    recipe = make_recipe(pad_to_sequence_len=True, group_by_length=True)
    from ftkit.train.args import sft_config

    cfg = sft_config(recipe, models.resolve_precision(recipe), False)
    assert cfg.pad_to_multiple_of == 256 and cfg.train_sampling_strategy == "group_by_length"
    rows = [{"input_ids": [1, 2, 3], "labels": [-100, 2, 3], "seq_lengths": [2, 1]}]
    batch = packing.PackedCollator(pad_token_id=0, pad_to_multiple_of=8)(rows)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 0, 0, 0, 0, 0]]
    assert batch["position_ids"].tolist() == [[0, 1, 0, 0, 0, 0, 0, 0]]


def test_preprocess_debug_shows_packed_rows(tmp_path):
    from conftest import run_cli

    proc = run_cli("preprocess", str(ROOT / "recipes" / "quickstart.yml"), "--debug", "--debug-rows=1",
                   "--sample_packing=true", f"--dataset_prepared_path={tmp_path}", "--datasets.0.split=train[:200]")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "packing train: 190 examples -> " in proc.stdout and "packing efficiency" in proc.stdout, proc.stdout
    assert "--- packed row 0 ---" in proc.stdout and "(positions 0-" in proc.stdout, proc.stdout


@pytest.mark.parametrize("packed", [False, True], ids=["unpacked", "packed"])
def test_metrics_json_counts_the_real_tokens_of_an_epoch(make_recipe, rows64, packed):
    """One epoch feeds every prepared token once: tokens_seen (result and metrics.json) is that sum, with
    packed rows too (TRL alone would count one row's width per packed micro-batch)."""
    import json

    result = train.run(make_recipe(datasets=rows64, max_steps=None, num_epochs=1, micro_batch_size=4,
                                   sequence_len=128, sample_packing=packed))
    prepared = result.data
    real = prepared["packing_train"]["tokens"] if packed else None
    if not packed:
        from ftkit import data, models

        recipe = make_recipe(datasets=rows64, sequence_len=128)
        rows = data.prepare(recipe, models.load_tokenizer(recipe)).train
        real = sum(len(x) for x in rows.with_format("arrow")["input_ids"].to_pylist())
    assert result.tokens_seen == real > 0
    saved = json.loads((Path(result.output_dir) / "metrics.json").read_text())
    assert saved["tokens_seen"] == real and f"{real:,} tokens" in result.summary()
