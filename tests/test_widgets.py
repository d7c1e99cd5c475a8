"""The notebooks' training panel, driven as a person drives it in JupyterLab (no browser: set `.value`, `.click()`):
the value set is the value trained, Stop ends training cleanly with a checkpoint, Resume continues from it, and the
quickstart's family/method chooser builds the recipe it names."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from ftkit.cookbook import workshop
from ftkit.errors import ConfigError

pytest.importorskip("ipywidgets")
PNG = b"\x89PNG\r\n\x1a\n"


def lesson_panel(tmp_path, max_steps=40):
    """A family lesson's panel over a parameters cell as the llama notebook has it (the namespace is its globals)."""
    namespace = {"recipe_path": "recipes/llama/lora.yml", "tiny": True, "max_steps": max_steps, "learning_rate": 0.01,
                 "output_dir": str(tmp_path / "run")}
    panel = workshop.TrainingPanel(workshop.lesson_recipe, namespace, root=ROOT,
                                   overrides={"eval_prompts": [], "dataset_prepared_path": str(tmp_path / "prepared")})
    panel.form()
    return panel, namespace


def wait_for_step(panel, step: int, timeout: float = 300) -> None:
    """Until the panel's status line reports `step N/M` with N >= step (the run is in its background thread)."""
    t0 = time.time()
    while time.time() - t0 < timeout and panel.running:
        words = panel.status.value.split()
        if words[:1] == ["step"] and int(words[1].split("/")[0]) >= step:
            return
        time.sleep(0.1)
    raise AssertionError(f"no step {step} within {timeout}s: {panel.status.value!r} {panel.error!r}")


def test_the_value_set_in_the_form_is_the_value_trained(tmp_path):
    panel, namespace = lesson_panel(tmp_path, max_steps=40)
    assert list(panel.fields) == ["recipe_path", "tiny", "max_steps", "learning_rate", "output_dir"]
    kinds = {name: type(field).__name__ for name, field in panel.fields.items()}
    assert kinds == {"recipe_path": "Text", "tiny": "Checkbox", "max_steps": "IntText", "learning_rate": "FloatText",
                     "output_dir": "Text"}
    panel.fields["max_steps"].value = 3
    assert namespace["max_steps"] == 3  # re-running a cell sees the form's value too
    assert panel.recipe().max_steps == 3  # the recipe the next cell trains
    panel.buttons["train"].click()
    result = panel.wait(600)
    assert panel.error is None and result is not None, panel.error
    assert result.steps == 3  # the run used the form's value, not the parameters cell's 40
    saved = yaml.safe_load((tmp_path / "run" / "recipe.yml").read_text())
    assert saved["max_steps"] == 3
    assert json.loads((tmp_path / "run" / "trainer_state.json").read_text())["global_step"] == 3
    assert namespace["result"] is result and namespace["recipe"].max_steps == 3  # the cells below use this run
    assert bytes(panel.plot.value[:8]) == PNG  # the live loss plot was drawn from the run's logs
    assert panel.status.value.startswith("done: 3 steps")


def test_stop_saves_a_checkpoint_and_resume_continues_from_it(tmp_path):
    from ftkit.train.checkpoint_files import problem_with

    panel, _ = lesson_panel(tmp_path, max_steps=12)
    panel.buttons["train"].click()
    wait_for_step(panel, 2)
    panel.buttons["stop"].click()
    stopped = panel.wait(600)
    assert panel.error is None and stopped is not None, panel.error
    assert 2 <= stopped.steps < 12, stopped.steps  # ended early, after the step it was in
    checkpoint = Path(panel.stopped_at)
    assert checkpoint == tmp_path / "run" / f"checkpoint-{stopped.steps}" and problem_with(checkpoint) is None
    assert (tmp_path / "run" / "adapter_model.safetensors").is_file()  # the stopped run's model is saved too
    assert "Resume continues" in panel.status.value

    panel.buttons["resume"].click()
    resumed = panel.wait(600)
    assert panel.error is None and resumed is not None, panel.error
    assert resumed.steps == 12 and resumed.runtime["resumed_from"] == str(checkpoint)
    steps = [s for s, _ in resumed.losses]
    assert steps == list(range(1, 13))  # the logged history continues the stopped run's, no step twice
    assert resumed.losses[: stopped.steps] == stopped.losses  # the first steps are the stopped run's, kept


