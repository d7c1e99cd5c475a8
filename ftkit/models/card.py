"""Model cards: what a saved model folder says about how it was made, written through huggingface_hub.

Every folder ftkit saves a model into (a LoRA adapter run, a full fine-tune, a merged model) gets a
README.md built with `huggingface_hub.ModelCard`: hub metadata (base_model, library_name, tags,
datasets), the prompt format the model was trained on and how to prompt it, the run's final metrics,
its loss plot and the recipe; the text is ftkit/assets/model_card.yaml. `make_readable` gives every file the
mode a user's own files get (the Trainer writes safetensors as 0600).
"""
from __future__ import annotations

import os
from pathlib import Path
from string import Template

import yaml

from ftkit.recipe import Recipe
from ftkit.recipe.base import method_of
from ftkit.recipe.reference import option_order

TEXT = yaml.safe_load((Path(__file__).resolve().parents[1] / "assets" / "model_card.yaml").read_text(encoding="utf-8"))
PLOT = "loss.png"


def card_data(recipe: Recipe, kind: str) -> dict:
    """Hub metadata: base_model, library_name, base_model_relation, tags, datasets, pipeline_tag."""
    library, relation, _ = TEXT["kinds"][kind]
    tags = ["ftkit", method_of(recipe), recipe.adapter or "full-fine-tune"] + (["merged"] if kind == "merged" else [])
    tags += [d.type for d in recipe.datasets if isinstance(d.type, str)]
    return {"base_model": recipe.base_model, "library_name": library, "base_model_relation": relation,
            "tags": list(dict.fromkeys(tags)), "datasets": list(dict.fromkeys(d.path for d in recipe.datasets)),
            "pipeline_tag": "text-classification" if recipe.reward_model else "text-generation"}


def _metrics_rows(m: dict) -> list[tuple[str, str]]:
    """The run's headline numbers (SFT, preference or GRPO metrics.json), as (name, value) rows."""
    margins = [h["margin"] for h in m.get("history", []) if h.get("margin") is not None] or [None]
    held_before, held_after = m.get("heldout_before") or {}, m.get("heldout_after") or {}
    reward_before, reward_after = m.get("reward_before") or {}, m.get("reward_after") or {}  # GRPO
    spans = [  # (name, before or first, after or last, format): a row when there is an after
        ("train loss (first -> last logged step)", m.get("first_loss"), m.get("final_loss"), ".4f"),
        ("eval loss (before -> after)", m.get("eval_loss_before"), m.get("eval_loss_after"), ".4f"),
        ("reward margin (first -> last logged step)", margins[0], margins[-1], "+.3f"),
        ("held-out pairs preferred (before -> after)", held_before.get("accuracy"), held_after.get("accuracy"), ".0%"),
        ("held-out mean reward (before -> after)", reward_before.get("mean"), reward_after.get("mean"), ".3f")]
    rows = [(name, (f"{before:{fmt}} -> " if before is not None else "") + f"{after:{fmt}}")
            for name, before, after, fmt in spans if after is not None]
    for key, label in (("steps", "optimizer steps"), ("seconds", "seconds")):
        if m.get(key):
            rows.append((label, f"{m[key]:.1f}" if isinstance(m[key], float) else str(m[key])))
    if m.get("total_params"):
        rows.append(("parameters trained", f"{m['trainable_params']:,} of {m['total_params']:,}"))
    return rows


def _fill(name: str, **values) -> str:
    return Template(TEXT[name]).substitute(values)


