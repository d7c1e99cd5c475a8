"""The notebooks' training panel: a form over the parameters cell that builds the recipe the notebook trains.

In JupyterLab the form shows the parameters (and, in the quickstart, a family/method chooser); its Train button
trains the recipe the form holds in the background with a live loss plot, Stop ends training cleanly after the
current step (a checkpoint is saved, the run's model is saved) and Resume continues from that checkpoint. When a
run ends, the notebook's `recipe` and `result` name it, so the cells below show, save and reload that run.
Headless (papermill, `ftkit notebooks run`) nothing is shown: the parameters cell rules and `panel.train()` runs
top to bottom as any cell does.

    panel = workshop.TrainingPanel(workshop.lesson_recipe, globals(), root=root)
    panel.show()                  # Jupyter: the form; headless: nothing
    recipe, result = panel.train()  # the recipe of the form's values now (papermill: the parameters cell)

The builders (`lesson_recipe`, `quickstart_recipe`, `preference_recipe`, `grpo_recipe`) turn the parameters into a Recipe; the
panel's fields are the builder's arguments that the notebook's parameters cell defines.
"""
from __future__ import annotations

import inspect
import threading
from pathlib import Path
from typing import Callable

from ftkit.cookbook import notebook as nb
from ftkit.errors import ConfigError, Problem
from ftkit.recipe import Recipe, load_recipe

ADAPTER_METHODS = ("lora", "qlora", "dpo")  # recipes/<family>/<method>.yml; "full" is the quickstart recipe


# ---------------------------------------------------------------- recipe builders (one per kind of notebook)

def lesson_recipe(root: Path, recipe_path: str, tiny: bool, max_steps: int, learning_rate: float, output_dir: str,
                  overrides: dict | None = None) -> Recipe:
    """A family or method lesson's recipe: the file, on its tiny twin at toy size when `tiny`, with the sample
    prompts to answer before and after; max_steps / learning_rate 0 keep the recipe's value."""
    from ftkit.cookbook.evals import SAMPLE_PROMPTS
    from ftkit.cookbook.twins import twin_overrides

    extra = {"output_dir": output_dir, "eval_prompts": SAMPLE_PROMPTS, **(overrides or {})}
    extra.update(twin_overrides(root / recipe_path) if tiny else {})  # twin + toy-size settings
    extra.update({"max_steps": max_steps} if max_steps else {})
    extra.update({"learning_rate": learning_rate} if learning_rate else {})
    return load_recipe(root / recipe_path, extra)


def methods_for(root: Path, family: str) -> list[str]:
    """What the quickstart can train for a family: `full` (the quickstart recipe on the family's twin) and
    each of lora/qlora/dpo that has a recipes/<family>/<method>.yml."""
    return ["full"] + [m for m in ADAPTER_METHODS if (root / "recipes" / family / f"{m}.yml").is_file()]


def quickstart_choices(root: Path) -> dict:
    """The quickstart's dropdowns: every family with a twin, and the methods that family has recipes for."""
    from ftkit.models.families import FAMILIES

    return {"family": list(FAMILIES), "method": lambda values: methods_for(root, values["family"])}


def quickstart_recipe(root: Path, family: str, method: str, max_steps: int, learning_rate: float, output_dir: str,
                      overrides: dict | None = None) -> Recipe:
    """The quickstart's recipe: `full` = recipes/quickstart.yml on tiny:<family> (the embedded default is
    tiny:llama); lora/qlora/dpo = recipes/<family>/<method>.yml on the family's twin. The eval prompts stay the
    quickstart's, so every choice answers the same three questions."""
    from ftkit.cookbook.twins import twin_overrides
    from ftkit.models.families import ALIASES, FAMILIES

    family = ALIASES.get(family, family)
    if family not in FAMILIES or method not in methods_for(root, family):
        choices = ", ".join(methods_for(root, family)) if family in FAMILIES else ", ".join(FAMILIES)
        raise ConfigError(Problem(f"no {method} recipe for family {family!r}", "parameters",
                                  "family" if family not in FAMILIES else "method", fix=f"choose one of {choices}"))
    quickstart = load_recipe(root / "recipes" / "quickstart.yml")
    extra = {"output_dir": output_dir, "eval_prompts": quickstart.eval_prompts, **(overrides or {})}
    if method == "full":
        path, extra = root / "recipes" / "quickstart.yml", {"base_model": f"tiny:{family}", **extra}
    else:
        path = root / "recipes" / family / f"{method}.yml"
        extra = {**twin_overrides(path), **extra}
    extra.update({"max_steps": max_steps} if max_steps else {})
    extra.update({"learning_rate": learning_rate} if learning_rate else {})
    return load_recipe(path, extra)


