"""Nothing lost, round two (issue 26): faults a careful user meets that no earlier table covered. Each test
reproduces the fault on real files, processes, signals and (where a user namespace allows) real full or
read-only disks, and asserts what is on disk afterwards and the message: the file or key, and the fix.

The numbers in the test names are the issue's points; docs/faults-round2.md is the table."""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from conftest import OFFLINE, QUICKSTART, ROOT
from test_fault_injection import _alive, _can_mount_tmpfs

from ftkit import train
from ftkit.errors import ConfigError, DataError, FtkitError
from ftkit.recipe import load_recipe
from ftkit.train import checkpoint_files as cf
from ftkit.train import outputs

ENV = {**os.environ, **OFFLINE, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}


@pytest.fixture
def short(make_recipe, tmp_path, rows64):
    """make_recipe for a 2-step full fine-tune of the twin on 64 rows, with a checkpoint at each step."""
    def make(out="out", **kw):
        return make_recipe(**{"output_dir": str(tmp_path / out), "datasets": rows64, "sequence_len": 64,
                              "max_steps": 2, "save_steps": 1, **kw})
    return make


def _recipe_file(tmp_path: Path, recipe, name="r.yml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(recipe.dump(), sort_keys=False))
    return path


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _can(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


TMPFS = _can_mount_tmpfs()
# root ignores file modes; in a user namespace of its own (unshare -U) it is an ordinary user for files it owns
AS_USER = [] if os.geteuid() != 0 else ["unshare", "-U"] if _can(["unshare", "-U", "true"]) else None


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, rows64):
    """A finished 2-step LoRA run on tiny:llama (module-wide): merge and infer tests start from it."""
    tmp = tmp_path_factory.mktemp("lora")
    recipe = load_recipe(QUICKSTART, {
        "output_dir": str(tmp / "out"), "dataset_prepared_path": str(tmp / "prepared"), "adapter": "lora",
        "lora_r": 4, "lora_alpha": 8, "lora_target_linear": True, "max_steps": 2, "eval_prompts": [],
        "val_set_size": 0, "datasets": rows64, "sequence_len": 64, "save_strategy": "no"})
    train.run(recipe)
    return recipe


# ---------------------------------------------------------------- 1. ~ in a path option

def test_1_tilde_output_dir_is_one_folder_for_ftkit_and_the_trainer(short, tmp_path, monkeypatch, said):
    """ftkit wrote the model, marker and lock to ./~/runs/x while the Trainer wrote checkpoints to $HOME/runs/x:
    auto-resume never found them. Now every path option is resolved once, at load."""
    from ftkit.models.tiny import cache_root

    import matplotlib

    monkeypatch.setenv("FTKIT_CACHE", str(cache_root().parent))  # the twins stay where they are built
    monkeypatch.setenv("MPLCONFIGDIR", matplotlib.get_cachedir())  # and matplotlib's font cache (loss.png)
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    path = _recipe_file(tmp_path, short(auto_resume_from_checkpoints=True))
    text = path.read_text().replace(f"output_dir: {tmp_path}/out", "output_dir: ~/runs/x")
    path.write_text(text.replace(f"dataset_prepared_path: {tmp_path}/prepared", "dataset_prepared_path: ~/prepared"))
    assert "output_dir: ~/runs/x" in path.read_text() and "dataset_prepared_path: ~/prepared" in path.read_text()
    recipe = load_recipe(path)
    assert recipe.output_dir == str(home / "runs" / "x") and recipe.dataset_prepared_path == str(home / "prepared")
    assert load_recipe(path, ["--output_dir=~/runs/y"]).output_dir == str(home / "runs" / "y")
    first = train.run(recipe)
    out = home / "runs" / "x"
    assert first.steps == 2 and outputs.read_marker(out) and cf.problem_with(out / "checkpoint-2") is None
    assert not (work / "~").exists()
    said.clear()
    again = train.run(load_recipe(path, ["--max_steps=3"]))  # the checkpoints are found: it continues
    assert again.runtime["resumed_from"] == str(out / "checkpoint-2") and again.steps == 3


# ---------------------------------------------------------------- 2. merge-lora onto the wrong base

@pytest.fixture(scope="module")
def other_llama(tmp_path_factory, tiny_llama_dir):
    """Another llama: the twin's tokenizer and architecture, a wider MLP (intermediate_size 96, not 128)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = tmp_path_factory.mktemp("other-llama")
    for f in Path(tiny_llama_dir).iterdir():
        if f.name.startswith("tokenizer") or f.name.endswith(".jinja") or f.name == "special_tokens_map.json":
            shutil.copy(f, folder / f.name)
    config = AutoConfig.from_pretrained(tiny_llama_dir)
    config.intermediate_size = 96
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    return folder


def test_2_merging_onto_another_base_is_an_error_naming_both(lora_run, tmp_path, other_llama, capsys):
    from ftkit.cli import main
    from ftkit.models import merge

    path = _recipe_file(tmp_path, lora_run)
    assert main(["merge-lora", str(path), "--base_model=tiny:mistral", f"--output-dir={tmp_path / 'm1'}"]) == 2
    err = capsys.readouterr().err
    assert "r.yml: base_model: the adapter in " in err and "was trained on 'tiny:llama' " \
           "(ftkit_output.json says so), but base_model is 'tiny:mistral'" in err and "Traceback" not in err
    assert "Fix: set base_model: tiny:llama (or --base_model=tiny:llama); if tiny:mistral is a renamed copy of that " \
           "model, pass --allow-other-base" in err and not (tmp_path / "m1").exists()
    assert main(["infer", str(path), "--base_model=tiny:mistral", "--prompt=hi"]) == 2  # the same check: infer
    assert "was trained on 'tiny:llama'" in capsys.readouterr().err
    other = lora_run.model_copy(update={"base_model": str(other_llama)})
    with pytest.raises(FtkitError, match=r"base_model: the adapter in .* does not fit base_model '.*other-llama.*': "
                                         r"6 adapted weights differ, e.g. model.layers.0.mlp.gate_proj \(adapter "
                                         r"\[128, 4\], base \[96, 4\]\).*Fix: use the base model the adapter was "
                                         r"trained on \(recorded: tiny:llama\)"):
        merge.run(other, str(tmp_path / "m2"), allow_other_base=True)  # a "renamed copy": the shapes still tell
    assert not (tmp_path / "m2").exists()
    same = lora_run.model_copy(update={"base_model": str(lora_run_twin())})  # the twin's folder by its path
    assert (merge.run(same, str(tmp_path / "m3")) / "model.safetensors").is_file()


def lora_run_twin() -> Path:
    from ftkit.models.tiny import tiny_path

    return tiny_path("tiny:llama")


# ---------------------------------------------------------------- 3, 4. merge into a user's folder; modes

def _users_folder(folder: Path) -> dict:
    folder.mkdir()
    files = {"README.md": ("my notes", 0o600), "config.json": ("{}", 0o644), "notes.txt": ("mine", 0o644),
             ".env": ("TOKEN=secret", 0o600), "id_ed25519": ("KEY", 0o600)}
    for name, (text, mode) in files.items():
        (folder / name).write_text(text)
        os.chmod(folder / name, mode)
    return files


def test_3_4_merge_into_a_users_folder_is_refused_then_staged_keeping_modes(lora_run, tmp_path, monkeypatch, said):
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerBase

    from ftkit.models import merge

    mine = tmp_path / "mine"
    files = _users_folder(mine)
    with pytest.raises(ConfigError, match=r"--output-dir: '.*mine' is not empty and was not written by ftkit \(it holds "
                                          r"\.env, README.md, config.json, id_ed25519, notes.txt\); a run would replace "
                                          r"README.md, config.json. Fix: use a new or empty --output-dir, or pass "
                                          r"--overwrite"):
        merge.run(lora_run, str(mine))
    assert {n: (mine / n).read_text() for n in files} == {n: t for n, (t, _) in files.items()}

    def full(self, *a, **k):  # the disk fills half-way through the merged folder
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(PreTrainedTokenizerBase, "save_pretrained", full)
    with pytest.raises(FtkitError, match=r"--output-dir: the disk is full while writing the merged model into "
                                         r".*mine; nothing there was changed"):
        merge.run(lora_run, str(mine), overwrite=True)
    assert (mine / "config.json").read_text() == "{}" and not (mine / outputs.STAGING).exists()  # staged, dropped
    monkeypatch.undo()

    said.clear()
    merge.run(lora_run, str(mine), overwrite=True)
    assert any("--overwrite:" in m and "Replaced: README.md, config.json" in m for m in said), said
    assert AutoModelForCausalLM.from_pretrained(mine).config.model_type == "llama"  # config.json is the model's
    assert (mine / "README.md").read_text() != "my notes" and _mode(mine / "README.md") == 0o600  # its mode kept
    assert {n: (mine / n).read_text() for n in (".env", "id_ed25519", "notes.txt")} == \
        {n: files[n][0] for n in (".env", "id_ed25519", "notes.txt")}
    assert (_mode(mine / ".env"), _mode(mine / "id_ed25519"), _mode(mine / "notes.txt")) == (0o600, 0o600, 0o644)
    assert _mode(mine / "model.safetensors") == _umask_mode()  # what the merge wrote: the umask's mode


def test_3_sigkill_during_a_merge_leaves_the_earlier_merge_loadable(lora_run, tmp_path):
    """The merge is killed after the weights, while the tokenizer is written: the folder keeps the earlier merge
    (config.json whole), the next merge drops the leftover staging and publishes."""
    from transformers import AutoConfig

    from ftkit.models import merge

    merged = merge.run(lora_run, str(tmp_path / "merged"))
    before = (merged / "config.json").read_bytes()
    code = textwrap.dedent(f"""
        import os, signal, sys
        import transformers
        real = transformers.PreTrainedTokenizerBase.save_pretrained
        def killed(self, folder, *a, **k):
            if str(folder).endswith({outputs.STAGING!r}):
                os.kill(os.getpid(), signal.SIGKILL)
            return real(self, folder, *a, **k)
        transformers.PreTrainedTokenizerBase.save_pretrained = killed
        from ftkit.cli import main
        sys.exit(main(["merge-lora", {str(_recipe_file(tmp_path, lora_run))!r}, "--output-dir", {str(merged)!r}]))""")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert (merged / outputs.STAGING / "model.safetensors").is_file()  # the new weights, never published
    assert (merged / "config.json").read_bytes() == before and AutoConfig.from_pretrained(merged).model_type == "llama"
    merge.run(lora_run, str(merged))
    assert not (merged / outputs.STAGING).exists()


def test_4_train_overwrite_leaves_the_users_files_and_their_modes(short, tmp_path, said):
    mine = tmp_path / "out"
    files = _users_folder(mine)
    train.run(short(save_strategy="no", save_steps=None), overwrite=True)
    assert any("left as they are: 3 other entries" in m for m in said), said
    assert (_mode(mine / ".env"), _mode(mine / "id_ed25519"), _mode(mine / "notes.txt")) == (0o600, 0o600, 0o644)
    assert (mine / ".env").read_text() == files[".env"][0] and _mode(mine / "README.md") == 0o600
    assert _mode(mine / "model.safetensors") == _mode(mine / "tokenizer.json") == _umask_mode()


# ---------------------------------------------------------------- 5. a shared dataset_prepared_path

def test_5_only_ftkits_own_temp_dirs_are_removed_from_a_shared_folder(make_recipe, tiny_tokenizer, tmp_path, rows64,
                                                                     said):
    from ftkit import data
    from ftkit.data import cache

    shared = tmp_path / "shared"
    theirs = [shared / ".tmp-build-42", shared / ".tmp-with-lock"]
    for d in theirs:
        (d / "part").mkdir(parents=True)
        os.utime(d, (0, 0))  # old, as a killed run's would be
    (theirs[1] / ".lock").write_text("")  # someone else's lock file
    killed = shared / ".ftkit-tmp-killed"
    (killed / "train").mkdir(parents=True)
    cache._lock(killed)
    cache._unlock(killed)  # ftkit's lock file, held by no live process: left by a killed ftkit
    prepared = data.prepare(make_recipe(datasets=rows64, sequence_len=64, dataset_prepared_path=str(shared)),
                            tiny_tokenizer)
    assert all(d.is_dir() and (d / "part").is_dir() for d in theirs) and not killed.exists()
    assert Path(prepared.cache_dir).parent == shared
    assert any("removed 1 temporary dir(s)" in m and ".ftkit-tmp-killed" in m for m in said), said


# ---------------------------------------------------------------- 6. the data file edited between runs

def test_6_resuming_after_the_data_changed_is_refused_or_said(short, tmp_path, capsys, said):
    from ftkit.cli import main

    data = tmp_path / "rows.jsonl"
    shutil.copy(short().datasets[0].path, data)
    recipe = short(datasets=[{"path": str(data), "type": "alpaca"}], auto_resume_from_checkpoints=True)
    train.run(recipe)
    rows = data.read_text().splitlines()
    data.write_text("\n".join(reversed(rows)) + "\n")  # edited in place: same rows, another order
    path = _recipe_file(tmp_path, recipe)
    assert main(["train", str(path), "--max_steps=3"]) == 2
    err = capsys.readouterr().err
    assert f"datasets: the data changed since {recipe.output_dir}/checkpoint-2 was written ({data} differ): " \
           "resuming would train the rest of the run on other rows" in err
    assert "Fix: put the data back as it was, or pass --resume-changed-data" in err and "Traceback" not in err
    assert cf.problem_with(Path(recipe.output_dir) / "checkpoint-2") is None  # nothing removed
    said.clear()
    result = train.run(load_recipe(path, ["--max_steps=3"]), resume_changed_data=True)
    assert result.runtime["resumed_from"].endswith("checkpoint-2") and result.steps == 3
    assert any("resuming anyway (--resume-changed-data)" in m for m in said), said


# ---------------------------------------------------------------- 7. non-finite numbers and weights

@pytest.mark.parametrize("line, match", [
    ("weight_decay: .inf", r"r.yml:5: weight_decay: inf is not a finite number"),
    ("warmup_steps: .nan", r"r.yml:5: warmup_steps: nan is not a finite number"),
    ("warmup_steps: .inf", r"r.yml:5: warmup_steps: inf is not a finite number"),  # was an OverflowError traceback
    ("save_steps: .inf", r"r.yml:5: save_steps: inf is not a finite number"),  # was accepted
    ("lr_scheduler_kwargs: {min_lr_rate: -.inf}", r"r.yml:5: lr_scheduler_kwargs.min_lr_rate: -inf is not a finite"),
])
def test_7_non_finite_options_are_errors(tmp_path, line, match):
    path = tmp_path / "r.yml"
    path.write_text(f"base_model: tiny:llama\ndatasets:\n  - path: x.jsonl\n    type: alpaca\n{line}\n")
    with pytest.raises(ConfigError, match=match + r".*Fix: write a finite number"):
        load_recipe(path)


def test_7_non_finite_weights_are_never_published(short, tmp_path, monkeypatch, capsys):
    """A run whose weights turn NaN (any cause) exits 3 like the watchdog's: the earlier model stays."""
    import torch
    from transformers import TrainerCallback

    from ftkit.cli import main
    from ftkit.train import callbacks

    recipe = short(save_strategy="no", save_steps=None)
    train.run(recipe)
    out = Path(recipe.output_dir)
    before = (out / "model.safetensors").read_bytes()

    class Poison(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))
    real = callbacks.build
    monkeypatch.setattr(callbacks, "build", lambda *a, **k: real(*a, **k) + [Poison()])
    assert main(["train", str(_recipe_file(tmp_path, recipe)), "--learning_rate=0.01"]) == 3
    err = capsys.readouterr().err
    assert re.search(r"learning_rate: the trained weights hold NaN or infinite values \(\d+ of \d+ trained tensors, "
                     r"e.g. model.embed_tokens.weight\) after step 2", err), err[-2000:]
    assert f"no model was saved (the loss curve and metrics are in {out}/diverged" in err
    assert "Fix: lower learning_rate (now 0.01)" in err and (out / "model.safetensors").read_bytes() == before


