"""Two machines on one: two `ftkit train --num_machines 2` launchers of one process each, on localhost (gloo).

Why their losses equal one process with twice the gradient accumulation, exactly: accelerate shards the
training batches across ranks, rank r taking batches r, r+W, ... of the one seeded order, so step 1 of the
two-node run sees batches 0 and 1, as the single process's two accumulation micro-steps do. DDP averages the
two ranks' gradients, and transformers scales each loss by the tokens of the whole step (num_items_in_batch,
summed across ranks and micro-steps), so the update is the same token-weighted mean. The tiny twin has no
dropout, so no random draw differs either.
"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import OFFLINE, ROOT, run_cli

from ftkit.errors import FtkitError
from ftkit.plugins import distributed

WORLD_VARS = {"RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}
RUN = ["--sequence_len=64", "--micro_batch_size=2", "--max_steps=3", "--logging_steps=1", "--eval_prompts=[]",
       "--val_set_size=0", "--warmup_steps=0", "--lr_scheduler=constant"]


def clean_env() -> dict:
    """This process's environment without a world another in-process test may have described (RANK, ...)."""
    return {k: v for k, v in os.environ.items() if k not in WORLD_VARS}


def ftkit(log: Path, *args: str) -> subprocess.Popen:
    """Start `ftkit train` in the background, its output into `log` (a pipe could fill and stall a rank)."""
    env = {**clean_env(), **OFFLINE, "PYTHONPATH": str(ROOT), "FTKIT_THREADS": "1"}
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ftkit", "train", "recipes/quickstart.yml", *RUN, *args],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    proc.log = log
    return proc


def finish(proc: subprocess.Popen) -> str:
    proc.wait(timeout=400)
    out = proc.log.read_text()
    assert proc.returncode == 0, out[-3000:]
    return out


def losses(out_dir: Path) -> list[float]:
    return [loss for _, loss in json.loads((out_dir / "metrics.json").read_text())["losses"]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_equal_one_process_with_double_accumulation_and_resume_on_one(tmp_path):
    prep = f"--dataset_prepared_path={tmp_path / 'prepared'}"
    nodes = ["--num_machines=2", "--main_process_ip=127.0.0.1", f"--main_process_port={free_port()}"]
    two = tmp_path / "two"
    one = ftkit(tmp_path / "one.log", prep, "--gradient_accumulation_steps=2", f"--output_dir={tmp_path / 'one'}")
    ranks = [ftkit(tmp_path / f"node{r}.log", prep, *nodes, f"--machine_rank={r}", f"--output_dir={two}",
                   "--save_strategy=steps", "--save_steps=2") for r in (0, 1)]
    node0, _, _ = finish(ranks[0]), finish(ranks[1]), finish(one)
    runtime = json.loads((two / "metrics.json").read_text())["runtime"]
    assert runtime["world_size"] == 2 and [r["steps"] for r in runtime["replicas"]] == [3, 3]
    assert "2 processes, steps [3, 3]: replicas identical" in node0
    reference = losses(tmp_path / "one")
    assert losses(two) == pytest.approx(reference, rel=1e-5, abs=1e-6)
    assert reference[0] != pytest.approx(reference[2])  # the steps trained (the comparison is not of constants)

    # the two-node run's checkpoint-2 continues on one process (the same global batch) to the same step-3 loss
    resumed = tmp_path / "resumed"
    finish(ftkit(tmp_path / "resumed.log", prep, "--gradient_accumulation_steps=2", f"--output_dir={resumed}",
                 f"--resume_from_checkpoint={two / 'checkpoint-2'}"))
    assert json.loads((resumed / "metrics.json").read_text())["runtime"]["resumed_from"] == str(two / "checkpoint-2")
    # its history holds steps 1-2 from the checkpoint and step 3 trained here
    assert losses(resumed) == pytest.approx(reference, rel=1e-5, abs=1e-6)


def test_node_flag_mistakes_are_said_before_anything_starts():
    with pytest.raises(FtkitError, match=r"(?s)command line: --machine_rank: --machine_rank must be 0..1.*"
                                         r"--main_process_ip: every machine needs the address of machine 0.*"
                                         r"--num_processes: --num_processes 3 .* is not a multiple of --num_machines 2"):
        distributed.launch("r.yml", [], 3, {"num_machines": 2, "machine_rank": 2})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(FtkitError, match=rf"--main_process_port: port {port} is in use on this machine"):
            distributed.launch("r.yml", [], None, {"num_machines": 2, "machine_rank": 0,
                                                   "main_process_ip": "127.0.0.1", "main_process_port": port})
    proc = run_cli("train", "recipes/quickstart.yml", "--num_machines=2", "--machine_rank=0")
    assert proc.returncode != 0 and "ftkit: error" in proc.stderr and "--main_process_ip" in proc.stderr
    assert "Traceback" not in proc.stderr
