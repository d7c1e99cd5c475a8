"""Notebook helpers: what the cookbook notebooks share, so no notebook carries pasted glue.

Every helper works in three places: Jupyter (rich output, live updates), batch runs (`FTKIT_BATCH=1`,
set by `ftkit notebooks run`: a few plain progress lines, figures embedded as PNG) and plain Python (text
only). Nothing here imports papermill.
"""
from __future__ import annotations

import html
import io
import json
import os
from pathlib import Path

from ftkit.formats.tokenize import IGNORE

BATCH_ENV = "FTKIT_BATCH"  # "1" = headless batch run
METRICS_ENV = "FTKIT_METRICS"  # where record() writes; the runner sets it next to the executed notebook
DEFAULT_METRICS = "outputs/notebook_metrics.json"  # interactive runs: under the git-ignored outputs/


def in_kernel() -> bool:
    """Running inside a Jupyter/IPython kernel (interactive or papermill)?"""
    try:
        from IPython import get_ipython
    except ImportError:  # plain Python without IPython: text output only
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def interactive() -> bool:
    """A person is watching: a kernel, and not a batch run."""
    return in_kernel() and os.environ.get(BATCH_ENV) != "1"


def workspace(start: Path | None = None, marker: str = "recipes") -> Path:
    """Where a notebook's relative paths point: the first folder from `start` (default: the working directory)
    upward that holds `recipes/` (this checkout, or a folder `ftkit fetch` filled), else `start` itself."""
    here = (start or Path.cwd()).resolve()
    return next((d for d in (here, *here.parents) if (d / marker).is_dir()), here)


def setup() -> Path:
    """Call first in a notebook: ftkit's process env (the hub as the environment says), quiet batch progress, and paths that do not depend on the folder
    the notebook runs from. Moves the working directory to `workspace()` (the repository root in a checkout:
    Jupyter starts in notebooks/, papermill wherever it is called), so `outputs/...`, a recipe's
    `dataset_prepared_path` and every relative path mean what they mean for `ftkit train` from the root.
    Returns the folder recipes are read from: the workspace if it holds recipes/, else the installed package's.
    """
    from ftkit.env import set_process_env
    from ftkit.resources import root as shipped_root

    set_process_env()
    if not interactive():
        quiet_progress()
    ws = workspace()
    if ws != Path.cwd().resolve():
        from ftkit.log import log

        log.info(f"working directory: {ws} (relative paths, e.g. outputs/, start there)")
        os.chdir(ws)
    return ws if (ws / "recipes").is_dir() else shipped_root()


def quiet_progress() -> None:
    """Batch runs: no progress bars (datasets' switch, tqdm's TQDM_DISABLE); the Trainer then prints about ten
    `[ftkit] step ...` lines per run (ftkit.train.callbacks.plain_progress) instead of a dict per step."""
    import datasets

    os.environ["TQDM_DISABLE"] = "1"  # the runner also sets it before the kernel starts (tqdm reads it at import)
    datasets.disable_progress_bars()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _show(html_text: str, plain: str) -> None:
    """One display with both an HTML and a plain-text view (front-ends pick); print outside a kernel."""
    if in_kernel():
        from IPython.display import display

        display({"text/html": html_text, "text/plain": plain}, raw=True)
    else:
        print(plain)


# ---------------------------------------------------------------- mask inspector

def token_rows(example: dict, tokenizer) -> list[tuple[int, str, bool]]:
    """(token id, decoded text, trained?) per token of a prepared example."""
    return [(t, tokenizer.decode([t]), lab != IGNORE) for t, lab in zip(example["input_ids"], example["labels"])]


def mask_html(example: dict, tokenizer) -> str:
    """Tokens as boxed spans: trained green, masked grey; hovering shows the token id and its label."""
    spans = []
    for tok, text, trained in token_rows(example, tokenizer):
        style = ("background:#c8f7c5;color:#064" if trained else "background:#eee;color:#888")
        shown = html.escape(text).replace("\n", "\u21b5<br>") or "&nbsp;"
        spans.append(f'<span title="id {tok}, {"trained" if trained else "masked (-100)"}" '
                     f'style="{style};border:1px solid #bbb;border-radius:2px;margin:0 1px;'
                     f'font-family:monospace;white-space:pre-wrap">{shown}</span>')
    n_trained = sum(1 for _, _, t in token_rows(example, tokenizer) if t)
    legend = (f'<div style="font-size:90%">{len(example["input_ids"])} tokens, {n_trained} trained: '
              '<span style="background:#c8f7c5">trained</span> <span style="background:#eee">masked</span></div>')
    return legend + '<div style="line-height:2">' + "".join(spans) + "</div>"


