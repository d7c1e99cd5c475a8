"""Reading a recipe: YAML -> `--key=value` overrides -> validation, every problem with file, line, key and fix."""
from __future__ import annotations

import copy
import types
import typing
from pathlib import Path
from typing import Any, Union

import yaml
from pydantic import BaseModel, ValidationError

from ftkit.axolotl import NOTE, Migration, migrate
from ftkit.axolotl import catalogue as cat
from ftkit.errors import ConfigError, Problem
from ftkit.recipe.base import ProblemsError
from ftkit.recipe.notes import add_notes
from ftkit.recipe.schema import DatasetSpec, PretrainingDataset, Recipe, TRLBlock, UserDefinedFormat


# A real recipe holds a few hundred values; YAML aliases can make 300 bytes expand to billions (an alias bomb).
MAX_VALUES = 100_000


def _value(node):
    """The Python value of one YAML node (to compare two writings of a key); a copy, as merge keys rewrite nodes."""
    return yaml.SafeLoader("").construct_object(copy.deepcopy(node), deep=True)


def _same_in_effect(key: str, first, last) -> str | None:
    """How two writings of one key train the same, or None: equal values, an empty first one (YAML keeps the last),
    or an empty last one (the option's default, then) after the default written out (`lora_fan_in_fan_out: false`
    and, further down, `lora_fan_in_fan_out:`)."""
    if first == last:
        return "the same value"
    if first is None:
        return "the first one empty (the second is kept)"
    field = Recipe.model_fields.get(key) if last is None else None
    if field is not None and not field.is_required() and field.get_default(call_default_factory=True) == first:
        return f"the default ({first!r}) and then empty (the default again)"
    return None


def _yaml_tree(root, file: str) -> tuple[dict[str, int], list[Problem], list[Problem]]:
    """The line of every dotted key path (for messages), and what only the node tree shows: a key written twice in
    one mapping, which YAML keeps the last of silently (with two values: a problem; with the same value twice: a
    note). Aliases are sized first, each node counted once, and a recipe that expands to more than MAX_VALUES
    values is refused before anything walks it expanded."""
    sizes: dict[int, int] = {}

    def size(node) -> int:  # values after alias expansion, each distinct node computed once
        if id(node) not in sizes:
            sizes[id(node)] = 1
            children = ([n for kv in node.value for n in kv] if isinstance(node, yaml.MappingNode) else
                        node.value if isinstance(node, yaml.SequenceNode) else [])
            sizes[id(node)] = 1 + sum(size(c) for c in children)
        return sizes[id(node)]

    if root is not None and (total := size(root)) > MAX_VALUES:
        raise ConfigError(Problem(f"the recipe expands to {total:,} values through YAML aliases (*name), more than "
                                  f"any recipe holds ({MAX_VALUES:,}): an alias bomb, or aliases nested by mistake",
                                  file, fix="write the values out, or use each alias at most a few times"))
    lines: dict[str, int] = {}
    problems, notes, seen_mappings = [], [], set()  # seen: a mapping reused through an alias is checked once

    def walk(node, prefix):
        if isinstance(node, yaml.MappingNode):
            first_time = id(node) not in seen_mappings
            seen_mappings.add(id(node))
            where: dict[str, tuple[int, yaml.Node]] = {}
            for k, v in node.value:
                key, line = f"{prefix}{k.value}", k.start_mark.line + 1
                if first_time and isinstance(k, yaml.ScalarNode) and k.value != "<<":
                    if k.value in where and (same := _same_in_effect(key, _value(where[k.value][1]), _value(v))):
                        notes.append(Problem(f"written twice with {same}, lines {where[k.value][0]} and {line}",
                                             file, key, line, "keep one of them"))
                    elif k.value in where:
                        problems.append(Problem(f"written twice in one mapping (lines {where[k.value][0]} and {line}); "
                                                "YAML would keep the last value silently", file, key, line,
                                                "keep one of them"))
                    where.setdefault(k.value, (line, v))
                lines.setdefault(key, line)
                walk(v, key + ".")
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                lines.setdefault(f"{prefix}{i}", v.start_mark.line + 1)
                walk(v, f"{prefix}{i}.")

    walk(root, "")
    return lines, problems, notes


