"""Before validation: what each key of a recipe file means here, as a report and as the data the schema validates.

Every key gets one line: used (a recipe field), empty (null: the default), alias -> canonical, ignored here
(speed-only or internal, with why) or refused (why, and the nearest supported option). Unknown keys that
are not Axolotl options stay errors with did-you-mean. `ftkit check` prints the report; `train` and
`preprocess` print its one-line summary.

    {flash_attention: true, dataset_num_proc: 4, lora_r: null, qat: {...}}
    -> data   {attn_implementation: flash_attention_2, dataset_processes: 4}
       report alias flash_attention -> attn_implementation, alias dataset_num_proc -> dataset_processes,
              empty lora_r; problem "qat: quantization-aware training ... is not implemented"
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

from ftkit.errors import Problem
from ftkit.recipe import axolotl as cat
from ftkit.recipe.data_options import DatasetSpec, UserDefinedFormat

USED, EMPTY, IGNORED = "used", "empty", "ignored"
# where Axolotl reads an empty value differently from "unset" (ftkit: empty = the default, always)
EMPTY_IN_AXOLOTL = {
    "bf16": "Axolotl reads an empty bf16 as off; write bf16: false for that",
    "tf32": "Axolotl reads an empty tf32 as off; write tf32: false for that",
    "shuffle_merged_datasets": "Axolotl reads it as off (no shuffle); write false for that",
    "lora_r": "Axolotl passes it to peft as None, which fails", "lora_alpha": "Axolotl passes it to peft as None, which fails",
}
NESTED_BLOCKS = ("special_tokens", "peft", "loftq_config", "fsdp_config")  # option blocks: null entries are unset
# Axolotl reads these as "off" when 0 (it tests them for truth): ftkit treats 0 as not set, reported as empty
ZERO_IS_UNSET = ("max_steps", "save_steps", "saves_per_epoch", "eval_steps", "evals_per_epoch", "cosine_constant_lr_ratio",
                 "early_stopping_patience", "eval_table_size", "relora_steps")
# values Axolotl accepts that mean an implemented value here: (key, value) -> (value, note)
VALUE_ALIASES = {("gradient_checkpointing", "offload"): (True, "offload: Axolotl also moves the activations to CPU "
                                                         "(memory only); ftkit recomputes them"),
                 ("gradient_checkpointing", "offload_disk"): (True, "offload_disk: Axolotl also moves the activations "
                                                              "to disk (memory only); ftkit recomputes them")}
FORMAT_KEYS = set(UserDefinedFormat.model_fields)  # custom-format keys, which belong under type:


@dataclass
class Line:
    key: str  # dotted path as written, e.g. datasets.0.field_messages
    status: str  # used, empty, alias, ignored, refused
    detail: str = ""
    line: int | None = None


@dataclass
class Report:
    """What loading did with every key of a recipe (and its overrides)."""

    file: str | None = None
    lines: list[Line] = field(default_factory=list)

    def add(self, key: str, status: str, detail: str = "", line: int | None = None) -> None:
        self.lines.append(Line(key, status, detail, line))

    def of(self, status: str) -> list[Line]:
        return [line for line in self.lines if line.status == status]

    def summary(self) -> str:
        """e.g. '42 options used, 3 aliases, 2 speed-only ignored: flash_attention, strict; 5 empty (defaults)'."""
        internal = [line for line in self.of(IGNORED) if line.detail.startswith("internal")]
        ignored = [line for line in self.of(IGNORED) if line not in internal]
        used, aliases = len(self.of(USED)), len(self.of(cat.ALIAS))
        text = (f"{used} option{'s' * (used != 1)} used, {aliases} alias{'es' * (aliases != 1)}, "
                f"{len(ignored)} speed-only ignored")
        if ignored:
            text += ": " + ", ".join(line.key for line in ignored)
        if internal:
            text += f"; {len(internal)} internal ignored: " + ", ".join(line.key for line in internal)
        if self.of(EMPTY):
            text += f"; {len(self.of(EMPTY))} empty (defaults)"
        if self.of(cat.REFUSED):
            text += f"; {len(self.of(cat.REFUSED))} refused: " + ", ".join(line.key for line in self.of(cat.REFUSED))
        return text

    def table(self) -> str:
        """The migration report, option by option (ftkit check)."""
        width = max([len(line.key) for line in self.lines] + [10])
        rows = [f"  {line.status:<8} {line.key:<{width}}  {line.detail}".rstrip() for line in self.lines]
        return "\n".join([f"{self.file or 'recipe'}: {len(self.lines)} keys", *rows, self.summary()])


@dataclass
class Migration:
    """The data to validate, the report, the problems found before validation, and where renamed keys came from."""

    data: dict
    report: Report
    problems: list[Problem] = field(default_factory=list)
    origin: dict[str, str] = field(default_factory=dict)  # canonical dotted path -> the path written in the file


def _same(value, default) -> bool:
    """A value equal to Axolotl's default (numbers compared as numbers: PyYAML reads 1e-6 as text)."""
    if value == default:
        return True
    try:
        return float(value) == float(default) and not isinstance(value, bool) and not isinstance(default, bool)
    except (TypeError, ValueError):
        return False


