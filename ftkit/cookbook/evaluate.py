"""`ftkit evaluate RECIPE [--dataset PATH] [--json OUT]`: how good the trained model is (Axolotl's `axolotl evaluate`).

1. eval loss and perplexity of the trained model (output_dir: adapter or full weights) on the recipe's eval
   split (`val_set_size`), or on every row of `--dataset PATH` read with the recipe's first dataset format.
   The loss is TRL's SFTTrainer.evaluate with the recipe's own settings: the number training reported as
   `eval_loss_after` in metrics.json (perplexity = exp(eval loss), the batch-weighted mean token loss).
2. the recipe's assertion evals: its `eval_prompts` answered and judged by cookbook/evals.py's checks: an answer
   is right when it says the fact the sample data teaches and passes every gate (not empty, no template text,
   no loop, short); the score is the fraction of right answers.
One JSON object holds both (`--json OUT`); stdout gets a readable summary.
"""
from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

from ftkit.cookbook import evals
from ftkit.errors import FtkitError
from ftkit.log import log
from ftkit.recipe import Recipe


def _rows(recipe: Recipe, tokenizer, dataset: str | None):
    """(prepared rows to score, where they came from)."""
    from ftkit import data

    if dataset:
        spec = recipe.datasets[0].model_copy(update={"path": dataset, "data_files": None, "name": None,
                                                     "split": "train", "shards": None})
        prepared = data.prepare(recipe.model_copy(update={"datasets": [spec], "val_set_size": 0.0}), tokenizer)
        return prepared.train, f"{dataset} (all {len(prepared.train)} rows, as {spec.type})"
    prepared = data.prepare(recipe, tokenizer)
    if prepared.eval is None or len(prepared.eval) == 0:
        raise FtkitError("the recipe has no eval split to evaluate on", file=recipe.source, where="val_set_size",
                         fix="set val_set_size (e.g. 0.05), or pass --dataset PATH")
    return prepared.eval, f"the recipe's eval split ({len(prepared.eval)} rows, val_set_size {recipe.val_set_size})"


def eval_loss(recipe: Recipe, model, tokenizer, rows) -> dict:
    """SFTTrainer.evaluate on `rows` with the recipe's training settings (nothing written to output_dir)."""
    from trl import SFTTrainer

    from ftkit import models
    from ftkit.plugins import packing
    from ftkit.log import quiet
    from ftkit.train.args import sft_config

    with quiet():
        precision = models.resolve_precision(recipe)
    with tempfile.TemporaryDirectory() as tmp:
        args = sft_config(recipe.model_copy(update={"output_dir": tmp}), precision, True, len(rows))
        args.report_to = []  # an evaluation is not a run: no tensorboard/wandb events
        trainer = SFTTrainer(model=model, args=args, train_dataset=rows, eval_dataset=rows,
                             processing_class=tokenizer, data_collator=packing.collator(recipe, tokenizer, model))
        metrics = trainer.evaluate()
    return {k.removeprefix("eval_"): v for k, v in metrics.items() if k.startswith("eval_")}


def assertion_evals(recipe: Recipe, model, tokenizer) -> dict | None:
    """The recipe's eval_prompts answered by the model and scored by the standard checks (None: no prompts)."""
    from ftkit.infer.generate import generate

    prompts = recipe.eval_prompts
    if not prompts:
        return None
    result = evals.run_checks(evals.standard_checks(), prompts, generate(model, tokenizer, recipe, prompts))
    return {"score": result.score, "right": result.right, "judged": result.judged,
            "passed": sum(ok for _, _, r in result.rows for ok in r.values()),
            "checked": sum(len(r) for _, _, r in result.rows),
            "answers": [{"prompt": p, "answer": out, "right": v, "failed": [n for n, ok in r.items() if not ok]}
                        for (p, out, r), v in zip(result.rows, result.verdicts)]}


def run(recipe: Recipe, dataset: str | None = None, json_out: str | None = None, load: dict | None = None) -> dict:
    """`ftkit evaluate`: eval loss, perplexity and assertion evals of the trained model; returns the JSON object.
    `load`: load_trained's untrained / allow_other_base."""
    from ftkit.models.trained import load_trained

    if recipe.rl:
        raise FtkitError(f"evaluate measures supervised (SFT) runs; this recipe trains with rl: {recipe.rl}",
                         file=recipe.source, where="rl",
                         fix="a preference run's held-out margins and accuracy are in output_dir/metrics.json")
    model, tokenizer = load_trained(recipe, **(load or {}))
    rows, source = _rows(recipe, tokenizer, dataset)
    scores = eval_loss(recipe, model, tokenizer, rows)
    report = {"recipe": recipe.source, "model": recipe.lora_model_dir or recipe.output_dir,
              "base_model": recipe.base_model, "dataset": source, "rows": len(rows),
              "eval_loss": scores["loss"], "perplexity": math.exp(scores["loss"]),
              **{k: v for k, v in scores.items() if k not in ("loss", "runtime", "samples_per_second",
                                                               "steps_per_second")},
              "assertion_evals": assertion_evals(recipe, model, tokenizer)}
    print(summary(report))
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
        log.info(f"evaluation written to {json_out}")
    return report


def summary(report: dict) -> str:
    lines = [f"model {report['model']} (base {report['base_model']}) on {report['dataset']}",
             f"eval loss {report['eval_loss']:.4f}, perplexity {report['perplexity']:.3f}"
             + (f", mean token accuracy {report['mean_token_accuracy']:.3f}" if "mean_token_accuracy" in report else "")]
    ae = report["assertion_evals"]
    if ae is None:
        lines.append("assertion evals: the recipe has no eval_prompts")
    else:
        lines.append(f"assertion evals: {ae['right']} of {ae['judged']} answers right ({ae['score']:.0%}); "
                     f"{ae['passed']} of {ae['checked']} (prompt, check) pairs pass")
        for a in ae["answers"]:
            lines.append(f"  {a['prompt']!r} -> {a['answer']!r}" + (f"  FAILED: {', '.join(a['failed'])}"
                                                                      if a["failed"] else "  ok"))
    return "\n".join(lines)
