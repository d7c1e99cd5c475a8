"""ftkit online, as transformers is: a hub model downloads with nothing set by hand, and every way it can fail says
what to do. The hub is a stand-in on 127.0.0.1 (tests/hub_standin.py) serving the tiny Llama twin as
`some-org/some-model`, a gated repo and nothing else: the suite stays offline (loopback only)."""
from __future__ import annotations

import subprocess

import pytest

from hub_standin import HubStandin, online_env, workspace

# the README's real-model command, model swapped for the stand-in's (the README test runs it unchanged)
TRAIN = "ftkit train recipes/llama/lora.yml"
SHORT = "--max_steps=2 --val_set_size=0 --eval_prompts=[] --logging_steps=1"


@pytest.fixture(scope="module")
def hub(tiny_llama_dir):
    with HubStandin({"some-org/some-model": tiny_llama_dir}, gated={"some-org/gated-model"}) as standin:
        yield standin


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return workspace(tmp_path_factory.mktemp("ws"))


def sh(command: str, env: dict, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, cwd=cwd, env=env, timeout=900)


def test_a_hub_model_downloads_and_trains_with_nothing_set(hub, ws, tmp_path):
    hub.requests.clear()
    hf_home = tmp_path / "hf"
    proc = sh(f"{TRAIN} --base_model=some-org/some-model --output_dir=outputs/online {SHORT}",
              online_env(hub.url, hf_home, FTKIT_THREADS="1"), ws)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    fetched = {path.rsplit("/", 1)[-1] for method, path in hub.requests
               if method == "GET" and path.startswith("/some-org/some-model/resolve/")}
    assert {"model.safetensors", "tokenizer.json", "config.json"} <= fetched, fetched
    cached = hf_home / "hub" / "models--some-org--some-model" / "snapshots"
    assert [p.name for p in cached.glob("*/model.safetensors")], "the download is in the fresh HF_HOME's cache"
    out = ws / "outputs" / "online"
    assert (out / "adapter_model.safetensors").stat().st_size > 0 and (out / "adapter_config.json").is_file()
    assert "base_model: some-org/some-model" in (out / "recipe.yml").read_text()
    assert "torch threads: 1 (FTKIT_THREADS=1)" in proc.stdout


def test_hf_download_then_offline_uses_the_cache(hub, ws, tmp_path):
    """The hint for a machine without network: `hf download` where there is one, then HF_HUB_OFFLINE=1."""
    env = online_env(hub.url, tmp_path / "hf")
    got = sh("hf download some-org/some-model", env, ws)
    assert got.returncode == 0, got.stderr[-2000:]
    hub.requests.clear()
    proc = sh(f"{TRAIN} --base_model=some-org/some-model --output_dir=outputs/cached {SHORT}",
              {**env, "HF_HUB_OFFLINE": "1"}, ws)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert hub.requests == [], "offline: the run read the cache only"
    assert (ws / "outputs" / "cached" / "adapter_model.safetensors").is_file()


def _fails(command: str, env: dict, cwd) -> str:
    proc = sh(command, env, cwd)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc.stderr


def _base_model_line(ws) -> int:
    lines = (ws / "recipes" / "llama" / "lora.yml").read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.startswith("base_model:"))


def test_a_gated_model_says_how_to_get_access(hub, ws, tmp_path):
    err = _fails(f"{TRAIN} --base_model=some-org/gated-model", online_env(hub.url, tmp_path / "hf"), ws)
    where = "recipes/llama/lora.yml: base_model:"  # set on the command line: no recipe line holds that name
    assert f"ftkit: error: {where} some-org/gated-model is a gated model" in err
    assert f"request access at {hub.url}/some-org/gated-model" in err and "`hf auth login`" in err


def test_a_missing_model_points_at_the_recipe_line(hub, ws, tmp_path):
    """A misspelt name written in the recipe: the error points at its line."""
    text = (ws / "recipes" / "llama" / "lora.yml").read_text()
    recipe = ws / "recipes" / "llama" / "misspelt.yml"
    recipe.write_text("\n".join("base_model: some-org/no-such-model" if line.startswith("base_model:") else line
                                for line in text.splitlines()) + "\n")
    err = _fails(f"ftkit train {recipe.relative_to(ws)}", online_env(hub.url, tmp_path / "hf"), ws)
    where = f"recipes/llama/misspelt.yml:{_base_model_line(ws)}: base_model:"
    assert f"{where} no model 'some-org/no-such-model' on the hub" in err
    assert "check the spelling" in err and "hf auth login" in err


def test_offline_without_the_model_names_the_variable(hub, ws, tmp_path):
    hub.requests.clear()
    err = _fails(f"{TRAIN} --base_model=some-org/some-model",
                 online_env(hub.url, tmp_path / "hf", HF_HUB_OFFLINE="1"), ws)
    assert "some-org/some-model is not in the local hub cache, and HF_HUB_OFFLINE=1 switches downloads off" in err
    assert "`unset HF_HUB_OFFLINE`" in err and "`hf download some-org/some-model`" in err
    assert hub.requests == []


def test_no_network_says_so_and_how_to_carry_the_model_over(monkeypatch):
    """The chain transformers raises when the hub cannot be reached (its OSError over huggingface_hub's
    LocalEntryNotFoundError over httpx's ConnectError). Built here rather than run: against a dead port
    huggingface_hub retries each file for about 23 s before giving up (measured: `ftkit train` ended after 79 s
    with this message)."""
    import httpx
    from huggingface_hub.errors import LocalEntryNotFoundError

    from ftkit.models.hub_access import hub_problem

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    try:
        try:
            try:
                raise httpx.ConnectError("[Errno 111] Connection refused")
            except httpx.ConnectError as refused:
                raise LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub") from refused
        except LocalEntryNotFoundError as missing:
            raise OSError("We couldn't connect to 'https://huggingface.co' to load the files") from missing
    except OSError as error:
        problem = hub_problem("some-org/some-model", "tokenizer", error, "r.yml", "base_model", 3)
    text = str(problem)
    assert text.startswith("r.yml:3: base_model: cannot reach the hub to download tokenizer some-org/some-model "
                           "([Errno 111] Connection refused)"), text
    assert "`hf download some-org/some-model` on a machine that has it" in text and "HF_HUB_OFFLINE=1" in text


def test_twins_never_touch_the_network(hub, ws, tmp_path):
    hub.requests.clear()
    proc = sh(f"ftkit train recipes/quickstart.yml --output_dir=outputs/twin {SHORT}",
              online_env(hub.url, tmp_path / "hf"), ws)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert hub.requests == [], "a tiny twin run asked the hub for something"
