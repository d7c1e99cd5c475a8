"""The embedded default trains end to end and learns (a short version of `make demo`)."""
from ftkit import train


def test_full_finetune_learns_alpaca_format(make_recipe):
    recipe = make_recipe(max_steps=60, eval_prompts=["What is the capital of Spain?"], max_new_tokens=12)
    result = train.run(recipe)
    assert result.final_loss < result.first_loss * 0.5, result.summary()
    assert result.samples_after[0]["completion"].startswith("The capital of"), result.summary()
