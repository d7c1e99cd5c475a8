"""Axolotl configs from the wild (tests/wild_configs/: 54 files people wrote for their own runs, SOURCES.md says
where each comes from) run as written, with only the model and the data swapped (tests/axolotl_corpus.py).

Axolotl's own verdict on each file is stored in tests/wild_configs/axolotl_verdicts.json (tools/axolotl_verdicts.py,
run in Axolotl's venv), so these tests need no Axolotl. A config Axolotl accepts must pass `ftkit check` and train,
or be refused by a feature ftkit lacks (LACKS); one stopped today for a reason being fixed is xfail(strict=True)
with the reason (REFUSED_TODAY, FAILS_IN_TRAIN_TODAY), so it flips when the fix lands. Default run: `ftkit check`
on every config (in-process), the typo guard, a 2-step train of a fast subset. Every config through the CLI,
check then train, one subprocess each (53 min on the shared 2-core machine under load):

    .venv/bin/python -m pytest -m wild tests/test_wild_configs.py
"""
import hashlib
import json
import math
import re
from pathlib import Path

import pytest
import yaml

from axolotl_corpus import WILD, as_cli, run_ftkit, wild_configs, wild_rows, wild_run_overrides
from ftkit import train
from ftkit.errors import ConfigError
from ftkit.recipe import load_recipe
from ftkit.recipe.check import check
from ftkit.plugins.distributed import deepspeed_path

CONFIGS = wild_configs()
VERDICTS = json.loads((WILD / "axolotl_verdicts.json").read_text())
SOURCES = (WILD / "SOURCES.md").read_text()
ACCEPTED = {p.name[:2] for p in CONFIGS if VERDICTS["configs"][p.name]["verdict"] == "accepted"}
# accepted by Axolotl's schema, but its own data loaders have no strategy for a dataset type: `axolotl train` stops
# there too, so ftkit must refuse them by name, not train them
UNLOADABLE = {p.name[:2] for p in CONFIGS if VERDICTS["configs"][p.name].get("loads") is False}

# Configs Axolotl accepts and ftkit refuses for a feature ftkit does not have: number -> (feature, a word every
# problem check reports for it contains). Empty today: every refusal below is one ftkit can lift.
LACKS: dict[str, tuple[str, str]] = {}

_DROPPED = "a key Axolotl's schema does not define (Axolotl drops it without a word)"
# Configs Axolotl accepts that `ftkit check` refuses today, for a reason other helpers are fixing (the unknown-key
# policy, dataset behaviours): number -> the reason (docs/wild-configs.md). xfail(strict=True): they flip when fixed.
REFUSED_TODAY: dict[str, str] = {}  # empty since the door, data and wild-config fixes
# Configs check accepts that do not train today: number -> why (check and train disagree on them).
FAILS_IN_TRAIN_TODAY: dict[str, str] = {}  # empty since configs 33 and 40 train

# Trained 2 steps in the default run (in-process; a few seconds each on an idle machine)
FAST = {"11": "llama, lora, chat_template with field mappings, packing", "19": "qwen2, qlora, completion, packing"}


def _id(path: Path) -> str:
    return path.name[:-4]


def _expect(path: Path, *tables: dict):
    """The config as a pytest param, xfail(strict) when one of `tables` says a known ftkit gap stops it today."""
    reason = next((table[path.name[:2]] for table in tables if path.name[:2] in table), None)
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(path, id=_id(path), marks=marks)


# ---------------------------------------------------------------- the corpus itself

SOURCE_LINE = re.compile(r"# source: github\.com/[\w.-]+/[\w.-]+ \S+ @[0-9a-f]{40}\n")


def test_the_corpus_is_configs_from_many_repositories_kept_byte_for_byte():
    assert len(CONFIGS) >= 40
    repos = set()
    for path in CONFIGS:
        data = path.read_bytes()
        first, body = data[:data.index(b"\n") + 1].decode(), data[data.index(b"\n") + 1:]
        assert SOURCE_LINE.fullmatch(first), path.name
        repos.add(first.split()[2])
        blob = hashlib.sha1(b"blob %d\0" % len(body) + body).hexdigest()  # the file's git id in its repository
        row = next(line for line in SOURCES.splitlines() if line.startswith(f"| {path.name} |"))
        assert f"| {blob} |" in row, f"{path.name} differs from the file at its source commit"
        assert isinstance(yaml.safe_load(body), dict)
    assert len(repos) >= 15
    assert set(VERDICTS["configs"]) == {p.name for p in CONFIGS} and VERDICTS["axolotl_version"]


