# %% [markdown]
# # Fine-tuning {{title}}
#
# Runs on the offline tiny twin ({{twins}}) by default: same architecture, tokens and template at toy size, so
# every cell runs on a laptop CPU in seconds. Set `tiny = False` on a GPU to train the recipe's real base model.
#
# In JupyterLab the next cell shows a **training panel**: the parameters as a form. Change a value and run the
# cells below, or click **Train** to train in the background with a live loss plot; **Stop** ends training after
# the current step and saves a checkpoint, **Resume** continues from it. Run headless (papermill,
# `ftkit notebooks run`), the parameters cell rules and the notebook runs top to bottom.

# %% include="_lesson_start.py" recipe="{{recipe}}" max_steps=40 learning_rate=0.01 name="{{name}}" overrides={}

# %% [markdown]
# ## The {{title}} family
#
# {{lesson}}

# %%
from ftkit.cookbook.twins import twin_for_recipe
from ftkit.models.families import FAMILIES

tok = models.load_tokenizer(recipe)
family = twin_for_recipe(root / recipe_path).split(":")[1]
print(nb.describe_tokenizer(tok, FAMILIES[family].twin.template))

# %% [markdown]
# ## Memory at real size
# Parameter count from the real architecture's config (built on the meta device: no download, no memory). bf16
# weights take 2 bytes per parameter; 4-bit nf4 (QLoRA) ~0.56. Then `ftkit memory`'s estimate for this recipe:
# weights, gradients, optimizer state and activations at the recipe's batch and sequence length.

# %%
from ftkit.recipe import load_recipe
from ftkit.bench import estimate

real_recipe = load_recipe(root / recipe_path)  # as written: the real base model, not the twin
print(nb.real_size(real_recipe.base_model))
# the training budget of the recipe as written (real model, bf16 on a GPU), with the arithmetic
print(estimate.estimate(real_recipe, half=True).table())

# %% include="_shared_path.py"
