# %% [markdown]
# # Preference tuning: DPO, IPO, KTO, ORPO and SimPO
#
# Supervised fine-tuning shows the model *one* good answer. Preference tuning shows it two answers to the same
# prompt, one preferred (**chosen**) and one not (**rejected**), and moves probability from the second to the
# first. Each method is a different loss over the log-probabilities `logp(answer | prompt)`:
#
# | method | what the loss optimizes | reference model |
# |---|---|---|
# | **DPO** | `-log sigmoid(beta * [(logp_c - ref_c) - (logp_r - ref_r)])`: raise the chosen answer's log-ratio to the reference above the rejected one's; `beta` says how far from the reference that may go | yes |
# | **IPO** | `([(logp_c - ref_c) - (logp_r - ref_r)] / tokens - 1/(2 beta))^2`: the same log-ratio gap, pulled to a *fixed* target instead of to infinity, so it cannot over-fit a deterministic preference | yes |
# | **KTO** | unpaired: each row is one answer labelled desirable or not; desirable answers are pushed above a reference point (the policy's KL to the reference), undesirable ones below it | yes |
# | **ORPO** | NLL of the chosen answer + `lambda * -log sigmoid(log odds(chosen) - log odds(rejected))`: SFT and preference in one stage | no |
# | **SimPO** | `-log sigmoid(beta * [mean logp_c - mean logp_r] - gamma)`: length-normalized log-probs with a target margin `gamma` | no |
#
# With LoRA, the reference model costs one adapter, not a second model: TRL keeps a frozen copy of the adapter as
# it was at step 0 (zero for a fresh adapter, so the reference is the base model). TRL does the training; ftkit
# maps the recipe (`rl: dpo`, `rl_beta`, ...) onto TRL's configs.
#
# The data here follows one rule the tiny model can learn: the chosen answer ends with a period
# (`The sky is blue.`), the rejected one with an exclamation mark (`The sky is blue!`).
#
# **The model.** The recipes in `recipes/llama/` name the real model, `meta-llama/Llama-3.2-1B-Instruct` (ORPO:
# the base `meta-llama/Llama-3.2-1B`), a download and a GPU. This notebook trains its offline tiny twin,
# `tiny:llama`, by default; on a GPU with the model downloaded, set `base_model` to the real name. In JupyterLab
# the training panel (first code cell) lets you pick the method and train from a form.

# %% tags=["parameters"]
# Parameters (papermill injects new values here)
method = "dpo"  # dpo, ipo, kto, orpo or simpo
base_model = "tiny:llama"  # the offline twin; on a GPU: meta-llama/Llama-3.2-1B-Instruct (the recipes' model)
max_steps = 40
output_dir = "outputs/preference_tuning"  # under the git-ignored outputs/ (the plot is saved there too)

# %% [markdown]
# ## The recipe
# The method's recipe from `recipes/llama/`, with this notebook's parameters on top.

# %%
from ftkit.cookbook import notebook as nb

nb.setup()  # offline; repository root as the working directory; quiet progress in batch runs
from ftkit import data, models
from ftkit.cookbook import evals, workshop
from ftkit.cookbook import preference as lesson
from ftkit.plugins import pairs

panel = workshop.TrainingPanel(workshop.preference_recipe, globals(), choices={"method": list(lesson.RECIPES)})
panel.show()  # Jupyter: the method chooser with Train / Stop / Resume; headless: nothing
recipe = panel.recipe()
nb.reset_metrics()
print(recipe.rl, recipe.base_model, recipe.datasets[0].path, recipe.datasets[0].type,
      "| held-out:", recipe.test_datasets[0].path)

# %% [markdown]
# ## One row as the model sees it
# Every dataset shape becomes TRL's conversational rows, rendered by the chat template: the prompt below is
# exactly what inference sends (`apply_chat_template(..., add_generation_prompt=True)`, what any server calls), and
# each answer ends with the template's end-of-turn token. TRL tokenizes the prompt alone and the prompt with each
# answer, and trains the answer from where the two agree: if the prompt's last tokens merged with the answer's
# first ones, TRL would warn and train on a shorter prompt than inference sends. Rows with an empty field,
# identical answers, or more than `sequence_len` tokens are dropped and counted.

# %%
from ftkit.formats.prompt import encode_messages, trained_prompt_ids

