# %% [markdown]
# # Datasets and masking
#
# A row becomes *segments* (text, trained?) through its prompt strategy; one function turns segments into
# `input_ids` and `labels`, with -100 on everything the model should not learn to produce. This notebook looks at
# that path and what it drops. In JupyterLab the training panel (next cell) lets you change the parameters and
# train from a form.

# %% tags=["parameters"]
recipe_path = "recipes/quickstart.yml"  # from the repository root (or the installed package); its folder names the twin
tiny = True  # train the offline tiny twin of the recipe's architecture instead of the real base model
max_steps = 40  # a few dozen steps on the twin, 0 means the recipe epochs
learning_rate = 0  # for the random init twin, 0 means the recipe value
output_dir = "outputs/nb-masking"  # under the git-ignored outputs/ of the working directory setup() moves to

# %%
from ftkit.cookbook import notebook as nb
root = nb.setup()  # offline; runs from the repository root whatever folder it started in; quiet batch progress
from ftkit import data, models
from ftkit.cookbook import evals, workshop
from ftkit.models import merge

panel = workshop.TrainingPanel(workshop.lesson_recipe, globals(), root=root)
panel.show()  # Jupyter: the parameters as a form with Train / Stop / Resume; headless: nothing
recipe = panel.recipe()
nb.reset_metrics()
LOSS_RATIO = 0.8  # full fine-tune of the twin: ~6.9 -> < 5 in 40 steps
print(recipe.base_model, recipe.adapter, recipe.lora_target_modules)

# %%
from ftkit.formats import get_strategy
from ftkit.formats.tokenize import encode_segments

tok = models.load_tokenizer(recipe)
row = {"instruction": "Add 2 and 3.", "input": "", "output": "2 plus 3 is 5."}
segments = get_strategy("alpaca").segments(row)
segments

# %% [markdown]
# With `train_on_inputs: false` (the default) only the answer and the closing eos are trained; with `true` the
# prompt is trained too (bos is never a target).

# %%
for flag in (False, True):
    ex = encode_segments(segments, tok, train_on_inputs=flag)
    print(f"train_on_inputs={flag}: {sum(l != -100 for l in ex['labels'])} of {len(ex['labels'])} tokens trained")
    nb.show_mask(ex, tok)

# %% [markdown]
# Rows longer than `sequence_len` are dropped, never truncated silently, and counted:

# %%
short = panel.recipe(sequence_len=56, dataset_prepared_path=None)
print(data.prepare(short, tok).summary())

# %% include="_shared_path.py"
