"""Streaming pre-training (`pretraining_dataset`): raw text read with datasets' streaming mode, tokenized and packed
while training, its position kept in every checkpoint. Nothing is prepared or cached ahead.

Each entry (local jsonl/json/parquet/csv/txt files, a save_to_disk folder or a hub name) is opened with
`datasets.load_dataset(..., streaming=True)`. Every streaming_multipack_buffer_size documents are tokenized as
raw text (formats/raw.py: bos + text + eos, every token after bos trained, documents longer than sequence_len
split into chunks) and put into rows of up to sequence_len tokens: sample_packing bins them (plugins/packing.py) and shuffles
the rows of the buffer (seeded by seed and the buffer's first document, so a resume rebuilds the same rows);
otherwise one chunk per row, or consecutive chunks (pretraining_sample_concatenation). Rows carry seq_lengths, so
position_ids restart per document and attention stays inside it, as in ftkit's packed datasets (one length per
row when pretrain_multipack_attn is false: the row attends across its documents). The entries are read one after
the other, then again from the start (datasets' repeat): the Trainer never reaches an end, max_steps is the run.

Worked example (sequence_len 8, sample_packing, a buffer of 3 documents):
    documents   "a b c"  "d e"  "f g h i j k l m n"
    chunks      [<s> a b c </s>] [<s> d e </s>] [<s> f g h i j k l] [m n </s>]
    rows        [<s> f g h i j k l]  [<s> a b c </s> m n </s>]  [<s> d e </s>]
    seq_lengths [8]                  [5, 3]                     [4]

Resume without re-reading: datasets' IterableDataset.state_dict() is the exact position in the stream (entry,
file, row, row within a packed buffer, pass). StreamPosition records it after every training batch the loader
builds and writes the one after the last batch the optimizer consumed into `ftkit_stream.json` of each
checkpoint (before its manifest is written, so the file is checksummed with the others); `resume` loads it and
turns off the Trainer's own skip, which would iterate (re-read and re-tokenize) every consumed batch.
"""
from __future__ import annotations

import functools
import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from transformers import TrainerCallback

from ftkit.plugins import packing
from ftkit.data.files import BUILDERS, file_format, load_hub, load_saved, locate_files
from ftkit.errors import DataError, Problem
from ftkit.formats.base import RowError
from ftkit.formats.raw import CompletionStrategy
from ftkit.formats.tokenize import IGNORE
from ftkit.log import log
from ftkit.recipe import Recipe

SUFFIXES = {**BUILDERS, ".txt": "text"}  # a .txt file is one document per line (datasets' text builder)
POSITION = "ftkit_stream.json"  # in each checkpoint: the stream's position after the consumed batches


@dataclass
class StreamPrepared:
    """A stream as data.prepare's result (data/prepare.Prepared's fields that training reads): `train` is a
    datasets.IterableDataset of packed rows, with no length; no eval split."""

    train: object
    stats: dict
    data: dict
    eval: None = None

    def summary(self) -> str:
        s = self.stats
        return (f"data (stream): {', '.join(s['sources'])}; tokenized and packed while training in buffers of "
                f"{s['buffer']} documents into rows of <= {s['sequence_len']} tokens ({s['rows']}); "
                f"{s['stream_rows']} rows = max_steps {s['max_steps']} x {s['rows_per_step']} rows per step; "
                "no prepared cache (a stream is never cached)")

    @property
    def n_train(self) -> int:
        return self.stats["stream_rows"]


def prepare(recipe: Recipe, tokenizer) -> StreamPrepared:
    """The recipe's pretraining_dataset entries as one endless stream of packed rows (nothing read yet but each
    entry's first document, to check its text column)."""
    import datasets

    from ftkit.env import world_size

    parts, sources, files = [], [], []
    ids = datasets.List(datasets.Value("int32"))  # the rows' columns, declared so they are known before reading
    features = datasets.Features({"input_ids": ids, "labels": ids, "seq_lengths": ids})
    for i, spec in enumerate(recipe.pretraining_dataset):
        rows, found, label = _open(spec, recipe, where := f"pretraining_dataset.{i}")
        files += [str(f) for f in found]
        sources.append(label)
        parts.append(rows.map(functools.partial(_rows, recipe=recipe, tokenizer=tokenizer, where=where),
                              batched=True, batch_size=recipe.streaming_multipack_buffer_size,
                              with_indices=True, remove_columns=["text"], features=features))
    stream = (datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]).repeat(None)
    if recipe.dataset_prepared_path:
        log.info("pretraining_dataset: streamed, so nothing is written to dataset_prepared_path")
    per_step = recipe.micro_batch_size * recipe.gradient_accumulation_steps * world_size()
    layout = ("packed" if recipe.sample_packing else "documents in order" if recipe.pretraining_sample_concatenation
              else "one document per row")
    stats = {"method": "stream", "sources": sources, "buffer": recipe.streaming_multipack_buffer_size,
             "sequence_len": recipe.sequence_len, "rows": layout, "max_steps": recipe.max_steps,
             "rows_per_step": per_step, "stream_rows": recipe.max_steps * per_step}
    return StreamPrepared(stream, stats, _record(recipe, tokenizer, files, sources))