def show_mask(example: dict, tokenizer) -> None:
    """Display one prepared example: HTML token boxes in Jupyter, `[[trained]]` text elsewhere."""
    from ftkit.data.prepare import show_mask as text_view

    _show(mask_html(example, tokenizer), text_view(example, tokenizer))


def show_example(example: dict, tokenizer) -> None:
    """One prepared row: an SFT example's mask, or a preference row's prompt and answers as TRL tokenizes them."""
    if "input_ids" in example:
        show_mask(example, tokenizer)
    else:
        from ftkit.plugins.pairs import show_pair

        print(show_pair(tokenizer, example))


# ---------------------------------------------------------------- figures and the loss plot

def figure_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes (works with any backend, Agg included)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue()


def show_figure(fig, path: str | Path | None = None) -> None:
    """Embed a figure in the notebook as a PNG, also in batch runs (under MPLBACKEND=Agg, `plt.show()` draws
    nothing); saved to `path` too when given. Outside a kernel: saved (or not) and said where."""
    png = figure_png(fig)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(png)
    if in_kernel():
        from IPython.display import Image, display

        display(Image(data=png, format="png"))
    elif path:
        print(f"[ftkit] figure saved to {path}")


def plot_losses(losses: list, path: str | Path | None = None, title: str = "training loss"):
    """A matplotlib figure of (step, loss) pairs (the one ftkit saves as loss.png beside a model); PNG at `path`."""
    from ftkit.models.card import loss_figure

    fig = loss_figure(losses, title)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=80)
    return fig


def loss_plot_callback(png_path: str | Path | None = None, image=None):
    """A TrainerCallback drawing the loss curve at each log: into `image` (an ipywidgets.Image, e.g. the training
    panel's) when given, else as a display updated in place when a person watches; a PNG when training ends."""
    from transformers import TrainerCallback

    class LossPlot(TrainerCallback):
        def __init__(self):
            self.losses, self.handle = [], None

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.losses.append((state.global_step, logs["loss"]))
                if image is not None:
                    image.value = figure_png(plot_losses(self.losses))
                elif interactive():
                    self._redraw()

        def _redraw(self):
            from IPython.display import Image, display

            picture = Image(data=figure_png(plot_losses(self.losses)), format="png")
            if self.handle is None:
                self.handle = display(picture, display_id=True)
            else:
                self.handle.update(picture)

        def on_train_end(self, args, state, control, **kwargs):
            if png_path:
                plot_losses(self.losses, png_path)

    return LossPlot()


# ---------------------------------------------------------------- metrics

def metrics_path() -> Path:
    """$FTKIT_METRICS (the runner: next to the executed notebook), else outputs/notebook_metrics.json under the
    workspace (setup() moved there), never into the repository's tracked folders."""
    return Path(os.environ.get(METRICS_ENV) or DEFAULT_METRICS)


def record(name: str, value) -> None:
    """Add one metric to the notebook's metrics.json (read by the batch runner's report)."""
    path = metrics_path()
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[name] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=str))


def record_run(result, ev=None) -> None:
    """Record what the batch report shows for a notebook that trained: its losses, the answers before and after,
    and, given an evals.BeforeAfter, the right-answer scores and every failing (prompt, check)."""
    for key in ("first_loss", "final_loss", "steps", "seconds"):
        if getattr(result, key, None) is not None:
            record(key, getattr(result, key))
    samples = [{"prompt": b["prompt"], "before": b["completion"], "after": a["completion"]}
               for b, a in zip(result.samples_before, result.samples_after)]
    if ev is not None:  # per answer: right (content check and every gate pass), wrong, or None (not judged)
        for sample, ok_before, ok_after in zip(samples, ev.before.verdicts, ev.after.verdicts):
            sample.update(before_ok=ok_before, after_ok=ok_after)
    record("samples", samples)
    if ev is not None:
        record("eval_score_before", ev.score_before)
        record("eval_score", ev.score_after)
        record("eval_explained", f"{ev.after.right} of {ev.after.judged} answers right after training "
                                 f"({ev.before.right} before); an answer is right when it says the reference fact "
                                 "and passes every gate (not empty, no template text, no loop, short)")
        record("eval_failures", ev.after.failures())