# ---------------------------------------------------------------- 8. checkpoints of an older ftkit

def test_8_older_checkpoints_are_adopted_and_resumed(short, tmp_path, said):
    recipe = short()
    train.run(recipe)
    out = Path(recipe.output_dir)
    for f in (*out.glob("checkpoint-*/" + cf.MANIFEST), out / outputs.MARKER):
        f.unlink()  # as an ftkit before manifests and markers left them
    weights = out / "checkpoint-2" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])  # the newest one was cut short: not adopted
    said.clear()
    result = train.run(load_recipe(_recipe_file(tmp_path, recipe), ["--max_steps=3",
                                                                     "--auto_resume_from_checkpoints=true"]))
    assert result.runtime["resumed_from"] == str(out / "checkpoint-1") and result.steps == 3
    assert any("skipping" in m and "checkpoint-2" in m for m in said), said
    assert any("checkpoint-1 has no ftkit_checkpoint.json" in m and "all its files load: adopted" in m for m in said)
    assert cf.problem_with(out / "checkpoint-1") is None


def test_8_a_fresh_start_says_which_older_checkpoints_it_removes(short, tmp_path, said):
    recipe = short()
    train.run(recipe)
    out = Path(recipe.output_dir)
    for f in out.glob("checkpoint-*/" + cf.MANIFEST):
        f.unlink()
    said.clear()
    outputs.start_afresh(recipe, {"running": False})
    assert any("adopted" in m for m in said) and any("removed the earlier run's checkpoints checkpoint-1, "
                                                     "checkpoint-2" in m for m in said), said
    assert not list(out.glob("checkpoint-*"))