def _field_at(path, into_direct_models: bool = True):
    """The schema field a key path names (list indices skipped): the field itself, or, for a path inside a field that
    holds no option model (a mapping, a list of strings), that field."""
    model, field = Recipe, None
    for part in path:
        if isinstance(part, int) or str(part).isdigit() or model is None:
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        args = typing.get_args(field.annotation)
        nested = [x for a in args for x in typing.get_args(a)]
        types_ = [*([field.annotation] if into_direct_models else []), *args, *nested]
        model = next((a for a in types_ if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return field


def _validation_problems(err: ValidationError, file: str | None, lines: dict[str, int],
                         origin: dict[str, str]) -> list[Problem]:
    """pydantic's errors as Problems; a validator's own Problems come through whole (pydantic keeps the exception)."""
    def line(where):
        return lines.get(origin.get(where, where))

    out = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
        where = ".".join(str(p) for p in loc)
        found = (e.get("ctx") or {}).get("error")
        if isinstance(found, ProblemsError):
            for p in found.problems:
                key = f"{where}.{p.where}" if where and p.where else (p.where or where)
                out.append(Problem(p.problem, file, origin.get(key, key), line(key), p.fix))
            continue
        hint = getattr(_field_at(loc, into_direct_models=False), "description", None) or ""  # what it expects
        if e["type"] == "missing":
            out.append(Problem("required option is missing", file, where, None, f"add `{loc[-1]}:` ({hint})"))
            continue
        got = e.get("input")
        got_s = f" (got {got!r})" if not isinstance(got, (dict, list)) else ""
        out.append(Problem(f"{e['msg'].lower()}{got_s}", file, origin.get(where, where), line(where),
                           f"expected: {hint}" if hint else "see `ftkit options`"))
    return out


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """`["--lora_r=16", "--datasets.0.path=x.jsonl"]` -> {"lora_r": "16", "datasets.0.path": "x.jsonl"} (raw)."""
    out = {}
    for arg in args:
        if not arg.startswith("--") or "=" not in arg:
            raise ConfigError(Problem(f"cannot read override {arg!r}", where="command line",
                                      fix="write overrides as --key=value, e.g. --lora_r=16 or --datasets.0.path=my.jsonl"))
        key, value = arg[2:].split("=", 1)
        out[key.replace("-", "_") if "." not in key else key] = value
    return out


def _is_str_field(path: list[str]) -> bool:
    """True when the schema types this dotted path as a plain string (keep the raw text, don't YAML-parse);
    Optional/Union unwrapped only: list[str] is a list, not a string (--eval_prompts=[] must parse)."""
    ann = getattr(_field_at(path), "annotation", None)
    if typing.get_origin(ann) in (Union, types.UnionType):
        return [a for a in typing.get_args(ann) if a is not type(None)] == [str]
    return ann is str


def apply_overrides(data: dict, overrides: dict[str, Any]) -> dict:
    """Set dotted paths in the raw recipe data; values are typed by the schema (YAML scalars otherwise). An index
    one past the end of a list appends an entry (--datasets.1.path=...); an empty key (`fsdp_config:` left blank)
    takes its first entry."""
    for dotted, raw in overrides.items():
        path, value = dotted.split("."), raw
        if isinstance(raw, str) and not _is_str_field(path):
            try:
                value = yaml.safe_load(raw) if raw != "" else None
            except yaml.YAMLError:
                value = raw
        node: Any = data
        for i, part in enumerate(path):
            last = i == len(path) - 1
            new = value if last else [] if path[i + 1].isdigit() else {}
            if part.isdigit() and isinstance(node, list):
                if int(part) > len(node):
                    raise ConfigError(Problem(f"index {part} is past the end ({len(node)} entries)", where=dotted,
                                              fix=f"use an index up to {len(node)}"
                                                  + ("" if last else " (that many appends a new entry)")))
                if int(part) == len(node):
                    node.append(new)
                elif last:
                    node[int(part)] = value
                node = node[int(part)]
            elif not isinstance(node, dict):
                raise ConfigError(Problem("cannot set a key inside a non-mapping value", where=dotted,
                                          fix="check the dotted path"))
            else:
                if last or node.get(part) is None:
                    node[part] = new
                node = node[part]
    return data


def _read_text(path: Path, file: str) -> str:
    """The recipe's text; an unreadable or non-UTF-8 file is a ConfigError naming it (and the line), not a traceback."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(Problem(f"cannot read the recipe file ({e.strerror})", file,
                                  fix=f"make it readable (chmod u+r {file}) or copy it somewhere you can read")
                          ) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(Problem(f"not UTF-8 text (byte {raw[e.start]:#x})", file, line=raw[:e.start].count(b"\n") + 1,
                                  fix="re-save the file as UTF-8")) from None


def _parse(text: str, file: str) -> tuple[Any, dict[str, int], list[Problem], list[Problem]]:
    """(data, the lines of its keys, problems, notes) of the recipe's YAML text, parsed once: the node tree is walked
    before the data is built from it (building rewrites merge keys `<<` in the nodes)."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        lines, problems, notes = _yaml_tree(root, file)
        return (None if root is None else loader.construct_document(root)), lines, problems, notes
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise ConfigError(Problem(f"not valid YAML ({getattr(e, 'problem', e)})", file,
                                  line=mark.line + 1 if mark else None,
                                  fix="fix the indentation or quoting on that line")) from None
    except RecursionError:
        raise ConfigError(Problem("not valid YAML for a recipe: values nested hundreds of levels deep", file,
                                  fix="a recipe nests a few levels (datasets: - path: ...)")) from None
    finally:
        loader.dispose()


def _read(source: str | Path | dict, overrides) -> tuple[dict, str | None, dict[str, int], list, list]:
    """(raw data with overrides applied, file, the file's line of each key not overridden, problems and notes of the
    YAML) of a recipe file or dict."""
    file, lines, problems, notes = None, {}, [], []
    if isinstance(source, dict):
        data = dict(source)
    else:
        file = str(source)
        if not Path(source).is_file():
            raise ConfigError(Problem("recipe file not found", file, fix="check the path (recipes live under recipes/)"))
        data, lines, problems, notes = _parse(_read_text(Path(source), file), file)
        if data is None:
            raise ConfigError(Problem("the recipe file is empty (no option: value lines, only blanks or comments)",
                                      file, fix="start from recipes/quickstart.yml (`ftkit fetch examples` copies it): "
                                                "base_model, datasets and output_dir at least"))
        if not isinstance(data, dict):
            raise ConfigError(Problem("a recipe must be a mapping of option: value", file,
                                      fix="start from recipes/quickstart.yml"))
    overrides = parse_overrides(overrides) if isinstance(overrides, list) else overrides or {}
    for dotted in overrides:  # a value set on the command line is not the one on the file's line
        lines = {k: v for k, v in lines.items() if k != dotted and not k.startswith(dotted + ".")}
    return apply_overrides(data, overrides), file, lines, problems, notes


def recipe_fields() -> dict[str, set[str]]:
    """The names that are recipe fields, per level (nested levels: the keys of a field's option block): the names
    the Axolotl door hands to the schema, and those `ftkit options` counts as implemented."""
    return {**{level: set(keys) for level, keys in cat.NESTED_FIELDS.items()}, "top": set(Recipe.model_fields),
            "dataset": set(DatasetSpec.model_fields), "type": set(UserDefinedFormat.model_fields),
            "trl": set(TRLBlock.model_fields), "pretraining_dataset": set(PretrainingDataset.model_fields)}


def inspect_recipe(source: str | Path | dict, overrides: dict[str, Any] | list[str] | None = None
                   ) -> tuple[Recipe | None, Migration, list[Problem]]:
    """(recipe or None, what was done with each key, every problem): `ftkit check` shows all three."""
    data, file, lines, yaml_problems, yaml_notes = _read(source, overrides)
    migration = migrate(data, recipe_fields(), file, lines)
    for note in yaml_notes:  # reported with the keys, not an error: the value is the same either way
        migration.report.add(note.where, NOTE, note.problem, note.line)
    problems = yaml_problems + list(migration.problems)
    if migration.data.get("load_in_4bit") and migration.data.get("adapter") == "lora":
        migration.data["load_in_4bit"] = False  # Axolotl (v0.13 on) builds no 4-bit config for adapter: lora
        migration.report.add("load_in_4bit", NOTE, "with adapter: lora the base loads unquantized, as Axolotl (v0.13 on) "
                                                   "loads it; for a 4-bit base write adapter: qlora", lines.get("load_in_4bit"))
    try:
        recipe = Recipe.model_validate({**migration.data, "source": file})
    except ValidationError as err:
        refused = {p.where for p in migration.problems}  # a refused value is reported once, not again by the schema
        problems += [p for p in _validation_problems(err, file, lines, migration.origin) if p.where not in refused]
        return None, migration, problems
    add_notes(recipe, migration.report)
    recipe._report = migration.report
    return (None if problems else recipe), migration, problems


def load_recipe(source: str | Path | dict, overrides: dict[str, Any] | list[str] | None = None) -> Recipe:
    """Read, override and validate a recipe; every problem is reported at once with file, key, line and fix.

    An empty value means "not set" (the default) at every level; Axolotl's other names, speed-only and
    refused options are handled as ftkit/axolotl/catalogue.yaml says (recipe.report tells what was done with each key).
    """
    recipe, _, problems = inspect_recipe(source, overrides)
    if problems:
        raise ConfigError(problems)
    return recipe