def reset_metrics() -> None:
    """Start this run's metrics from empty (a re-run must not show the previous run's numbers)."""
    metrics_path().unlink(missing_ok=True)


# ---------------------------------------------------------------- lesson helpers

def real_size(base_model: str) -> dict:
    """Parameter count and weight memory of a real checkpoint, from its architecture alone (the built-in
    table in ftkit/assets/families.yaml; the model is built on the meta device: no memory, no download).
    bf16 = 2 B/param; nf4 ~ 0.56 B/param (4 bits + a scale per 64-weight block, double-quantized)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from ftkit.models.families import known_config

    real = known_config(base_model)
    if real is None:
        return {"base_model": base_model, "params_b": None, "note": "not in ftkit's table of known architectures"}
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**real.config))
    n = sum(p.numel() for p in model.parameters())
    return {"base_model": base_model, "architecture": real.label, "params_b": round(n / 1e9, 2),
            "bf16_weights_gb": round(n * 2 / 1e9, 1), "nf4_weights_gb": round(n * 0.56 / 1e9, 1)}


def parity(recipe, tokenizer, rows: int = 8):
    """Train/inference prompt parity on sampled rows (ftkit.data.parity.check_parity): .ok, .checked, .summary()."""
    from ftkit.data.parity import check_parity

    return check_parity(recipe, tokenizer, rows=rows)


def describe_tokenizer(tokenizer, template_name: str | None = None) -> str:
    """Special tokens and a two-turn chat rendered through the tokenizer's chat template."""
    lines = [f"bos={tokenizer.bos_token!r} eos={tokenizer.eos_token!r} pad={tokenizer.pad_token!r} "
             f"vocab={len(tokenizer)}", f"special tokens: {tokenizer.all_special_tokens}"]
    from ftkit.formats.prompt import rendered

    text = rendered(tokenizer, [{"role": "user", "content": "What color is the sky?"},
                                {"role": "assistant", "content": "The sky is blue."}])
    if text is None:
        lines.append("no chat template")
    else:
        lines += [f"chat template{f' ({template_name})' if template_name else ''} renders:", text]
    return "\n".join(lines)


def show_markdown(text: str) -> None:
    """Markdown (tables) rendered in a kernel, printed elsewhere."""
    if in_kernel():
        from IPython.display import Markdown, display

        display(Markdown(text))
    else:
        print(text)


def serving_check(recipe, text: str = "What is the capital of Spain?") -> tuple[bool, str]:
    """Does the tokenizer saved in output_dir prompt like training? (apply_chat_template ids == ftkit infer's);
    returns (same, the served prompt text)."""
    from transformers import AutoTokenizer

    from ftkit.infer.generate import prompt_ids

    saved = AutoTokenizer.from_pretrained(recipe.output_dir)
    message = [{"role": "user", "content": text}]
    served = saved.apply_chat_template(message, add_generation_prompt=True)["input_ids"]
    return served == prompt_ids(recipe, saved, text), saved.apply_chat_template(message, tokenize=False,
                                                                                 add_generation_prompt=True)


def reload_check(recipe, merged_dir) -> float:
    """Max |logit difference| between base+adapter (output_dir) and the merged, reloaded model on one
    prompt: ~0 means the merge is faithful and the saved files load."""
    import torch
    from transformers import AutoModelForCausalLM

    from ftkit.infer.generate import prompt_ids
    from ftkit.log import quiet
    from ftkit.models.trained import load_trained

    with quiet():
        adapted, tok = load_trained(recipe)
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    ids = torch.tensor([prompt_ids(recipe, tok, "What is the capital of Spain?")])
    with torch.no_grad():
        a = adapted.eval()(input_ids=ids).logits
        b = merged.eval()(input_ids=ids).logits
    return float((a - b).abs().max())