def model_card(recipe: Recipe, kind: str, *, metrics: dict | None = None, prompt: str | None = None,
               template_note: str = "", plot: str | None = None, note: str = ""):
    """The README.md of a saved model folder as a huggingface_hub.ModelCard (metadata + markdown)."""
    from huggingface_hub import ModelCard, ModelCardData

    data_line = ", ".join(f"`{d.path}` ({d.type if isinstance(d.type, str) else 'custom format'})"
                          for d in recipe.datasets)
    method = method_of(recipe) + (f", {recipe.adapter}" if recipe.adapter else "")
    intro = (Template(TEXT["kinds"][kind][2]).substitute(base=recipe.base_model) + f", trained with ftkit ({method}) "
             f"on {data_line or 'the recipe data'}." + (f" {note}" if note else ""))
    note_text = (template_note[0].upper() + template_note[1:] + ".") if template_note else ""
    prompt_text = (f"{note_text} A user message reaches the model as:\n\n```text\n{prompt}\n```\n" if prompt is not None
                   else (note_text or "No chat template is saved with this model.") + "\n")
    if recipe.reward_model:
        usage = _fill("reward_usage", adapter_note="  # base + adapter + score head" if recipe.adapter else "")
    else:
        usage = _fill("usage", load=_fill("load_adapter", base=repr(recipe.base_model)) if kind == "adapter"
                      else TEXT["load_model"])
    body = _fill("body", title=Path(recipe.output_dir).name, intro=intro, prompt=prompt_text, usage=usage,
                 results=_results(metrics or {}, plot), source=f"From `{recipe.source}`. " if recipe.source else "",
                 recipe=yaml.safe_dump(recipe_as_set(recipe), sort_keys=False))
    return ModelCard(f"---\n{ModelCardData(**card_data(recipe, kind)).to_yaml()}\n---\n\n" + body)


def _results(metrics: dict, plot: str | None) -> str:
    """The Training results section: headline numbers, before/after samples, the loss plot ('' when none)."""
    rows = _metrics_rows(metrics)
    samples = list(zip(metrics.get("samples_before", []), metrics.get("samples_after", [])))
    if not (rows or plot):
        return ""
    parts = ["## Training results\n", rows and "| | |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in rows),
             samples and "\n| prompt | before training | after training |\n|---|---|---|\n" + "".join(
                 f"| {_cell(b['prompt'])} | {_cell(b['completion'])} | {_cell(a['completion'])} |\n"
                 for b, a in samples),
             plot and f"\n![training loss]({plot})\n"]
    return "".join(part + "\n" for part in parts if part)


def recipe_resolved(recipe: Recipe) -> dict:
    """Every option's value, in the schema's order (base_model first): what recipe.yml holds."""
    dumped = recipe.dump()
    return {k: dumped[k] for k in option_order() if k in dumped}


def recipe_as_set(recipe: Recipe) -> dict:
    """Only the options that differ from ftkit's defaults, in the schema's order: the recipe as written."""
    dumped = recipe.model_dump(mode="json", exclude_defaults=True, exclude={"source"})
    full = recipe.dump()
    for key in ("datasets", "test_datasets"):  # a dataset's path and type are always worth saying
        dumped[key] = [{"path": f["path"], "type": f["type"], **d} for d, f in zip(dumped.get(key, []), full[key])]
        if not dumped[key]:
            del dumped[key]
    return {k: dumped[k] for k in option_order() if k in dumped}


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")[:120]


def write_card(folder: str | Path, recipe: Recipe, kind: str, **kwargs) -> Path:
    """README.md in `folder` (replacing peft's empty template); returns its path."""
    path = Path(folder) / "README.md"
    model_card(recipe, kind, **kwargs).save(path)
    return path


def served_prompt(tokenizer, text: str = "What is the capital of Spain?") -> str | None:
    """What the saved tokenizer's chat template renders for one user message (None without a template)."""
    from ftkit.formats.prompt import rendered, user_turn

    return rendered(tokenizer, user_turn(text), generation_prompt=True)


def loss_figure(losses: list, title: str = "training loss"):
    """A matplotlib Figure of (step, loss) pairs, built without pyplot (no global backend state)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3))
    ax = fig.subplots()
    if losses:
        steps, values = zip(*losses)
        ax.plot(steps, values, marker=".")
    ax.set(xlabel="step", ylabel="loss", title=title)
    fig.tight_layout()
    return fig


def save_loss_plot(losses: list, path: str | Path, title: str = "training loss") -> Path | None:
    """The loss curve as a PNG; None when matplotlib is not installed (it is an optional extra)."""
    try:
        fig = loss_figure(losses, title)
    except ImportError:
        return None
    fig.savefig(path, dpi=80)
    return Path(path)


def make_readable(folder: str | Path) -> int:
    """Give every file under `folder` the mode the user's umask gives new files (0644 under umask 022);
    returns how many files changed."""
    mask = os.umask(0)
    os.umask(mask)
    mode, changed = 0o666 & ~mask, 0
    for path in Path(folder).rglob("*"):
        if path.is_file() and not path.is_symlink() and (path.stat().st_mode & 0o777) != mode:
            path.chmod(mode)
            changed += 1
    return changed