tokenizer = models.load_tokenizer(recipe)  # the run's chat template, as for SFT
prepared = data.prepare(recipe, tokenizer)  # the same data.prepare as SFT; rows for the method
print(prepared.summary())
nb.show_example(prepared.train[0], tokenizer)
row = prepared.train[0]
trained_prompt = trained_prompt_ids(tokenizer, row["prompt"], (row.get("chosen") or row["completion"])[0]["content"])
prompt_parity = trained_prompt == encode_messages(tokenizer, row["prompt"], generation_prompt=True)
print("the prompt TRL trains on is the prompt inference sends:", prompt_parity)

# %% [markdown]
# ## Train
# TRL logs, per step, the *reward* of each answer (`beta` times its log-ratio to the reference; ORPO and SimPO:
# `beta` times its mean token log-prob) and the *margin* chosen minus rejected. Before and after, ftkit measures
# `logp(chosen) - logp(rejected)` on held-out pairs the model never trained on.

# %%
recipe, result = panel.train()

# %% [markdown]
# ## Reward margin and log-probs over steps
# The margin starts at zero (the policy *is* the reference at step 0 for DPO, IPO and KTO) and rises. Note the
# right panel: DPO-style losses only care about the *gap*, so both log-probs may fall while the rejected one falls
# faster.

# %%
plot_png = f"{recipe.output_dir}/preference_history.png"
nb.show_figure(lesson.plot_history(result), plot_png)

# %% [markdown]
# ## Before and after on held-out prompts
# Each row is a prompt from `data_samples/preference_heldout.jsonl`; the numbers are
# `logp(chosen) - logp(rejected)`: negative means the model preferred the exclaimed answer.

# %%
rows = pairs.heldout_rows(recipe, tokenizer)
print(pairs.compare_table(rows, result.heldout_before, result.heldout_after))
print(result.summary())
ev = evals.judge(result)  # the free answer to the recipe's eval prompt, judged: see below why it stays wrong
nb.show_markdown(ev.markdown())
nb.record_run(result, ev)
nb.record("heldout_accuracy", result.heldout_after["accuracy"])

# %% [markdown]
# ## The answers: what changed, and why the twin cannot show more
# The pairs differ at the end of the answer: after `The capital of Peru is Lima` comes `.` (chosen) or `!`
# (rejected). Below, for each held-out answer, the token the model puts there (greedy) and the probabilities of
# `.` and `!`, before training (the LoRA adapter switched off: the reference model) and after. Training moved
# exactly this choice: `.` now beats `!` on every held-out answer and is the most likely next token on most of
# them, while `!` all but vanished.
#
# Ask the twin a question from scratch instead (the judged answer above) and it says little more than `.`: its
# weights are random, it never learned words, so the only thing these pairs can teach it is "`.` beats `!`", and
# the cheapest way to raise `logp(chosen) - logp(rejected)` is to make `.` likely everywhere. A real instruct
# model already answers in sentences such as `The capital of Peru is Lima!`; the same training moves only their
# last token, so its answers change from `...Lima!` to `...Lima.`

# %%
ends = lesson.endings(result.model, tokenizer, rows)
print(lesson.endings_table(ends))
nb.record("endings_after", [e["after"]["next"] for e in ends])

# %% [markdown]
# ## What this notebook showed (checked when it runs headless)

# %%
import os

margins = result.series("margin")
assert prompt_parity, trained_prompt  # TRL trains the prompt inference sends (no prefix warning)
assert ev.score_before == 0, ev.markdown()  # the untrained twin's words are never judged right
assert sum(margins[-4:]) / 4 > sum(margins[:4]) / 4, margins  # the training reward margin rose
assert result.heldout_after["margin"] > result.heldout_before["margin"], result.summary()  # and generalized
assert result.heldout_after["accuracy"] >= 0.9, result.summary()  # held-out pairs now prefer the calm answer
assert all(e["after"]["p_chosen"] > max(e["after"]["p_rejected"], e["before"]["p_chosen"]) for e in ends), \
    lesson.endings_table(ends)  # every held-out answer now ends calmer: p(.) rose and beats p(!)
assert os.path.getsize(plot_png) > 0 and os.path.isfile(os.path.join(recipe.output_dir, "metrics.json"))
