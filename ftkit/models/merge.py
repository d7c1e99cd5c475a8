"""`ftkit merge-lora`: fold the trained LoRA adapter into the base weights and save a plain model.

The merged folder follows the output-folder contract (models/folder.py): a user's non-empty folder is refused
unless `overwrite` (then only files of the names ftkit writes are replaced, modes kept), and the model is staged
in `.ftkit-final.tmp/` and moved into place when complete, so a kill or a full disk leaves what was there.
The adapter must have been trained on the recipe's base_model (models/trained.py checks name and shapes).
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from ftkit.errors import DiskFull, FtkitError, Problem, is_disk_full
from ftkit.formats.prompt import Prompt
from ftkit.log import log, quiet
from ftkit.models import card, folder
from ftkit.recipe import Recipe

# what a merge writes at the top of its folder: named when a user's folder would lose them
WRITES = ("README.md", "config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json",
          "tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json", "recipe.yml",
          card.PLOT)


def run(recipe: Recipe, output_dir: str | None = None, overwrite: bool = False, allow_other_base: bool = False) -> Path:
    """Base (unquantized, recipe dtype) + adapter -> merge_and_unload -> safetensors, tokenizer, recipe.yml, card."""
    from ftkit.models.adapters import ADAPTER_FILES
    from ftkit.models.load import resolve_precision
    from ftkit.models.trained import load_trained

    if not recipe.adapter:
        raise FtkitError("this recipe trains all weights (adapter is empty): there is no adapter to merge",
                         where="adapter", fix="merge-lora applies to recipes with adapter: lora or qlora")
    out = Path(output_dir or Path(recipe.lora_model_dir or recipe.output_dir) / "merged").absolute()
    key = "--output-dir" if output_dir else "output_dir"
    stray = sorted(p.name for p in out.iterdir() if p.name in ADAPTER_FILES) if out.is_dir() else []
    if stray:
        raise FtkitError(f"{out} holds adapter files {stray}; a merged model must not sit beside them "
                         "(loaders would pick up the adapter)", where="--output-dir", fix="choose an empty directory")
    earlier = _check_folder(recipe, out, key, overwrite)
    model, tok = load_trained(recipe, dequantize=True, allow_other_base=allow_other_base)  # 4/8-bit: dequantized
    if not hasattr(model, "merge_and_unload"):
        raise FtkitError(f"{recipe.output_dir} holds full weights, not an adapter (a ReLoRA run saves merged weights)",
                         where="output_dir", fix="use that directory as a model directly; there is nothing to merge")
    with quiet():
        dtype = resolve_precision(recipe).dtype
    saved = model.peft_config["default"]  # the adapter's own r/alpha (a continued adapter keeps its own)
    # adapter upcast first (TRL trains QLoRA adapters in bf16): B·A is then exact in `dtype`
    merged = model.to(dtype).merge_and_unload()  # W + (alpha/r)·B·A, DoRA magnitude folded in
    out.mkdir(parents=True, exist_ok=True)
    staging = out / folder.STAGING
    shutil.rmtree(staging, ignore_errors=True)  # a merge cut off by a kill: never half-published
    try:
        merged.save_pretrained(staging, safe_serialization=True)
        template_note = Prompt(recipe, tok).save_template()  # (the adapter run saved it already; older runs get it here)
        tok.save_pretrained(staging)
        _write_card(recipe, staging, tok, template_note, dtype, saved.r, saved.lora_alpha)
    except BaseException as e:
        shutil.rmtree(staging, ignore_errors=True)  # frees what the cut-off save took; the folder keeps its files
        if isinstance(e, Exception) and is_disk_full(e, out):
            raise DiskFull(Problem(f"the disk is full while writing the merged model into {out}; nothing there was "
                                   "changed", recipe.source, key, fix="free space (about twice the model's size: it "
                                   "is staged, then moved) or choose --output-dir on a larger disk")) from None
        raise
    card.make_readable(staging)  # only what the merge wrote; a file it replaces keeps its mode (folder.publish)
    names = folder.publish(staging, out, (earlier or {}).get("final_files", []))
    folder.write_marker(out, recipe, kind="merged", final_files=names, finished=time.strftime("%Y-%m-%d %H:%M:%S"))
    log.info(f"merged model ({dtype}) saved to {out}")
    return out


def _check_folder(recipe: Recipe, out: Path, key: str, overwrite: bool) -> dict | None:
    """The merge writes only where train would: a new, empty or ftkit's folder, or a user's with `overwrite`
    (announced). Returns the folder's marker (None: not ftkit's yet)."""
    if problem := folder.check_writable(recipe, key, out):
        raise FtkitError(problem)
    marker = folder.read_marker(out)
    foreign = folder.foreign_entries(out) if marker is None else []
    replaced = [name for name in foreign if name in WRITES]
    if foreign and not overwrite:
        folder.refuse_foreign(recipe, out, key, foreign, replaced,
                              "--overwrite (Python: merge.run(..., overwrite=True))")
    if foreign:
        log.warning(f"--overwrite: {out} was not written by ftkit; it is ftkit's from now on. "
                    + (f"Replaced: {', '.join(replaced)}; " if replaced else "")
                    + f"left as they are: {len(foreign) - len(replaced)} other entries")
    return marker


def _write_card(recipe: Recipe, out: Path, tokenizer, template_note: str, dtype, r: int, alpha: int) -> None:
    """README.md (models/card.py) with the adapter run's metrics and loss plot, and its recipe.yml."""
    import json

    import yaml

    run = Path(recipe.lora_model_dir or recipe.output_dir)
    metrics = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").is_file() else None
    if (run / card.PLOT).is_file():
        shutil.copyfile(run / card.PLOT, out / card.PLOT)
    (out / "recipe.yml").write_text(yaml.safe_dump(card.recipe_resolved(recipe), sort_keys=False))
    method = {"qlora": "QLoRA (4-bit base, dequantized before merging)", "lora": "LoRA"}[recipe.adapter]
    if recipe.load_in_8bit:
        method = "LoRA on an 8-bit base (dequantized before merging)"
    variant = ", DoRA" if recipe.peft_use_dora else ", rsLoRA" if recipe.peft_use_rslora else ""
    note = (f"The {method} adapter from `{run}` (r={r}, alpha={alpha}{variant}) was merged in with "
            f"`ftkit merge-lora` and saved in {str(dtype).removeprefix('torch.')}.")
    card.write_card(out, recipe, "merged", metrics=metrics, prompt=card.served_prompt(tokenizer),
                    template_note=template_note,
                    plot=card.PLOT if (out / card.PLOT).is_file() else None, note=note)
