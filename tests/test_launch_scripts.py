"""The cluster launch scripts in recipes/cloud/ (shown in docs/cloud.md): valid bash, and they launch what they say;
the SkyPilot task parses with the keys SkyPilot reads, and the Modal script defines its app without running remote.

The Slurm script runs here for real: a stand-in `srun` starts one task per node of the job with the variables
Slurm gives each task (SLURM_NODEID, SLURM_PROCID, ...), a stand-in `scontrol` names the nodes, and the two
"nodes" train the tiny twin one step together (gloo). The SSH pair runs with a stand-in `ssh` that records the
command each host would run.
"""
import importlib.util
import json
import os
import py_compile
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import OFFLINE, ROOT
from test_multinode import clean_env

CLOUD = ROOT / "recipes" / "cloud"
SCRIPTS = ["slurm.sbatch", "ssh-pair.sh"]
FAKE_SRUN = """#!/bin/bash
# srun on one machine: one task per node of the job, each with the variables Slurm sets for it
while [[ $1 == --* ]]; do shift; done
pids=()
for ((node = 0; node < SLURM_NNODES; node++)); do
    SLURM_NODEID=$node SLURM_PROCID=$node SLURM_LOCALID=0 SLURM_NTASKS=$SLURM_NNODES "$@" &
    pids+=($!)
done
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=$?; done
exit $rc
"""
FAKE_SCONTROL = '#!/bin/bash\n[ "$1 $2 $3" = "show hostnames node[1-2]" ] && printf "127.0.0.1\\n127.0.0.1\\n"\n'
FAKE_SSH = '#!/bin/bash\nprintf "%s\\t%s\\n" "$1" "$2" >> "$SSH_LOG"\n'