def test_the_gap_tables_name_configs_axolotl_accepts():
    trainable, broken = ACCEPTED - UNLOADABLE, set(REFUSED_TODAY) | set(FAILS_IN_TRAIN_TODAY)
    assert set(LACKS) <= trainable and broken <= trainable and set(FAST) <= trainable - broken - set(LACKS)
    assert not set(LACKS) & broken and not set(REFUSED_TODAY) & set(FAILS_IN_TRAIN_TODAY)


@pytest.mark.parametrize("spec, rl, keys", [
    ({"type": "chat_template", "field_messages": "conversations",
      "message_property_mappings": {"role": "from", "content": "value"}}, None, {"conversations": ["from", "value"]}),
    ({"type": "sharegpt", "field": "dialog", "field_human": "user"}, None, {"dialog": ["from", "value"]}),
    ({"type": {"field_instruction": "question", "field_output": "answer", "field_system": "sys"}}, None,
     {"question": None, "input": None, "answer": None, "sys": None}),
    ({"type": "oasst"}, None, {"INSTRUCTION": None, "RESPONSE": None}),
    ({"type": "completion", "field": "body"}, None, {"body": None}),
    ({"type": "completion", "field_prompt": "p", "field_chosen": "good", "field_rejected": "bad"}, "dpo",
     {"p": None, "good": None, "bad": None}),
    ({"type": "chatml.intel"}, "dpo", {"system": None, "question": None, "chosen": None, "rejected": None}),
])
def test_rows_take_the_shape_each_dataset_entry_asks_for(spec, rl, keys):
    rows = wild_rows(spec, rl, 200)
    assert len(rows) == 200 and len({json.dumps(r) for r in rows}) == 200  # distinct: no dedup can drop any
    assert set(rows[0]) == set(keys)
    for key, message_keys in keys.items():
        if message_keys:
            assert [set(m) for m in rows[0][key]] == [set(message_keys)] * 2
    if spec.get("field_human"):  # sharegpt's role names as the entry renames them
        assert [m["from"] for m in rows[0]["dialog"]] == ["user", "gpt"]
    if spec.get("message_property_mappings"):  # from/value messages carry sharegpt's role names
        assert [m["from"] for m in rows[0]["conversations"]] == ["human", "gpt"]


# ---------------------------------------------------------------- ftkit check on every config

def _check(path: Path, tmp: Path):
    """What `ftkit check` reports: the recipe's problems, then the DeepSpeed file's (cli._check does both)."""
    _, problems, recipe = check(path, wild_run_overrides(path, tmp))
    if recipe is not None and recipe.deepspeed:
        try:
            deepspeed_path(recipe)
        except ConfigError as e:
            problems, recipe = e.problems, None
    return problems, recipe


@pytest.mark.parametrize("path", [_expect(p, REFUSED_TODAY) for p in CONFIGS if p.name[:2] in ACCEPTED - UNLOADABLE])
def test_check_accepts_what_axolotl_accepts_or_names_the_missing_feature(path, tmp_path):
    problems, recipe = _check(path, tmp_path)
    lacks = LACKS.get(path.name[:2])
    if lacks:
        feature, word = lacks
        assert problems and all(word in str(p) for p in problems), [str(p) for p in problems]
        return
    assert not problems, "\n".join(str(p) for p in problems)
    assert recipe.base_model.startswith("tiny:")


@pytest.mark.parametrize("path", [pytest.param(p, id=_id(p)) for p in CONFIGS if p.name[:2] in UNLOADABLE])
def test_check_refuses_configs_whose_dataset_type_axolotl_cannot_load(path, tmp_path):
    problems, _ = _check(path, tmp_path)
    assert problems and all(p.file == str(path) and p.where and p.fix for p in problems), [str(p) for p in problems]


