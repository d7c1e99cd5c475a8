"""`ftkit options`: the options reference, generated from the schema (the only place options are documented)."""
from __future__ import annotations

from ftkit.recipe.schema import DatasetSpec, Recipe, UserDefinedFormat


def option_order() -> list[str]:
    """Recipe options in the order the schema declares its groups (model, data, prompt, adapter, ...):
    pydantic lists mixin fields last-base-first, which would open the reference with packing."""
    order = [n for base in Recipe.__bases__ for n in getattr(base, "model_fields", {})]
    order += [n for n in Recipe.model_fields if n not in order]
    return [n for n in dict.fromkeys(order) if n != "source"]


def options_reference() -> str:
    """Markdown table of every option, generated from the schema (the only place options are documented)."""
    rows = ["| option | default | description |", "|---|---|---|"]
    for name in option_order():
        f = Recipe.model_fields[name]
        default = "required" if f.is_required() else repr(f.get_default(call_default_factory=True))
        rows.append(f"| `{name}` | `{default}` | {f.description or ''} |")
    rows += ["", "`datasets[]` entries:", "", "| option | default | description |", "|---|---|---|"]
    for name, f in DatasetSpec.model_fields.items():
        default = "required" if f.is_required() else repr(f.get_default(call_default_factory=True))
        rows.append(f"| `{name}` | `{default}` | {f.description or ''} |")
    rows += ["", "`datasets[].type` as a mapping (a custom format):", "", "| option | default | description |", "|---|---|---|"]
    for name, f in UserDefinedFormat.model_fields.items():
        rows.append(f"| `{name}` | `{f.get_default()!r}` | {f.description or ''} |")
    return "\n".join(rows) + "\n"