# ---------------------------------------------------------------- 9. a disk that fills at the final save

@pytest.mark.skipif(not TMPFS, reason="no user namespace to mount a small tmpfs in (unshare -rm)")
def test_9_full_disk_at_the_end_without_checkpoints_saves_the_model_elsewhere(short, tmp_path):
    """A 512 KB tmpfs holds output_dir and the data cache: the model (0.8 MB) fits in neither, so it goes to the
    system temp dir; the run warned at its start that the disk was too small."""
    small, systmp = tmp_path / "small", tmp_path / "systmp"
    small.mkdir()
    systmp.mkdir()
    recipe = short(out="small/out", dataset_prepared_path=str(small / "prepared"), save_strategy="no", save_steps=None,
                   max_steps=1)
    path = _recipe_file(tmp_path, recipe)
    script = f"mount -t tmpfs -o size=512k tmpfs {small} && exec {sys.executable} -m ftkit train {path}"
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=ROOT, env={**ENV, "TMPDIR": str(systmp)},
                          capture_output=True, text=True, timeout=300)
    err = proc.stdout + proc.stderr
    assert proc.returncode == 3, err[-3000:]
    assert f"warning: {small}/out has " in err and "MB free, and this run writes about" in err
    rescued = next(systmp.glob("ftkit-rescued-out-*"))
    assert f"no checkpoint had been written, so the finished model was saved to {rescued} instead" in err
    assert f"Fix: free space, then move the files of {rescued} into {small}/out" in err and "Traceback" not in err
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(rescued).config.model_type == "llama"
    assert (rescued / "recipe.yml").is_file() and (rescued / "metrics.json").is_file()


