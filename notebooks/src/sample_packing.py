# %% [markdown]
# # Sample packing
#
# Short examples padded to the longest in a batch waste most of each step on padding. Packing puts whole examples
# side by side in rows of up to `sequence_len` tokens; `position_ids` restart at 0 for each example, so attention
# never crosses examples and the loss of each example is the same as if it were alone (tests/test_packing.py
# proves it to 1e-5, and shows the check fails when positions do not restart).

# %% include="_lesson_start.py" recipe="recipes/quickstart.yml" max_steps=40 learning_rate=0.0 name="packing" overrides={"sample_packing": true}

# %%
from ftkit.bench.packing import efficiency_table
from ftkit.plugins import packing

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
