"""`ftkit options`: the options reference, generated from the schema and the Axolotl catalogue (the only places
options are documented)."""
from __future__ import annotations

from collections import defaultdict

from pydantic import BaseModel

from ftkit.axolotl import catalogue as cat
from ftkit.recipe.base import METHODS, field_methods, is_ftkit_only
from ftkit.recipe.load import recipe_fields
from ftkit.recipe.schema import DatasetSpec, Recipe, TRLBlock, UserDefinedFormat


# What a first recipe sets (recipes/quickstart.yml): the reference opens with these, then every group in order.
ESSENTIALS = ("base_model", "datasets", "sequence_len", "adapter", "lora_r", "lora_alpha", "micro_batch_size",
              "gradient_accumulation_steps", "num_epochs", "learning_rate", "output_dir")


def option_order() -> list[str]:
    """The essentials, then recipe options in the order the schema declares its groups (model, data, prompt,
    adapter, ...): pydantic lists mixin fields last-base-first, which would open the reference with packing."""
    order = list(ESSENTIALS) + [n for base in Recipe.__bases__ for n in getattr(base, "model_fields", {})]
    order += [n for n in Recipe.model_fields if n not in order]
    return [n for n in dict.fromkeys(order) if n != "source"]


def _fields_table(model) -> list[str]:
    rows = ["| option | default | read by | description |", "|---|---|---|---|"]
    for name in option_order() if model is Recipe else model.model_fields:  # (option_order leaves out `source`)
        f = model.model_fields[name]
        value = None if f.is_required() else f.get_default(call_default_factory=True)
        default = "required" if f.is_required() else "{}" if isinstance(value, BaseModel) else repr(value)  # a block: own table
        mark = " (ftkit's own)" if is_ftkit_only(f) else ""
        methods = "all" if field_methods(f) == METHODS else ", ".join(field_methods(f))
        rows.append(f"| `{name}`{mark} | `{default}` | {methods} | {f.description or ''} |")
    return rows


def option_status(level: str, name: str, implemented: dict[str, set[str]] | None = None) -> str | None:
    """What ftkit does with one Axolotl option: implemented, a catalogue status, or, for a key inside a block
    that is refused or ignored whole (pretraining_dataset.path, capabilities.n_gpu), that block's; else None."""
    if name in (implemented or recipe_fields()).get(level, ()):
        return cat.IMPLEMENTED
    if (entry := cat.lookup(level, name)) is not None:
        return entry.status
    block = cat.lookup("top", level.split(".")[0])
    return block.status if block and level not in ("top", "dataset") and block.status != cat.ALIAS else None


def option_counts() -> dict[str, int]:
    """Every name Axolotl shipped (ftkit/axolotl/harvested_names.txt) by status here; "none" counts the names
    without one (tests/test_axolotl_options.py keeps that at 0)."""
    implemented = recipe_fields()
    out = {status: 0 for status in (cat.IMPLEMENTED, *cat.STATUSES)}
    for level, name, _ in cat.harvested():
        status = option_status(level, name, implemented) or "none"
        out[status] = out.get(status, 0) + 1
    return out


def _catalogue_section() -> list[str]:
    groups: dict[tuple, list[str]] = defaultdict(list)
    for e in cat.CATALOGUE.values():
        where = "" if e.level == "top" else ("datasets[]." if e.level == "dataset" else f"{e.level}.")
        groups[(e.status, e.why, e.nearest or "", e.canonical or "")].append(where + e.name)
    out = ["", "## Axolotl options that are not recipe fields", "",
           "Statuses: alias (both names work; recipe.yml is saved with the canonical one), speed only / internal / "
           "ignored (accepted, announced, never change what is trained), refused (an error naming the feature and the "
           "nearest supported option; a value equal to Axolotl's default is accepted as off). A key that is no option "
           "at all is an error when it is a near miss of one (did-you-mean), else accepted and named in the summary, "
           "as Axolotl drops it silently. `ftkit check RECIPE` shows what a given config uses; "
           "docs/axolotl-options.md explains the door.", ""]
    titles = {cat.ALIAS: "Aliases", cat.SPEED_ONLY: "Speed only (ignored here)", cat.INTERNAL: "Internal (ignored here)",
              cat.IGNORED: "Ignored here, with why", cat.REFUSED: "Refused"}
    for status, title in titles.items():
        out += [f"### {title}", ""]
        for (st, why, nearest, canonical), names in sorted(groups.items()):
            if st != status:
                continue
            if status == cat.ALIAS:
                out.append(f"- {', '.join(f'`{n}`' for n in names)} -> `{canonical}`" + (f" ({why})" if why else ""))
            else:
                out.append(f"- {why}" + (f" (nearest: {nearest})" if nearest else "") + ": " + ", ".join(f"`{n}`" for n in names))
        out.append("")
    out += ["Refused values of implemented options: " + "; ".join(
        f"`{name}`: {', '.join(repr(v) for v in values)}" for (_, name), values in cat.REFUSED_VALUES.items()),
        "", "Refused dataset types (by prefix): " + ", ".join(f"`{k}`" for k in cat.REFUSED_TYPES), ""]
    return out


def options_reference() -> str:
    """Markdown reference of every option, generated from the schema and the Axolotl catalogue."""
    counts = option_counts()
    rows = ["# ftkit options", "", "Axolotl options by status: " + ", ".join(f"{k} {v}" for k, v in counts.items()) +
            f" ({sum(counts.values())} in all: every name Axolotl shipped since v0.3.0). An empty value (`key:` with "
            "nothing) means the default, at every level.",
            "", "## Recipe options", ""]
    rows += _fields_table(Recipe)
    rows += ["", "`datasets[]` (and `test_datasets[]`) entries:", ""] + _fields_table(DatasetSpec)
    rows += ["", "`datasets[].type` as a mapping (a custom format):", ""] + _fields_table(UserDefinedFormat)
    rows += ["", "`trl:` (rl: grpo / gdpo; empty = TRL's default):", ""] + _fields_table(TRLBlock)
    rows += _catalogue_section()
    return "\n".join(rows) + "\n"
