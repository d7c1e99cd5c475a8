# %% tags=["parameters"]
recipe_path = "{{recipe}}"  # from the repository root (or the installed package); its folder names the twin
tiny = True  # train the offline tiny twin of the recipe's architecture instead of the real base model
max_steps = {{max_steps}}  # a few dozen steps on the twin, 0 means the recipe epochs
learning_rate = {{learning_rate}}  # for the random init twin, 0 means the recipe value
output_dir = "outputs/nb-{{name}}"  # under the git-ignored outputs/ of the working directory setup() moves to

# %%
from ftkit.cookbook import notebook as nb
root = nb.setup()  # offline; runs from the repository root whatever folder it started in; quiet batch progress
from ftkit import data, models
from ftkit.cookbook import evals, workshop
from ftkit.models import merge

panel = workshop.TrainingPanel(workshop.lesson_recipe, globals(), root=root, overrides={{overrides}})
panel.show()  # Jupyter: the parameters as a form with Train / Stop / Resume; headless: nothing
recipe = panel.recipe()  # the recipe of the values now: the twin, toy-size settings, the sample prompts
nb.reset_metrics()
LOSS_RATIO = 0.95 if tiny and recipe.adapter else 0.8  # twin + LoRA: ~6.6 -> ~6.1 in 40 steps; full: < 5
print(recipe.base_model, recipe.adapter, recipe.lora_target_modules)