# ---------------------------------------------------------------- 10. a mistyped output_dir

def test_10_infer_and_evaluate_never_answer_with_the_base_unasked(lora_run, tmp_path, capsys):
    from ftkit.cli import main

    path = _recipe_file(tmp_path, lora_run)
    typo = lora_run.output_dir + "x"
    assert main(["infer", str(path), f"--output_dir={typo}", "--prompt=hi", "--max-new-tokens=2"]) == 2
    err = capsys.readouterr().err
    assert f"output_dir: no LoRA adapter (adapter_config.json) in {typo} (it does not exist). Fix: did you mean " \
           f"{lora_run.output_dir}? point output_dir at a finished run" in err and "--untrained" in err
    assert main(["evaluate", str(path), f"--output_dir={typo}"]) == 2
    assert "no LoRA adapter" in capsys.readouterr().err
    assert main(["infer", str(path), f"--output_dir={typo}", "--prompt=hi", "--max-new-tokens=2", "--untrained",
                 "--no-stream"]) == 0
    assert "--untrained: answering with the base model tiny:llama" in capsys.readouterr().err


# ---------------------------------------------------------------- 11. Ctrl-C

def test_11_ctrl_c_during_training_checkpoints_and_says_how_to_continue(short, tmp_path):
    recipe = short(max_steps=100_000, save_strategy="no", save_steps=None, learning_rate=1e-4)
    path = _recipe_file(tmp_path, recipe)
    out = Path(recipe.output_dir)
    proc = subprocess.Popen([sys.executable, "-m", "ftkit", "train", str(path)], cwd=ROOT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while not list(out.glob("runs/*/events*")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)  # tensorboard's file: the Trainer has begun
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, err[-3000:]
    step = int(err.split("interrupted (Ctrl-C) after step ")[1].split(";")[0])
    ckpt = out / f"checkpoint-{step}"
    assert f"checkpoint {ckpt} written; no final model was saved. Fix: continue with: ftkit train {path} " \
           f"--resume_from_checkpoint={ckpt}" in err and "Traceback" not in err and "KeyboardInterrupt" not in err
    assert step >= 1 and cf.problem_with(ckpt) is None and not (out / "model.safetensors").exists()
    result = train.run(load_recipe(path, [f"--resume_from_checkpoint={ckpt}", f"--max_steps={step + 1}"]))
    assert result.runtime["resumed_from"] == str(ckpt) and result.steps == step + 1


def test_11_a_second_ctrl_c_aborts_at_once(said):
    """The handler itself, with real signals: the first asks for a checkpoint and a stop, the second raises."""
    from transformers import TrainerControl, TrainerState

    from ftkit.train.callbacks import StopOnCtrlC

    stop, control, state = StopOnCtrlC(), TrainerControl(), TrainerState(global_step=7)
    before = signal.getsignal(signal.SIGINT)
    stop.on_train_begin(None, state, control)
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)
        assert stop.requested and any("Ctrl-C: finishing this step" in m for m in said)
        stop.on_step_end(None, state, control)
        assert (stop.step, control.should_save, control.should_training_stop) == (7, True, True)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    finally:
        stop.restore()
    assert signal.getsignal(signal.SIGINT) is before