def _open(spec, recipe: Recipe, where: str) -> tuple[object, list, str]:
    """One entry as a stream of {"text": ...} documents (skip applied), its files, and a label for the summary.
    A missing path, an offline hub name or a missing text column is a DataError naming the entry."""
    import datasets

    kind, found = locate_files(spec, recipe, where, SUFFIXES)
    if kind == "hub":
        rows = load_hub(spec, recipe, where, streaming=True)
    elif kind == "saved":
        rows = load_saved(found[0], spec, recipe, where).to_iterable_dataset()
    else:
        builder = file_format(spec, found, recipe, where, SUFFIXES)
        rows = datasets.load_dataset(builder, data_files=[str(f) for f in found], split=spec.split, streaming=True)
    if spec.skip:
        rows = rows.skip(spec.skip)
    first = next(iter(rows), None)
    if first is None:
        raise DataError(Problem("the stream has no documents" + (f" after skip: {spec.skip}" if spec.skip else ""),
                                recipe.source, f"{where}.path", fix="point path at files with rows of text"))
    if spec.text_column not in first:
        raise DataError(Problem(f"text_column {spec.text_column!r} is not a column of the rows (they have "
                                f"{', '.join(first)})", recipe.source, f"{where}.text_column",
                                fix=f"set text_column: to the column holding the text, e.g. {next(iter(first))}"))
    rows = rows.select_columns([spec.text_column])
    if spec.text_column != "text":
        rows = rows.rename_column(spec.text_column, "text")
    label = f"{where} {spec.path}" + (f" ({len(found)} files)" if len(found) > 1 else "")
    return rows, found if kind == "files" else [], label


def _rows(batch: dict, indices: list[int], *, recipe: Recipe, tokenizer, where: str) -> dict:
    """One buffer of documents -> rows of up to sequence_len tokens with seq_lengths (see the module docstring).
    Documents with no text hold nothing to train on and are left out."""
    strategy = CompletionStrategy("pretrain", train_on_inputs=True, chunk=recipe.sequence_len)
    try:
        cols = strategy.encode_batch([{"text": t} for t in batch["text"]], tokenizer)
    except RowError as e:
        raise DataError(Problem(f"document {indices[e.row or 0]} of the stream: {e.problem}", recipe.source,
                                f"{where}.text_column", fix=e.fix)) from None
    keep = [i for i, labels in enumerate(cols["labels"]) if any(t != IGNORE for t in labels)
            and len(labels) >= recipe.min_sample_len]
    ids, labels = [cols["input_ids"][i] for i in keep], [cols["labels"][i] for i in keep]
    lengths = [len(x) for x in ids]
    if recipe.sample_packing:
        groups = packing.assign_bins(lengths, recipe.sequence_len)
        if recipe.shuffle_merged_datasets:  # the packer orders bins by length pattern; seeded, so a resume rebuilds them
            order = np.random.default_rng([recipe.seed, indices[0] if indices else 0]).permutation(len(groups))
            groups = [groups[j] for j in order]
    elif recipe.pretraining_sample_concatenation:  # consecutive documents per row, next-fit
        ends = np.cumsum(packing.next_fit(np.asarray(lengths, dtype=np.int64), recipe.sequence_len)).tolist()
        groups = [list(range(a, b)) for a, b in zip([0, *ends], ends)]
    else:
        groups = [[i] for i in range(len(ids))]
    per_document = recipe.sample_packing and recipe.pretrain_multipack_attn  # else one sequence per row
    return {"input_ids": [[t for i in g for t in ids[i]] for g in groups],
            "labels": [[t for i in g for t in labels[i]] for g in groups],
            "seq_lengths": [[lengths[i] for i in g] if per_document else [sum(lengths[i] for i in g)] for g in groups]}


