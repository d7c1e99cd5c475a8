# %% [markdown]
# # 00 · Quickstart: your first fine-tune
#
# This lesson walks the whole ftkit path once, on a model small enough to train in about a minute on a laptop CPU:
#
# **recipe → one example and its mask → train → loss curve → answers before/after, judged → saved run, served**
#
# The model is the *embedded default*: `tiny:llama`, a Llama-architecture network with random weights and a
# byte-level BPE tokenizer trained locally. Nothing is downloaded. Swap `base_model` in the recipe for a hub id
# (e.g. `meta-llama/Llama-3.2-1B`) to run the very same cells on a real model and a GPU.
#
# In JupyterLab the first code cell shows a **training panel**: pick another `family` (every architecture ftkit
# has a tiny twin of) and `method` (`full` fine-tuning with this recipe, or the family's `lora`, `qlora` or `dpo`
# recipe where one exists), then run the cells below, or click **Train** to train in the background with a live
# loss plot; **Stop** ends training after the current step and saves a checkpoint, **Resume** continues from it.
#
# It runs from any folder (Jupyter in `notebooks/`, `papermill notebooks/00_quickstart.ipynb out.ipynb` from the
# repository root, `ftkit notebooks run 00_quickstart`): paths start at the repository root and everything it
# writes goes under the git-ignored `outputs/`. Run headless, the parameters cell rules.

# %% tags=["parameters"]
# Parameters (papermill injects new values here; keep them plain literals)
family = "llama"  # a family of ftkit/models/families.py: its tiny twin trains (the embedded default is tiny:llama)
method = "full"  # full (recipes/quickstart.yml), or lora / qlora / dpo where recipes/<family>/ has that recipe
max_steps = 0  # 0: the recipe's length (full: 3 epochs, 429 steps, ~15 s on 2 cores), what learning the facts takes
learning_rate = 0.0  # 0 means the recipe's (full: 0.003)
output_dir = "outputs/nb_quickstart"  # under the git-ignored outputs/

# %% [markdown]
# ## 1. The recipe
#
# A recipe is a YAML file with Axolotl's option names. `load_recipe` validates it (unknown keys, wrong types and
# conflicting options are errors that name the key and the fix) and applies overrides, exactly like
# `ftkit train recipes/quickstart.yml --learning_rate=0.003` would on the command line. `nb.setup()` moves to the
# repository root first, so the recipe's relative paths mean what they mean for `ftkit train`. The panel builds
# the recipe from the parameters: `panel.recipe()` is the recipe the cells below train.

# %%
from pathlib import Path

from ftkit.cookbook import notebook as nb

root = nb.setup()  # offline; repository root as the working directory; quiet progress in batch runs
from ftkit.cookbook import workshop

panel = workshop.TrainingPanel(workshop.quickstart_recipe, globals(), choices=workshop.quickstart_choices(root),
                               root=root)
panel.show()  # Jupyter: family / method chooser, Train / Stop / Resume, live loss plot; headless: nothing
recipe = panel.recipe()
nb.reset_metrics()
print(f"# {recipe.source}, trained as base_model={recipe.base_model}\n" + Path(recipe.source).read_text())

# %% [markdown]
# ## 2. What the model is trained on
#
# Each row becomes one token sequence. Only the **response** (and the end-of-text token that teaches the model to
# stop) is trained; the prompt tokens get the label `-100`, so they cost no loss. Below, trained text is inside
# `[[...]]` (green in Jupyter). Check this view whenever you change a dataset or template: it is where fine-tunes
# silently go wrong. (With `method = "dpo"` a row is a prompt and two answers, shown as TRL tokenizes them.)

# %%
from ftkit import data, models

tokenizer = models.load_tokenizer(recipe)
prepared = data.prepare(recipe, tokenizer)
print(prepared.summary())
nb.show_example(prepared.train[0], tokenizer)

# %% [markdown]
# ## 3. Train
#
# `panel.train()` trains the recipe of the panel's values now with what `ftkit train` runs (tokenizer, data,
# model, then TRL's `SFTTrainer`, or `DPOTrainer` for `dpo`) and returns that recipe and its result. It generates
# answers to the recipe's `eval_prompts` before and after training, so you can see what changed. In Jupyter the
# loss curve draws live.

# %%
recipe, result = panel.train()

# %% [markdown]
# ## 4. The loss curve
#
# Loss starts near `ln(vocab size)` ≈ 6.9 (a random model guesses uniformly) and falls as the model learns the
# format and the facts. The figure is embedded as a PNG, so it shows in batch runs too.

# %%
nb.show_figure(nb.plot_losses(result.losses, title=f"quickstart: {recipe.base_model}, {method}"))

# %% [markdown]
# ## 5. Before and after, judged
#
# Same prompts, same template as training (inference builds the prompt with the training code, so they cannot
# drift apart). Looking is not checking: each answer is judged by what it says. It is right only when it states
# the fact its prompt asks for (Madrid, slow, blue: the reference sentence, or the key word in the reference's
# slot) and passes every gate (not empty, no template text, no loop, short). The untrained model's random words
# score 0, and so would a fluent wrong answer such as `The capital of Japan is Tokyo.`

# %%
from ftkit.cookbook import evals

ev = evals.judge(result)
nb.show_markdown(ev.markdown())
nb.record_run(result, ev)

# %% [markdown]
# ## 6. What was saved, and serving it
#
# `output_dir` holds the model (or the adapter), its tokenizer, the resolved recipe, `metrics.json`,
# `trainer_state.json`, the loss plot and a model card (`README.md`). The tokenizer's chat template renders the
# prompt the model was trained on, so plain transformers (or any server that calls `apply_chat_template`)
# prompts it exactly as `ftkit infer recipes/quickstart.yml --prompt "..."` does.

# %%
from ftkit.infer import generate
from ftkit.models import load_trained

print(sorted(p.name for p in Path(recipe.output_dir).iterdir()))
reloaded, saved_tok = load_trained(recipe)  # what `ftkit infer` loads from output_dir
reloaded_answer = generate(reloaded, saved_tok, recipe, [recipe.eval_prompts[0]])[0]

inputs = saved_tok.apply_chat_template([{"role": "user", "content": recipe.eval_prompts[0]}],  # plain transformers
                                       add_generation_prompt=True, return_tensors="pt")
out = reloaded.generate(**inputs, max_new_tokens=recipe.max_new_tokens, do_sample=False)
served_answer = saved_tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
print(f"ftkit infer:         {reloaded_answer!r}\napply_chat_template: {served_answer!r}")

# %% [markdown]
# ## Checks
#
# A notebook that only shows is not a test. These asserts make papermill fail the run if the lesson stopped being
# true: the loss fell, the untrained answers were judged wrong, every answer after training is right (the default
# recipe's claim: three epochs teach the facts), and the saved model answers the same through `ftkit infer` and
# through plain `apply_chat_template`.

# %%
default = family == "llama" and method == "full"  # the lesson's claim is for the embedded default
assert result.final_loss < result.first_loss * (0.1 if default else 0.95), result.summary()  # default: ~6.9 -> ~0.03
assert ev.score_before == 0, ev.markdown()  # the untrained model's words are never judged right
if default:
    assert not ev.after.failures(), ev.after.failures()  # Madrid, slow, blue: every check on every prompt
    assert ev.score_after == 1 and reloaded_answer == result.samples_after[0]["completion"], ev.markdown()
assert reloaded_answer == served_answer, (reloaded_answer, served_answer)
assert (Path(recipe.output_dir) / "metrics.json").is_file()
print("all checks passed")
