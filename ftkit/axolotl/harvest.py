"""Maintainer tool: every option name Axolotl shipped, with the releases that shipped it, read from its git history.

    python -m ftkit.axolotl.harvest PATH/TO/axolotl[.git] > ftkit/axolotl/harvested_names.txt

PATH is a local clone (bare or not); nothing else is read and nothing is fetched. A snapshot is every release
tag from v0.3.0 (2023-09) on, plus main at the start of each month with no release, so names that lived
only between releases (the pydantic schema arrived on main in 2024-02, ten months before v0.5.0) count too.
In each snapshot the names come from:

- the pydantic schema (src/axolotl/utils/config/models/input/v0_4_1/, later src/axolotl/utils/schemas/, and
  the plugins' integrations/*/args.py), walked from the root config class: a nested model's fields get the
  level of the field holding it (datasets -> dataset, trl -> trl, peft.loftq_config ...);
- the full option listing in the docs (README.md "All yaml options" in 2023, docs/config.qmd later);
- before the schema existed, the names the code reads: cfg.NAME, cfg.get("NAME"), cfg["NAME"].

Output: one line per name, `LEVEL NAME SHIPPED`, e.g. `top eval_table_max_new_tokens v0.3.0-main@2024-02`.
`--update ftkit/axolotl/catalogue.yaml` also rewrites the `shipped:` of every catalogue entry in place. Not run
by the tests: they check that every name of the list it wrote has a status.
"""
from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

FIRST_TAG = (0, 3, 0)
SCHEMA_DIRS = ("src/axolotl/utils/config/models/input/v0_4_1/", "src/axolotl/utils/schemas/")
ROOTS = ("AxolotlConfigWCapabilities", "AxolotlInputConfig")
DOC_LISTINGS = ("docs/config.qmd", "README.md")
# free-form mappings in the docs' listings: their keys are values, not options
FREE_FORM = {"model_config", "overrides_of_model_config", "model_kwargs", "bnb_config_kwargs", "lr_scheduler_kwargs",
             "optim_args", "deepspeed", "gradient_checkpointing_kwargs", "roles", "tokenizer_kwargs", "processor_kwargs",
             "generation_kwargs", "chat_template_kwargs", "loss_fn_config", "resources_per_worker", "lora_target_modules",
             "peft_layer_replication", "dataset_kwargs", "fsdp", "torch_compile_options", "flex_attn_compile_kwargs",
             "model_quantization_config_kwargs", "dion_lr", "additional_special_tokens",
             "message_property_mappings", "rope_scaling"}
CODE_NAME = re.compile(r"\bcfg(?:\.get\(\s*[\"']|\[\s*[\"']|\.)([a-z][a-z0-9_]*)")
NOT_NAMES = {"get", "keys", "items", "values", "update", "pop", "setdefault", "to_dict", "copy"}


class Repo:
    """Read-only access to one Axolotl clone through git (bare or with a work tree)."""

    def __init__(self, path: str):
        self.git = ["git", f"--git-dir={self._git_dir(Path(path))}"]

    @staticmethod
    def _git_dir(path: Path) -> Path:
        return path / ".git" if (path / ".git").exists() else path

    def run(self, *args: str) -> str:
        return subprocess.run([*self.git, *args], capture_output=True, text=True, check=True).stdout

    def files(self, rev: str) -> list[str]:
        return self.run("ls-tree", "-r", "--name-only", rev).splitlines()

    def show(self, rev: str, path: str) -> str:
        return self.run("show", f"{rev}:{path}")


def snapshots(repo: Repo) -> list[tuple[str, str]]:
    """(label, revision), oldest first: release tags from v0.3.0, and main once a month without a release."""
    tags = []
    for tag in repo.run("tag").split():
        m = re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)", tag)  # x.y.z only: .post releases repeat their release
        if m and tuple(map(int, m.groups())) >= FIRST_TAG:
            tags.append((repo.run("log", "-1", "--format=%cs", tag).strip(), tag))
    tags.sort()
    months_with_tag = {date[:7] for date, _ in tags}
    first_month = tags[0][0][:7]
    monthly: dict[str, str] = {}
    for line in repo.run("log", "--first-parent", "--format=%cs %H", "main").splitlines():
        date, sha = line.split()
        if date[:7] >= first_month and date[:7] not in months_with_tag and date <= tags[-1][0]:
            monthly[date[:7]] = (date, sha)  # oldest commit of the month wins (log is newest first)
    out = [(date, tag, tag) for date, tag in tags] + [(d, f"main@{m}", sha) for m, (d, sha) in monthly.items()]
    return [(label, rev) for _, label, rev in sorted(out)]


