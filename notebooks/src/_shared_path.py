# %% [markdown]
# ## The data, as the model sees it
# One prepared example: green tokens are trained (labels = ids), grey ones are masked (-100). Hover a token for
# its id.

# %%
prepared = data.prepare(recipe, tok)
print(prepared.summary())
nb.show_mask(prepared.train[0], tok)

# %% [markdown]
# ## Parity: the prompt inference feeds is the prompt training saw
# If these differ by one token (a missing bos, a different newline), the trained model is queried
# off-distribution.

# %%
report = nb.parity(recipe, tok)
print(report.summary())
nb.record("parity_ok", report.ok)

# %% [markdown]
# ## Train
# `panel.train()` trains the recipe of the panel's values now (headless: the parameters cell's) with exactly what
# `ftkit train` runs, and returns that recipe and its result. In Jupyter the loss draws live below the cell; the
# figure after it is embedded in batch runs too. The panel's **Train** button does the same in the background
# (with **Stop** and **Resume**) and, when it ends, `recipe` and `result` name that run for the cells below.

# %%
recipe, result = panel.train()
nb.show_figure(nb.plot_losses(result.losses, title=f"{recipe.base_model}: training loss"))

# %% [markdown]
# ## Before / after: looking is not checking
# Each answer is judged by what it says: it is right only when it states the fact the prompt asks for (the
# reference sentence, or its key word in the reference's slot: "... is Madrid") and passes every gate (not
# empty, no template text, no loop, short). Random words score 0, and so does a fluent wrong answer. On the tiny
# twin a few dozen steps teach the format, not the facts: expect wrong answers after training too (the
# quickstart trains long enough to get them right).

# %%
ev = evals.judge(result)
nb.show_markdown(ev.markdown())
nb.record_run(result, ev)

# %% [markdown]
# ## Save, merge, reload
# `output_dir` holds the adapter (or full weights), the tokenizer (its chat template renders the training prompt,
# so any server prompts the model as it was trained), the resolved recipe, metrics.json, trainer_state.json and
# a model card (README.md). Merging folds LoRA into the base weights; the reloaded model must give the same
# logits.

# %%
print(sorted(p.name for p in __import__("pathlib").Path(recipe.output_dir).iterdir()))
served_ok, served = nb.serving_check(recipe)
print(served)
nb.record("serving_ok", served_ok)
if recipe.adapter:
    merged = merge.run(recipe)
    diff = nb.reload_check(recipe, merged)
else:
    diff = 0.0  # full fine-tune: output_dir already holds the plain model
print(f"max |logit diff| adapter vs merged: {diff:.2e}")
nb.record("merge_logit_diff", diff)

# %%
# what this notebook showed; a batch run turns these into a test
assert result.final_loss < result.first_loss * LOSS_RATIO, result.summary()
assert report.ok, report.summary()
assert ev.score_before == 0, ev.markdown()  # the untrained model's words are never judged right
assert [p for p, _, _ in ev.after.rows] == evals.SAMPLE_PROMPTS  # every prompt generated and judged
assert served_ok, served  # the saved tokenizer's chat template renders the training prompt
assert diff < 1e-3, diff
