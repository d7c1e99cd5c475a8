"""DeepSpeed ZeRO-3 in two CPU processes (gloo): full fine-tune and LoRA, killed with SIGKILL and resumed.

Each run: one process with gradient_accumulation_steps=2 is the reference (test_multinode.py says why two ranks
of one micro-batch each equal it); the two-process ZeRO-3 run is killed (the whole process group, SIGKILL) once
its first checkpoint is complete, then started again with auto_resume_from_checkpoints: DeepSpeed reloads its
partitioned weights and optimizer states, and the per-step losses of the whole run equal the reference's. The
final model is gathered from the partitions (stage3_gather_16bit_weights_on_model_save) into a plain folder.
"""
import json
import signal
import time

import psutil
import pytest
import torch
from conftest import run_cli
from safetensors.torch import load_file
from test_multinode import finish, ftkit, losses

STEPS = ["--max_steps=3", "--learning_rate=0.01"]  # with test_multinode.RUN's 3 steps
ZERO3 = ["--num_processes=2", "--deepspeed=recipes/deepspeed/zero3.json", "--save_strategy=steps", "--save_steps=1",
         "--auto_resume_from_checkpoints=true"]
LORA = ["--adapter=lora", "--lora_r=4", "--lora_alpha=8", "--lora_target_linear=true"]


def kill_after_first_checkpoint(proc, out_dir) -> None:
    """SIGKILL the launcher and both ranks (torchrun starts each rank in a session of its own) once checkpoint-1
    is complete (ftkit's manifest is written last)."""
    manifest = out_dir / "checkpoint-1" / "ftkit_checkpoint.json"
    deadline = time.time() + 300
    while not manifest.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    for each in [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]:
        each.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL, proc.log.read_text()[-3000:]  # killed mid-run, not finished
    assert not (out_dir / "metrics.json").exists()


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_zero3_two_processes_equal_one_survive_sigkill_and_save_a_plain_model(tmp_path, tiny_llama_dir, mode):
    from transformers import AutoModelForCausalLM

    args = [f"--dataset_prepared_path={tmp_path / 'prepared'}", *STEPS, *(LORA if mode == "lora" else [])]
    one, two = tmp_path / "one", tmp_path / "two"
    single = ftkit(tmp_path / "one.log", *args, "--gradient_accumulation_steps=2", f"--output_dir={one}")
    finish(single)  # also prepares the data once, before the two ranks read it
    killed = ftkit(tmp_path / "killed.log", *args, *ZERO3, f"--output_dir={two}")
    kill_after_first_checkpoint(killed, two)
    shards = sorted(p.name for p in (two / "checkpoint-1" / "global_step1").iterdir())  # each rank's partitions
    assert shards == [f"zero_pp_rank_{r}_mp_rank_00_{part}_states.pt" for r in (0, 1) for part in ("model", "optim")]
    resumed = finish(ftkit(tmp_path / "resumed.log", *args, *ZERO3, f"--output_dir={two}"))
    assert "shm helper not compiled" in resumed

    runtime = json.loads((two / "metrics.json").read_text())["runtime"]
    assert runtime["world_size"] == 2 and runtime["resumed_from"].startswith(str(two / "checkpoint-"))
    assert int(runtime["resumed_from"].rsplit("-", 1)[1]) in (1, 2)  # mid-run: at least one step trained after it
    reference = losses(one)
    assert losses(two) == pytest.approx(reference, rel=1e-5, abs=1e-6)  # steps before and after the kill
    assert reference[0] != pytest.approx(reference[2])  # the steps trained

    # the final weights, gathered from both ranks' partitions, are the single process's
    if mode == "full":
        gathered = AutoModelForCausalLM.from_pretrained(two).state_dict()
        expected = AutoModelForCausalLM.from_pretrained(one).state_dict()
    else:
        gathered, expected = load_file(two / "adapter_model.safetensors"), load_file(one / "adapter_model.safetensors")
    assert gathered.keys() == expected.keys()
    for name, tensor in expected.items():
        assert gathered[name].shape == tensor.shape and gathered[name].numel() > 0, name  # not ZeRO-3's placeholders
        torch.testing.assert_close(gathered[name], tensor, atol=1e-5, rtol=1e-4, msg=name)
    if mode == "lora":  # merge-lora on the gathered adapter: base + (alpha / r) B A, a plain model
        merged = tmp_path / "merged"
        proc = run_cli("merge-lora", "recipes/quickstart.yml", *LORA, f"--output_dir={two}", f"--output-dir={merged}")
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
        assert not (merged / "adapter_config.json").exists()
        weights = AutoModelForCausalLM.from_pretrained(merged).state_dict()
        base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).state_dict()
        prefix = "base_model.model.model.layers.0.self_attn.q_proj"
        delta = 2.0 * gathered[f"{prefix}.lora_B.weight"] @ gathered[f"{prefix}.lora_A.weight"]
        assert delta.abs().max() > 1e-4  # the adapter moved
        torch.testing.assert_close(weights["model.layers.0.self_attn.q_proj.weight"],
                                   base["model.layers.0.self_attn.q_proj.weight"] + delta, atol=1e-6, rtol=1e-5)