# ---------------------------------------------------------------- the pydantic schema

def _field_names(node: ast.AnnAssign) -> list[str]:
    """The names a field is written with: its own, and any alias / AliasChoices given to Field()."""
    names = [node.target.id]
    if isinstance(node.value, ast.Call):
        for kw in node.value.keywords:
            if kw.arg in ("alias", "validation_alias"):
                names += [c.value for c in ast.walk(kw.value) if isinstance(c, ast.Constant) and isinstance(c.value, str)]
    return names


def _classes(sources: list[str]) -> dict[str, dict]:
    """Every class with annotated fields: name -> {bases, fields: [(names, annotation text)]}."""
    out = {}
    for text in sources:
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.ClassDef):
                continue
            bases = [ast.unparse(b).split(".")[-1] for b in node.bases]
            if any("Enum" in b for b in bases):
                continue
            fields = [(_field_names(st), ast.unparse(st.annotation)) for st in node.body
                      if isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name)
                      and not st.target.id.startswith("_") and "ClassVar" not in ast.unparse(st.annotation)]
            out[node.name] = {"bases": bases, "fields": fields}
    return out


def _walk(classes: dict, cls: str, level: str, names: set, seen: set) -> None:
    if (cls, level) in seen or cls not in classes:
        return
    seen.add((cls, level))
    for base in classes[cls]["bases"]:
        _walk(classes, base, level, names, seen)
    for field_names, annotation in classes[cls]["fields"]:
        for name in field_names:
            names.add((level, name))
        nested = [c for c in re.findall(r"[A-Za-z_]\w*", annotation) if c in classes]
        field = field_names[0]
        child = "dataset" if field in ("datasets", "test_datasets") and level == "top" else \
            field if level in ("top", "dataset") else f"{level}.{field}"
        for c in nested:
            _walk(classes, c, child, names, seen)


def schema_names(repo: Repo, rev: str, files: list[str]) -> set[tuple[str, str]]:
    schema = [f for f in files if f.startswith(SCHEMA_DIRS) and f.endswith(".py")]
    if not schema:
        return set()
    classes = _classes([repo.show(rev, f) for f in schema])
    root = next((r for r in ROOTS if r in classes), None)
    names: set = set()
    seen: set = set()
    if root:
        _walk(classes, root, "top", names, seen)
    for f in files:  # each plugin's input args are merged into the root config
        if re.fullmatch(r"src/axolotl/integrations/[^/]+/args\.py", f):
            plugin = _classes([repo.show(rev, f)])
            nested = {c for spec in plugin.values() for _, ann in spec["fields"] for c in re.findall(r"\w+", ann)}
            merged = {**classes, **plugin}
            for cls in plugin:
                if cls not in nested and "BaseModel" in plugin[cls]["bases"]:
                    _walk(merged, cls, "top", names, seen)
    return names


# ---------------------------------------------------------------- the docs' listings and the code

def listing_names(text: str) -> set[tuple[str, str]]:
    """Keys of the YAML listing (README's "All yaml options" block, docs/config.qmd's), with their nesting level."""
    if "All yaml options" in text:
        text = text.split("All yaml options", 1)[1]
    elif "title: Config options" not in text:
        return set()
    block = re.search(r"```yaml\n(.*?)```", text, flags=re.S)
    names: set = set()
    stack: list[tuple[int, str]] = []  # (indent, key) of the mappings above the current line
    scalar_indent = None  # inside a block scalar (format: |-): its lines are text, not keys
    for line in (block.group(1) if block else "").splitlines():
        m = re.match(r"^(\s*)(- )?([A-Za-z_][A-Za-z0-9_]*):(\s|$)", line)
        indent = len(line) - len(line.lstrip())
        if scalar_indent is not None and (indent > scalar_indent or not line.strip()):
            continue
        scalar_indent = None
        if not m:
            continue
        indent += 2 if m.group(2) else 0
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = [k for _, k in stack]
        stack.append((indent, m.group(3)))
        if re.search(r":\s*[|>][-+]?\s*(#.*)?$", line):
            scalar_indent = indent
        if any(p in FREE_FORM for p in path):
            continue
        if not path:
            level = "top"
        elif path[0] in ("datasets", "test_datasets"):
            level = "dataset" if len(path) == 1 else ".".join(path[1:])
        else:
            level = ".".join(path)
        names.add((level, m.group(3)))
    return names


