"""Logging: tensorboard by default; W&B offline and an MLflow file store in one run, each with the recipe."""
from pathlib import Path

import pytest

from ftkit import train
from ftkit.errors import ConfigError


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    """One 2-step run logging to tensorboard, wandb (offline) and mlflow (file store)."""
    from conftest import QUICKSTART

    from ftkit.recipe import load_recipe

    tmp = tmp_path_factory.mktemp("logged")
    recipe = load_recipe(QUICKSTART, {
        "output_dir": str(tmp / "out"), "dataset_prepared_path": str(tmp / "prepared"), "max_steps": 2,
        "logging_steps": 1, "eval_prompts": [], "val_set_size": 0, "sequence_len": 64, "micro_batch_size": 2,
        "warmup_steps": 0, "wandb_project": "ftkit-test", "wandb_mode": "offline", "wandb_name": "tiny-run",
        "mlflow_tracking_uri": f"file:{tmp / 'mlruns'}", "mlflow_experiment_name": "ftkit-test"})
    result = train.run(recipe)
    return recipe, result, tmp


def test_tensorboard_event_file_has_loss_and_recipe(logged_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recipe, result, _ = logged_run
    runs = sorted((Path(recipe.output_dir) / "runs").iterdir())
    assert len(runs) == 1 and list(runs[0].glob("events.out.tfevents.*"))
    acc = EventAccumulator(str(runs[0]), size_guidance={"tensors": 0}).Reload()
    losses = [e.value for e in acc.Scalars("train/loss")]
    assert losses == pytest.approx([v for _, v in result.losses], rel=1e-5)
    assert any("ftkit/recipe" in t for t in acc.Tags()["tensors"])  # the resolved recipe as text


def test_wandb_offline_writes_a_run_dir_with_the_recipe(logged_run):
    recipe, _, _ = logged_run
    run_dirs = list((Path(recipe.output_dir) / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 1
    (log,) = run_dirs[0].glob("run-*.wandb")  # the offline log, syncable later with `wandb sync`
    records = log.read_bytes()  # protobuf records: keys and string values appear verbatim
    assert b"ftkit_recipe" in records and b"tiny:llama" in records  # the resolved recipe as run config
    assert b"train/loss" in records


def test_mlflow_file_store_records_params_and_metrics(logged_run):
    from mlflow.tracking import MlflowClient

    recipe, result, tmp = logged_run
    client = MlflowClient(tracking_uri=f"file:{tmp / 'mlruns'}")
    exp = client.get_experiment_by_name("ftkit-test")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.params["ftkit.base_model"] == "tiny:llama"  # the resolved recipe
    assert float(run.data.params["learning_rate"]) == recipe.learning_rate  # TrainingArguments, by transformers
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [m.value for m in history] == pytest.approx([v for _, v in result.losses], rel=1e-5)
    assert "ftkit_recipe.yml" in [a.path for a in client.list_artifacts(run.info.run_id)]


def test_use_comet_without_comet_ml_says_what_to_install(make_recipe):
    from ftkit.plugins.tracking import report_to

    with pytest.raises(ConfigError, match="use_comet: logging to comet_ml needs the comet_ml package.*Fix: pip install comet_ml"):
        report_to(make_recipe(use_comet=True))
