"""Settings Axolotl accepts that change nothing here, or that ftkit reads as Axolotl does in a way worth
saying: one note each in the recipe report (`ftkit check` shows them; status `note`), and the run goes on."""
from __future__ import annotations

from ftkit.formats.options import format_notes


def add_notes(recipe, report) -> None:
    """Options that validate but do nothing with the rest of the recipe (ignored, as in Axolotl), then the notes."""
    split = recipe.val_set_size or recipe.test_datasets
    for key in ("eval_steps", "evals_per_epoch"):
        if getattr(recipe, key) and not split:
            report.add(key, "ignored", "no evaluation split (val_set_size is 0), so no evaluations run (Axolotl "
                                       "skips them too)")
    for kind, interval in (("save", recipe.save_steps or recipe.saves_per_epoch),
                           ("eval", recipe.eval_steps or recipe.evals_per_epoch)):
        strategy = getattr(recipe, f"{kind}_strategy")
        if interval and strategy not in (None, "steps"):
            report.add(f"{kind}_strategy", "ignored", f"{strategy}: the {kind} interval wins (steps), as in Axolotl")
    for key, note in format_notes(recipe):
        report.add(key, "note", note)
    if recipe.group_by_length and recipe.sample_packing:
        report.add("group_by_length", "note", "no effect with sample_packing: packed rows have no padding to save "
                                              "(Axolotl trains the same way)")
    if recipe.sample_packing_sequentially and recipe.sample_packing and not recipe.curriculum_sampling:
        report.add("sample_packing_sequentially", "note", "rows are packed in the shuffled data's order but drawn "
                                                          "at random; add curriculum_sampling: true to train in the "
                                                          "data's order")
    if (recipe.trust_remote_code or recipe.gptq) and recipe.model_type != "AutoModelForCausalLM":
        why = "trust_remote_code" if recipe.trust_remote_code else "gptq"
        report.add("model_type", "note", f"{recipe.model_type} is not used with {why}: AutoModelForCausalLM loads "
                                         "the class the model names, as Axolotl does")
    for key, known in W_AND_B_VALUES.items():
        if (value := getattr(recipe, key)) is not None and value not in known:
            report.add(key, "note", f"{value!r} is not one of {', '.join(known)}: transformers reads it as false "
                                    "(nothing uploaded or watched), as in Axolotl")


# what transformers' W&B callback acts on; any other text is read as false (it warns and disables)
W_AND_B_VALUES = {"wandb_log_model": ("checkpoint", "end", "false"),
                  "wandb_watch": ("gradients", "parameters", "all", "false")}