def test_11_ctrl_c_during_preprocess_says_interrupted(tmp_path, short):
    """datasets.map workers (dataset_processes: 2) are tokenizing when Ctrl-C reaches the process group: one line,
    exit 130, no traceback (was: KeyboardInterrupt tracebacks ending in multiprocess' TimeoutError), no worker
    left."""
    recipe = short(dataset_processes=2, dataset_prepared_path=str(tmp_path / "prepared"))
    path = _recipe_file(tmp_path, recipe)
    ready = tmp_path / "ready"
    code = textwrap.dedent(f"""
        import os, signal, sys, time
        # a terminal's process: Ctrl-C unblocked and Python's own handler, whatever the test process inherited
        # (in a long suite this test saw the Ctrl-C ignored for over a minute, never when run alone)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from ftkit.formats import base
        def slow(self, rows, tokenizer):
            with open({str(ready)!r}, "a") as f:
                f.write(f"{{os.getpid()}}\\n")
            time.sleep(120)
        base.PromptStrategy.encode_batch = slow
        from ftkit.cli import main
        sys.exit(main(["preprocess", {str(path)!r}]))""")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    while not (ready.exists() and ready.read_text()) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    time.sleep(0.5)
    workers = _children(proc.pid)
    assert workers, "the datasets.map workers had not started"
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        blocked = Path(f"/proc/{proc.pid}/status").read_text().split("SigBlk:")[1].split()[0]
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"no exit 60 s after Ctrl-C (SigBlk {blocked}); stderr: {err[-2000:]}") from None
    assert proc.returncode == 130, err[-3000:]
    assert "ftkit: interrupted (Ctrl-C)" in err and "Traceback" not in err + out and "TimeoutError" not in err
    time.sleep(0.5)
    assert not [p for p in workers if _alive(p)]  # they died with the parent


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


