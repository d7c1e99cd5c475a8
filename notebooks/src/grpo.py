# %% [markdown]
# # GRPO: online RL with rewards you can check
#
# SFT shows the model an answer; DPO shows it two answers and says which is better. **GRPO** (Group Relative
# Policy Optimization) shows it *neither*: the data holds only prompts, and a **reward function** scores
# whatever the model writes. Each step:
#
# 1. sample a **group** of `num_generations` completions for each prompt (on-policy: from the model being trained),
# 2. score each completion: `r = sum(weight_i * reward_i(completion))`,
# 3. turn rewards into **advantages relative to the group**: `A = (r - mean(group)) / std(group)`,
# 4. raise the log-probability of completions with `A > 0`, lower it for `A < 0` (PPO's clipped ratio),
#    plus `rl_beta x KL(policy || reference)` when `rl_beta > 0`.
#
# No critic, no learned reward model: the group's mean is the baseline. A group whose completions all score the
# same teaches nothing (its advantages are 0), so the reward must separate *some* of what the model already samples.
#
# The task here is verifiable: *"What is 3 plus 4?"*, scored by two plain Python functions in
# `recipes/llama/rewards.py`: `number_format` (the share of the answer's characters that are digits) and
# `correct_sum` (1 if the first number is the sum). TRL's `GRPOTrainer` does the training, generating with
# transformers (on a CPU too); ftkit maps the recipe (`rl: grpo`, the `trl:` block) onto it.

# %% tags=["parameters"]
# Parameters (papermill injects new values here)
base_model = "meta-llama/Llama-3.2-1B-Instruct"  # tiny:llama runs offline on a CPU
max_steps = 40
learning_rate = 0.0                           # 0: the recipe value, 5e-5 for the 1B model (a tiny twin gets 0.03)
output_dir = "outputs/grpo"                   # under the git-ignored outputs/ (the plot is saved there too)

# %% [markdown]
# ## The recipe
# `recipes/llama/grpo.yml` with this notebook's parameters on top. The reward functions and the prompt transform
# are named by import path (`rewards.number_format`): ftkit imports `rewards.py` from the recipe's folder.
# In JupyterLab the cell shows the parameters as a form: change a value and Train (in the background, with the
# live loss), Stop (a checkpoint is saved) or Resume; when a run ends `recipe` and `result` name it for the cells
# below. Headless (papermill) the parameters cell rules and `panel.train()` below trains.

# %%
from ftkit.cookbook import notebook as nb

nb.setup()  # offline; repository root as the working directory; quiet progress in batch runs
from ftkit import data, models
from ftkit.cookbook import workshop
from ftkit.plugins import grpo

panel = workshop.TrainingPanel(workshop.grpo_recipe, globals())  # learning_rate 0 on a twin: 0.03, a big step
panel.show()  # Jupyter: the parameters as a form with Train / Stop / Resume; headless: nothing
recipe = panel.recipe()
nb.reset_metrics()
print(recipe.rl, recipe.trl.reward_funcs, "| generations per prompt:", recipe.trl.num_generations,
      "| learning rate:", recipe.learning_rate)

# %% [markdown]
# ## Rewards are plain functions
# TRL calls each one with the completions (`[[{"role": "assistant", "content": ...}], ...]`) and every other column
# of the dataset as a keyword argument (here `answer`), and wants one float per completion. Try them by hand:

# %%
funcs = grpo.reward_functions(recipe)  # imported from recipes/llama/rewards.py
tries = ["7", "7 apples", "seven", "8"]
for fn in funcs:
    print(f"{fn.__name__:>14}:", fn(completions=[[{"role": "assistant", "content": t}] for t in tries], answer=["7"] * 4),
          "for", tries)

# %% [markdown]
# ## Prompts, not answers
# The dataset's `type:` is a transform (Axolotl's shape): it turns `{question, answer}` rows into a chat prompt
# and keeps `answer` for the reward. TRL renders the prompt with the chat template: the prompt inference sends.

# %%
tokenizer = models.load_tokenizer(recipe)
prepared = data.prepare(recipe, tokenizer)  # the same data.prepare as SFT; GRPO's rows are prompts
print(prepared.summary())
print(prepared.train[0])

# %% [markdown]
# ## Train
# Each logged step shows the mean reward of that step's completions. Before and after, ftkit samples completions
# for the 17 held-out sums (`test_datasets`, never trained on) with the same seed and scores them.

# %%
recipe, result = panel.train()  # the recipe of the parameters now (in JupyterLab: the form's)

# %% [markdown]
# ## Reward over steps
# Left: the mean reward rises as the model samples digits more often. Right: the share of groups whose completions
# all scored the same: their advantages are 0, so they teach nothing. At the start most groups are all-zero (a random
# model rarely writes a digit); the ones that are not carry the whole signal.

# %%
from matplotlib.figure import Figure

steps = [h["step"] for h in result.history if h.get("reward") is not None]
fig = Figure(figsize=(10, 3.5))
left, right = fig.subplots(1, 2)
left.plot(steps, result.series("reward"), marker=".")
left.set(title="mean reward of each step's completions", xlabel="step")
right.plot(steps, result.series("zero_std_groups"), marker=".", color="tab:orange")
right.set(title="groups with one reward for all (no signal)", xlabel="step", ylim=(-0.05, 1.05))
plot_png = f"{output_dir}/grpo_reward.png"
nb.show_figure(fig, plot_png)

# %% [markdown]
# ## Before and after on held-out prompts
# The mean reward per function tells *what* was learned: a random twin learns the format (answer in digits) but
# cannot learn to add, so `correct_sum` stays near zero there; the completion length stays at
# `max_completion_length` (it has not learned to stop). A real model starts with both rewards partly earned.

# %%
for when, m in (("before", result.reward_before), ("after", result.reward_after)):
    print(f"{when:>6}: mean reward {m['mean']:.3f}", {k: round(v, 3) for k, v in m["per_func"].items()},
          f"mean length {m['completion_length']:.1f} tokens")
print(result.summary())
nb.record_run(result)
nb.record("heldout_reward_before", result.reward_before["mean"])
nb.record("heldout_reward_after", result.reward_after["mean"])

# %% [markdown]
# ## What this notebook showed (checked when it runs headless)

# %%
import os

rewards = result.series("reward")
assert sum(rewards[-8:]) / 8 > sum(rewards[:8]) / 8, rewards  # the training reward rose
assert result.reward_after["mean"] > result.reward_before["mean"] + 0.2, result.summary()  # and on held-out prompts
assert result.reward_after["per_func"]["number_format"] > result.reward_before["per_func"]["number_format"]
assert os.path.getsize(plot_png) > 0 and os.path.isfile(os.path.join(output_dir, "metrics.json"))
