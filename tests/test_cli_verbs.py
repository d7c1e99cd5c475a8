"""The verbs Axolotl users reach for and the CLI's manners: --version, evaluate, fetch, options order,
infer on a terminal, and `ftkit memory` saying which precision it assumed."""
from __future__ import annotations

import io
import json
import math

import pytest

from ftkit import __version__
from ftkit.cli import main

from conftest import ROOT, run_cli


def test_version_and_help_document_the_new_verbs():
    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"ftkit {__version__}"
    top = run_cli("--help").stdout
    assert "evaluate" in top and "fetch" in top and "--version" in top
    ev = run_cli("evaluate", "--help").stdout
    assert "--dataset" in ev and "--json OUT" in ev and "perplexity" in ev
    fetch = run_cli("fetch", "--help").stdout
    assert "{examples,deepspeed_configs,notebooks,data_samples}" in fetch and "--dest" in fetch


def test_options_start_with_the_model_and_data(capsys):
    assert main(["options"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| `")]
    names = [r.split("`")[1] for r in rows]
    assert names[0] == "base_model" and names.index("datasets") < 10, names[:12]
    assert names.index("base_model") < names.index("learning_rate") < names.index("sample_packing")


def test_options_piped_to_head_ends_quietly():
    import subprocess
    import sys

    proc = subprocess.run(f"{sys.executable} -m ftkit options | head -2", shell=True, capture_output=True, text=True,
                          cwd=ROOT, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.count("\n") == 2 and "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_infer_on_a_terminal_says_it_waits_for_prompts(trained_quickstart, said, capsys):
    from ftkit import infer

    recipe, result = trained_quickstart
    out = io.StringIO()
    answers = infer.run(recipe, stdin=_Terminal("What is the capital of Spain?\n"), stdout=out)
    waiting = [line for line in said if line.startswith("waiting for prompts")]
    assert waiting and "one per line" in waiting[0] and "Ctrl-D ends" in waiting[0]
    assert json.loads(out.getvalue()) == {"prompt": "What is the capital of Spain?", "completion": answers[0]}
    said.clear()
    infer.run(recipe, stdin=io.StringIO("What is the capital of Spain?\n"), stdout=io.StringIO())  # a pipe: quiet
    assert not [line for line in said if line.startswith("waiting for prompts")]


def test_evaluate_reproduces_the_trained_eval_loss_and_runs_the_assertion_evals(trained_quickstart, tmp_path, capsys):
    recipe, result = trained_quickstart
    out = tmp_path / "eval.json"
    code = main(["evaluate", str(recipe.source), f"--output_dir={recipe.output_dir}", "--max_new_tokens=12",
                 f"--dataset_prepared_path={recipe.dataset_prepared_path}", "--json", str(out)])
    assert code == 0, capsys.readouterr().err[-3000:]
    stdout = capsys.readouterr().out
    report = json.loads(out.read_text())
    # the same number training reported after its last step, from the reloaded model
    assert report["eval_loss"] == pytest.approx(result.eval_loss_after, rel=1e-5), (report, result.eval_loss_after)
    assert report["perplexity"] == pytest.approx(math.exp(result.eval_loss_after), rel=1e-5)
    assert report["rows"] == 120 and "eval split" in report["dataset"]
    ae = report["assertion_evals"]
    assert [a["prompt"] for a in ae["answers"]] == recipe.eval_prompts
    assert [a["answer"] for a in ae["answers"]] == [s["completion"] for s in result.samples_after]
    assert ae["checked"] > len(recipe.eval_prompts) and 0 <= ae["passed"] <= ae["checked"]
    assert f"eval loss {report['eval_loss']:.4f}, perplexity {report['perplexity']:.3f}" in stdout


def test_evaluate_on_a_given_dataset_and_without_an_eval_split(trained_quickstart, tmp_path, capsys):
    recipe, result = trained_quickstart
    rows = [json.loads(line) for line in (ROOT / "data_samples" / "alpaca.jsonl").read_text().splitlines()[:20]]
    data = tmp_path / "few.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = [str(recipe.source), f"--output_dir={recipe.output_dir}", f"--dataset_prepared_path={tmp_path / 'p'}",
              "--eval_prompts=[]"]
    assert main(["evaluate", *common, "--dataset", str(data), "--json", str(tmp_path / "few.json")]) == 0
    report = json.loads((tmp_path / "few.json").read_text())
    assert report["rows"] == 20 and str(data) in report["dataset"] and report["assertion_evals"] is None
    assert 0 < report["eval_loss"] < result.first_loss  # trained rows: far below the untrained loss
    assert main(["evaluate", *common, "--val_set_size=0"]) == 2
    err = capsys.readouterr().err
    assert "val_set_size: the recipe has no eval split to evaluate on" in err and "--dataset PATH" in err


def test_fetch_copies_shipped_files_and_never_overwrites_silently(tmp_path, capsys):
    assert main(["fetch", "examples", "--dest", str(tmp_path / "ex")]) == 0
    got = sorted(str(p.relative_to(tmp_path / "ex")) for p in (tmp_path / "ex").rglob("*") if p.is_file())
    want = sorted(str(p.relative_to(ROOT / "recipes")) for p in (ROOT / "recipes").rglob("*")
                  if p.is_file() and p.suffix in (".yml", ".yaml", ".json", ".md", ".py", ".sh", ".sbatch"))  # .py: rewards.py
    assert got == want and "quickstart.yml" in got and "deepspeed/zero2.json" in got and "llama/rewards.py" in got
    assert {"cloud/slurm.sbatch", "cloud/ssh-pair.sh", "cloud/skypilot.yaml", "cloud/modal_train.py"} <= set(got)  # docs/cloud.md
    assert main(["fetch", "deepspeed_configs", "--dest", str(tmp_path / "ds")]) == 0
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == ["README.md", "zero1.json", "zero2.json", "zero3.json"]
    assert main(["fetch", "notebooks", "--dest", str(tmp_path / "nb")]) == 0
    assert (tmp_path / "nb" / "00_quickstart.ipynb").is_file() and not (tmp_path / "nb" / "_make.py").exists()
    assert main(["fetch", "data_samples", "--dest", str(tmp_path / "ds2")]) == 0
    assert (tmp_path / "ds2" / "instruct" / "jeopardy.jsonl").read_bytes() == \
        (ROOT / "data_samples" / "instruct" / "jeopardy.jsonl").read_bytes()
    capsys.readouterr()
    (tmp_path / "ex" / "quickstart.yml").write_text("mine\n")
    assert main(["fetch", "examples", "--dest", str(tmp_path / "ex")]) == 2  # a changed file: refused
    err = capsys.readouterr().err
    assert "quickstart.yml exists with other content" in err and "pass --force" in err
    assert (tmp_path / "ex" / "quickstart.yml").read_text() == "mine\n"
    assert main(["fetch", "examples", "--dest", str(tmp_path / "ex"), "--force"]) == 0
    assert (tmp_path / "ex" / "quickstart.yml").read_bytes() == (ROOT / "recipes" / "quickstart.yml").read_bytes()
    out = capsys.readouterr().out
    assert "fetch examples: 1 file(s) copied" in out and "already there" in out


def test_fetched_examples_work_in_the_folder_fetched_into(tmp_path, monkeypatch, capsys):
    """The default destinations mirror the repository: `ftkit preprocess recipes/quickstart.yml` works there."""
    monkeypatch.chdir(tmp_path)
    assert main(["fetch", "examples"]) == 0 and main(["fetch", "data_samples"]) == 0
    assert main(["preprocess", "recipes/quickstart.yml"]) == 0
    assert "2400 rows in" in capsys.readouterr().out and (tmp_path / "last_run_prepared").is_dir()


def test_memory_on_a_cpu_says_which_precision_it_assumed(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("on a CUDA machine bf16: auto resolves to the GPU's precision; nothing to announce")
    assert main(["memory", "recipes/llama/lora.yml"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("bf16: auto -> fp32 on this machine (no CUDA bf16 device)"), first
    assert "on a bf16 GPU: peak" in first and "--bf16=true" in first
    assert main(["memory", "recipes/llama/lora.yml", "--bf16=true"]) == 0
    gpu = capsys.readouterr().out
    assert not gpu.startswith("bf16: auto")  # an explicit precision needs no announcement
    peak = next(line for line in gpu.splitlines() if line.strip().startswith("peak")).split()[1]
    assert f"peak {peak} GB per device" in first  # the announced GPU figure is the bf16 table's
