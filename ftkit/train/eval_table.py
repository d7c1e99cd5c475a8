"""`eval_table_size`: at each evaluation, a table of eval rows with the model's greedy answer beside the reference.

For each of the first N eval rows: the prompt (tokens before the first trained one), the reference (the
trained tokens) and the model's greedy continuation of the prompt (eval_max_new_tokens). The table is
written to output_dir/eval_tables/step-N.jsonl, to tensorboard as text and, when they are on, to W&B and
MLflow. Training is untouched (generation runs under no_grad, and the model's mode is restored).
"""
from __future__ import annotations

import json
from pathlib import Path

from transformers import TrainerCallback

from ftkit.formats.tokenize import IGNORE
from ftkit.log import log


def rows_of(batch: dict) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, reference ids) per row of a collated batch, padding removed."""
    out = []
    for i in range(len(batch["input_ids"])):
        ids, labels = batch["input_ids"][i].tolist(), batch["labels"][i].tolist()
        mask = batch["attention_mask"][i].tolist() if "attention_mask" in batch else [1] * len(ids)
        pairs = [(t, lab) for t, lab, m in zip(ids, labels, mask) if m]
        first = next((k for k, (_, lab) in enumerate(pairs) if lab != IGNORE), None)
        if first is None:
            continue
        out.append(([t for t, _ in pairs[:first]], [lab for _, lab in pairs[first:] if lab != IGNORE]))
    return out


def generate_table(model, tokenizer, rows: list[tuple[list[int], list[int]]], max_new_tokens: int) -> list[dict]:
    import torch

    was_training = model.training
    model.eval()
    table = []
    try:
        with torch.no_grad():
            for prompt, reference in rows:
                ids = torch.tensor([prompt], device=model.device)
                out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                     do_sample=False, pad_token_id=tokenizer.pad_token_id)
                table.append({"prompt": tokenizer.decode(prompt), "reference": tokenizer.decode(reference),
                              "prediction": tokenizer.decode(out[0, len(prompt):], skip_special_tokens=True)})
    finally:
        model.train(was_training)
    return table


class EvalTable(TrainerCallback):
    """Logs the table at each evaluation (main process only)."""

    def __init__(self, size: int, max_new_tokens: int, output_dir: str):
        self.size, self.max_new_tokens, self.dir = size, max_new_tokens, Path(output_dir) / "eval_tables"
        self.written: list[Path] = []

    def on_evaluate(self, args, state, control, model=None, processing_class=None, eval_dataloader=None, **kwargs):
        if not state.is_world_process_zero or model is None or eval_dataloader is None or processing_class is None:
            return
        rows = []
        for batch in eval_dataloader:
            rows += rows_of(batch)
            if len(rows) >= self.size:
                break
        table = generate_table(getattr(model, "module", model), processing_class, rows[:self.size], self.max_new_tokens)
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"step-{state.global_step}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in table))
        self.written.append(path)
        _to_loggers(args, table, state.global_step)
        log.info(f"eval table: {len(table)} rows with the model's answers -> {path}")


def _to_loggers(args, table: list[dict], step: int) -> None:
    import os
    import sys

    if "tensorboard" in (args.report_to or []) and os.environ.get("TENSORBOARD_LOGGING_DIR"):
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(log_dir=os.environ["TENSORBOARD_LOGGING_DIR"]) as tb:
            text = "\n".join(f"| {r['prompt']!r} | {r['reference']!r} | {r['prediction']!r} |" for r in table)
            tb.add_text("eval_table", "| prompt | reference | prediction |\n|---|---|---|\n" + text, step)
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.log({"eval_table": wandb.Table(columns=["prompt", "reference", "prediction"],
                                             data=[[r["prompt"], r["reference"], r["prediction"]] for r in table])})
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None and mlflow.active_run() is not None:
        mlflow.log_text("".join(json.dumps(r) + "\n" for r in table), f"eval_tables/step-{step}.jsonl")
