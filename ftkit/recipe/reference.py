"""`ftkit options`: the options reference, generated from the schema (the only place options are documented)."""
from __future__ import annotations

from ftkit.recipe.schema import DatasetSpec, Recipe, UserDefinedFormat


def options_reference() -> str:
    """Markdown table of every option, generated from the schema (the only place options are documented)."""
    rows = ["| option | default | description |", "|---|---|---|"]
    for name, f in Recipe.model_fields.items():
        if name == "source":
            continue
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
