"""Assertion evals: is each generated answer right? Scored per answer, before and after training.

In the spirit of the Honeycomb case study ("level 1" evals): cheap checks that run on every change, long before
a human or an LLM judge looks. Looking is not checking, and a check that passes nonsense is not one either, so
only a *content* check gives credit: the answer matches the prompt's reference (exactly once case, punctuation
and spacing are folded), or says its key word in the reference's slot ("... is Madrid", "Madrid is ...").
*Gates* (not empty, no template text, no loop, short) give no credit; failing one makes the answer wrong.
The score is the fraction of answers that are right, so random gibberish scores 0:

    checks = evals.standard_checks()             # the gates + one content check per sample prompt
    ba = evals.before_after(checks, prompts, before_outputs, after_outputs)
    ba.score_before, ba.score_after              # fraction of right answers (prompts without a content check
    print(ba.markdown())                         # are shown, not scored)
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

# Text that belongs to prompt templates, never to an answer (alpaca headers, chat-template tokens).
TEMPLATE_MARKERS = ("### Instruction", "### Response", "### Input", "<|im_start|>", "<|im_end|>", "[INST]",
                    "<start_of_turn>", "<|start_header_id|>", "<|eot_id|>", "<|user|>", "<|assistant|>")


@dataclass(frozen=True)
class Check:
    """One assertion: `test(prompt, output) -> bool`; `applies(prompt)` limits it to some prompts. A content
    check judges whether the answer is right; any other check is a gate that can only veto."""

    name: str
    test: Callable[[str, str], bool]
    applies: Callable[[str], bool] = lambda prompt: True
    content: bool = False


def not_empty() -> Check:
    return Check("not empty", lambda p, out: bool(out.strip()))


def max_words(n: int) -> Check:
    return Check(f"<= {n} words", lambda p, out: len(out.split()) <= n)


def no_template_leak(markers=TEMPLATE_MARKERS) -> Check:
    return Check("no template text", lambda p, out: not any(m in out for m in markers))


def no_repetition(ngram: int = 3) -> Check:
    """No word n-gram repeated (the classic degenerate loop of an untrained or overtrained model)."""
    def test(p, out):
        words = out.split()
        grams = [tuple(words[i:i + ngram]) for i in range(len(words) - ngram + 1)]
        return len(grams) == len(set(grams))
    return Check(f"no repeated {ngram}-gram", test)


def words(text: str) -> list[str]:
    """Lower-case words without punctuation: `"The sky is  Blue!"` -> ["the", "sky", "is", "blue"]."""
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower())


def says(answer: str, reference: str, key: str) -> bool:
    """Is `answer` the reference's statement? The same words as `reference` (case, punctuation and spacing folded),
    the key word alone (`Madrid.`), or a statement at most 4 words longer than the reference with the key word in
    its slot: after the word that precedes it in the reference (`... is Madrid`), or opening the answer followed
    by that word (`Madrid is ...`). A key word among random words, or after a negation (`not Madrid`), is not in
    its slot."""
    got, ref, k = words(answer), words(reference), key.lower()
    if got == ref or got == [k]:
        return True
    slot = {ref[i - 1] for i, w in enumerate(ref) if w == k and i > 0}  # "is" in "The capital of Spain is Madrid"
    in_slot = any(got[i - 1] in slot for i, w in enumerate(got) if w == k and i > 0)
    inverted = len(got) > 1 and got[0] == k and got[1] in slot
    return len(got) <= len(ref) + 4 and (in_slot or inverted)


def answer(prompt_contains: str, reference: str, key: str) -> Check:
    """Content check for prompts containing `prompt_contains`: the output says `reference` (see `says`)."""
    return Check(f"says {key!r}", lambda p, out: says(out, reference, key),
                 applies=lambda p: prompt_contains.lower() in p.lower(), content=True)


@dataclass
class EvalResult:
    """Per answer: which checks passed, and whether the answer is right (None: no content check applies)."""

    rows: list = field(default_factory=list)  # (prompt, output, {check name: passed})
    content: set = field(default_factory=set)  # names of the content checks among them

    def verdict(self, results: dict) -> bool | None:
        """Right = a content check applies, and every check (content and gates) passed."""
        return all(results.values()) if self.content & set(results) else None

    @property
    def verdicts(self) -> list[bool | None]:
        return [self.verdict(r) for _, _, r in self.rows]

    @property
    def score(self) -> float:
        """Fraction of judged answers that are right (0.0 when no answer could be judged)."""
        judged = [v for v in self.verdicts if v is not None]
        return sum(judged) / len(judged) if judged else 0.0

    @property
    def right(self) -> int:
        return sum(v is True for v in self.verdicts)

    @property
    def judged(self) -> int:
        return sum(v is not None for v in self.verdicts)

    def failures(self) -> list[str]:
        return [f"{name}: {prompt!r} -> {out!r}" for prompt, out, r in self.rows for name, ok in r.items() if not ok]


def run_checks(checks: list[Check], prompts: list[str], outputs: list[str]) -> EvalResult:
    if len(prompts) != len(outputs):
        raise ValueError(f"{len(prompts)} prompts but {len(outputs)} outputs")
    return EvalResult([(p, o, {c.name: bool(c.test(p, o)) for c in checks if c.applies(p)})
                       for p, o in zip(prompts, outputs)], {c.name for c in checks if c.content})


def _mark(verdict: bool | None, results: dict) -> str:
    """`right`, `wrong: <the failed checks>`, or `not judged`."""
    if verdict is None:
        return "not judged"
    return "right" if verdict else "wrong: " + ", ".join(n for n, ok in results.items() if not ok)


@dataclass
class BeforeAfter:
    before: EvalResult
    after: EvalResult

    @property
    def score_before(self) -> float:
        return self.before.score

    @property
    def score_after(self) -> float:
        return self.after.score

    def table(self) -> list[list[str]]:
        """Header + one row per prompt: the answer before and after, each judged; then the scores."""
        out = [["prompt", "before", "judged", "after", "judged"]]
        for (p, b, rb), (_, a, ra) in zip(self.before.rows, self.after.rows):
            out.append([p, b, _mark(self.before.verdict(rb), rb), a, _mark(self.after.verdict(ra), ra)])
        out.append(["right answers", "", f"{self.before.right}/{self.before.judged} ({self.score_before:.0%})", "",
                    f"{self.after.right}/{self.after.judged} ({self.score_after:.0%})"])
        return out

    def markdown(self) -> str:
        def cell(s):
            return str(s).replace("|", "\\|").replace("\n", " ")[:80]
        rows = self.table()
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
        return "\n".join(lines + ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows[1:]])


def before_after(checks: list[Check], prompts: list[str], before: list[str], after: list[str]) -> BeforeAfter:
    return BeforeAfter(run_checks(checks, prompts, before), run_checks(checks, prompts, after))


# The facts the sample data teaches (data_samples/alpaca.jsonl, preference_heldout.jsonl): (prompt, reference, key)
FACTS = (("capital of Spain", "The capital of Spain is Madrid.", "Madrid"),
         ("opposite of the word fast", "The opposite of fast is slow.", "slow"),
         ("color is the sky", "The sky is blue.", "blue"),
         ("capital of Peru", "The capital of Peru is Lima.", "Lima"))


def gates(max_len: int = 16) -> list[Check]:
    """The format checks every answer must pass: they give no credit, they only veto."""
    return [not_empty(), no_template_leak(), no_repetition(), max_words(max_len)]


def standard_checks(max_len: int = 16) -> list[Check]:
    """The checks every notebook runs on the sample data's prompts: the gates and one content check per fact."""
    return gates(max_len) + [answer(*fact) for fact in FACTS]


SAMPLE_PROMPTS = ["What is the capital of Spain?", "Give the opposite of the word fast.", "What color is the sky?"]


def judge(result, checks: list[Check] | None = None) -> BeforeAfter:
    """A TrainResult's answers to its eval prompts, before and after training, judged by `checks` (the standard
    ones by default)."""
    prompts = [s["prompt"] for s in result.samples_after]
    return before_after(checks or standard_checks(), prompts, [s["completion"] for s in result.samples_before],
                        [s["completion"] for s in result.samples_after])