def preference_recipe(method: str, base_model: str, max_steps: int, output_dir: str,
                      overrides: dict | None = None) -> Recipe:
    """The preference lesson's recipe: recipes/llama/<method's file> (see cookbook/preference.py)."""
    from ftkit.cookbook.preference import method_recipe

    return method_recipe(method, {"base_model": base_model, "max_steps": max_steps, "output_dir": output_dir,
                                  **(overrides or {})})


def grpo_recipe(base_model: str, max_steps: int, learning_rate: float, output_dir: str,
                overrides: dict | None = None) -> Recipe:
    """The GRPO lesson's recipe: recipes/llama/grpo.yml; learning_rate 0 keeps the recipe's (the 1B model's),
    except on a twin: a random init needs a big step (0.03) to find the digits the reward pays for."""
    from ftkit.resources import shipped

    lr = learning_rate or (0.03 if base_model.startswith("tiny:") else None)
    return load_recipe(shipped("recipes/llama/grpo.yml"), {"base_model": base_model, "max_steps": max_steps,
                                                           "output_dir": output_dir, **({"learning_rate": lr} if lr else {}),
                                                           **(overrides or {})})


# ---------------------------------------------------------------- stopping cleanly

def stop_callback():
    """A TrainerCallback that ends training when `.request()` is called (the Stop button, from another thread):
    after the current step the Trainer saves a checkpoint (weights, optimizer, scheduler, data position) and
    stops; `.checkpoint` names it, and a run with `resume_from_checkpoint` set to it continues from there."""
    from transformers import TrainerCallback

    class StopTraining(TrainerCallback):
        def __init__(self):
            self.requested, self.checkpoint = threading.Event(), None

        def request(self):
            self.requested.set()

        def on_step_end(self, args, state, control, **kwargs):
            if self.requested.is_set():  # after the flow callback: save even where save_strategy is "no"
                control.should_save = control.should_training_stop = True

        def on_save(self, args, state, control, **kwargs):
            if self.requested.is_set():
                self.checkpoint = str(Path(args.output_dir) / f"checkpoint-{state.global_step}")

    return StopTraining()


def progress_callback(show: Callable[[str], None]):
    """A TrainerCallback that reports `step N/M: loss x` through `show` at each log (the panel's status line)."""
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                show(f"step {state.global_step}/{state.max_steps}: loss {logs['loss']:.4f}")

    return Progress()


# ---------------------------------------------------------------- the panel

