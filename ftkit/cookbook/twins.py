"""Which tiny twin stands in for a recipe or a hub model in tests and notebooks, and the toy-size settings."""
from __future__ import annotations

from pathlib import Path

from ftkit.models.families import ALIASES, FAMILIES, family_for_model_name
from ftkit.models.tiny import TINY_PREFIX, is_tiny


def twin_for_recipe(path) -> str:
    """The tiny twin a recipe file is tested on: its `tiny:` base_model, else a `# tiny twin: tiny:<family>`
    header line, else its folder name (recipes/mistral/lora.yml -> tiny:mistral)."""
    from ftkit.errors import FtkitError

    path = Path(path)
    text = path.read_text(encoding="utf-8")
    for line in text.splitlines():
        if line.replace(" ", "").startswith("base_model:tiny:"):
            return line.split(":", 1)[1].split("#")[0].strip()
        if line.lower().startswith("# tiny twin:"):
            return line.split(":", 1)[1].strip()
    family = ALIASES.get(path.parent.name, path.parent.name)
    if family in FAMILIES:
        return TINY_PREFIX + family
    raise FtkitError(f"cannot tell which tiny twin tests {path}", file=str(path),
                     fix="put it under recipes/<family>/ or add a header line `# tiny twin: tiny:<family>`")


# Settings a recipe gets when it runs on its twin (tests, notebooks with tiny=True): the real run's
# memory savers cost time at toy size, 16-row steps and a held-out split only slow a 40-step demo.
TWIN_TRAINING = {"gradient_checkpointing": False, "gradient_accumulation_steps": 1, "micro_batch_size": 8,
                 "val_set_size": 0, "warmup_steps": 2, "logging_steps": 1, "lora_dropout": 0.0}


def twin_overrides(path) -> dict:
    """Overrides that put the recipe file at `path` on its tiny twin (see twin_for_recipe, TWIN_TRAINING)."""
    return {"base_model": twin_for_recipe(path), **TWIN_TRAINING}


def twin_for_model(name: str) -> str:
    """The twin of a hub model name (`meta-llama/Llama-3.2-1B` -> tiny:llama), by the family in its name."""
    from ftkit.errors import FtkitError

    if is_tiny(name):
        return name
    family = family_for_model_name(name)
    if family:
        return TINY_PREFIX + family
    raise FtkitError(f"cannot tell the family of {name!r}", where="base_model",
                     fix=f"pass the twin yourself, e.g. -p base_model=tiny:llama ({', '.join(FAMILIES)})")
