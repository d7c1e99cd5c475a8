"""Streaming pre-training (pretraining_dataset, plugins/stream.py): local files read with datasets' streaming mode,
tokenized and packed while training, max_steps required, nothing cached, and a SIGKILLed run that resumes at the
same next row as the uninterrupted run (the stream's position saved in each checkpoint)."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from transformers import TrainerCallback

from ftkit.errors import ConfigError
from ftkit.formats.tokenize import IGNORE
from ftkit.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ROOT / "data_samples" / "completion.jsonl"
ENV = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}", "TQDM_DISABLE": "1"}


def _stream_recipe(tmp_path: Path, **overrides) -> dict:
    return {"base_model": "tiny:llama", "pretraining_dataset": [{"path": str(TEXTS), "type": "pretrain"}],
            "sequence_len": 64, "sample_packing": True, "streaming_multipack_buffer_size": 8,
            "micro_batch_size": 1, "gradient_accumulation_steps": 2, "max_steps": 4, "save_steps": 2,
            "learning_rate": 1e-3, "lr_scheduler": "constant", "logging_steps": 1, "eval_prompts": [],
            "output_dir": str(tmp_path / "out"), "dataset_prepared_path": str(tmp_path / "prepared"), **overrides}


class FirstIds(TrainerCallback):
    """Appends (step, first 8 input ids) of every micro-batch the model trains on to a jsonl file; with kill_at,
    SIGKILLs the process right after that step's checkpoint is written (after ftkit's own on_save callbacks)."""

    def __init__(self, file: str, kill_at: int | None = None):
        self.file, self.kill_at, self.state = file, kill_at, None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.state = state

        def record(module, a, kw):
            ids = kw.get("input_ids", a[0] if a else None)
            with open(self.file, "a") as f:
                f.write(json.dumps([self.state.global_step + 1, ids[0, :8].tolist()]) + "\n")

        model.register_forward_pre_hook(record, with_kwargs=True)

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)


def _steps(file: Path) -> dict[int, list]:
    out: dict[int, list] = {}
    for step, ids in map(json.loads, file.read_text().splitlines()):
        out.setdefault(step, []).append(ids)
    return out


def test_max_steps_is_required_and_named(tmp_path):
    with pytest.raises(ConfigError, match="max_steps") as err:
        load_recipe(_stream_recipe(tmp_path, max_steps=None))
    assert "a stream has no length" in str(err.value)


def test_stream_rows_are_packed_documents_with_every_text_token_trained(tmp_path, tiny_tokenizer):
    from ftkit.data import prepare

    recipe = load_recipe(_stream_recipe(tmp_path))
    prepared = prepare(recipe, tiny_tokenizer)
    rows = list(prepared.train.take(6))
    docs = [json.loads(line)["text"] for line in TEXTS.read_text().splitlines()[:8]]
    seen = []
    for row in rows:
        assert sum(row["seq_lengths"]) == len(row["input_ids"]) <= 64
        start = 0
        for n in row["seq_lengths"]:  # each document: bos + its text + eos, every token after bos trained
            piece = row["input_ids"][start:start + n]
            assert piece[0] == tiny_tokenizer.bos_token_id and piece[-1] == tiny_tokenizer.eos_token_id
            assert row["labels"][start:start + n] == [IGNORE] + piece[1:]
            seen.append(tiny_tokenizer.decode(piece[1:-1]).strip())
            start += n
    assert sorted(seen[:8]) == sorted(docs)  # the first buffer of 8 documents, each once, shuffled into rows
    assert prepared.n_train == 4 * 2 and not (tmp_path / "prepared").exists()  # nothing prepared or cached


def test_a_stream_trains_and_a_sigkilled_run_resumes_at_the_same_next_row(tmp_path, said):
    from ftkit import train

    whole = load_recipe(_stream_recipe(tmp_path / "whole"))
    result = train.run(whole, callbacks=[FirstIds(str(tmp_path / "whole.jsonl"))])
    assert result.steps == 4 and result.final_loss < result.first_loss
    assert (Path(whole.output_dir) / "checkpoint-2" / "ftkit_stream.json").is_file()
    expected = _steps(tmp_path / "whole.jsonl")

    killed = _stream_recipe(tmp_path / "killed", auto_resume_from_checkpoints=True)
    path = tmp_path / "killed.yml"
    path.write_text(yaml.safe_dump(killed))
    ids = tmp_path / "killed.jsonl"
    code = textwrap.dedent(f"""
        from ftkit import train
        from ftkit.recipe import load_recipe
        from test_streaming import FirstIds
        train.run(load_recipe({str(path)!r}), callbacks=[FirstIds({str(ids)!r}, kill_at=2)])""")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert _steps(ids) == {s: expected[s] for s in (1, 2)}
    manifest = (tmp_path / "killed" / "out" / "checkpoint-2" / "ftkit_checkpoint.json").read_text()
    assert "ftkit_stream.json" in manifest  # the position is checksummed with the checkpoint

    said.clear()
    resumed = tmp_path / "resumed.jsonl"
    result = train.run(load_recipe(path), callbacks=[FirstIds(str(resumed))])
    assert result.runtime["resumed_from"].endswith("checkpoint-2") and result.steps == 4
    assert _steps(resumed) == {s: expected[s] for s in (3, 4)}  # the same next rows, in the same order
    assert any("nothing re-read" in m for m in said), said


def test_axolotl_tiny_llama_pretrain_example_trains_two_steps_on_its_twin(tmp_path):
    """examples/tiny-llama/pretrain.yml (allenai/c4 streamed) with the model and the stream swapped for local ones."""
    from ftkit import train

    from axolotl_corpus import twin_run_overrides

    path = ROOT / "tests" / "data" / "axolotl_examples" / "tiny-llama-pretrain.yml"
    recipe = load_recipe(path, twin_run_overrides(path, tmp_path, "tiny:llama"))
    assert recipe.pretraining_dataset[0].type == "pretrain" and recipe.sample_packing and not recipe.datasets
    result = train.run(recipe)
    assert result.steps == 2 and all(math.isfinite(v) for _, v in result.losses), result.summary()
    assert result.tokens_seen > 2 * recipe.micro_batch_size * recipe.gradient_accumulation_steps * 8
    assert not (tmp_path / "prepared").exists()  # dataset_prepared_path is set, and a stream writes nothing there


def test_a_wrong_text_column_names_the_entry_and_the_columns(tmp_path, tiny_tokenizer):
    from ftkit.data import prepare
    from ftkit.errors import DataError

    recipe = load_recipe(_stream_recipe(tmp_path, pretraining_dataset=[{"path": str(TEXTS), "text_column": "body"}]))
    with pytest.raises(DataError, match=r"pretraining_dataset\.0\.text_column.*'body' is not a column.*they have text"):
        prepare(recipe, tiny_tokenizer)
