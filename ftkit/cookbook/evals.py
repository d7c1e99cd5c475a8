"""Assertion evals: a list of cheap checks run over generated outputs, scored before and after training.

In the spirit of the Honeycomb case study ("level 1" evals): plain assertions that catch failure modes
(empty answer, prompt-template text leaking into the answer, rambling, a wrong fact), refined as new
failures show up; they run on every change, long before a human or an LLM judge looks.

    checks = [evals.not_empty(), evals.no_template_leak(), evals.max_words(12),
              evals.expect("capital of Spain", r"\\bMadrid\\b")]
    table = evals.before_after(checks, prompts, before_outputs, after_outputs)
    print(table.markdown()); table.score_after  # fraction of (prompt, check) pairs that pass
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
    """One assertion: `test(prompt, output) -> bool`; `applies(prompt)` limits it to some prompts."""

    name: str
    test: Callable[[str, str], bool]
    applies: Callable[[str], bool] = lambda prompt: True


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


def expect(prompt_contains: str, pattern: str) -> Check:
    """For prompts containing `prompt_contains`, the output must match the regex `pattern`."""
    rx = re.compile(pattern, re.IGNORECASE)
    return Check(f"{prompt_contains!r} -> /{pattern}/", lambda p, out: bool(rx.search(out)),
                 applies=lambda p: prompt_contains.lower() in p.lower())


@dataclass
class EvalResult:
    """Pass/fail per (prompt, check) for one set of outputs."""

    rows: list = field(default_factory=list)  # (prompt, output, {check name: passed})

    @property
    def score(self) -> float:
        results = [ok for _, _, r in self.rows for ok in r.values()]
        return sum(results) / len(results) if results else 0.0

    def failures(self) -> list[str]:
        return [f"{name}: {prompt!r} -> {out!r}" for prompt, out, r in self.rows for name, ok in r.items() if not ok]


def run_checks(checks: list[Check], prompts: list[str], outputs: list[str]) -> EvalResult:
    if len(prompts) != len(outputs):
        raise ValueError(f"{len(prompts)} prompts but {len(outputs)} outputs")
    return EvalResult([(p, o, {c.name: bool(c.test(p, o)) for c in checks if c.applies(p)})
                       for p, o in zip(prompts, outputs)])


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
        """Header + one row per prompt: the outputs and passed/applicable checks, before and after."""
        out = [["prompt", "before", "checks", "after", "checks"]]
        for (p, b, rb), (_, a, ra) in zip(self.before.rows, self.after.rows):
            out.append([p, b, f"{sum(rb.values())}/{len(rb)}", a, f"{sum(ra.values())}/{len(ra)}"])
        out.append(["score", "", f"{self.score_before:.0%}", "", f"{self.score_after:.0%}"])
        return out

    def markdown(self) -> str:
        def cell(s):
            return str(s).replace("|", "\\|").replace("\n", " ")[:80]
        rows = self.table()
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
        return "\n".join(lines + ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows[1:]])


def before_after(checks: list[Check], prompts: list[str], before: list[str], after: list[str]) -> BeforeAfter:
    return BeforeAfter(run_checks(checks, prompts, before), run_checks(checks, prompts, after))


def standard_checks(max_len: int = 16) -> list[Check]:
    """The checks every notebook runs on the sample data's prompts (data_samples/alpaca.jsonl facts)."""
    return [not_empty(), no_template_leak(), no_repetition(), max_words(max_len),
            expect("capital of Spain", r"\bMadrid\b"), expect("opposite of the word fast", r"\bslow\b"),
            expect("color is the sky", r"\bblue\b")]


SAMPLE_PROMPTS = ["What is the capital of Spain?", "Give the opposite of the word fast.", "What color is the sky?"]
