"""Faults injected into real runs: the output folder is ftkit's (marker, lock, refusals), a full disk at a checkpoint or
at the final save (fake writer, and a real tmpfs where one can be mounted), SIGKILL during the final save, a diverged
run, concurrent runs; and the bad inputs that used to end in a traceback or in silence (issue 15, points 1-14).

Every test asserts what is on disk afterwards and the exact message: what was kept, where, and the fix."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from conftest import OFFLINE, ROOT

from ftkit import train
from ftkit.errors import ConfigError, DataError, FtkitError
from ftkit.recipe import load_recipe
from ftkit.train import checkpoint_files as cf
from ftkit.train import outputs

ENV = {**os.environ, **OFFLINE, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}
FINAL = ("model.safetensors", "config.json", "tokenizer.json", "README.md", "metrics.json", "recipe.yml")


def _sums(folder: Path, names=FINAL) -> dict:
    return {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in names if (folder / n).is_file()}


@pytest.fixture
def short(make_recipe, tmp_path, rows64):
    """make_recipe for a 2-step full fine-tune of the twin on 64 rows, with a checkpoint at the end (epoch save)."""
    def make(out="out", **kw):
        return make_recipe(**{"output_dir": str(tmp_path / out), "datasets": rows64, "sequence_len": 64,
                              "max_steps": 2, "save_strategy": "epoch", **kw})
    return make


@pytest.fixture(scope="module")
def finished(tmp_path_factory, rows64):
    """A finished 2-step run (module-wide): tests copy its folder to start from "an earlier good model"."""
    tmp = tmp_path_factory.mktemp("finished")
    recipe = load_recipe(ROOT / "recipes" / "quickstart.yml", {
        "output_dir": str(tmp / "out"), "dataset_prepared_path": str(tmp / "prepared"), "max_steps": 2,
        "logging_steps": 1, "eval_prompts": [], "val_set_size": 0, "datasets": rows64, "sequence_len": 64,
        "save_strategy": "epoch", "warmup_steps": 0,
        "lr_scheduler": "constant"})  # a step resumed from its checkpoint trains (a 2-step cosine ends at 0)
    train.run(recipe)
    return Path(recipe.output_dir)


def _earlier_model(finished: Path, out: Path) -> dict:
    shutil.copytree(finished, out)
    return _sums(out)


# ---------------------------------------------------------------- the output folder (points 1, 4)

def test_a_users_folder_is_refused_and_overwrite_says_what_it_replaces(short, tmp_path, said):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "README.md").write_text("my notes")
    (out / "config.json").write_text("{}")
    (out / "data.csv").write_text("a,b")
    recipe = short(out="mine")
    with pytest.raises(ConfigError, match=r"mine' is not empty and was not written by ftkit \(it holds README.md, "
                                          r"config.json, data.csv\); a run would replace README.md, config.json.*"
                                          r"Fix: use a new or empty output_dir, or pass --overwrite"):
        train.run(recipe)
    assert (out / "README.md").read_text() == "my notes" and not (out / outputs.MARKER).exists()  # nothing written
    said.clear()
    train.run(recipe, overwrite=True)
    assert any("--overwrite:" in m and "Replaced when this run finishes: README.md, config.json" in m
               and "left as they are: 1 other entries" in m for m in said), said
    assert (out / "data.csv").read_text() == "a,b" and (out / "README.md").read_text() != "my notes"
    marker = outputs.read_marker(out)
    assert marker["running"] is False and "model.safetensors" in marker["final_files"]
    train.run(recipe)  # ftkit's own folder now: the same recipe runs again without --overwrite


def test_output_paths_that_are_files_are_errors_naming_the_option(tmp_path, capsys):
    from ftkit.cli import main

    (tmp_path / "afile").write_text("x")
    recipe = tmp_path / "r.yml"
    recipe.write_text(f"base_model: tiny:llama\ndatasets:\n  - path: {ROOT}/data_samples/alpaca.jsonl\n    type: alpaca\n"
                      f"output_dir: {tmp_path}/afile\ndataset_prepared_path: {tmp_path}/afile/prepared\n")
    assert main(["train", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert f"r.yml:5: output_dir: '{tmp_path}/afile' cannot be a folder: '{tmp_path}/afile' is a file" in err
    assert f"r.yml:6: dataset_prepared_path: '{tmp_path}/afile/prepared' cannot be a folder" in err
    assert "Traceback" not in err and "Fix: point output_dir at a folder" in err
    assert main(["preprocess", str(recipe)]) == 2  # preprocess writes only the cache: it names that one
    err = capsys.readouterr().err
    assert "r.yml:6: dataset_prepared_path:" in err and "output_dir" not in err


def test_default_output_dir_is_per_recipe(tmp_path):
    from ftkit.recipe.fingerprint import default_output_dir

    a = tmp_path / "my-lora.yml"
    a.write_text("base_model: tiny:llama\ndatasets:\n  - path: x.jsonl\n    type: alpaca\n")
    assert load_recipe(a).output_dir == os.path.abspath("outputs/my-lora")  # made absolute at load (round 2, #1)
    spec = {"base_model": "tiny:llama", "datasets": [{"path": "x.jsonl", "type": "alpaca"}]}
    one, longer, other = (load_recipe({**spec, **kw}).output_dir for kw in ({}, {"max_steps": 9}, {"learning_rate": 0.1}))
    assert one.startswith(os.path.abspath("outputs/run-")) and one == longer != other  # more steps: same run
    assert os.path.abspath(default_output_dir(None, load_recipe(spec).dump())) == one


def test_a_second_training_into_a_locked_folder_fails_at_once_naming_the_holder(short, tmp_path):
    """The holder is another process (plain fcntl, as ftkit's lock): the run fails before preparing any data."""
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, json, os, sys, time
        fd = os.open({str(out / outputs.LOCK)!r}, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, json.dumps({{"pid": os.getpid(), "host": "h", "started": "then"}}).encode())
        print("locked", flush=True)
        time.sleep(60)""")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        t0 = time.time()
        with pytest.raises(ConfigError, match=rf"out is in use by another training \(pid {holder.pid} on h, started "
                                              rf"then\).*Fix: wait for it to finish, stop it \(kill {holder.pid}\)"):
            train.run(short())
        assert time.time() - t0 < 2 and not (out / outputs.MARKER).exists()
    finally:
        holder.kill()
        holder.wait()
    assert (out / outputs.LOCK).exists()  # left by the killed holder: the next run takes it over


def test_a_lock_left_by_a_killed_run_is_taken_over_and_said(short, tmp_path, said):
    out = tmp_path / "out"
    out.mkdir()
    (out / outputs.LOCK).write_text(json.dumps({"pid": 999999, "host": "h", "started": "yesterday"}))
    recipe = short()
    with outputs.claim(recipe):
        assert json.loads((out / outputs.LOCK).read_text())["pid"] == os.getpid()
    assert any("taking over the lock of pid 999999 (started yesterday), which is not running any more" in m
               for m in said), said
    assert not (out / outputs.LOCK).exists()  # released at the end of the run


def test_concurrent_runs_one_trains_the_other_is_refused(short, tmp_path, capsys):
    """A real `ftkit train` process holds the folder; a second `ftkit train` into it exits 2 naming that process's
    pid (at once, before any data is read), and the first finishes its run."""
    from ftkit.cli import main

    recipe = short(max_steps=4)
    path = tmp_path / "r.yml"
    path.write_text(yaml.safe_dump(recipe.dump(), sort_keys=False))
    first = subprocess.Popen([sys.executable, "-m", "ftkit", "train", str(path)], cwd=ROOT, env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lock = Path(recipe.output_dir) / outputs.LOCK
    deadline = time.time() + 120
    while not (lock.exists() and lock.read_text()) and time.time() < deadline and first.poll() is None:
        time.sleep(0.05)
    assert main(["train", str(path)]) == 2
    assert first.wait(timeout=240) == 0, first.stderr.read()[-2000:]
    assert f"is in use by another training (pid {first.pid} on " in capsys.readouterr().err
    assert json.loads((Path(recipe.output_dir) / "metrics.json").read_text())["steps"] == 4


def test_a_fresh_start_replaces_earlier_checkpoints_but_not_those_of_an_unfinished_run(make_recipe, tmp_path, said):
    from test_faults import _checkpoint

    out = tmp_path / "out"
    recipe = make_recipe(output_dir=str(out))
    for step in (2, 4):
        _checkpoint(out, step, recipe)
    (out / "checkpoint-important-backup").mkdir()
    with pytest.raises(ConfigError, match=r"holds a run that did not finish \(checkpoints checkpoint-2, checkpoint-4, "
                                          r"no final model\).*Fix: continue it with auto_resume_from_checkpoints"):
        outputs.start_afresh(recipe, {"running": True})
    outputs.start_afresh(recipe, {"running": False})  # the earlier run finished: its checkpoints go, said
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-important-backup"]
    assert any("removed the earlier run's checkpoints checkpoint-2, checkpoint-4" in m for m in said)


def test_a_folder_an_earlier_ftkit_wrote_is_adopted_a_lookalike_is_not(make_recipe, tmp_path, said):
    out = tmp_path / "out"
    out.mkdir()
    (out / "recipe.yml").write_text("base_model: tiny:llama\n")
    (out / "metrics.json").write_text(json.dumps({"accuracy": 0.9}))  # someone else's metrics
    recipe = make_recipe(output_dir=str(out))
    with pytest.raises(ConfigError, match="is not empty and was not written by ftkit"):
        outputs.check(recipe)
    (out / "metrics.json").write_text(json.dumps({"output_dir": str(out), "method": "sft", "first_loss": 7.0,
                                                  "final_loss": 1.0}))  # a TrainResult: ftkit's before markers
    with outputs.claim(recipe):
        pass
    assert outputs.read_marker(out) and any("holds a run of an earlier ftkit" in m for m in said)


def test_publish_removes_the_earlier_models_files_this_save_did_not_write(tmp_path):
    from ftkit.train.save import publish

    out, staging = tmp_path / "out", tmp_path / "out" / outputs.STAGING
    staging.mkdir(parents=True)
    (out / "model.safetensors").write_text("full fine-tune")  # the earlier run's weights
    (out / "notes.txt").write_text("user")
    (staging / "adapter_model.safetensors").write_text("adapter")
    assert publish(staging, out, earlier=["model.safetensors", "config.json"]) == ["adapter_model.safetensors"]
    assert sorted(p.name for p in out.iterdir()) == ["adapter_model.safetensors", "notes.txt"]


# ---------------------------------------------------------------- disk full (points 5, 12)

def test_disk_full_at_the_final_save_keeps_the_earlier_model_and_the_checkpoint(short, tmp_path, finished,
                                                                              monkeypatch, capsys):
    """safetensors' own error text; then the resume the message names finishes the run without another step."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from transformers import Trainer

    from ftkit.cli import main

    out = tmp_path / "out"
    before = _earlier_model(finished, out)
    recipe = short(learning_rate=0.01)  # other training options than the earlier model's: its files are at stake
    path = tmp_path / "r.yml"
    path.write_text(yaml.safe_dump(recipe.dump(), sort_keys=False))
    real = Trainer.save_model

    def full(self, output_dir=None, _internal_call=False):
        if _internal_call:  # checkpoints are written; the final model runs out of disk half-way
            return real(self, output_dir, _internal_call)
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / "model.safetensors").write_bytes(b"\0" * 1000)
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    monkeypatch.setattr(Trainer, "save_model", full)
    assert main(["train", str(path)]) == 3
    err = capsys.readouterr().err
    assert "ftkit: error: " in err and "Traceback" not in err
    assert "the disk is full" in err and "while writing the final model; kept: the newest intact checkpoint " \
           f"{out}/checkpoint-2 and the earlier model in {out} (unchanged)" in err
    assert f"Fix: free space, then run again with --resume_from_checkpoint={out}/checkpoint-2" in err
    assert _sums(out) == before and not (out / outputs.STAGING).exists()
    assert cf.problem_with(out / "checkpoint-2") is None

    monkeypatch.setattr(Trainer, "save_model", real)  # space freed: the resume the message names
    assert main(["train", str(path), f"--resume_from_checkpoint={out}/checkpoint-2"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics["runtime"]["resumed_from"].endswith("checkpoint-2")  # no extra step
    final, kept = load_file(out / "model.safetensors"), load_file(out / "checkpoint-2" / "model.safetensors")
    assert final.keys() == kept.keys() and all(torch.equal(final[k], kept[k]) for k in final)
    assert _sums(out)["model.safetensors"] != before["model.safetensors"]
    assert outputs.read_marker(out)["running"] is False


def test_disk_full_at_a_checkpoint_removes_the_cut_off_one_and_names_the_last_intact(short, tmp_path, monkeypatch):
    """torch.save's own error text (a RuntimeError) at the second checkpoint."""
    from transformers import Trainer

    real = Trainer._save_optimizer_and_scheduler

    def full(self, output_dir):
        if self.state.global_step < 4:
            return real(self, output_dir)
        (Path(output_dir) / "optimizer.pt").write_bytes(b"\0" * 1000)
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0: file write failed")
    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", full)
    recipe = short(max_steps=6, save_steps=2)
    with pytest.raises(outputs.RunFailed, match=r"the disk is full .* while writing checkpoint-4; removed the cut-off "
                                                r"checkpoint-4; kept: the newest intact checkpoint .*checkpoint-2 "
                                                r"\(RuntimeError: .*file write failed\).*Fix: free space, then run again "
                                                r"with --resume_from_checkpoint=.*checkpoint-2"):
        train.run(recipe)
    out = Path(recipe.output_dir)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"] and not (out / "metrics.json").exists()


def _can_mount_tmpfs() -> bool:
    try:
        return subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"],
                              capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="no user namespace to mount a small tmpfs in (unshare -rm)")
def test_a_real_full_disk_at_the_final_save(short, tmp_path):
    """A 3 MB tmpfs: the end-of-run checkpoint (weights + Adam state, 2.4 MB) fits, the final model does not."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    recipe = short(out="small/out", max_steps=1)
    path = tmp_path / "r.yml"
    path.write_text(yaml.safe_dump(recipe.dump(), sort_keys=False))
    script = (f"mount -t tmpfs -o size=3m tmpfs {mnt} && {sys.executable} -m ftkit train {path}; rc=$?; "
              f"ls -a {mnt}/out {mnt}/out/checkpoint-1; exit $rc")
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "ftkit: error: " in proc.stderr and "Traceback" not in proc.stderr
    assert "No space left on device" in proc.stderr and "while writing the final model; kept: the newest intact " \
           f"checkpoint {mnt}/out/checkpoint-1" in proc.stderr
    listing = proc.stdout.split()
    assert outputs.STAGING not in listing and "model.safetensors" in listing  # in checkpoint-1 only
    assert listing.count("model.safetensors") == 1 and "ftkit_checkpoint.json" in listing


# ---------------------------------------------------------------- SIGKILL during the final save (point 5)

def test_sigkill_during_the_final_save_leaves_the_earlier_model_and_resumes(short, tmp_path, finished, said):
    out = tmp_path / "out"
    before = _earlier_model(finished, out)
    recipe = short(auto_resume_from_checkpoints=True, max_steps=3, lr_scheduler="constant")  # `finished`'s schedule
    path = tmp_path / "r.yml"
    path.write_text(yaml.safe_dump(recipe.dump(), sort_keys=False))
    # the tokenizer is written after the weights: kill the process there, half-way through the staged save
    code = textwrap.dedent(f"""
        import os, signal, sys
        import transformers
        real = transformers.PreTrainedTokenizerBase.save_pretrained
        def killed(self, folder, *a, **k):
            if folder.endswith({outputs.STAGING!r}):
                os.kill(os.getpid(), signal.SIGKILL)
            return real(self, folder, *a, **k)
        transformers.PreTrainedTokenizerBase.save_pretrained = killed
        from ftkit.cli import main
        sys.exit(main(["train", {str(path)!r}]))""")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert (out / outputs.STAGING / "model.safetensors").is_file()  # the new weights, never published
    assert _sums(out) == before and (out / outputs.LOCK).exists()
    said.clear()
    result = train.run(recipe)  # takes the dead run's lock, drops its staging, resumes at its last checkpoint
    assert result.runtime["resumed_from"].endswith("checkpoint-3") and result.steps == 3
    assert any("taking over the lock of pid" in m for m in said), said
    assert not (out / outputs.STAGING).exists() and _sums(out)["model.safetensors"] != before["model.safetensors"]


# ---------------------------------------------------------------- a diverged run (point 6)

def test_a_diverged_run_exits_3_and_leaves_the_earlier_model(short, tmp_path, finished, capsys):
    from ftkit.cli import main

    out = tmp_path / "out"
    before = _earlier_model(finished, out)
    recipe = short(max_steps=12, learning_rate=1.0, lr_scheduler="constant", warmup_steps=0, max_grad_norm=0,
                   loss_watchdog_threshold=20.0, loss_watchdog_patience=2, save_steps=1)
    path = tmp_path / "r.yml"
    path.write_text(yaml.safe_dump(recipe.dump(), sort_keys=False))
    assert main(["train", str(path)]) == 3
    err = capsys.readouterr().err
    assert "ftkit: error: " in err and "loss_watchdog_threshold: loss watchdog: training loss" in err
    assert f"no model was saved (the loss curve and metrics are in {out}/diverged; {out} keeps what it held before)" in err
    assert "Fix: lower learning_rate (now 1.0)" in err
    assert _sums(out) == before
    assert sorted(p.name for p in (out / "diverged").iterdir()) == ["loss.png", "metrics.json", "recipe.yml",
                                                                    "trainer_state.json"]
    metrics = json.loads((out / "diverged" / "metrics.json").read_text())
    assert metrics["diverged"] is True and metrics["steps"] < 12
    saved = sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    assert saved and max(saved) < metrics["steps"]  # no checkpoint of the diverged weights at the stop


# ---------------------------------------------------------------- recipe mistakes (points 10, 12, 13, 14)

def _recipe_file(tmp_path, body: str) -> Path:
    path = tmp_path / "r.yml"
    path.write_text("base_model: tiny:llama\ndatasets:\n  - path: data_samples/alpaca.jsonl\n    type: alpaca\n" + body)
    return path


@pytest.mark.parametrize("body, match", [
    ("optimizer: adamw_torh\n", r"r.yml:5: optimizer: unknown optimizer 'adamw_torh' \(not one of transformers' names\)."
                                r" Fix: did you mean adamw_torch or"),
    ("lr_scheduler: cosin\n", r"r.yml:5: lr_scheduler: unknown lr scheduler 'cosin'.*Fix: did you mean cosine\?"),
    ("val_set_size: 1.5\n", r"r.yml:5: val_set_size: 1.5 is above 1 but not a whole number.*Fix: write a fraction below 1"),
    ("learning_rate: 0.001\nlearning_rate: 0.1\n",
     r"r.yml:6: learning_rate: written twice in one mapping \(lines 5 and 6\); YAML would keep the last value silently"),
    ("test_datasets:\n  - path: a.jsonl\n    type: alpaca\n    type: chat_template\n",
     r"r.yml:8: test_datasets.0.type: written twice in one mapping \(lines 7 and 8\)"),
])
def test_recipe_mistakes_name_the_line_and_the_fix(tmp_path, body, match):
    with pytest.raises(ConfigError, match=match):
        load_recipe(_recipe_file(tmp_path, body))


def test_names_match_the_installed_transformers():
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    from ftkit.recipe.train_options import OPTIMIZERS, SCHEDULERS

    assert set(OPTIMIZERS) == {o.value for o in OptimizerNames}
    assert set(SCHEDULERS) == {s.value for s in SchedulerType}


def test_merge_keys_and_reused_anchors_are_not_duplicates(tmp_path):
    """`<<: *base` then a key of the base: an override, not a key written twice; an anchor used twice is fine."""
    r = load_recipe(_recipe_file(tmp_path, "lr_scheduler_kwargs:\n  <<: &base {num_cycles: 1}\n  num_cycles: 2\n"
                                           "eval_prompts: [&p Hello, *p]\n"))
    assert r.lr_scheduler_kwargs == {"num_cycles": 2} and r.eval_prompts == ["Hello", "Hello"]


def test_empty_recipe_file(tmp_path):
    path = tmp_path / "empty.yml"
    path.write_text("# nothing yet\n\n")
    with pytest.raises(ConfigError, match=r"empty.yml: the recipe file is empty \(no option: value lines, only blanks or "
                                          r"comments\). Fix: start from recipes/quickstart.yml"):
        load_recipe(path)


BOMB = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{n}: &{n} [{','.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi"))


def test_a_yaml_alias_bomb_is_refused_in_a_fraction_of_a_second(tmp_path):
    """9^9 = 387M values from 324 bytes. Run in a child with 1 GB of address space and a timeout: walking the
    expanded tree (as the line map once did) would be killed instead of exhausting the machine."""
    path = tmp_path / "bomb.yml"
    path.write_text(f"base_model: tiny:llama\n{BOMB}")
    assert len(path.read_bytes()) < 500
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
            "from ftkit.errors import ConfigError\nfrom ftkit.recipe import load_recipe\n"
            f"try:\n    load_recipe({str(path)!r})\nexcept ConfigError as e:\n    print(e)\n")
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "bomb.yml: the recipe expands to 490,329,066 values through YAML aliases" in proc.stdout
    assert time.time() - t0 < 20


def test_notebook_parameters_that_are_not_yaml(capsys):
    from ftkit.cli import main

    assert main(["notebooks", "run", "quickstart", "-p", "max_steps=[1,", "-p", "ok=1"]) == 2
    err = capsys.readouterr().err
    assert "-p max_steps: cannot read the value '[1,'" in err and "Fix: write a number, true/false or text; quote" in err


def test_lora_target_modules_the_model_lacks_list_its_linear_layers(make_recipe, tiny_tokenizer):
    from ftkit import models

    """None of the names exists: an error listing the model's linear layers (some missing: adapted, said; see
    test_axolotl_accepts.py)."""
    recipe = make_recipe(adapter="lora", lora_target_modules=["qkv_proj", "wqkv"], lora_target_linear=False)
    with pytest.raises(FtkitError, match=r"lora_target_modules: the model \(llama\) has none of the modules "
                                         r"lora_target_modules names \('qkv_proj', 'wqkv'\), so nothing would be "
                                         r"adapted. Fix: use its linear layers: down_proj, gate_proj, k_proj, o_proj, "
                                         r"q_proj, up_proj, v_proj"):
        models.load_model(recipe, tiny_tokenizer)


def _prepare_error(make_recipe, tokenizer, tmp_path, rows: list, **spec) -> str:
    from ftkit import data

    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError) as e:
        data.prepare(make_recipe(datasets=[{"path": str(path), **spec}]), tokenizer)
    return str(e.value)


def test_field_messages_the_rows_lack_names_the_field_they_have(make_recipe, tiny_tokenizer, tmp_path):
    talk = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    msg = _prepare_error(make_recipe, tiny_tokenizer, tmp_path, [{"conversations": talk}] * 3, type="chat_template",
                         field_messages="messages")
    assert "rows.jsonl:1: messages: the row has no field 'messages' (its fields: conversations). Fix: set " \
           "field_messages: conversations in this datasets entry" in msg


def test_pretokenized_rows_name_the_line(make_recipe, tiny_tokenizer, tmp_path):
    msg = _prepare_error(make_recipe, tiny_tokenizer, tmp_path, [{"input_ids": [1, 2, 3]}, {"input_ids": [1, 99999]}])
    assert "rows.jsonl:2: input_ids: token id 99999 is outside the vocabulary" in msg
    msg = _prepare_error(make_recipe, tiny_tokenizer, tmp_path, [{"input_ids": [1, 2, 3], "labels": [1, 2]}])
    assert "rows.jsonl:1: labels: labels has 2 entries but input_ids has 3" in msg


def test_empty_completion_rows_are_dropped_and_counted(make_recipe, tiny_tokenizer, tmp_path):
    from ftkit import data

    path = tmp_path / "text.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["one text", "", "two", "  ", "three"]))
    prepared = data.prepare(make_recipe(datasets=[{"path": str(path), "type": "completion"}]), tiny_tokenizer)
    assert prepared.stats["dropped_no_trainable"] == 2 and len(prepared.train) == 3
    assert "2 dropped with nothing to train on" in prepared.summary()


def test_custom_format_naming_an_unknown_field(tmp_path):
    path = tmp_path / "r.yml"
    path.write_text("base_model: tiny:llama\ndatasets:\n  - path: x.jsonl\n    type:\n      format: '{instruction} {inptu} '\n")
    with pytest.raises(ConfigError, match=r"r.yml:5: datasets.0.type.format: uses \['inptu', 'instruction'\] but may "
                                          r"use only \['input', 'instruction'\]"):
        load_recipe(path)


def test_bad_rows_are_collected_first_five_and_the_total(tiny_tokenizer):
    """The hook data/sft.py calls once the first bad row stopped tokenizing (formats.row_errors)."""
    from ftkit.formats import row_errors
    from ftkit.formats.prompt import strategy_for

    recipe = load_recipe({"base_model": "tiny:llama", "datasets": [{"path": "x.jsonl", "type": "alpaca"}]})
    rows = [{"instruction": "q", "output": "a"} if i % 3 else {"instruction": "q"} for i in range(20)]
    shown, total = row_errors(strategy_for(recipe.datasets[0], recipe, tiny_tokenizer), rows, tiny_tokenizer)
    assert total == 7 and [i for i, _ in shown] == [0, 3, 6, 9, 12]
    assert shown[0][1].problem == "row has no 'output' field"


# ---------------------------------------------------------------- security (points 8, 9)

def test_trust_remote_code_names_the_files_that_will_run(tmp_path, said):
    from ftkit.models import remote_code

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"auto_map": {"AutoConfig": "configuration_x.XConfig",
                                                                  "AutoModelForCausalLM": "modeling_x.XForCausalLM"}}))
    for name in ("configuration_x.py", "modeling_x.py", "helper.py"):
        (folder / name).write_text("")
    recipe = load_recipe({"base_model": str(folder), "trust_remote_code": True,
                          "datasets": [{"path": "x.jsonl", "type": "alpaca"}]})
    remote_code.remote_code_notice(recipe)
    assert any(f"trust_remote_code: true: Python code from {folder} will RUN in this process with your rights: "
               "configuration_x.py, modeling_x.py (the folder holds configuration_x.py, helper.py, modeling_x.py)" in m
               and "Saving copies these files next to the trained model" in m for m in said), said
    said.clear()
    remote_code.remote_code_notice(recipe.model_copy(update={"trust_remote_code": False}))
    assert not said


class FakeApp:
    def launch(self, **kwargs):
        self.kwargs = kwargs


@pytest.mark.parametrize("host, auth, warning", [
    ("0.0.0.0", None, "serving on 0.0.0.0 WITHOUT A LOGIN: anyone who can reach this machine can use the model"),
    ("0.0.0.0", ("ann", "pw"), "serving on 0.0.0.0: reachable from other machines; login required (user 'ann')"),
    ("my-host.example", None, "serving on my-host.example WITHOUT A LOGIN"),
    ("127.0.0.1", None, None),
    ("::1", None, None),
])
def test_gradio_on_other_interfaces_is_announced_and_can_require_a_login(host, auth, warning, said):
    from ftkit.infer import ui

    app = ui.serve(FakeApp(), host, 7860, auth, block=False)
    assert app.kwargs["server_name"] == host and app.kwargs["auth"] == auth and app.kwargs["share"] is False
    announced = [m for m in said if "serving on" in m]
    assert (len(announced) == 1 and warning in announced[0]) if warning else announced == [], said


def test_gradio_login_from_the_flag_or_the_environment(monkeypatch):
    from ftkit.infer import ui

    assert ui.parse_auth("ann:s3:cret") == ("ann", "s3:cret")
    monkeypatch.setenv(ui.AUTH_ENV, "bob:pw")
    assert ui.parse_auth(None) == ("bob", "pw")
    with pytest.raises(FtkitError, match=r"--auth: a login must be written user:password"):
        ui.parse_auth("ann")


# ---------------------------------------------------------------- processes (resources)

def test_datasets_workers_die_with_a_killed_parent():
    """datasets.map(num_proc=2) workers of a SIGKILLed process are gone at once with die_with_parent; the control
    (a plain fork, no hook) outlives its killed parent, as the map workers of a killed `ftkit preprocess` did."""
    code = textwrap.dedent("""
        import os, sys, time
        from ftkit.env import die_with_parent
        def slow(row):
            os.write(1, f"worker {os.getpid()}\\n".encode())  # one write: two workers share the pipe
            time.sleep(120)
            return row
        if sys.argv[1] == "hooked":
            die_with_parent()
            import datasets
            datasets.Dataset.from_dict({"x": [1, 2]}).map(slow, num_proc=2)
        elif os.fork() == 0:
            slow(None)
        time.sleep(120)""")

    def workers_after_kill(mode: str, n: int) -> list[int]:
        proc = subprocess.Popen([sys.executable, "-c", code, mode], env=ENV, stdout=subprocess.PIPE, text=True)
        pids = {int(proc.stdout.readline().split()[1]) for _ in range(n)}
        proc.kill()
        proc.wait()
        time.sleep(0.5)
        alive = [p for p in pids if _alive(p)]
        for p in alive:
            os.kill(p, signal.SIGKILL)  # the orphans this test made
        return alive

    assert workers_after_kill("hooked", 2) == []
    assert len(workers_after_kill("plain", 1)) == 1


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
