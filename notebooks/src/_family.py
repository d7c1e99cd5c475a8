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

# %% tags=["parameters"]
recipe_path = "{{recipe}}"  # from the repository root (or the installed package); its folder names the twin
tiny = True  # train the offline tiny twin of the recipe's architecture instead of the real base model
max_steps = 40  # a few dozen steps on the twin, 0 means the recipe epochs
learning_rate = 0.01  # for the random init twin, 0 means the recipe value
output_dir = "outputs/nb-{{name}}"  # under the git-ignored outputs/ of the working directory setup() moves to

# %%
from ftkit.cookbook import notebook as nb
root = nb.setup()  # offline; runs from the repository root whatever folder it started in; quiet batch progress
from ftkit import data, models
from ftkit.cookbook import evals, workshop
from ftkit.models import merge

panel = workshop.TrainingPanel(workshop.lesson_recipe, globals(), root=root)
panel.show()  # Jupyter: the parameters as a form with Train / Stop / Resume; headless: nothing
recipe = panel.recipe()  # the recipe of the values now: the twin, toy-size settings, the sample prompts
nb.reset_metrics()
LOSS_RATIO = 0.95 if tiny and recipe.adapter else 0.8  # twin + LoRA: ~6.6 -> ~6.1 in 40 steps
print(recipe.base_model, recipe.adapter, recipe.lora_target_modules)

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
from ftkit.train import memory

real_recipe = load_recipe(root / recipe_path)  # as written: the real base model, not the twin
print(nb.real_size(real_recipe.base_model))
# the training budget of the recipe as written (real model, bf16 on a GPU), with the arithmetic
print(memory.estimate(real_recipe, half=True).table())

# %% include="_shared_path.py"
