"""Every command the README shows runs, exactly as written, and the docs' `ftkit` commands parse.

README.md's `bash` blocks run in order in a folder laid out as the repository (recipes/, data_samples/,
notebooks/), online as a user's shell is, against the hub stand-in (tests/hub_standin.py) that serves the tiny
Llama twin as meta-llama/Llama-3.2-1B: the real-model commands download and train by environment only
(HF_ENDPOINT), and the suite stays offline. `make demo` / `make test` run as `make -n` (the test would recurse)
and the demo's own command runs. The few commands that cannot run here are in ALLOWED with the reason; they
still parse, and their programs exist. Every `ftkit` command in docs/*.md parses: its verb, flags, recipe file,
overrides (as recipe options), notebook names and parameters.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT

from hub_standin import HubStandin, online_env, workspace

README = ROOT / "README.md"
REAL_MODEL = "meta-llama/Llama-3.2-1B"  # the README's real base model, served by the stand-in as the tiny twin

# README commands not run here, each with why (they are parsed, and their program is checked, below)
ALLOWED = {
    "hf auth login": "interactive: asks for a token and stores it (its --help runs instead)",
    "ftkit train recipes/llama/lora.yml --num_processes 2": "needs 2 GPUs; tests/test_distributed.py runs the "
                                                            "same launcher with 2 CPU processes",
    "ftkit train recipes/llama/full.yml --num_processes 4 --deepspeed=recipes/deepspeed/zero3.json":
        "needs 4 GPUs; tests/test_distributed.py runs DeepSpeed with 2 CPU processes",
    "ftkit train recipes/llama/lora.yml --hub_model_id=your-name/llama-3.2-1b-alpaca":
        "pushes to a hub account (the stand-in has no upload API); the pre-flight check is tested in "
        "tests/test_axolotl_data.py::test_hub_push_fails_before_training_when_it_cannot_work",
}
# what some commands must print: the README quotes it
EXPECT = {
    "ftkit memory recipes/llama/lora.yml": ["peak 3.324 GB per device"],  # a CPU prints it first, a GPU last
    "ftkit preprocess recipes/quickstart.yml --datasets.0.path=data_samples/chat.jsonl "
    "--datasets.0.type=chat_template --debug": ["2400 rows in, 2400 kept", "--- example 0 (54 tokens",
                                                 "[[The opposite of fast is slow.<|eot_id|>]]"],
}


def bash_commands(path: Path) -> list[str]:
    """The command lines of a markdown file's ```bash blocks (comment lines and blanks left out)."""
    commands, inside = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            inside = line.strip() == "```bash" and not inside
            continue
        if inside and line.strip() and not line.lstrip().startswith("#"):
            commands.append(line.strip())
    return commands


def test_every_readme_command_runs_or_is_allowed_with_a_reason():
    commands = bash_commands(README)
    assert "make demo" in commands and "ftkit train recipes/llama/lora.yml" in commands
    stale = [c for c in ALLOWED if c not in commands]
    assert not stale, f"ALLOWED names commands the README no longer shows: {stale}"
    assert len(ALLOWED) <= 5, "keep the allow-list short: make a command runnable instead"


def test_the_makefile_is_offline_as_the_readme_says():
    text = (ROOT / "Makefile").read_text()
    assert "export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1" in text


@pytest.fixture(scope="module")
def hub(tiny_llama_dir):
    with HubStandin({REAL_MODEL: tiny_llama_dir}, lifetime_s=3600) as standin:
        yield standin


@pytest.fixture(scope="module")
def shell(hub, tmp_path_factory):
    """Runs a command line as a user's bash would, in a workspace, online against the stand-in."""
    ws = workspace(tmp_path_factory.mktemp("readme"))
    env = online_env(hub.url, tmp_path_factory.mktemp("hf_home"))

    def run(command: str, cwd: Path = ws) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", command], capture_output=True, text=True, cwd=cwd, env=env, timeout=1800)

    run.ws = ws
    return run


