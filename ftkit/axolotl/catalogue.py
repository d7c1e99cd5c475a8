"""catalogue.yaml read once into lookups: each Axolotl option's status, and the refused values, types and plugins.

    lookup("top", "flash_attention")  -> Entry(status="alias", canonical="attn_implementation", convert=...)
    refused_value("top", "rl", "grpo") -> ("online RL ... is not implemented", "rl: dpo (offline preference pairs)")
    plugin_status("axolotl.integrations.liger.LigerPlugin") -> ("speed_only", "its options are kernels or logging ...")
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from ftkit.axolotl import convert

ALIAS, SPEED_ONLY, INTERNAL, IGNORED, REFUSED, IMPLEMENTED = (
    "alias", "speed_only", "internal", "ignored", "refused", "implemented")
STATUSES = (ALIAS, SPEED_ONLY, INTERNAL, IGNORED, REFUSED)
NO_DEFAULT = object()  # a refused option with no "off" value: any value is refused
FILE = Path(__file__).with_name("catalogue.yaml")


@dataclass(frozen=True)
class Entry:
    """One catalogued Axolotl option."""

    level: str
    name: str
    status: str
    why: str = ""
    nearest: str | None = None  # refused: the closest thing ftkit supports
    canonical: str | None = None  # alias: the implemented option (dotted for nested ones, e.g. fsdp_config.version)
    default: Any = NO_DEFAULT  # Axolotl's value when unset (a refused option at this value is accepted as "off")
    convert: Callable[[Any, dict], Any] | None = None  # alias: (value, the mapping it is in) -> canonical value
    shipped: str | None = None  # the Axolotl releases that had the name (harvest.py)
    source: str | None = None  # where a name from outside Axolotl comes from


def _entries(options: dict) -> dict[tuple[str, str], Entry]:
    out = {}
    for level, names in options.items():
        for name, spec in names.items():
            spec = dict(spec)
            if spec["status"] not in STATUSES:
                raise ValueError(f"{FILE}: {level}.{name}: unknown status {spec['status']!r}")
            if "convert" in spec:
                spec["convert"] = convert.named(spec["convert"])
            out[(level, name)] = Entry(level, name, **spec)
    return out


def _refused_values(groups: list[dict]) -> dict[tuple[str, str], dict[Any, tuple[str, str]]]:
    """(level, option) -> {refused value: (why, nearest)}; `{value}` in a why is the value."""
    out: dict = {}
    for group in groups:
        for level in group["levels"]:
            out.setdefault((level, group["name"]), {}).update(
                {v: (group["why"].replace("{value}", str(v)), group["nearest"]) for v in group["values"]})
    return out


@functools.cache
def tables() -> dict[str, Any]:
    """catalogue.yaml as lookup tables, read on first use (about 0.1 s with libyaml: `import ftkit` stays fast)."""
    data = yaml.load(FILE.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return {
        "DATA": data,
        "CATALOGUE": _entries(data["options"]),
        "NESTED_FIELDS": data["nested_fields"],  # {field: [its keys]}
        "OPTION_BLOCKS": tuple(data["option_blocks"]),
        "CHECKED_BLOCKS": tuple(data["checked_blocks"]),
        "EMPTY_IN_AXOLOTL": data["empty_in_axolotl"],
        "ZERO_IS_UNSET": tuple(data["zero_is_unset"]),
        "VALUE_ALIASES": {(v["name"], v["value"]): (v["becomes"], v["note"]) for v in data["value_aliases"]},
        "MEANING": data["meaning"],
        "REFUSED_TYPES": data["refused_types"],
        "REFUSED_VALUES": _refused_values(data["refused_values"]),
    }


def __getattr__(name: str):
    """cat.CATALOGUE, cat.MEANING, ...: the tables, loaded on first access."""
    if name.isupper() and name in tables():
        return tables()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def harvested() -> list[tuple[str, str, str]]:
    """(level, name, shipped) of every option name Axolotl shipped (harvested_names.txt, written by harvest.py)."""
    text = FILE.with_name("harvested_names.txt").read_text(encoding="utf-8")
    return [tuple(line.split()) for line in text.splitlines() if line and not line.startswith("#")]


def lookup(level: str, name: str) -> Entry | None:
    return tables()["CATALOGUE"].get((level, name))


def names_at(level: str) -> list[str]:
    """Every catalogued name at one level (for did-you-mean)."""
    return [name for (lv, name) in tables()["CATALOGUE"] if lv == level]


def refused_value(level: str, name: str, value) -> tuple[str, str] | None:
    """(why, nearest) when this value of an option is a feature ftkit refuses."""
    table = tables()["REFUSED_VALUES"].get((level, name), {})
    try:
        if value in table:
            return table[value]
    except TypeError:  # unhashable values (lists, mappings) are never refused values
        return None
    if level == "dataset" and name == "type" and isinstance(value, str):
        head = value.split(".")[0].split(":")[0]
        refused = tables()["REFUSED_TYPES"].get(head)
        if refused:
            return refused["why"], refused["nearest"]
    return None


def plugin_status(path: str) -> tuple[str, str]:
    """(status, why) of one `plugins:` entry, e.g. axolotl.integrations.liger.LigerPlugin -> speed_only."""
    parts = path.lower().split(".")
    plugins = tables()["DATA"]["plugins"]
    for key, feature in plugins["refused"].items():
        if key in parts or any(p.startswith(key) for p in parts[2:3]):
            return REFUSED, f"{feature} is not implemented"
    if any(key in p for key in plugins["speed_only"] for p in parts):
        return SPEED_ONLY, "its options are kernels or logging (each listed with its own status)"
    return REFUSED, "an Axolotl plugin ftkit does not know changes training in ways ftkit cannot check"