def _suggest(key: str, choices) -> str | None:
    match = difflib.get_close_matches(key, list(choices), n=1, cutoff=0.6)
    return match[0] if match else None


class _Walker:
    """One pass over the raw recipe data; collects the clean data, the report and the problems."""

    def __init__(self, fields: dict, file: str | None, lines: dict[str, int], base_dir: Path | None):
        self.fields, self.file, self.lines, self.base_dir = fields, file, lines, base_dir
        self.m = Migration({}, Report(file))

    def note(self, key: str, status: str, detail: str = "") -> None:
        self.m.report.add(key, status, detail, self.lines.get(key))

    def problem(self, where: str, what: str, fix: str | None) -> None:
        self.m.problems.append(Problem(what, self.file, where, self.lines.get(where), fix))

    def refuse(self, where: str, why: str, nearest: str | None) -> None:
        self.note(where, cat.REFUSED, f"{why}; nearest: {nearest or 'none'}")
        self.problem(where, f"{why} (an Axolotl feature ftkit refuses rather than ignores)",
                     f"remove it{'; nearest supported: ' + nearest if nearest else ''}")

    # ------------------------------------------------------------ one level
    def level(self, raw: dict, fields: dict, level: str, prefix: str, out: dict) -> None:
        for key, value in raw.items():
            where = f"{prefix}{key}"
            zero = isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0
            if value is None or (level == "top" and key in ZERO_IS_UNSET and zero):
                note = EMPTY_IN_AXOLOTL.get(key, "") if level == "top" and value is None else \
                    "" if value is None else "0 = off, as in Axolotl"
                self.note(where, EMPTY, note)
                continue
            if level == "top" and isinstance(value, str) and (key, value) in VALUE_ALIASES:
                value, note = VALUE_ALIASES[(key, value)]
                self.note(where, cat.ALIAS, note)
                out[key] = value
                continue
            if level == "top" and key == "tokens" and isinstance(value, dict):
                self.problem(where, "is a mapping of special tokens (Axolotl refuses it too: tokens is a list)",
                             "move bos_token/eos_token/... under special_tokens:")
                continue
            if key in fields:
                self.put(out, key, self.field(key, value, level, where), where)
                continue
            entry = cat.lookup(level, key)
            if entry is not None:
                self.catalogued(entry, value, where, out)
            elif level == "dataset" and key in FORMAT_KEYS:
                self.problem(where, "a custom-format key written at the dataset level",
                             f"put it under type: (a custom format), e.g. type: {{{key}: ...}}")
            else:
                names = list(fields) + [n for (lv, n) in cat.CATALOGUE if lv == level]
                guess = _suggest(key, names)
                self.problem(where, "unknown option",
                             f"did you mean {guess}?" if guess else "remove it; `ftkit options` lists every option")

    def put(self, out: dict, key: str, value, where: str) -> None:
        """Set a key that an alias may have set already (e.g. fsdp_version before fsdp_config): merge or report."""
        if key not in out:
            out[key] = value
        elif isinstance(out[key], dict) and isinstance(value, dict):
            for k, v in value.items():
                if k in out[key] and out[key][k] != v:
                    self.problem(f"{where}.{k}", f"conflicts with the alias that set it to {out[key][k]!r}", "keep one")
            out[key] = {**value, **out[key]}
        elif out[key] != value and not (key == "chat_template" and value == "jinja"):
            self.problem(where, f"conflicts with an alias that set it to {out[key]!r}", "keep one")

    def field(self, key: str, value, level: str, where: str):
        refused = cat.refused_value(level, key, value)
        if refused:
            self.refuse(where, f"{key}: {value!r} -- {refused[0]}", refused[1])
            return value
        self.note(where, USED)
        if key in ("datasets", "test_datasets") and isinstance(value, list):
            return [self.dataset(d, f"{where}.{i}.") if isinstance(d, dict) else d for i, d in enumerate(value)]
        if key in NESTED_BLOCKS and isinstance(value, dict):
            return self.block(key, value, where)
        if key == "type" and isinstance(value, dict):
            return self.block("type", value, where)
        return value

    def dataset(self, raw: dict, prefix: str) -> dict:
        out: dict = {}
        self.level(raw, DatasetSpec.model_fields, "dataset", prefix, out)
        return out

    def block(self, level: str, raw: dict, where: str) -> dict:
        """A nested option block: null entries are unset; catalogued keys (aliases, ignored, refused) handled."""
        out = {}
        for key, value in raw.items():
            path = f"{where}.{key}"
            if value is None:
                self.note(path, EMPTY)
                continue
            entry = cat.lookup(level, key)
            if entry is None:
                # the field's own validation checks it; nested option blocks (peft.loftq_config) get the same rules
                out[key] = self.block(f"{level}.{key}", value, path) if isinstance(value, dict) and level != "type" else value
                continue
            if entry.status == cat.ALIAS:
                canonical = entry.canonical.split(".", 1)[-1] if entry.canonical.startswith(level + ".") else entry.canonical
                if canonical in out and out[canonical] != value:
                    self.problem(path, f"conflicts with {where}.{canonical}", "keep one")
                out[canonical] = value
                self.note(path, cat.ALIAS, f"-> {where}.{canonical}")
            else:
                self.catalogued(entry, value, path, {})
        return out

    # ------------------------------------------------------------ catalogued (non-field) keys
    def catalogued(self, entry: cat.Entry, value, where: str, out: dict) -> None:
        if entry.status == cat.ALIAS:
            self.alias(entry, value, where, out)
        elif entry.status in (cat.SPEED_ONLY, cat.INTERNAL):
            if entry.name == "plugins" and entry.level == "top":
                for i, plugin in enumerate(value if isinstance(value, list) else [value]):
                    status, why = cat.plugin_status(str(plugin))
                    if status == cat.REFUSED:
                        self.refuse(f"{where}.{i}", f"plugin {plugin}: {why}", None)
            kind = "speed only" if entry.status == cat.SPEED_ONLY else "internal"
            self.note(where, IGNORED, f"{kind}: {entry.why}")
        elif entry.name in cat.CHECKED_BLOCKS and entry.level == "top" and isinstance(value, dict):
            self.checked_block(entry.name, value, where, out)
        elif entry.default is not cat.NO_DEFAULT and _same(value, entry.default):
            self.note(where, IGNORED, f"Axolotl's default ({value!r}): the feature is off")
        elif value in (False, [], {}) and entry.default in (cat.NO_DEFAULT, None):
            self.note(where, IGNORED, "off")
        else:
            self.refuse(where, f"{entry.why}", entry.nearest)

    def checked_block(self, level: str, raw: dict, where: str, out: dict) -> None:
        """trl:/vllm: as Axolotl dumps them: every key at its default is accepted; trl.beta is rl_beta."""
        for key, value in raw.items():
            path = f"{where}.{key}"
            entry = cat.lookup(level, key)
            if value is None:
                self.note(path, EMPTY)
            elif entry is None:
                self.problem(path, f"unknown option in {level}:", "remove it")
            elif entry.status == cat.ALIAS:
                self.alias(entry, value, path, out)
            elif entry.default is not cat.NO_DEFAULT and _same(value, entry.default):
                self.note(path, IGNORED, "Axolotl's default: off")
            else:
                self.refuse(path, entry.why, entry.nearest)

    def alias(self, entry: cat.Entry, value, where: str, out: dict) -> None:
        value = entry.convert(value) if entry.convert else value
        if entry.canonical == "chat_template" and value is not None:
            value = self.jinja_text(value, where)
        self.note(where, cat.ALIAS, f"-> {entry.canonical}")
        if value is None:
            return
        head, _, rest = entry.canonical.partition(".")
        target, key = (out.setdefault(head, {}), rest) if rest else (out, head)
        if not isinstance(target, dict):
            self.problem(where, f"cannot be merged into {head}", f"write it as {entry.canonical}")
            return
        if key in target and target[key] != value and not (key == "chat_template" and target[key] == "jinja"):
            self.problem(where, f"conflicts with {entry.canonical}: {target[key]!r}", "keep one")
            return
        target[key] = value
        full = where.rsplit(".", 1)[0] + "." + entry.canonical if entry.level == "dataset" else entry.canonical
        self.m.origin[full] = where

    def jinja_text(self, value, where: str) -> str:
        """chat_template_jinja: Jinja text, or the path of a file holding it (read now)."""
        text = str(value)
        if "{" not in text:
            for base in [Path.cwd(), *([self.base_dir] if self.base_dir else [])]:
                if (base / text).is_file():
                    return (base / text).read_text(encoding="utf-8")
            self.problem(where, f"is neither Jinja text nor a file that exists ({text!r})", "give the template text or its path")
        return text


def migrate(raw: dict, fields: dict, file: str | None = None, lines: dict[str, int] | None = None) -> Migration:
    """The raw recipe data -> Migration (clean data for the schema, the report, problems found on the way)."""
    walker = _Walker(fields, file, lines or {}, Path(file).resolve().parent if file else None)
    walker.level(raw, fields, "top", "", walker.m.data)
    data = walker.m.data
    if data.get("chat_template") == "jinja":
        walker.problem("chat_template", "jinja needs the template text", "add chat_template_jinja: (Jinja text or a file)")
    for i, d in enumerate(data.get("datasets") or []):
        if isinstance(d, dict) and d.get("chat_template") == "jinja":
            walker.problem(f"datasets.{i}.chat_template", "jinja needs the template text", "add chat_template_jinja:")
    if data.get("fsdp_config") and not data.get("fsdp") and not data.get("deepspeed"):
        data["fsdp"] = ["full_shard", "auto_wrap"]  # Axolotl: fsdp_config alone turns FSDP on
        walker.note("fsdp", USED, "set from fsdp_config: [full_shard, auto_wrap]")
    return walker.m
