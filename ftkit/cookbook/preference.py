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


def _next_token(model, ids: list[int], tokenizer, candidates: tuple[int, int]) -> dict:
    """The greedy next token after `ids`, and the probabilities of the two candidate tokens."""
    import torch

    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids], device=next(model.parameters()).device)).logits[0, -1].float()
    probs = torch.softmax(logits, dim=-1)
    return {"next": tokenizer.decode([int(probs.argmax())]), "p_chosen": float(probs[candidates[0]]),
            "p_rejected": float(probs[candidates[1]])}


def endings(model, tokenizer, rows: list[dict]) -> list[dict]:
    """Where each held-out pair's answers part (`The capital of Peru is Lima` + `.` or `!`): the token the model
    puts there, greedy, and the probabilities of the chosen and the rejected one; `before` with the LoRA adapter
    switched off (the model before training, DPO's reference), `after` with it on (None without an adapter)."""
    from peft import PeftModel

    from ftkit.formats.prompt import common_prefix, encode_messages, trained_prompt_ids

    was_training, out = model.training, []
    model.eval()
    for r in rows:
        chosen, rejected = (encode_messages(tokenizer, r["prompt"] + r[k], False) for k in ("chosen", "rejected"))
        split = common_prefix(chosen, rejected)  # the shared stem ends where the answers differ
        pair = (chosen[split], rejected[split])
        before = None
        if isinstance(model, PeftModel):
            with model.disable_adapter():
                before = _next_token(model, chosen[:split], tokenizer, pair)
        start = len(trained_prompt_ids(tokenizer, r["prompt"], r["chosen"][-1]["content"]))
        out.append({"prompt": r["prompt"][-1]["content"], "stem": tokenizer.decode(chosen[start:split]),
                    "chosen": tokenizer.decode([pair[0]]), "rejected": tokenizer.decode([pair[1]]), "before": before,
                    "after": _next_token(model, chosen[:split], tokenizer, pair)})
    model.train(was_training)
    return out


def endings_table(found: list[dict]) -> str:
    """endings() as text: per held-out answer, the next token and p(chosen) / p(rejected) there, before and after
    (the columns name the first pair's two tokens, `.` and `!` in the sample data)."""
    def cell(m):
        return "n/a" if m is None else f"{m['next'][:8]!r:>10} {m['p_chosen']:.4f} {m['p_rejected']:.4f}"
    c, r = (f"p({found[0][k]})"[:6] if found else k for k in ("chosen", "rejected"))
    head = f"{'answer so far':<34} {'before: next':>12} {c:>6} {r:>6}  {'after: next':>11} {c:>6} {r:>6}"
    rows = [f"{e['stem'][-34:]:<34} {cell(e['before']):>26}  {cell(e['after']):>25}" for e in found]
    return "\n".join([head, *rows])
