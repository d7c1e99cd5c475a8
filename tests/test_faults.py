"""Faults that must lose nothing and say what happened: damaged checkpoints, another recipe's checkpoints,
rotation next to a user's folders, and data files that datasets reports badly (file, line, count, fix)."""
from pathlib import Path

import pytest

from ftkit import data
from ftkit.errors import ConfigError, DataError
from ftkit.recipe import load_recipe
from ftkit.train import checkpoint_files as cf
from ftkit.train.checkpoints import latest_complete, resume_from

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- checkpoints

def _checkpoint(out: Path, step: int, recipe) -> Path:
    """A checkpoint as the Trainer leaves it (the files a resume reads), then ftkit's manifest."""
    d = out / f"checkpoint-{step}"
    d.mkdir(parents=True)
    for name, size in (("adapter_model.safetensors", 8192), ("optimizer.pt", 4096), ("scheduler.pt", 64),
                       ("rng_state.pth", 64), ("trainer_state.json", 32)):
        (d / name).write_bytes(bytes(range(256)) * (size // 256))
    cf.write_manifest(d, recipe.dump())
    return d


@pytest.fixture
def auto(make_recipe, tmp_path):
    return make_recipe(output_dir=str(tmp_path / "out"), auto_resume_from_checkpoints=True)


@pytest.mark.parametrize("damage, reason", [
    (lambda d: (d / "optimizer.pt").unlink(), "optimizer.pt is missing"),
    (lambda d: (d / "adapter_model.safetensors").write_bytes(b"\0" * 100), "has 100 bytes, 8192 were written"),
    (lambda d: (d / "ftkit_checkpoint.json").unlink(), "no ftkit_checkpoint.json"),
])
def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(auto, damage, reason, said):
    out = Path(auto.output_dir)
    _checkpoint(out, 2, auto)
    newest = _checkpoint(out, 4, auto)
    damage(newest)
    assert latest_complete(auto) == str(out / "checkpoint-2")
    assert any("skipping" in m and "checkpoint-4" in m and reason in m for m in said), said


def test_zeroed_bytes_inside_the_weights_are_caught_by_the_checksum(auto):
    d = _checkpoint(Path(auto.output_dir), 2, auto)
    weights = d / "adapter_model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[4096:8192] = bytes(4096)  # same size, 4 KB zeroed: only a checksum sees it
    weights.write_bytes(bytes(blob))
    assert cf.problem_with(d) == "adapter_model.safetensors changed since it was written (checksum differs)"
    assert latest_complete(auto) is None


def test_checkpoint_of_another_recipe_is_refused_with_what_changed(make_recipe, tmp_path):
    out = tmp_path / "out"
    _checkpoint(out, 2, make_recipe(output_dir=str(out), learning_rate=2e-4))
    mine = make_recipe(output_dir=str(out), learning_rate=1e-3, auto_resume_from_checkpoints=True)
    with pytest.raises(ConfigError, match=r"checkpoint-2 was written by a different recipe \(learning_rate: 0.0002 -> "
                                          r"0.001\).*Fix: use a new output_dir"):
        resume_from(mine)
    same_but_longer = make_recipe(output_dir=str(out), learning_rate=2e-4, max_steps=40, auto_resume_from_checkpoints=True)
    assert resume_from(same_but_longer) == str(out / "checkpoint-2")  # more steps is a continuation, not a new run


def test_explicit_damaged_checkpoint_names_the_newest_intact_one(make_recipe, tmp_path):
    out = tmp_path / "out"
    r = make_recipe(output_dir=str(out))
    _checkpoint(out, 2, r)
    bad = _checkpoint(out, 4, r)
    (bad / "scheduler.pt").unlink()
    with pytest.raises(ConfigError, match=r"checkpoint-4 cannot be resumed: scheduler.pt is missing.*Fix: resume from "
                                          r".*checkpoint-2 \(the newest intact one\)"):
        resume_from(r.model_copy(update={"resume_from_checkpoint": str(bad)}))


def test_rotation_keeps_the_users_folders_and_the_newest(make_recipe, tmp_path):
    out = tmp_path / "out"
    r = make_recipe(output_dir=str(out))
    backup = out / "checkpoint-important-backup"
    backup.mkdir(parents=True)
    (backup / "notes.txt").write_text("mine")
    foreign = out / "checkpoint-1"  # numbered but not written by ftkit (no manifest): not ours to delete
    foreign.mkdir()
    for step in (2, 4, 6):
        _checkpoint(out, step, r)
    removed = cf.rotate(out, keep=1)
    assert sorted(d.name for d in removed) == ["checkpoint-2", "checkpoint-4"]
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-1", "checkpoint-6", "checkpoint-important-backup"]


def test_training_rotates_only_its_own_checkpoints(make_recipe, tmp_path, rows64):
    from ftkit import train

    out = tmp_path / "run"
    backup = out / "checkpoint-important-backup"
    backup.mkdir(parents=True)
    r = make_recipe(output_dir=str(out), max_steps=3, save_steps=1, save_total_limit=1, datasets=rows64,
                    sequence_len=64)
    with pytest.raises(ConfigError, match=r"run' is not empty and was not written by ftkit \(it holds "
                                          r"checkpoint-important-backup/\).*Fix: use a new or empty output_dir, or pass "
                                          r"--overwrite"):
        train.run(r)  # the user's folder: refused unless told to write there
    train.run(r, overwrite=True)
    assert backup.is_dir()
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-important-backup"]
    assert cf.problem_with(out / "checkpoint-3") is None


# ---------------------------------------------------------------- data files

def _recipe(tmp_path, path, **kw):
    return load_recipe({"base_model": "tiny:llama", "datasets": [{"path": str(path), "type": "alpaca", **kw}],
                        "sequence_len": 64, "output_dir": str(tmp_path / "out")})


def _load_error(tmp_path, path, **kw) -> str:
    with pytest.raises(DataError) as e:
        data.load_raw(_recipe(tmp_path, path, **kw).datasets[0], _recipe(tmp_path, path, **kw), "datasets.0")
    return str(e.value)


ROW = '{"instruction": "a", "output": "b"}'


@pytest.mark.parametrize("name, text, expected", [
    ("trail.json", f"[\n {ROW},\n {ROW},\n]\n", r"trail.json:3: a trailing comma before '\]' or '}'.*Fix: delete that comma"),
    ("empty.json", "", r"empty.json: the file is empty"),
    ("dup.jsonl", f'{ROW}\n{{"instruction": "a", "output": "b", "output": "c"}}\n',
     r"dup.jsonl:2: key 'output' appears twice in one row"),
    ("sur.jsonl", f'{ROW}\n{{"instruction": "a\\ud800", "output": "b"}}\n',
     r"sur.jsonl:2: text 'a\\ud800' holds a lone surrogate escape"),
])
def test_files_datasets_cannot_read_say_which_line_and_why(tmp_path, name, text, expected):
    path = tmp_path / name
    path.write_text(text)
    assert "An error occurred" not in (msg := _load_error(tmp_path, path)) and __import__("re").search(expected, msg), msg


def test_many_bad_lines_report_the_first_few_and_the_total(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join([ROW] * 3 + ["{oops"] * 12 + [ROW]) + "\n")
    msg = _load_error(tmp_path, path)
    assert msg.startswith("6 problems:") and "bad.jsonl:4: malformed JSON" in msg and "bad.jsonl:8:" in msg
    assert "12 of 16 lines are bad (5 shown)" in msg


def test_data_files_glob_that_matches_nothing_names_the_folder(tmp_path):
    folder = tmp_path / "shards"
    folder.mkdir()
    (folder / "part-0.jsonl").write_text(ROW + "\n")
    msg = _load_error(tmp_path, folder, data_files="train-*.jsonl")
    assert "data_files 'train-*.jsonl' matches no file in" in msg and "it holds part-0.jsonl" in msg
    ok = _recipe(tmp_path, folder, data_files="part-*.jsonl")
    assert len(data.load_raw(ok.datasets[0], ok, "datasets.0")[0]) == 1  # a glob that matches reads its files


def test_relative_paths_are_not_looked_up_above_the_project(tmp_path, monkeypatch):
    project = tmp_path / "proj"
    (project / "recipes").mkdir(parents=True)
    (project / "pyproject.toml").write_text("")
    (project / "data").mkdir()
    (project / "data" / "rows.jsonl").write_text(ROW + "\n")
    (tmp_path / "secret.jsonl").write_text(ROW + "\n")  # above the project root
    recipe_file = project / "recipes" / "r.yml"
    monkeypatch.chdir(tmp_path / "proj" / "recipes")
    for path, found in (("data/rows.jsonl", True), ("secret.jsonl", False)):
        recipe_file.write_text(f"base_model: tiny:llama\ndatasets:\n  - path: {path}\n    type: alpaca\n")
        r = load_recipe(recipe_file)
        if found:
            assert len(data.load_raw(r.datasets[0], r, "datasets.0")[0]) == 1
        else:
            with pytest.raises(DataError, match="dataset path 'secret.jsonl' does not exist"):
                data.load_raw(r.datasets[0], r, "datasets.0")


def test_an_optimizer_whose_package_is_missing_fails_before_data_and_model(tmp_path, capsys, monkeypatch):
    """Axolotl's qwen3 32b example uses adamw_torch_4bit (torchao): without the package the error names the
    recipe line, the package and the fix, before anything is prepared or loaded."""
    import importlib.util

    from ftkit.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torchao" else real(name, *a))
    recipe = tmp_path / "r.yml"
    recipe.write_text(f"base_model: tiny:llama\ndatasets:\n  - path: {Path(__file__).parents[1]}/data_samples/alpaca.jsonl\n"
                      f"optimizer: adamw_torch_4bit\noutput_dir: {tmp_path}/out\n"
                      f"dataset_prepared_path: {tmp_path}/prepared\n")
    assert main(["train", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert f"{recipe}:4: optimizer: optimizer adamw_torch_4bit comes from the torchao package, which is not " \
           "installed. Fix: pip install torchao" in err and "Traceback" not in err
    assert not (tmp_path / "prepared").exists()
    assert main(["check", str(recipe)]) == 2  # check says what train will do (train/preflight.py)
    assert "optimizer adamw_torch_4bit comes from the torchao package" in capsys.readouterr().err