@pytest.mark.parametrize("path", [pytest.param(p, id=_id(p)) for p in CONFIGS if p.name[:2] not in ACCEPTED])
def test_check_reports_configs_axolotl_refuses_by_file_line_and_key(path, tmp_path):
    """Axolotl refuses these; ftkit may accept them (it is laxer in places), but a refusal names file, line, key."""
    problems, _ = _check(path, tmp_path)
    for p in problems:
        assert p.file == str(path) and p.where and p.fix, str(p)


# ---------------------------------------------------------------- the typo guard holds on wild configs

@pytest.mark.parametrize("typo, key, meant", [("lerning_rate: 0.0001\n", "lerning_rate", "learning_rate"),
                                              ("micro_bach_size: 2\n", "micro_bach_size", "micro_batch_size")])
def test_a_typo_added_to_a_wild_config_is_refused_by_name(typo, key, meant, tmp_path):
    base = next(p for p in CONFIGS if p.name.startswith("10-"))  # a config check accepts as written
    typoed = tmp_path / base.name
    typoed.write_text(base.read_text() + typo)
    problems, _ = _check(typoed, tmp_path)
    assert [p.where for p in problems] == [key] and meant in str(problems[0]), [str(p) for p in problems]


def test_a_typo_in_a_wild_dataset_entry_is_refused_by_name(tmp_path):
    base = next(p for p in CONFIGS if p.name.startswith("11-"))  # chat_template with field_messages: conversations
    typoed = tmp_path / base.name
    typoed.write_text(base.read_text().replace("field_messages:", "feild_messages:", 1))
    problems, _ = _check(typoed, tmp_path)
    assert any(p.where == "datasets.0.feild_messages" for p in problems), [str(p) for p in problems]


# ---------------------------------------------------------------- 2 steps on the twin

@pytest.mark.parametrize("path", [pytest.param(p, id=f"{_id(p)}-{FAST[p.name[:2]]}") for p in CONFIGS
                                  if p.name[:2] in FAST])
def test_fast_subset_trains_two_steps_on_its_twin(path, tmp_path):
    recipe = load_recipe(path, wild_run_overrides(path, tmp_path))
    result = train.run(recipe)
    losses = [v for _, v in getattr(result, "losses", [])] or [h["loss"] for h in getattr(result, "history", [])]
    assert result.steps == 2 and losses and all(math.isfinite(v) for v in losses), result.summary()
    assert (Path(recipe.output_dir) / "recipe.yml").is_file()


def pytest_generate_tests(metafunc):
    """The full set only with -m wild (one subprocess per verb and config, most of an hour); else one skipped stand-in."""
    if "wild_path" not in metafunc.fixturenames:
        return
    if "wild" in (metafunc.config.getoption("markexpr") or ""):
        metafunc.parametrize("wild_path", [_expect(p, REFUSED_TODAY, FAILS_IN_TRAIN_TODAY) for p in CONFIGS])
    else:
        metafunc.parametrize("wild_path", [pytest.param(None, id="all", marks=pytest.mark.skip(
            reason="every wild config through the CLI: pytest -m wild tests/test_wild_configs.py"))])


@pytest.mark.wild
def test_check_and_train_agree_and_axolotl_accepted_configs_train(wild_path, tmp_path):
    """`ftkit check` and `ftkit train` as a user runs them: a config check accepts trains 2 steps; one it refuses,
    train refuses with the same problems. A config Axolotl accepts trains, unless ftkit lacks a named feature."""
    args = as_cli(wild_run_overrides(wild_path, tmp_path))
    checked, trained = run_ftkit("check", wild_path, args), run_ftkit("train", wild_path, args)
    assert checked["traceback"] is None and trained["traceback"] is None, (checked, trained)
    if checked["rc"] == 0:
        assert trained["rc"] == 0 and trained.get("steps") == 2, trained
    else:
        assert trained["rc"] != 0 and trained["problems"] == checked["problems"], (checked, trained)
    if wild_path.name[:2] in ACCEPTED - UNLOADABLE - set(LACKS):
        assert trained.get("steps") == 2, trained