class TrainingPanel:
    """The parameters as a form that builds the recipe to train, with Train / Stop / Resume and a live loss plot.

    `build` is a recipe builder; its arguments that `namespace` (the notebook's globals) defines become the form's
    fields, the others come from `fixed` (e.g. root=...). `choices` turns a field into a dropdown: a list, or a
    function of the current values dict (the quickstart's methods depend on the family). Editing a field rebinds the
    name in `namespace`, so re-running a cell uses it too."""

    def __init__(self, build: Callable[..., Recipe], namespace: dict, choices: dict | None = None,
                 overrides: dict | None = None, **fixed):
        self.build, self.namespace, self.fixed = build, namespace, fixed
        self.choices, self.overrides = choices or {}, overrides or {}
        params = inspect.signature(build).parameters
        self.names = [n for n in params if n in namespace and n not in fixed and n != "overrides"]
        self.kinds = {n: str(params[n].annotation) for n in self.names}  # "int", "float", ...: the field to show
        self.fields, self.buttons, self.plot, self.status, self.box = {}, {}, None, None, None
        self.recipe_used, self.result, self.error, self.thread = None, None, None, None
        self.stop, self.stopped_at, self.last_values = None, None, None

    @property
    def values(self) -> dict:
        """The parameters now: the form's fields once built, else the namespace (the parameters cell)."""
        return {n: (self.fields[n].value if n in self.fields else self.namespace[n]) for n in self.names}

    def recipe(self, values: dict | None = None, **overrides) -> Recipe:
        """The recipe of the current values (or `values`), with `overrides` on top of the panel's."""
        return self.build(**self.fixed, **(values or self.values), overrides={**self.overrides, **overrides})

    # -- training

    def train(self, callbacks=(), resume: bool = False, in_panel: bool = False):
        """Build the recipe of the current values and train it here (blocking); returns (recipe, TrainResult).
        `resume`: continue the run Stop ended, from its checkpoint, with that run's values. The loss draws live
        below the cell in Jupyter, or `in_panel` (the buttons' runs) in the panel's plot and status line."""
        from ftkit import train

        if resume and not self.stopped_at:
            raise ConfigError(Problem("nothing to resume: no run was stopped from this panel", "panel", "resume",
                                      fix="click Train first, then Stop; Resume continues from the saved checkpoint"))
        values = self.last_values if resume else self.values
        recipe = self.recipe(values, **({"resume_from_checkpoint": self.stopped_at} if resume else {}))
        self.stop, self.stopped_at, self.last_values, self.error = stop_callback(), None, values, None
        live = [nb.loss_plot_callback(image=self.plot if in_panel else None)]
        if in_panel and self.status is not None:
            live.append(progress_callback(self._say))
        result = train.run(recipe, callbacks=[*live, self.stop, *callbacks])
        self.stopped_at = self.stop.checkpoint
        self.recipe_used, self.result = recipe, result
        return recipe, result

    def start(self, resume: bool = False) -> threading.Thread:
        """Train in a background thread (the Train / Resume buttons): the kernel stays free for Stop. When it
        ends, `recipe` and `result` in the namespace name the run; a failure is shown and kept in `.error`."""
        if self.running:
            self._say("a run is in progress: Stop it first")
            return self.thread

        def work():
            try:
                recipe, result = self.train(resume=resume, in_panel=True)
            except Exception as e:  # shown in the panel: a background thread has no cell to raise into
                self.error = e
                self._say(f"failed: {type(e).__name__}: {e}")
                return
            self.namespace.update(recipe=recipe, result=result)
            stopped = f"; stopped, saved {self.stopped_at} (Resume continues)" if self.stopped_at else ""
            self._say(f"done: {result.steps} steps, loss {result.first_loss:.3f} -> {result.final_loss:.3f}{stopped}."
                      " `recipe` and `result` now name this run: run the cells below")

        self.thread = threading.Thread(target=work, name="ftkit-train", daemon=True)
        self.thread.start()
        return self.thread

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def request_stop(self) -> None:
        """End the running training after its current step, saving a checkpoint (the Stop button)."""
        if self.running and self.stop is not None:
            self.stop.request()
            self._say("stopping after this step; saving a checkpoint")

    def wait(self, timeout: float | None = None):
        """Wait for the background run; returns its TrainResult (None if it failed: see `.error`)."""
        if self.thread is not None:
            self.thread.join(timeout)
        return self.result

    # -- the form

    def form(self):
        """Build the widgets (fields, Train / Stop / Resume, status line, loss plot) without displaying them:
        tests drive them as a person would (`.value = ...`, `.click()`)."""
        import ipywidgets as w

        if self.box is not None:
            return self.box
        for name in self.names:
            self.fields[name] = self._field(w, name, self.namespace[name])
            self.fields[name].observe(lambda change, n=name: self._changed(n, change["new"]), names="value")
        for label, style, action in (("Train", "success", lambda _: self.start()),
                                     ("Stop", "danger", lambda _: self.request_stop()),
                                     ("Resume", "", lambda _: self.start(resume=True))):
            self.buttons[label.lower()] = w.Button(description=label, button_style=style)
            self.buttons[label.lower()].on_click(action)
        self.status = w.HTML(value="set the parameters, then Train (or run the cells below)")
        self.plot = w.Image(format="png")
        self.box = w.VBox([*self.fields.values(), w.HBox(list(self.buttons.values())), self.status, self.plot])
        return self.box

    def show(self) -> None:
        """Display the form in Jupyter (once: nothing returned for Jupyter to echo); headless (papermill) or
        without ipywidgets: nothing, the parameters cell rules."""
        if not nb.interactive():
            return
        try:
            import ipywidgets  # noqa: F401
        except ImportError:  # the `notebooks` extra is not installed: the parameters cell is the form
            print("[ftkit] install ipywidgets (pip install 'ftkit[notebooks]') for the training panel")
            return
        from IPython.display import display

        display(self.form())

    def _field(self, w, name: str, value):
        options = self._options(name)
        if options is not None:
            return w.Dropdown(options=options, value=value if value in options else options[0], description=name)
        kind = {"bool": w.Checkbox, "int": w.IntText, "float": w.FloatText}.get(self.kinds[name], w.Text)
        return kind(value=value, description=name, style={"description_width": "initial"})

    def _options(self, name: str) -> list | None:
        choice = self.choices.get(name)
        return choice(self.values) if callable(choice) else choice

    def _changed(self, name: str, value) -> None:
        self.namespace[name] = value
        for other, field in self.fields.items():  # dependent dropdowns (the quickstart's methods per family)
            if other != name and callable(self.choices.get(other)):
                options = self._options(other)
                keep = field.value if field.value in options else options[0]
                field.options, field.value = options, keep

    def _say(self, text: str) -> None:
        if self.status is not None:
            self.status.value = text
        elif not nb.interactive():
            print(f"[ftkit] {text}")