# ---------------------------------------------------------------- 12. read-only folders, unreadable recipes, ports

@pytest.mark.skipif(AS_USER is None, reason="running as root without user namespaces: file modes do not apply")
def test_12_read_only_folders_and_an_unreadable_recipe_name_the_key(short, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    recipe = short(out="ro/out", dataset_prepared_path=str(ro / "prepared"))
    path = _recipe_file(tmp_path, recipe)
    os.chmod(ro, 0o555)
    try:
        proc = subprocess.run([*AS_USER, sys.executable, "-m", "ftkit", "train", str(path)], cwd=ROOT, env=ENV,
                              capture_output=True, text=True, timeout=120)
    finally:
        os.chmod(ro, 0o755)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"output_dir: cannot write there: '{ro}' is read-only for this user (it would hold '{ro}/out')" in \
        proc.stderr and "Fix: point output_dir at a folder you can write" in proc.stderr
    assert f"dataset_prepared_path: cannot write there: '{ro}' is read-only" in proc.stderr
    assert "Traceback" not in proc.stderr
    os.chmod(path, 0)
    proc = subprocess.run([*AS_USER, sys.executable, "-m", "ftkit", "check", str(path)], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and f"{path}: cannot read the recipe file (Permission denied). Fix: make it " \
                                   f"readable (chmod u+r {path})" in proc.stderr, proc.stderr[-2000:]


def test_12_a_recipe_that_is_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "r.yml"
    path.write_bytes(b"base_model: tiny:llama\n# caf\xe9 au lait\ndatasets:\n  - path: x.jsonl\n")
    with pytest.raises(ConfigError, match=r"r.yml:2: not UTF-8 text \(byte 0xe9\). Fix: re-save the file as UTF-8"):
        load_recipe(path)


def test_12_a_port_in_use_for_gradio_is_an_error_naming_the_flag():
    import socket

    from ftkit.infer import ui

    gr = ui._gradio()
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        with pytest.raises(FtkitError, match=rf"--port: cannot serve on 127.0.0.1:{port}: the port is in use by "
                                             r"another program. Fix: pass another --port"):
            with gr.Blocks() as app:
                gr.Markdown("hello")
            ui.serve(app, "127.0.0.1", port, block=False)
    finally:
        taken.close()


# ---------------------------------------------------------------- 13. a real full disk at a checkpoint; the datasets cache

@pytest.mark.skipif(not TMPFS, reason="no user namespace to mount a small tmpfs in (unshare -rm)")
def test_13_a_real_full_disk_at_a_checkpoint_is_recognised(short, tmp_path):
    """torch.save on a real full disk says only "unexpected pos N vs M" (after "basic_ios::clear: iostream
    error"): recognised by the free space left where it wrote."""
    small = tmp_path / "small"
    small.mkdir()
    recipe = short(out="small/out", max_steps=3)
    path = _recipe_file(tmp_path, recipe)
    script = f"mount -t tmpfs -o size=4m tmpfs {small} && {sys.executable} -m ftkit train {path}; rc=$?; " \
             f"ls {small}/out; exit $rc"
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "the disk is full" in proc.stderr
    assert "while writing checkpoint-2; removed the cut-off checkpoint-2; kept: the newest intact checkpoint " \
           f"{small}/out/checkpoint-1" in proc.stderr and "unexpected pos" in proc.stderr
    assert f"Fix: free space, then run again with --resume_from_checkpoint={small}/out/checkpoint-1" in proc.stderr
    assert "checkpoint-2" not in proc.stdout.split()


@pytest.mark.skipif(not TMPFS, reason="no user namespace to mount a small tmpfs in (unshare -rm)")
def test_13_a_full_datasets_cache_is_not_blamed_on_the_data_file(short, tmp_path):
    big = tmp_path / "big.jsonl"
    big.write_text((ROOT / "data_samples" / "alpaca.jsonl").read_text() * 4)
    cache = tmp_path / "hf-datasets"
    cache.mkdir()
    path = _recipe_file(tmp_path, short(datasets=[{"path": str(big), "type": "alpaca"}]))
    script = f"mount -t tmpfs -o size=200k tmpfs {cache} && exec {sys.executable} -m ftkit preprocess {path}"
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=ROOT, env={**ENV, "HF_DATASETS_CACHE": str(cache)},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert f"datasets.0.path: the disk holding the datasets cache ({cache}) is full while it converts big.jsonl" in \
        proc.stderr and "Fix: free space there, or set HF_DATASETS_CACHE (or HF_HOME)" in proc.stderr
    assert "check the file is valid" not in proc.stderr and "Traceback" not in proc.stderr


# ---------------------------------------------------------------- 14. a FIFO or a device as the dataset

@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_14_a_dataset_that_is_not_a_regular_file_is_refused_at_once(tmp_path, kind):
    """In a child with 3 GB of address space and a timeout: the code before this fix waited on the FIFO forever and
    read /dev/zero until memory ran out."""
    if kind == "fifo":
        path = tmp_path / "rows.jsonl"
        os.mkfifo(path)
    else:
        path = Path("/dev/zero")
    code = textwrap.dedent(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
        from ftkit import data
        from ftkit.errors import DataError
        from ftkit.recipe import load_recipe
        recipe = load_recipe({{"base_model": "tiny:llama", "datasets": [{{"path": {str(path)!r}, "type": "alpaca",
                                                                        "ds_type": "json"}}]}})
        try:
            data.load_raw(recipe.datasets[0], recipe, "datasets.0")
        except DataError as e:
            print(e)""")
    proc = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.search(rf"datasets.0.path: dataset path '{path}' is not a regular file \("
                     + (r"a named pipe \(FIFO\)" if kind == "fifo" else "a device") +
                     r"\): reading it could wait forever.*Fix: save the rows to a file first", proc.stdout), proc.stdout


# ---------------------------------------------------------------- 15. a checkpoint-N that is a symlink

def test_15_a_symlinked_checkpoint_is_never_written_through_nor_rotated(short, tmp_path, said):
    """Also a numbered folder of the user's (no manifest): the Trainer used to write its checkpoint into it."""
    from test_faults import _checkpoint

    recipe = short(max_steps=4, save_total_limit=1)
    out = Path(recipe.output_dir)
    kept = _checkpoint(tmp_path / "archive", 2, recipe)  # the user's checkpoint, kept elsewhere
    before = {p.name: p.read_bytes() for p in kept.iterdir()}
    (out / "checkpoint-3").mkdir(parents=True)
    (out / "checkpoint-3" / "notes.txt").write_text("mine")
    (out / "checkpoint-2").symlink_to(kept, target_is_directory=True)
    train.run(recipe, overwrite=True)
    assert (out / "checkpoint-2").is_symlink() and {p.name: p.read_bytes() for p in kept.iterdir()} == before
    assert [p.name for p in (out / "checkpoint-3").iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3", "checkpoint-4"]
    assert any(f"{out}/checkpoint-2 is a symbolic link to {kept}: treated as yours" in m for m in said), said
    assert any(f"{out}/checkpoint-3 is a folder without ftkit's manifest: treated as yours" in m for m in said)
    assert any("not writing checkpoint-2" in m for m in said) and any("not writing checkpoint-3" in m for m in said)
    assert not any("removed checkpoint-2" in m or "removed checkpoint-3" in m for m in said)


# ---------------------------------------------------------------- 16. tiny twins: a read-only home, a typo

@pytest.mark.skipif(AS_USER is None, reason="running as root without user namespaces: file modes do not apply")
def test_16_a_read_only_home_names_ftkit_cache_not_a_download(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o555)
    path = tmp_path / "r.yml"
    path.write_text(f"base_model: tiny:llama\ndatasets:\n  - path: {ROOT}/data_samples/alpaca.jsonl\n")
    env = {k: v for k, v in ENV.items() if k != "FTKIT_CACHE"}
    proc = subprocess.run([*AS_USER, sys.executable, "-m", "ftkit", "preprocess", str(path)], cwd=ROOT,
                          env={**env, "HOME": str(home)}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"r.yml:1: base_model: cannot build the tiny twin tiny:llama in {home}/.cache/ftkit/tiny (Permission " \
           "denied). Fix: set FTKIT_CACHE to a folder you can write" in proc.stderr
    assert "huggingface-cli download" not in proc.stderr and "Traceback" not in proc.stderr


def test_16_a_tiny_twin_typo_names_the_recipe_line(tmp_path):
    from ftkit import models

    path = tmp_path / "r.yml"
    path.write_text("datasets:\n  - path: x.jsonl\nbase_model: tiny:lama\n")
    with pytest.raises(FtkitError, match=r"r.yml:3: base_model: no tiny twin for family 'lama'. Fix: did you mean "
                                         r"tiny:llama\?"):
        models.load_tokenizer(load_recipe(path))