def code_names(repo: Repo, rev: str, files: list[str]) -> set[tuple[str, str]]:
    """Before the schema: the top-level names Axolotl's code reads from its config."""
    found = set()
    for f in files:
        if f.endswith(".py") and f.startswith(("src/axolotl/", "scripts/")):
            found |= {("top", n) for n in CODE_NAME.findall(repo.show(rev, f)) if n not in NOT_NAMES}
    return found


def harvest(repo: Repo) -> tuple[list[str], dict[tuple[str, str], list[str]]]:
    """(snapshot labels, (level, name) -> the labels that shipped it)."""
    labels, shipped = [], defaultdict(list)
    for label, rev in snapshots(repo):
        files = repo.files(rev)
        names = schema_names(repo, rev, files)
        if not names:
            names = code_names(repo, rev, files)
        for doc in DOC_LISTINGS:
            if doc in files:
                names |= listing_names(repo.show(rev, doc))
        labels.append(label)
        for key in names:
            shipped[key].append(label)
        print(f"{label}: {len(names)} names", file=sys.stderr)
    return labels, shipped


def ranges(present: list[str], labels: list[str]) -> str:
    """['v0.3.0', 'main@2023-10', 'v0.4.0'] of all labels -> 'v0.3.0-v0.4.0' (gaps give several ranges)."""
    index = {label: i for i, label in enumerate(labels)}
    runs: list[list[str]] = []
    for label in present:
        if runs and index[label] == index[runs[-1][-1]] + 1:
            runs[-1].append(label)
        else:
            runs.append([label])
    return ",".join(r[0] if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


def update_catalogue(path: Path, shipped: dict[tuple[str, str], str]) -> list[tuple[str, str]]:
    """Rewrite `shipped:` of each `name: {...}` entry line under its level; the harvested (level, name) absent."""
    lines, level, present = path.read_text().splitlines(), None, set()
    for i, line in enumerate(lines):
        head = re.match(r"^  ([\w.]+):\s*$", line)
        entry = re.match(r"^    ([\w]+): \{(.*)\}\s*$", line)
        if head:
            level = head.group(1)
        elif entry and level:
            key = (level, entry.group(1))
            present.add(key)
            body = re.sub(r',?\s*shipped: (".*?"|[^,}]*)', "", entry.group(2))
            if key in shipped:
                body += f', shipped: "{shipped[key]}"'
            lines[i] = f"    {entry.group(1)}: {{{body.lstrip(', ')}}}"
    path.write_text("\n".join(lines) + "\n")
    return sorted(set(shipped) - present)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("axolotl", help="a local Axolotl clone (bare or not)")
    p.add_argument("--update", type=Path, help="catalogue.yaml whose shipped: fields to rewrite")
    args = p.parse_args(argv)
    labels, found = harvest(Repo(args.axolotl))
    shipped = {key: ranges(present, labels) for key, present in found.items()}
    print(f"# Every option name Axolotl shipped, {labels[0]} .. {labels[-1]}: LEVEL NAME SHIPPED (snapshots: release tags, "
          "and main@YYYY-MM in months without a release).\n# Written by `python -m ftkit.axolotl.harvest AXOLOTL_CLONE`; "
          "do not edit. tests/test_axolotl_options.py checks that each has a status.")
    for (level, name) in sorted(shipped, key=lambda k: (k[0] != "top", k[0] != "dataset", k)):
        print(level, name, shipped[(level, name)])
    if args.update:
        absent = update_catalogue(args.update, shipped)
        print(f"{len(absent)} harvested names are not in {args.update}: recipe fields and their keys, or new names "
              "that need an entry (tests/test_axolotl_options.py names those)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
