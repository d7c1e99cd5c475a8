"""Preference-tuning lesson helpers: a method's recipe, and the margin / log-prob curves of a run."""
from __future__ import annotations

from ftkit.recipe import Recipe, load_recipe
from ftkit.resources import shipped


def plot_history(result, path: str | None = None):
    """Reward margin, and the policy's chosen/rejected log-probs, over training steps (PNG saved if path).
    A matplotlib Figure built without pyplot: no backend state, embedded by notebook.show_figure anywhere."""
    from matplotlib.figure import Figure

    steps = [h["step"] for h in result.history if h.get("margin") is not None]
    fig = Figure(figsize=(10, 3.5))
    left, right = fig.subplots(1, 2)
    left.plot(steps, result.series("margin"), marker=".")
    left.axhline(0, color="grey", lw=0.5)
    left.set(title=f"{result.method}: reward margin (chosen - rejected)", xlabel="step")
    lp_steps = [h["step"] for h in result.history if h.get("logps_chosen") is not None]
    right.plot(lp_steps, result.series("logps_chosen"), label="chosen")
    right.plot([h["step"] for h in result.history if h.get("logps_rejected") is not None],
               result.series("logps_rejected"), label="rejected")
    right.set(title="policy log-prob of the answers", xlabel="step")
    right.legend()
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=80)
    return fig


RECIPES = {"dpo": "dpo.yml", "ipo": "dpo.yml", "kto": "kto.yml", "orpo": "orpo.yml", "simpo": "orpo.yml"}


def method_recipe(method: str, overrides: dict | None = None, family: str = "llama") -> Recipe:
    """recipes/<family>/<method>.yml (ipo: dpo.yml, simpo: orpo.yml with its own defaults) plus overrides."""
    base: dict = {"rl": method}
    if method in ("ipo", "simpo"):  # dpo/orpo's beta and lambda do not carry over: use the method's defaults
        base.update(rl_beta=None, **({"orpo_alpha": None} if method == "simpo" else {}))
    path = shipped(f"recipes/{family}/{RECIPES[method]}")
    return load_recipe(path, {**base, **(overrides or {})})
