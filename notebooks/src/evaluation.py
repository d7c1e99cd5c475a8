# %% [markdown]
# # Evaluation with assertions
#
# Before a human or an LLM judge looks at outputs, cheap assertions catch most failures: empty answers, template
# text leaking into answers, loops, wrong facts. The Honeycomb case study calls them level-1 evals; they run on
# every change and grow as new failure modes are found. Looking is not checking, and neither is a check that
# passes nonsense: here only a *content* check gives credit.

# %% include="_lesson_start.py" recipe="recipes/quickstart.yml" max_steps=60 learning_rate=0.0 name="evaluation" overrides={}

# %% [markdown]
# Two kinds of checks. A **content** check (`evals.answer`) decides whether an answer is right: it says the
# reference fact, word for word once case and punctuation are folded, or with the key word in the reference's
# slot (`... is Madrid`, `Madrid is ...`). A **gate** (not empty, no template text, no loop, short) gives no
# credit; failing one makes an answer wrong. The score is the fraction of answers that are right.

# %%
checks = evals.standard_checks()
for c in checks:
    print("content" if c.content else "gate   ", c.name)

# %% [markdown]
# A check is a name and a function `(prompt, output) -> bool`; `applies` limits it to the prompts it is about.
# Adding one is a line. Below, planted answers: the checks catch each failure, and nonsense that happens to hold
# the key word, or a fluent answer about the wrong country, is never judged right.

# %%
checks.append(evals.Check("ends with a period", lambda p, out: out.rstrip().endswith(".")))
demo = evals.run_checks(checks, evals.SAMPLE_PROMPTS, ["Madrid.", "### Response: slow", "The sky is blue"])
print(demo.verdicts, f"score {demo.score:.0%}")
print("\n".join(demo.failures()))
nonsense = evals.run_checks(checks, evals.SAMPLE_PROMPTS,
                            ["city Madrid river fast sky.", "The opposite of fast is quick.", "blue blue blue blue."])
print(nonsense.verdicts, f"score {nonsense.score:.0%}")

# %%
# the checks catch exactly the planted failures: a leaked template (and "slow" out of its slot), missing periods
assert demo.verdicts == [True, False, False] and nonsense.score == 0, (demo.failures(), nonsense.failures())
caught = {(evals.SAMPLE_PROMPTS.index(p), name) for p, _, r in demo.rows for name, ok in r.items() if not ok}
assert caught == {(1, "no template text"), (1, "says 'slow'"), (1, "ends with a period"),
                  (2, "ends with a period")}, caught
tok = models.load_tokenizer(recipe)

# %% include="_shared_path.py"
