"""Assertion evals judge what an answer says: nonsense scores near 0, right answers score high.

The gibberish is random tokens from every tiny twin's own tokenizer (what an untrained model of that family emits),
plus the "before" answers the notebooks really printed (tests/data/notebook_before_answers.json, from
`ftkit notebooks run --tiny`); the old scoring passed such answers on 73 to 80% of its (prompt, check) pairs.
"""
from __future__ import annotations

import json
import random

import pytest
from conftest import ROOT

from ftkit.cookbook import evals
from ftkit.models.families import FAMILIES

PROMPTS = evals.SAMPLE_PROMPTS + ["What is the capital of Peru?"]
RIGHT = {  # prompt -> answers a person would accept
    PROMPTS[0]: ["The capital of Spain is Madrid.", "Madrid.", "madrid", "Madrid is the capital of Spain.",
                 "The capital of Spain is Madrid!", "  The capital of Spain is  Madrid .  "],
    PROMPTS[1]: ["The opposite of fast is slow.", "Slow.", "slow is the opposite of fast"],
    PROMPTS[2]: ["The sky is blue.", "Blue.", "The sky is BLUE"],
    PROMPTS[3]: ["The capital of Peru is Lima.", "Lima."],
}
WRONG = {  # fluent, near misses, or the key word out of its place
    PROMPTS[0]: ["The capital of Japan is Tokyo.", "The capital of Spain is not Madrid.", "Paris.",
                 "city Madrid river fast sky.", "Madrid Madrid Madrid Madrid Madrid", "### Response: Madrid",
                 "The capital of Spain is a large city in the middle of the country near Madrid.", ""],
    PROMPTS[1]: ["The opposite of fast is quick.", "fast slow fast slow fast slow", "The opposite of slow is fast."],
    PROMPTS[2]: ["The sky is green.", "blue blue blue blue blue blue.", "<|im_start|>assistant\nThe sky is blue."],
    PROMPTS[3]: ["The capital of Peru is Lima Lima Lima Lima Lima Lima."],
}


def score(answers: dict) -> float:
    prompts = [p for p, outs in answers.items() for _ in outs]
    return evals.run_checks(evals.standard_checks(), prompts, [o for outs in answers.values() for o in outs]).score


def test_right_answers_are_judged_right_and_fluent_wrong_ones_wrong():
    assert score(RIGHT) == 1.0
    result = evals.run_checks(evals.standard_checks(), *zip(*[(p, o) for p, outs in WRONG.items() for o in outs]))
    assert result.verdicts == [False] * len(result.rows), [(p, o) for (p, o, _), v in zip(result.rows, result.verdicts)
                                                           if v]


def gibberish(tokenizer, rng: random.Random, n: int) -> list[str]:
    """`n` answers of 3 to 24 random tokens from the tokenizer's vocabulary, decoded as generation decodes them."""
    vocab = len(tokenizer)
    return [tokenizer.decode([rng.randrange(vocab) for _ in range(rng.randint(3, 24))], skip_special_tokens=True)
            for _ in range(n)]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_random_token_gibberish_scores_near_zero(family):
    from transformers import AutoTokenizer

    from ftkit.models.tiny import tiny_path

    tokenizer = AutoTokenizer.from_pretrained(tiny_path(family))
    rng = random.Random(family)
    outputs = gibberish(tokenizer, rng, 200)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(len(outputs))]
    result = evals.run_checks(evals.standard_checks(), prompts, outputs)
    assert result.judged == 200 and result.score <= 0.01, [o for (_, o, _), v in zip(result.rows, result.verdicts) if v]
    # what the old pair-counting score saw in the same answers: the gates alone pass most of them
    gates = [ok for _, _, r in result.rows for name, ok in r.items() if not name.startswith("says")]
    assert sum(gates) / len(gates) > 0.5


def test_the_notebooks_real_before_answers_score_zero():
    recorded = json.loads((ROOT / "tests" / "data" / "notebook_before_answers.json").read_text())
    pairs = [(s["prompt"], s["before"]) for samples in recorded["notebooks"].values() for s in samples]
    assert len(recorded["notebooks"]) >= 15 and len(pairs) >= 45
    result = evals.run_checks(evals.standard_checks(), *zip(*pairs))
    assert result.judged == len(pairs) and result.score == 0.0, result.failures()[:5]


def test_before_after_table_shows_both_side_by_side():
    before = ["isilia heavy cold", "### Response: slow", "blue blue blue blue"]
    after = ["The capital of Spain is Madrid.", "The opposite of fast is slow.", "The sky is green."]
    ba = evals.before_after(evals.standard_checks(), evals.SAMPLE_PROMPTS, before, after)
    assert (ba.score_before, ba.score_after) == (0.0, pytest.approx(2 / 3))
    table = ba.table()
    assert table[0] == ["prompt", "before", "judged", "after", "judged"]
    assert table[1] == ["What is the capital of Spain?", "isilia heavy cold", "wrong: says 'Madrid'",
                        "The capital of Spain is Madrid.", "right"]
    assert table[2][2] == "wrong: no template text, says 'slow'"
    assert table[3][4] == "wrong: says 'blue'" and table[-1] == ["right answers", "", "0/3 (0%)", "", "2/3 (67%)"]
    assert "| right answers |  | 0/3 (0%) |  | 2/3 (67%) |" in ba.markdown()


def test_prompts_without_a_content_check_are_shown_not_scored():
    result = evals.run_checks(evals.standard_checks(), ["Tell me a joke.", "What color is the sky?"], ["Ha.", "Blue."])
    assert result.verdicts == [None, True] and result.score == 1.0 and result.judged == 1
    assert evals.run_checks(evals.gates(), ["Tell me a joke."], ["Ha."]).score == 0.0  # nothing judged: no credit
    with pytest.raises(ValueError, match="2 prompts but 1 outputs"):
        evals.run_checks(evals.gates(), ["a", "b"], ["x"])
