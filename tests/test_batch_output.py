"""What a command or a batch-run notebook prints: known library noise filtered once at import, no FutureWarning
from ftkit's own calls, and a few plain progress lines instead of a bar and a log dict per step."""
from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import warnings

from conftest import OFFLINE, ROOT

NOISE = ("Failed to load CPU gemm_4bit_forward", "Setting accelerator to CPU")
IMPORTS = "import bitsandbytes, deepspeed, torch; torch.manual_seed(0)"


def test_known_library_noise_is_filtered_once_at_import():
    """Importing ftkit, then bitsandbytes and DeepSpeed, prints neither known line (both print on a CPU box
    without ftkit: DeepSpeed's on every CPU-only machine, bitsandbytes' on AVX512-bf16 CPUs)."""
    env = {**os.environ, **OFFLINE, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", "import ftkit; " + IMPORTS], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not [n for n in NOISE if n in proc.stdout + proc.stderr], proc.stdout + proc.stderr


def test_noise_filter_drops_only_the_known_lines():
    import logging

    from ftkit.env import quiet_known_noise

    quiet_known_noise()
    quiet_known_noise()  # idempotent: one filter per logger
    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    logger = logging.getLogger("DeepSpeed")
    handler = Keep()
    logger.addHandler(handler)
    try:
        logger.warning("Setting accelerator to CPU. If you have GPU or other accelerator, we were unable to detect it.")
        logger.warning("ZeRO stage 3: something real")
    finally:
        logger.removeHandler(handler)
    assert seen == ["ZeRO stage 3: something real"]
    assert len(logger.filters) == 1 and len(logging.getLogger("bitsandbytes.backends.cpu.ops").filters) == 1


def test_no_future_warning_from_ftkits_own_calls(make_recipe):
    """`gradient_checkpointing=` (TrainingArguments) and `gradient_checkpointing_enable` are deprecated in
    transformers 5; ftkit uses the new names. (peft's own `is_gradient_checkpointing` read is filtered by name.)"""
    from ftkit.train.run import build

    recipe = make_recipe(max_steps=1, adapter="lora", lora_target_linear=True, gradient_checkpointing=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")
        build(recipe)  # TrainingArguments, load_model (checkpointing on), the adapter, the trainer: all but train()
    future = [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
    assert not future, future


def test_pytest_config_filters_only_named_warnings():
    filters = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["filterwarnings"]
    assert "ignore::FutureWarning" not in filters and "ignore::DeprecationWarning" not in filters, filters
    assert all(f.startswith("ignore:") and f.split(":", 2)[1].strip() for f in filters), filters  # each names its message


class _State:
    is_world_process_zero = True

    def __init__(self, step, max_steps):
        self.global_step, self.max_steps = step, max_steps


def test_progress_lines_print_about_ten_plain_lines(said):
    from ftkit.train.callbacks import ProgressLines

    cb = ProgressLines()
    cb.on_log(None, _State(0, 0), None, logs={"eval_loss": 7.0})
    cb.on_train_begin(None, _State(0, 200), None)
    for step in range(1, 201):
        cb.on_log(None, _State(step, 200), None, logs={"loss": 7.0 - step / 100, "learning_rate": 1e-3, "grad_norm": 1.0})
    cb.on_log(None, _State(200, 200), None, logs={"eval_loss": 2.5})
    assert said[0] == "before training: eval loss 7.0000"
    steps = [line for line in said if line.startswith("step ") and "loss" in line and "eval" not in line]
    assert 10 <= len(steps) <= 12, steps
    assert steps[0].startswith("step 1/200: loss 6.9900, lr 1.00e-03") and steps[-1].startswith("step 200/200")
    assert said[-1] == "step 200/200: eval loss 2.5000"
    assert not [line for line in said if "{" in line]  # no log dicts


def test_plain_progress_replaces_the_trainers_printer_only_when_bars_are_off(monkeypatch):
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from ftkit.train.callbacks import ProgressLines, plain_progress

    class Trainer:
        def __init__(self):
            self.callbacks = [ProgressCallback()]

        def remove_callback(self, cls):
            self.callbacks = [c for c in self.callbacks if not isinstance(c, cls)]

        def add_callback(self, cb):
            self.callbacks.append(cb)

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    trainer = Trainer()
    plain_progress(trainer)
    assert [type(c) for c in trainer.callbacks] == [ProgressCallback]  # a terminal keeps its bar
    monkeypatch.setenv("TQDM_DISABLE", "1")
    trainer.callbacks.append(PrinterCallback())
    plain_progress(trainer)
    assert [type(c) for c in trainer.callbacks] == [ProgressLines]
