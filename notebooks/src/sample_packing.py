# %% [markdown]
# # Sample packing
#
# Short examples padded to the longest in a batch waste most of each step on padding. Packing puts whole examples
# side by side in rows of up to `sequence_len` tokens; `position_ids` restart at 0 for each example, so attention
# never crosses examples and the loss of each example is the same as if it were alone (tests/test_packing.py
# proves it to 1e-5, and shows the check fails when positions do not restart).

# %% tags=["parameters"]
recipe_path = "recipes/quickstart.yml"  # from the repository root (or the installed package); its folder names the twin
tiny = True  # train the offline tiny twin of the recipe's architecture instead of the real base model
max_steps = 40  # a few dozen steps on the twin, 0 means the recipe epochs
learning_rate = 0  # for the random init twin, 0 means the recipe value
output_dir = "outputs/nb-packing"  # under the git-ignored outputs/ of the working directory setup() moves to

# %%
from ftkit.cookbook import notebook as nb
root = nb.setup()  # offline; runs from the repository root whatever folder it started in; quiet batch progress
from ftkit import data, models
from ftkit.cookbook import evals, workshop
from ftkit.models import merge

panel = workshop.TrainingPanel(workshop.lesson_recipe, globals(), root=root, overrides={"sample_packing": True})
panel.show()  # Jupyter: the parameters as a form with Train / Stop / Resume; headless: nothing
recipe = panel.recipe()
nb.reset_metrics()
LOSS_RATIO = 0.8  # full fine-tune of the twin: ~6.9 -> < 5 in 40 steps
print(recipe.base_model, recipe.adapter, recipe.lora_target_modules)

# %%
from ftkit.bench.packing import efficiency_table
from ftkit.data import packing

tok = models.load_tokenizer(recipe)
plain = data.prepare(panel.recipe(sample_packing=False), tok)

# %% [markdown]
# The same examples, counted four ways: real tokens / token slots (the last partial row included).

# %%
table = efficiency_table(plain.train, recipe)
for method, rows, eff in table:
    print(f"{method:40s} {rows:6d} rows  efficiency {eff:.4f}")
nb.record("packing_efficiency", table[0][2])

# %% [markdown]
# One packed row: the examples it holds and where each one's positions restart.

# %%
packed, stats = packing.pack(plain.train, recipe.sequence_len)
print(stats.summary())
print(packing.show_packed_row(packed[0], tok))

# %%
assert stats.rows == len(plain.train) and stats.bins <= 1.01 * stats.lower_bound + 1, stats.summary()
assert table[0][2] >= max(eff for _, _, eff in table[1:]), table  # ftkit packs densest

# %% include="_shared_path.py"