def test_resume_without_a_stopped_run_is_a_clear_error(tmp_path):
    panel, _ = lesson_panel(tmp_path)
    with pytest.raises(ConfigError, match=r"nothing to resume.*Fix: click Train first, then Stop"):
        panel.train(resume=True)


def test_quickstart_chooser_builds_the_recipe_of_the_family_and_method(tmp_path):
    namespace = {"family": "llama", "method": "full", "max_steps": 0, "learning_rate": 0.0,
                 "output_dir": str(tmp_path / "run")}
    panel = workshop.TrainingPanel(workshop.quickstart_recipe, namespace, choices=workshop.quickstart_choices(ROOT),
                                   root=ROOT)
    panel.form()
    family, method = panel.fields["family"], panel.fields["method"]
    assert type(family).__name__ == "Dropdown" and "mistral" in family.options and "rwkv" in family.options
    assert list(method.options) == ["full", "lora", "qlora", "dpo"]  # recipes/llama/ has lora, qlora and dpo
    default = panel.recipe()
    assert Path(default.source).name == "quickstart.yml" and default.base_model == "tiny:llama" and not default.adapter

    family.value = "mistral"
    assert list(method.options) == ["full", "lora", "qlora"]  # no recipes/mistral/dpo.yml
    method.value = "lora"
    recipe = panel.recipe()
    assert recipe.source.endswith("recipes/mistral/lora.yml") and recipe.base_model == "tiny:mistral"
    assert recipe.adapter == "lora" and recipe.eval_prompts == default.eval_prompts  # same three questions
    method.value = "full"
    assert panel.recipe().base_model == "tiny:mistral" and not panel.recipe().adapter

    family.value = "llama"
    method.value = "dpo"
    assert panel.recipe().rl == "dpo" and namespace["method"] == "dpo"
    with pytest.raises(ConfigError, match=r"no dpo recipe for family 'mistral'.*Fix: choose one of full, lora, qlora"):
        workshop.quickstart_recipe(ROOT, "mistral", "dpo", 0, 0.0, str(tmp_path))


def test_headless_train_uses_the_parameters_cell(tmp_path):
    """Without a form (papermill), panel.train() trains the namespace's values, blocking, like any cell."""
    namespace = {"method": "dpo", "base_model": "tiny:llama", "max_steps": 2, "output_dir": str(tmp_path / "dpo")}
    panel = workshop.TrainingPanel(workshop.preference_recipe, namespace, overrides={"eval_prompts": []})
    assert panel.show() is None and panel.fields == {}
    recipe, result = panel.train()
    assert recipe.rl == "dpo" and result.steps == 2 and panel.stopped_at is None


def test_grpo_form_builds_the_recipe_it_shows(tmp_path):
    """The GRPO lesson's form: the values set are the recipe's; learning_rate 0 is the recipe's own on the real model
    and the twin's big step on a twin (no training: the lesson's run is the notebook test's)."""
    namespace = {"base_model": "tiny:llama", "max_steps": 40, "learning_rate": 0.0, "output_dir": str(tmp_path / "g")}
    panel = workshop.TrainingPanel(workshop.grpo_recipe, namespace)
    panel.form()
    assert list(panel.fields) == ["base_model", "max_steps", "learning_rate", "output_dir"]
    panel.fields["max_steps"].value = 5
    recipe = panel.recipe()
    assert recipe.rl == "grpo" and recipe.max_steps == 5 and recipe.learning_rate == 0.03
    panel.fields["base_model"].value = "meta-llama/Llama-3.2-1B-Instruct"
    assert panel.recipe().learning_rate == 5e-5 and panel.recipe().base_model == namespace["base_model"]
    panel.fields["learning_rate"].value = 0.001
    assert panel.recipe().learning_rate == 0.001
