# %% [markdown]
# # Datasets and masking
#
# A row becomes *segments* (text, trained?) through its prompt strategy; one function turns segments into
# `input_ids` and `labels`, with -100 on everything the model should not learn to produce. This notebook looks at
# that path and what it drops. In JupyterLab the training panel (next cell) lets you change the parameters and
# train from a form.

# %% include="_lesson_start.py" recipe="recipes/quickstart.yml" max_steps=40 learning_rate=0.0 name="masking" overrides={}

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