def _record(recipe: Recipe, tokenizer, files: list[str], sources: list[str]) -> dict:
    """What the stream is made of, kept with every checkpoint (data/cache.data_record): the files' sizes and times
    (not their bytes: a stream may be larger than a disk can hash at start-up), the entries and the options that
    shape the rows, so a resume onto other data or other rows is refused with the files named."""
    import hashlib

    from ftkit.data import cache

    record = cache.data_record("", files)
    keys = ("sequence_len", "seed", "sample_packing", "shuffle_merged_datasets", "streaming_multipack_buffer_size",
            "pretrain_multipack_attn", "pretraining_sample_concatenation", "min_sample_len")
    shape = json.dumps([sources, record["files"], [d.model_dump(mode="json") for d in recipe.pretraining_dataset],
                        [getattr(recipe, k) for k in keys], cache.tokenizer_fingerprint(tokenizer)], sort_keys=True)
    record["fingerprint"] = hashlib.sha256(shape.encode()).hexdigest()[:16]
    return record


# ---------------------------------------------------------------- the stream's position in checkpoints

class StreamPosition(TrainerCallback):
    """Records the stream's position after each training batch; writes the consumed one into each checkpoint."""

    def __init__(self, keep: int):
        self.keep = keep  # positions kept, in batches: the loader reads ahead of the optimizer by up to a step
        self.positions: OrderedDict[int, dict] = OrderedDict()
        self.dataset = None

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        import datasets

        self.dataset = getattr(train_dataloader, "dataset", None)
        if not isinstance(self.dataset, datasets.IterableDataset):  # several processes: each reads its own split
            log.warning("stream: the position is not recorded in this setup (several processes); a resume re-reads "
                        "the consumed batches to reach it")
            self.dataset = None
            return
        batches = [state.global_step * args.gradient_accumulation_steps]  # read before this run (a resume)
        loader = getattr(train_dataloader, "base_dataloader", train_dataloader)  # accelerate's wrapper iterates it
        collate = loader.collate_fn

        def recorded(rows):
            out = collate(rows)
            batches[0] += 1
            self.positions[batches[0]] = self.dataset.state_dict()  # after this batch's rows: what comes next
            while len(self.positions) > self.keep:
                self.positions.popitem(last=False)
            return out

        loader.collate_fn = recorded  # read when the loader's iterator starts, after this callback

    def on_save(self, args, state, control, **kwargs):
        consumed = state.global_step * args.gradient_accumulation_steps
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if self.dataset is None or not folder.is_dir() or not state.is_world_process_zero:
            return control
        if consumed not in self.positions:
            log.warning(f"stream: no recorded position after batch {consumed}; {folder.name} resumes by re-reading")
            return control
        position = {"batches": consumed, "state": self.positions[consumed]}
        (folder / POSITION).write_text(json.dumps(position))
        return control


def applies(recipe: Recipe) -> bool:
    return bool(recipe.pretraining_dataset)


collator = packing.collator  # stream rows carry seq_lengths: position_ids restart per document, as in packed rows


def trainer_built(recipe: Recipe, trainer) -> None:
    """Stream rows have no attention_mask either: count their real tokens (packing's hook does with sample_packing)."""
    if not packing.applies(recipe):
        packing.count_real_tokens(trainer)


def callbacks(recipe: Recipe, prepared) -> list:
    """StreamPosition (before the checkpoint manifest callback, so its file is checksummed)."""
    return [StreamPosition(keep=2 * prepared.stats["rows_per_step"] + 8)]  # >= 2 steps of batches


def resume(trainer, checkpoint: str | None) -> None:
    """Continue a stream at the position saved in `checkpoint`: the next batch is the one the uninterrupted run
    trained on next. Without a saved position (a checkpoint of several processes) the Trainer's skip re-reads."""
    import datasets

    if not checkpoint or not isinstance(trainer.train_dataset, datasets.IterableDataset):
        return
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
    path = Path(checkpoint) / POSITION
    saved = json.loads(path.read_text()) if path.is_file() else {}
    consumed = state["global_step"] * trainer.args.gradient_accumulation_steps
    if saved.get("batches") != consumed:
        log.warning(f"stream: {checkpoint} holds no position after batch {consumed}; re-reading the {consumed} "
                    "consumed batches to reach it (the Trainer's skip)")
        return
    trainer.train_dataset.load_state_dict(saved["state"])
    trainer.args.ignore_data_skip = True  # the stream starts at the position: the Trainer's skip would re-read
    log.info(f"stream: resuming after batch {consumed} at the position saved in {checkpoint} (nothing re-read)")
