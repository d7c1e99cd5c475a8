"""`ftkit options`: the options reference, generated from the schema and the Axolotl catalogue (the only places
options are documented)."""
from __future__ import annotations

from collections import defaultdict

from ftkit.recipe import axolotl as cat
from ftkit.recipe.base import METHODS, field_methods, is_ftkit_only
from ftkit.recipe.schema import DatasetSpec, Recipe, UserDefinedFormat


# What a first recipe sets (recipes/quickstart.yml): the reference opens with these, then every group in order.
ESSENTIALS = ("base_model", "datasets", "sequence_len", "adapter", "lora_r", "lora_alpha", "micro_batch_size",
              "gradient_accumulation_steps", "num_epochs", "learning_rate", "output_dir")


def option_order() -> list[str]:
    """The essentials, then recipe options in the order the schema declares its groups (model, data, prompt,
    adapter, ...): pydantic lists mixin fields last-base-first, which would open the reference with packing."""
    order = list(ESSENTIALS) + [n for base in Recipe.__bases__ for n in getattr(base, "model_fields", {})]
    order += [n for n in Recipe.model_fields if n not in order]
    return [n for n in dict.fromkeys(order) if n != "source"]


def _methods(field) -> str:
    methods = field_methods(field)
    return "all" if methods == METHODS else ", ".join(methods)


def _fields_table(model, skip=("source",)) -> list[str]:
    rows = ["| option | default | read by | description |", "|---|---|---|---|"]
    names = option_order() if model is Recipe else list(model.model_fields)
    for name in names:
        f = model.model_fields[name]
        if name in skip:
            continue
        default = "required" if f.is_required() else repr(f.get_default(call_default_factory=True))
        mark = " (ftkit's own)" if is_ftkit_only(f) else ""
        rows.append(f"| `{name}`{mark} | `{default}` | {_methods(f)} | {f.description or ''} |")
    return rows


def option_counts() -> dict[str, int]:
    """Axolotl options by status (implemented = recipe fields that are Axolotl options, and nested keys of fields)."""
    fields = {"top": [n for n, f in Recipe.model_fields.items() if not is_ftkit_only(f)],
              "dataset": [n for n, f in DatasetSpec.model_fields.items() if not is_ftkit_only(f)],
              "type": list(UserDefinedFormat.model_fields)}
    for level, names in cat.NESTED_FIELDS.items():
        fields[level] = names.split()
    return cat.counts(fields)


def _catalogue_section() -> list[str]:
    groups: dict[tuple, list[str]] = defaultdict(list)
    for e in cat.CATALOGUE.values():
        where = "" if e.level == "top" else ("datasets[]." if e.level == "dataset" else f"{e.level}.")
        groups[(e.status, e.why, e.nearest or "", e.canonical or "")].append(where + e.name)
    out = ["", "## Axolotl options that are not recipe fields", "",
           "Statuses: alias (both names work; recipe.yml is saved with the canonical one), speed only / internal "
           "(accepted, announced, never change what is trained), refused (an error naming the feature and the "
           "nearest supported option; a value equal to Axolotl's default is accepted as off). `ftkit check "
           "RECIPE` shows what a given config uses.", ""]
    titles = {cat.ALIAS: "Aliases", cat.SPEED_ONLY: "Speed only (ignored here)", cat.INTERNAL: "Internal (ignored here)",
              cat.REFUSED: "Refused"}
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
            f" ({sum(counts.values())} in all). An empty value (`key:` with nothing) means the default, at every level.",
            "", "## Recipe options", ""]
    rows += _fields_table(Recipe)
    rows += ["", "`datasets[]` (and `test_datasets[]`) entries:", ""] + _fields_table(DatasetSpec)
    rows += ["", "`datasets[].type` as a mapping (a custom format):", ""] + _fields_table(UserDefinedFormat)
    rows += _catalogue_section()
    return "\n".join(rows) + "\n"
