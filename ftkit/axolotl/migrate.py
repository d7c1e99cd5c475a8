"""Before validation: what each key of a recipe file means here, as a report and as the data the schema validates.

Every key gets one report line: used (a recipe field), empty (null: the default), alias -> canonical, ignored
(with why) or refused (why, and the nearest supported option), as catalogue.yaml says. A key that is none of
those is a near miss of a real option (an error with did-you-mean) or one Axolotl would drop silently
(accepted; the summary names it). The door knows ftkit's fields only by the names it is handed.

    {flash_attention: true, dataset_num_proc: 4, lora_r: null, qat: {...}, image: axolotl:main}
    -> data   {attn_implementation: flash_attention_2, dataset_processes: 4}
       report alias flash_attention -> attn_implementation, alias dataset_num_proc -> dataset_processes,
              empty lora_r, ignored image (not an option Axolotl reads);
              problem "qat: quantization-aware training ... is not implemented"
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ftkit.axolotl import catalogue as cat
from ftkit.axolotl.convert import Unconvertible
from ftkit.axolotl.report import ALIAS, EMPTY, IGNORED, NOT_AXOLOTL, REFUSED, USED, Report
from ftkit.axolotl.suggest import suggest
from ftkit.errors import Problem

LABELS = {cat.SPEED_ONLY: "speed only: ", cat.INTERNAL: "internal: ", cat.IGNORED: ""}


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


def _zero(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0


class _Walker:
    """One pass over the raw recipe data; collects the clean data, the report and the problems.

    fields: the recipe's field names per level: top, dataset (an entry of datasets), type (a custom format),
    pretraining_dataset (an entry of it)."""

    def __init__(self, fields: dict, file: str | None, lines: dict[str, int], base_dir: Path | None):
        self.fields, self.file, self.lines, self.base_dir = fields, file, lines, base_dir
        self.m = Migration({}, Report(file))

    def note(self, key: str, status: str, detail: str = "") -> None:
        self.m.report.add(key, status, detail, self.lines.get(key))

    def problem(self, where: str, what: str, fix: str | None) -> None:
        self.m.problems.append(Problem(what, self.file, where, self.lines.get(where), fix))

    def refuse(self, where: str, why: str, nearest: str | None) -> None:
        self.note(where, REFUSED, f"{why}; nearest: {nearest or 'none'}")
        self.problem(where, f"{why} (an Axolotl feature ftkit refuses rather than ignores)",
                     f"remove it{'; nearest supported: ' + nearest if nearest else ''}")

    # ------------------------------------------------------------ top level and dataset entries
    def mapping(self, raw: dict, level: str, prefix: str, out: dict) -> None:
        for key, value in raw.items():
            where = f"{prefix}{key}"
            if value is None or (level == "top" and key in cat.ZERO_IS_UNSET and _zero(value)):
                note = "0 = off, as in Axolotl" if value is not None else \
                    cat.EMPTY_IN_AXOLOTL.get(key, "") if level == "top" else ""
                self.note(where, EMPTY, note)
            elif level == "top" and isinstance(value, str) and (key, value) in cat.VALUE_ALIASES:
                out[key], note = cat.VALUE_ALIASES[(key, value)]
                self.note(where, ALIAS, note)
            elif level == "top" and key == "tokens" and isinstance(value, dict):
                self.problem(where, "is a mapping of special tokens (Axolotl refuses it too: tokens is a list)",
                             "move bos_token/eos_token/... under special_tokens:")
            elif key in self.fields[level]:
                self.put(out, key, self.field(key, value, level, where), where)
            elif (entry := cat.lookup(level, key)) is not None:
                self.catalogued(entry, value, where, out, raw)
            elif level == "dataset" and key in self.fields["type"] and isinstance(raw.get("type"), str) \
                    and not key.startswith("field_"):  # a column renamed beside a named type: an error (below)
                self.note(where, IGNORED, f"a custom-format key beside type: {raw['type']}, which does not read it "
                                          "(Axolotl drops it too, so the rows are formatted without it); to use it, "
                                          f"write a custom format: type: {{{key}: ...}}")
            elif level == "dataset" and key in self.fields["type"]:
                self.problem(where, "a custom-format key written at the dataset level",
                             f"put it under type: (a custom format), e.g. type: {{{key}: ...}}")
            else:
                self.unknown(key, level, where)

    def unknown(self, key: str, level: str, where: str) -> None:
        """A near miss of a real option is an error; any other key is one Axolotl would drop: accepted and said."""
        fields = self.fields.get(level, ())
        guess = suggest(key, [*fields, *cat.names_at(level)], cat.MEANING, prefer=fields)
        if guess is None:
            self.note(where, IGNORED, f"{NOT_AXOLOTL} (Axolotl drops it silently; so does ftkit, and says so)")
            return
        entry = cat.lookup(level, guess)
        if entry is not None and (entry.status in (cat.INTERNAL, cat.IGNORED) or
                                  entry.why == cat.DATA["reasons"]["logging"]):
            # spelt right it would change nothing trained here either (`wandb:` beside use_wandb); a kernel or
            # placement option's near miss stays an error: spelt right, Axolotl would run differently
            self.note(where, IGNORED, f"{NOT_AXOLOTL} (near {guess}, which ftkit ignores too: nothing is lost)")
            return
        also = f" (another name of {entry.canonical})" if entry and entry.status == ALIAS else ""
        self.problem(where, "unknown option", f"did you mean {guess}?{also}")

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
        if key in ("datasets", "test_datasets", "pretraining_dataset") and isinstance(value, list):
            entry = "pretraining_dataset" if key == "pretraining_dataset" else "dataset"
            return [self.dataset(d, f"{where}.{i}.", entry) if isinstance(d, dict) else d for i, d in enumerate(value)]
        if key in (*cat.OPTION_BLOCKS, *cat.CHECKED_BLOCKS) and isinstance(value, dict):
            return self.block(key, value, where, self.m.data)
        return value

    def dataset(self, raw: dict, prefix: str, level: str = "dataset") -> dict:
        out: dict = {}
        self.mapping(raw, level, prefix, out)
        return out

    def block(self, level: str, raw: dict, where: str, top: dict) -> dict:
        """An option block, key by key: null entries are unset, an alias sets its canonical name (in the block, or an
        option in `top`: trl.beta is rl_beta), catalogued keys are said or refused as at the top level. Returned for
        the schema: in a field's free-form block (fsdp_config, peft, a custom type) every other key, nested blocks
        (peft.loftq_config) walked the same way; in trl:/vllm: (dumped by Axolotl with every default) only the
        block's own fields, any other key being unknown."""
        checked, kept = level in cat.CHECKED_BLOCKS, {}
        for key, value in raw.items():
            path = f"{where}.{key}"
            entry = cat.lookup(level, key)
            if value is None:
                self.note(path, EMPTY)
            elif checked and key in self.fields.get(level, ()):
                kept[key] = value
            elif entry is None and checked:
                self.unknown(key, level, path)
            elif entry is None:
                nested = isinstance(value, dict) and level != "type"
                kept[key] = self.block(f"{level}.{key}", value, path, top) if nested else value
            elif entry.status == ALIAS and entry.canonical.startswith(level + "."):
                canonical = entry.canonical.removeprefix(level + ".")
                if canonical in kept and kept[canonical] != value:
                    self.problem(path, f"conflicts with {where}.{canonical}", "keep one")
                kept[canonical] = value
                self.note(path, ALIAS, f"-> {where}.{canonical}")
            else:
                self.catalogued(entry, value, path, top, raw)
        return kept

    # ------------------------------------------------------------ catalogued (non-field) keys
    def catalogued(self, entry: cat.Entry, value, where: str, out: dict, raw: dict) -> None:
        if entry.status == ALIAS:
            self.alias(entry, value, where, out, raw)
        elif entry.name in cat.CHECKED_BLOCKS and entry.level == "top" and isinstance(value, dict):
            self.block(entry.name, value, where, out)  # vllm: each key says what it is
        elif entry.status in LABELS:
            if entry.name == "plugins" and entry.level == "top":
                for i, plugin in enumerate(value if isinstance(value, list) else [value]):
                    status, why = cat.plugin_status(str(plugin))
                    if status == REFUSED:
                        self.refuse(f"{where}.{i}", f"plugin {plugin}: {why}", None)
            self.note(where, IGNORED, LABELS[entry.status] + entry.why)
        elif entry.default is not cat.NO_DEFAULT and _same(value, entry.default):
            self.note(where, IGNORED, f"Axolotl's default ({value!r}): the feature is off")
        elif value in (False, [], {}) and entry.default in (cat.NO_DEFAULT, None):
            self.note(where, IGNORED, "off")
        else:
            self.refuse(where, entry.why, entry.nearest)

    def alias(self, entry: cat.Entry, value, where: str, out: dict, raw: dict) -> None:
        try:
            value = entry.convert(value, raw) if entry.convert else value
        except Unconvertible as e:
            self.problem(where, e.problem, e.fix)
            return
        if entry.canonical == "chat_template" and value is not None:
            value = self.jinja_text(value, where)
        self.note(where, ALIAS, f"-> {entry.canonical}" + (f" ({entry.why})" if entry.convert else ""))
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
        full = where.rsplit(".", 1)[0] + "." + entry.canonical if entry.level in ("dataset", "pretraining_dataset") else entry.canonical
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
    """The raw recipe data -> Migration (clean data for the schema, the report, problems found on the way).

    fields: the names of ftkit's recipe fields per level, {"top": ..., "dataset": ..., "type": ...}."""
    walker = _Walker(fields, file, lines or {}, Path(file).resolve().parent if file else None)
    walker.mapping(raw, "top", "", walker.m.data)
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
