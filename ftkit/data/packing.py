"""Sample packing: whole tokenized examples into rows of at most sequence_len, attention kept per example.

Bins: each bin starts with the longest example left and is then filled with the subset of remaining
examples that leaves the least slack (a bounded subset-sum over example lengths, "minimum bin slack").
TRL's best-fit-decreasing leaves up to one short example's worth of slack per bin (alpaca, 512: 250
bins for a lower bound of 242, efficiency 0.964); filling by subset-sum reaches the bound, 242 (0.996).

Rows keep `seq_lengths` (TRL's column); TRL's collator turns them into position_ids that restart at
0 for each example. With no attention_mask and no KV cache, transformers reads those position_ids as
packed sequences and builds a block-diagonal causal mask (sdpa/eager, `find_packed_sequence_indices`);
flash-attention kernels take the same boundaries as cu_seqlens of one flattened row.

Worked example (sequence_len 8; lengths 5, 3, 2):
    examples   [a1 a2 a3 a4 a5] [b1 b2 b3] [c1 c2]
    rows       [a1 a2 a3 a4 a5 b1 b2 b3]   [c1 c2]          seq_lengths [5, 3], [2]
    position   [0  1  2  3  4  0  1  2 ]   [0  1]
    labels     example labels; the first token of each example -100 (never predicted from the previous one)
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ftkit.data.steps import steps_per_epoch
from ftkit.env import world_size
from ftkit.formats.tokenize import IGNORE
from ftkit.log import log

# ---------------------------------------------------------------- bin assignment

def _fill(counts: dict[int, int], space: int) -> list[int]:
    """Lengths (with repeats, within `counts`) whose sum is the largest <= space.

    0/1 subset-sum over binary-split items (length v with count 5 -> items v, 2v, 2v), numpy-shifted;
    first[c] records the item that first reached sum c, so backtracking uses each item at most once.
    """
    items: list[tuple[int, int]] = []  # (length, multiplicity)
    # plentiful lengths first, so the fill draws on them and no stock of one awkward length is left for the
    # end (alpaca at 256: 496 rows with longest-first, 484 with plentiful-first, lower bound 483)
    for v in sorted((v for v, k in counts.items() if k and v <= space), key=lambda v: (-counts[v], -v)):
        k, m = min(counts[v], space // v), 1
        while k > 0:
            take = min(m, k)
            items.append((v, take))
            k, m = k - take, m * 2
    reach = np.zeros(space + 1, dtype=bool)
    reach[0] = True
    first = np.full(space + 1, -1, dtype=np.int64)
    for j, (v, m) in enumerate(items):
        w = v * m
        new = reach[:-w] & ~reach[w:]
        first[w:][new] = j
        reach[w:] |= new
        if reach[space]:
            break
    c = int(np.flatnonzero(reach)[-1])
    out: list[int] = []
    while c > 0:
        v, m = items[first[c]]
        out += [v] * m
        c -= v * m
    return out


def assign_bins(lengths: list[int], capacity: int) -> list[list[int]]:
    """Indices of `lengths` grouped into bins of total <= capacity, each bin as full as the fill allows."""
    if any(n > capacity for n in lengths):
        raise ValueError(f"an example is longer than the bin ({max(lengths)} > {capacity}); drop or truncate it first")
    by_len: dict[int, list[int]] = {}
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if lengths[i] > 0:
            by_len.setdefault(lengths[i], []).append(i)
    counts = {v: len(ix) for v, ix in by_len.items()}
    bins = []
    while any(counts.values()):
        longest = max(v for v, k in counts.items() if k)
        counts[longest] -= 1
        chosen = [longest] + _fill(counts, capacity - longest)
        for v in chosen[1:]:
            counts[v] -= 1
        bins.append([by_len[v].pop() for v in chosen])
    return bins


def naive_bins(lengths: list[int], capacity: int) -> int:
    """Bins used by in-order concatenation of whole examples (a new row when the next one does not fit)."""
    bins, used = 0, capacity
    for n in lengths:
        if used + n > capacity:
            bins, used = bins + 1, 0
        used += n
    return bins


def padded_slots(lengths: list[int], batch_size: int) -> int:
    """Token slots when each batch of `batch_size` examples (in order) is padded to its longest."""
    return sum(len(b) * max(b) for b in (lengths[i:i + batch_size] for i in range(0, len(lengths), batch_size)))


# ---------------------------------------------------------------- packed datasets

@dataclass
class PackStats:
    """rows -> bins, and how full the bins are: tokens / (bins x sequence_len), last partial bin included."""

    rows: int
    bins: int
    tokens: int
    sequence_len: int

    @property
    def lower_bound(self) -> int:
        return math.ceil(self.tokens / self.sequence_len)

    @property
    def efficiency(self) -> float:
        return self.tokens / (self.bins * self.sequence_len) if self.bins else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "lower_bound": self.lower_bound, "efficiency": round(self.efficiency, 5)}

    def summary(self) -> str:
        return (f"{self.rows} examples -> {self.bins} rows of <= {self.sequence_len} tokens "
                f"(lower bound {self.lower_bound}); packing efficiency {self.efficiency:.4f} "
                f"= {self.tokens:,} tokens / ({self.bins} x {self.sequence_len})")


def _rows_from_bins(dataset, bins: list[list[int]]):
    """A datasets.Dataset of packed rows: input_ids/labels concatenated per bin, plus seq_lengths."""
    import datasets
    import pyarrow as pa

    order = [i for b in bins for i in b]
    table = dataset.select_columns(["input_ids", "labels"]).with_format("arrow")[order]
    offsets = np.cumsum([0] + [len(b) for b in bins])  # example offsets of each bin
    token_offsets = table["input_ids"].combine_chunks().offsets.to_numpy()[offsets]
    cols = {}
    for name in ("input_ids", "labels"):
        col = table[name].combine_chunks()
        values = col.flatten()
        cols[name] = pa.ListArray.from_arrays(pa.array(token_offsets - token_offsets[0], pa.int32()), values)
    lengths = np.diff(table["input_ids"].combine_chunks().offsets.to_numpy()).astype(np.int32)
    cols["seq_lengths"] = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(lengths))
    return datasets.Dataset(pa.table(cols))


def pack(dataset, sequence_len: int, group_size: int = 100_000) -> tuple[object, PackStats]:
    """Pack a tokenized dataset (input_ids, labels) into rows; bins are assigned per group of rows.

    Returns the packed dataset (input_ids, labels, seq_lengths) and its PackStats. A group is packed
    on its own (Axolotl's sample_packing_group_size), so each group ends in at most one partial bin.
    """
    import datasets

    lengths = [len(x) for x in dataset.with_format("arrow")["input_ids"].to_pylist()]
    parts, bins_total = [], 0
    for start in range(0, len(lengths), group_size):
        group = lengths[start:start + group_size]
        bins = [[start + i for i in b] for b in assign_bins(group, sequence_len)]
        bins_total += len(bins)
        parts.append(_rows_from_bins(dataset, bins))
    packed = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    return packed, PackStats(rows=len(lengths), bins=bins_total, tokens=sum(lengths), sequence_len=sequence_len)


def stats_of(packed, sequence_len: int) -> PackStats:
    """PackStats of any dataset with a `seq_lengths` column (ours or TRL's pack_dataset output)."""
    seq = packed["seq_lengths"]
    return PackStats(rows=sum(len(s) for s in seq), bins=len(seq), tokens=sum(sum(s) for s in seq),
                     sequence_len=sequence_len)


def efficiency(packed, sequence_len: int) -> float:
    """Real tokens / (rows x sequence_len) of a packed dataset, the last partial row included."""
    return stats_of(packed, sequence_len).efficiency


def show_packed_row(row: dict, tokenizer, width: int = 60) -> str:
    """One packed row, one line per example: position_ids range, token count and the start of its text."""
    lines, start = [], 0
    for i, n in enumerate(row["seq_lengths"]):
        text = tokenizer.decode(row["input_ids"][start:start + n]).replace("\n", " ")
        trained = sum(1 for t in row["labels"][start:start + n] if t != IGNORE)
        lines.append(f"  [{i}] tokens {start}-{start + n - 1} (positions 0-{n - 1}, {trained} trained): "
                     f"{text[:width]}{'...' if len(text) > width else ''}")
        start += n
    return f"packed row: {len(row['input_ids'])} tokens, {len(row['seq_lengths'])} examples\n" + "\n".join(lines)


# ---------------------------------------------------------------- collator

class PackedCollator:
    """Packed rows -> a batch whose attention never crosses an example boundary.

    TRL's DataCollatorForLanguageModeling builds position_ids from seq_lengths. `flatten=True` is TRL's
    padding-free layout (one row, cu_seqlens) for flash-attention kernels, which read varlen boundaries
    only from a batch of one row. `flatten=False` keeps [micro_batch, row] for sdpa/eager: the
    attention_mask is dropped, because with a mask transformers skips the packed-sequence detection.
    The forward must run with use_cache=False (SFTTrainer.compute_loss sets it): with a KV cache the
    detection is skipped too and examples attend to each other.
    """

    def __init__(self, pad_token_id: int, flatten: bool = False, pad_to_multiple_of: int | None = None):
        from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

        self.flatten = flatten
        self._trl = DataCollatorForLanguageModeling(pad_token_id=pad_token_id, padding_free=flatten,
                                                    return_position_ids=True, pad_to_multiple_of=pad_to_multiple_of)

    def __call__(self, rows: list[dict]) -> dict:
        # an unpacked row (eval when only train is packed) is a row holding one example
        out = self._trl([{"input_ids": r["input_ids"], "labels": r["labels"],
                          "seq_lengths": r.get("seq_lengths") or [len(r["input_ids"])]} for r in rows])
        out.pop("attention_mask", None)
        out["labels"][out["position_ids"] == 0] = IGNORE  # no example is trained to follow the previous one
        return out


def flatten_for(model) -> bool:
    """Flash-attention kernels need the one-row layout; sdpa/eager take per-row packed position_ids."""
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None) or ""
    return "flash" in impl


# ---------------------------------------------------------------- the recipe's hooks

def _eval_packed(recipe) -> bool:
    return recipe.sample_packing if recipe.eval_sample_packing is None else recipe.eval_sample_packing


def apply(prepared, recipe):
    """After data.prepare: pack train (and eval) as the recipe asks and record the efficiency in stats.

    Packing happens before the Trainer sees the data, so its epoch length, and so the scheduler's step
    count, is that of the packed rows (printed here as steps per epoch).
    """
    plan = [("train", recipe.sample_packing), ("eval", _eval_packed(recipe))]
    for split, wanted in plan:
        ds = getattr(prepared, split)
        if not wanted or ds is None or len(ds) == 0:
            continue
        packed, st = pack(ds, recipe.sequence_len, recipe.sample_packing_group_size)
        setattr(prepared, split, packed)
        steps = steps_per_epoch(recipe, st.bins)
        prepared.stats[f"packing_{split}"] = {**st.as_dict(), "steps_per_epoch": steps}
        log.info(f"packing {split}: {st.summary()}")
        if split == "train":
            world = world_size()
            log.info(f"packing train: {steps} optimizer steps per epoch = ceil(ceil({st.bins} rows / "
                     f"({recipe.micro_batch_size} x {world} processes)) / {recipe.gradient_accumulation_steps}) "
                     f"(was {steps_per_epoch(recipe, st.rows)} unpacked)")
    return prepared


def sft_args(recipe) -> dict:
    """SFTConfig arguments for packing/padding. Rows arrive packed, so TRL's own packing stays off."""
    return {"pad_to_multiple_of": recipe.sequence_len if recipe.pad_to_sequence_len else None,
            "train_sampling_strategy": "group_by_length" if recipe.group_by_length else "random",
            "eval_packing": False}


def collator(recipe, tokenizer, model):
    """The PackedCollator when rows are packed, else None (TRL's padding collator)."""
    if not (recipe.sample_packing or _eval_packed(recipe)):
        return None
    return PackedCollator(tokenizer.pad_token_id, flatten_for(model), sft_args(recipe)["pad_to_multiple_of"])