def stand_ins(tmp_path: Path, **scripts: str) -> dict:
    """An environment whose PATH finds the given stand-in commands first, then this venv's `ftkit`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ["PATH"]])
    return {**clean_env(), **OFFLINE, "PATH": path, "PYTHONPATH": str(ROOT), "FTKIT_THREADS": "1"}


@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts_are_valid_bash_and_shown_whole_in_the_docs(name):
    subprocess.run(["bash", "-n", str(CLOUD / name)], check=True)
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "docs" / "cloud.md").read_text(), re.S)  # files; ```bash: commands
    assert (CLOUD / name).read_text() in blocks  # the page shows the file as it is


def test_slurm_script_trains_on_two_nodes_with_the_variables_slurm_sets(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = stand_ins(tmp_path, srun=FAKE_SRUN, scontrol=FAKE_SCONTROL)
    env.update(SLURM_NNODES="2", SLURM_JOB_NODELIST="node[1-2]", SLURM_GPUS_ON_NODE="1", MASTER_PORT=str(port))
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(CLOUD / "slurm.sbatch"), "recipes/quickstart.yml", f"--output_dir={out}",
                           f"--dataset_prepared_path={tmp_path / 'prepared'}", "--max_steps=1", "--sequence_len=64",
                           "--micro_batch_size=2", "--eval_prompts=[]", "--val_set_size=0", "--warmup_steps=0"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    runtime = json.loads((out / "metrics.json").read_text())["runtime"]
    assert runtime["world_size"] == 2 and [(r["rank"], r["steps"]) for r in runtime["replicas"]] == [(0, 1), (1, 1)]
    assert "2 processes, steps [1, 1]: replicas identical" in proc.stdout + proc.stderr


def test_ssh_pair_runs_the_same_command_on_both_hosts_with_their_ranks(tmp_path):
    env = stand_ins(tmp_path, ssh=FAKE_SSH)
    env.update(SSH_LOG=str(tmp_path / "ssh.log"), FTKIT_DIR="/srv/my ftkit", GPUS="4")
    subprocess.run(["bash", str(CLOUD / "ssh-pair.sh"), "me@gpu0", "gpu1", "recipes/llama/lora.yml",
                    "--max_steps=10", "--wandb_project=a b"], env=env, check=True, timeout=30)
    sent = dict(line.split("\t") for line in (tmp_path / "ssh.log").read_text().splitlines())
    assert set(sent) == {"me@gpu0", "gpu1"}
    for host, rank in (("me@gpu0", "0"), ("gpu1", "1")):
        words = shlex.split(sent[host])  # as the remote shell reads it
        assert words[:3] == ["cd", "/srv/my ftkit", "&&"]
        assert words[3:] == ["exec", "ftkit", "train", "recipes/llama/lora.yml", "--num_machines", "2",
                             "--machine_rank", rank, "--main_process_ip", "gpu0", "--main_process_port", "29500",
                             "--num_processes", "8", "--max_steps=10", "--wandb_project=a b"]


def test_multi_gpu_check_script_is_valid_bash():
    """It needs several GPUs to mean anything (docs/multi-gpu.md); here: it parses, and knows every engine."""
    script = ROOT / "ftkit" / "bench" / "multi_gpu_checks.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    assert all(f"[{engine}]=" in script.read_text() for engine in ("ddp", "zero2", "zero3", "fsdp", "fsdp_hybrid"))


FAKE_FTKIT = '#!/bin/bash\nprintf "%s\\n" "$@" > "$FTKIT_ARGV.$SKYPILOT_NODE_RANK"\n'


def test_skypilot_task_has_what_sky_reads_and_runs_ftkit_on_each_node_with_its_rank(tmp_path):
    text = (CLOUD / "skypilot.yaml").read_text()
    assert text in re.findall(r"```yaml\n(.*?)```", (ROOT / "docs" / "cloud.md").read_text(), re.S)
    task = yaml.safe_load(text)
    assert task["num_nodes"] == 2 and task["resources"]["accelerators"] == "H100:8" and task["workdir"] == "."
    assert set(task["envs"]) == {"RECIPE", "ARGS", "PORT"}  # what `sky launch --env` overrides
    for block in ("setup", "run"):
        subprocess.run(["bash", "-n"], input=task[block], text=True, check=True)
    env = stand_ins(tmp_path, ftkit=FAKE_FTKIT)
    env.update({k: str(v) for k, v in task["envs"].items()})  # SkyPilot exports them, then its own variables
    env.update(RECIPE="recipes/llama/full.yml", ARGS="--deepspeed=recipes/deepspeed/zero3.json --max_steps=10",
               FTKIT_ARGV=str(tmp_path / "argv"), SKYPILOT_NODE_IPS="10.0.0.5\n10.0.0.6", SKYPILOT_NUM_NODES="2",
               SKYPILOT_NUM_GPUS_PER_NODE="8")
    for rank in (0, 1):
        subprocess.run(["bash", "-c", task["run"]], env={**env, "SKYPILOT_NODE_RANK": str(rank)}, check=True)
        argv = (tmp_path / f"argv.{rank}").read_text().splitlines()
        assert argv == ["train", "recipes/llama/full.yml", "--num_machines", "2", "--machine_rank", str(rank),
                        "--main_process_ip", "10.0.0.5", "--main_process_port", "29500", "--num_processes", "16",
                        "--deepspeed=recipes/deepspeed/zero3.json", "--max_steps=10"]


def test_modal_script_compiles_and_defines_the_gpu_function_without_running_remote(monkeypatch):
    script = CLOUD / "modal_train.py"
    py_compile.compile(str(script), doraise=True)
    assert script.read_text() in re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "cloud.md").read_text(), re.S)
    modal = pytest.importorskip("modal")  # the [cloud] extra
    monkeypatch.setenv("FTKIT_MODAL_GPUS", "2")
    monkeypatch.chdir(ROOT)  # `modal run` runs from the checkout, which the image copies
    spec = importlib.util.spec_from_file_location("modal_train", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # defines the app and its image; builds and runs nothing
    assert module.app.name == "ftkit" and isinstance(module.train, modal.Function)
    assert type(module.main).__name__ == "LocalEntrypoint"  # what `modal run` calls here, with --recipe/--args
    assert module.train._spec_.gpus == "H100:2" and set(module.train._spec_.volumes) == {"/ftkit/outputs"}
    assert module.train_command("recipes/llama/lora.yml", '--max_steps=5 "--wandb_project=a b"') == [
        "ftkit", "train", "recipes/llama/lora.yml", "--num_processes", "2", "--max_steps=5", "--wandb_project=a b"]