def _make_n(target: str) -> str:
    """The command `make TARGET` runs after set-up (the last line of `make -n`)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}  # under `make test`
    proc = subprocess.run(["make", "--no-print-directory", "-n", target], capture_output=True, text=True, cwd=ROOT,
                          env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("command", [c for c in bash_commands(README) if c not in ALLOWED])
def test_readme_command_runs_as_written(command, shell, hub):
    if command == "make test":  # running it here would recurse
        assert _make_n("test") == ".venv/bin/python -m pytest -q -ra tests"
        return
    if command == "make demo":  # its set-up is `make setup`, which made this venv; its run:
        command = _make_n("demo").removeprefix(".venv/bin/")
        assert command == "ftkit train recipes/quickstart.yml"
    hub.requests.clear()
    proc = shell(command)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Traceback" not in out, f"{command}\n{out[-4000:]}"
    for text in EXPECT.get(command, []):
        assert text in re.sub(r"[ \t]+", " ", out), f"{command}: {text!r} not in\n{out[-3000:]}"
    if command == "ftkit train recipes/llama/lora.yml":  # the real model, downloaded with nothing set by hand
        got = {p.rsplit("/", 1)[-1] for m, p in hub.requests if m == "GET" and p.startswith(f"/{REAL_MODEL}/resolve/")}
        assert {"config.json", "model.safetensors", "tokenizer.json"} <= got, got
        assert (shell.ws / "outputs" / "llama-lora" / "adapter_model.safetensors").is_file()
        assert re.search(r"torch threads: \d+ \(", out), out[-2000:]


def test_allowed_commands_exist_and_parse():
    """The commands not run still name real programs, verbs, flags, recipes and options."""
    for command in ALLOWED:
        words = shlex.split(command)
        if words[0] == "ftkit":
            _parses(words[1:])
        else:
            proc = subprocess.run([str(Path(__import__("sys").executable).parent / words[0]), *words[1:], "--help"],
                                  capture_output=True, text=True)
            assert proc.returncode == 0, f"{command} --help: {proc.stderr[-500:]}"


def docs_ftkit_commands() -> list[tuple[str, str]]:
    """(page, command) for every `ftkit ...` line in docs/*.md bash blocks (leading VAR=value stripped)."""
    found = []
    for page in sorted((ROOT / "docs").glob("*.md")):
        for line in bash_commands(page):
            line = re.sub(r"\s+#.*$", "", line)
            for part in re.split(r"\s*&&\s*", line):
                words = shlex.split(part)
                while words and re.match(r"^[A-Z_]+=", words[0]):
                    words.pop(0)
                if words[:1] == ["ftkit"]:
                    found.append((page.name, shlex.join(words)))
    return found


@pytest.mark.parametrize("page, command", docs_ftkit_commands())
def test_docs_ftkit_commands_parse(page, command):
    _parses(shlex.split(command)[1:])


def _parses(argv: list[str]) -> None:
    """The CLI's parser takes argv; its recipe exists and the leftover --key=value are recipe options."""
    from ftkit.cli import _parser
    from ftkit.recipe import load_recipe

    try:
        args, extra = _parser().parse_known_args(argv)
    except SystemExit:
        pytest.fail(f"ftkit {' '.join(argv)}: the parser refuses it")
    if args.verb == "notebooks":
        from ftkit.cookbook import runner

        params = runner.parse_params(args.params)
        for name in args.names:
            path = ROOT / "notebooks" / f"{name}.ipynb"
            assert path.is_file(), f"no notebook {name}"
            runner.check_params(path, params)
        return
    recipe = getattr(args, "recipe", None)
    if recipe:
        assert (ROOT / recipe).is_file(), f"ftkit {' '.join(argv)}: no recipe {recipe}"
        load_recipe(ROOT / recipe, extra)  # unknown or mistyped overrides raise ConfigError here
    else:
        assert not extra, f"ftkit {' '.join(argv)}: unknown arguments {extra}"


def test_bench_packing_runs_with_its_default_steps(rows64, tmp_path, said):
    """`ftkit bench packing RECIPE` without --steps (it ended in a TypeError: steps None); too few rows for one
    timed step is an error naming micro_batch_size."""
    from ftkit.cli import main

    common = ["bench", "packing", str(ROOT / "recipes" / "quickstart.yml"), f"--datasets.0.path={rows64[0]['path']}",
              f"--dataset_prepared_path={tmp_path}", "--hidden", "32", "--layers", "1"]
    assert main([*common, "--micro_batch_size=1"]) == 0
    speed = next(line for line in said if line.lstrip().startswith("== training speed"))
    assert "6 steps x 1 packed rows" in speed
    assert any(re.match(r"\s+packed masked\s+[\d,]+ real tokens/s\s+[\d.]+x padded", line) for line in said), said
    assert main([*common, "--micro_batch_size=16"]) == 2  # 64 short rows pack into fewer than 2 x 16 rows


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces -> hyphens."""
    heads = re.findall(r"^#+\s+(.*)$", page.read_text(encoding="utf-8"), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def test_readme_and_docs_links_point_at_files():
    broken = []
    for page in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        for target, anchor in re.findall(r"\]\(([^)#\s]+)(?:#([^)]*))?\)", page.read_text(encoding="utf-8")):
            if re.match(r"^[a-z]+://", target):
                continue
            path = (page.parent / target).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
            elif anchor and path.exists() and anchor not in _anchors(path):
                broken.append(f"{page.relative_to(ROOT)} -> {target}#{anchor}")
    assert not broken, broken
