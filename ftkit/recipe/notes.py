"""Settings Axolotl accepts that change nothing here, or that ftkit reads as Axolotl does in a way worth
saying: one note each in the recipe report (`ftkit check` shows them; status `note`), and the run goes on."""
from __future__ import annotations

from ftkit.formats.options import format_notes


def recipe_notes(recipe) -> list[tuple[str, str]]:
    """(key, note) pairs, in recipe order."""
    out = format_notes(recipe)
    if recipe.group_by_length and recipe.sample_packing:
        out.append(("group_by_length", "no effect with sample_packing: packed rows have no padding to save "
                                       "(Axolotl trains the same way)"))
    if recipe.sample_packing_sequentially and recipe.sample_packing and not recipe.curriculum_sampling:
        out.append(("sample_packing_sequentially", "rows are packed in the shuffled data's order but drawn at random; "
                                                   "add curriculum_sampling: true to train in the data's order"))
    if (recipe.trust_remote_code or recipe.gptq) and recipe.model_type != "AutoModelForCausalLM":
        why = "trust_remote_code" if recipe.trust_remote_code else "gptq"
        out.append(("model_type", f"{recipe.model_type} is not used with {why}: AutoModelForCausalLM loads the class "
                                  "the model names, as Axolotl does"))
    for key, known in W_AND_B_VALUES.items():
        if (value := getattr(recipe, key)) is not None and value not in known:
            out.append((key, f"{value!r} is not one of {', '.join(known)}: transformers reads it as false (nothing "
                             "uploaded or watched), as in Axolotl"))
    return out


# what transformers' W&B callback acts on; any other text is read as false (it warns and disables)
W_AND_B_VALUES = {"wandb_log_model": ("checkpoint", "end", "false"),
                  "wandb_watch": ("gradients", "parameters", "all", "false")}
