"""The alpaca family: instruction/input/output rows written into a fixed prompt, table-driven.

Every format is (which columns give instruction, input and answer) + (a system line and a turn template, with and
without input): data, in ftkit/assets/alpaca_formats.yaml. The readers below serve the formats whose rows have
another shape (multiple choice, critiques, context + question).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from ftkit.formats.base import PromptStrategy, RowError, Segment, text_field

CRITERIA = "refusal, prescriptive_bias, creativity and comprehensiveness (each 0-10)"
NO_CONTEXT_ANSWER = ("The context provided does not contain any information about your inquiry. "
                     "Therefore, I'm unable to answer your question based on the given context.")


@dataclass(frozen=True)
class InstructFormat:
    """One alpaca-family format: `fields(row, name) -> (instruction, input, answer[, system])`."""

    fields: Callable[[dict, str], tuple]
    system: str
    system_no_input: str
    turn: tuple[str, str]  # (with input, without input)
    system_format: str = ""  # for formats whose system text comes from the row, e.g. "### System:\n{system}\n\n"
    eos_count: int = 1
    default_system: str = ""  # the system text of rows without one (a custom format's system_prompt)


def _cols(instruction="instruction", output="output", input="input", system=None, prefix=""):
    """fields() reading plain columns: instruction, optional input, answer (with an optional prefix)."""
    def fields(row, fmt):
        out = (text_field(row, instruction, fmt), text_field(row, input, fmt, required=False) if input else "",
               prefix + text_field(row, output, fmt))
        return out + ((text_field(row, system, fmt, required=False),) if system else ())
    return fields


def _choices(row, fmt):
    choices = row.get("choices")
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
        raise RowError("choices", f"field 'choices' must be a list of strings, got {type(choices).__name__}",
                       'write choices as ["first", "second", ...]')
    answer_field = "solution" if row.get("solution") is not None else "explanation"
    return (text_field(row, "question", fmt), "\n".join(f'- "{c}"' for c in choices),
            text_field(row, answer_field, fmt))


def _evaluation(row) -> str:
    for key in ("scores", "critiques"):
        if not isinstance(row.get(key), dict):
            raise RowError(key, f"field {key!r} must be a mapping", f'write {key} as {{"creativity": ...}}')
    return yaml.safe_dump(row["scores"], sort_keys=False) + yaml.safe_dump(row["critiques"], sort_keys=False)


def _creative(kind: str):
    def fields(row, fmt):
        question, answer = text_field(row, "instruction", fmt), text_field(row, "answer", fmt)
        if kind == "critique":
            prompt = (f"Critique the Response to the Question on {CRITERIA}, then explain each score and how to "
                      f"improve it. Reply in YAML with scores: and critiques:.\n\nQuestion: {question}\nAnswer: {answer}\n")
            return prompt, "", _evaluation(row)
        prompt = (f"Revise the Response to the Question using the Evaluation ({CRITERIA}). Reply only with the "
                  f"revised response.\n\nQuestion: {question}\nAnswer: {answer}\nEvaluation:\n{_evaluation(row)}\n")
        return prompt, "", text_field(row, "revision", fmt)
    return fields


def _reflection(row, fmt):
    thought = (f"### Thought:\n{text_field(row, 'output', fmt)}\n\n### Agent Reflection:\n"
               f"{text_field(row, 'reflection', fmt)}\n\n### Final Response:\n{text_field(row, 'corrected', fmt)}")
    return text_field(row, "instruction", fmt), text_field(row, "input", fmt, required=False), thought


def _context(r, f):
    return text_field(r, "article", f) + "\n===\n" + text_field(r, "question", f), "", text_field(r, "answer", f)


READERS = {
    "choices": _choices, "reflection": _reflection, "context_qa": _context,
    "context_qa_v2": lambda r, f: (f"Context: {text_field(r, 'context', f)}\nQuestion: {text_field(r, 'question', f)}\n",
                                   "", "Answer: " + text_field(r, "answer", f)),
    "context_qa_404": lambda r, f: (text_field(r, "article", f) + "\n===\n" + text_field(r, "unanswerable_question", f),
                                    "", NO_CONTEXT_ANSWER),
    **{f"creative_{kind}": _creative(kind) for kind in ("critique", "revise")},
}


def _formats() -> dict[str, InstructFormat]:
    table = yaml.safe_load((Path(__file__).parents[1] / "assets" / "alpaca_formats.yaml").read_text(encoding="utf-8"))
    texts = table.pop("_texts")
    out = {}
    for name, f in table.items():
        system = f.get("system", texts["sys"])
        no_input = f.get("system_no_input", texts["sys_no_input"])
        out[name] = InstructFormat(READERS[f["reader"]] if "reader" in f else _cols(**f.get("columns", {})), system,
                                   system if no_input == "same" else no_input, tuple(f.get("turn", texts["instruct"])),
                                   f.get("system_format", ""), f.get("eos_count", 1))
    return out


FORMATS = _formats()
WITH_INPUT = FORMATS["alpaca"].system + FORMATS["alpaca"].turn[0]
NO_INPUT = FORMATS["alpaca"].system_no_input + FORMATS["alpaca"].turn[1]
# Template text the tiny tokenizer is trained on, so prompts are a handful of tokens.
TEMPLATE_WORDS = [WITH_INPUT.format(instruction="", input=""), NO_INPUT.format(instruction="")] * 20


class InstructStrategy(PromptStrategy):
    """Row -> [(system + turn prompt, False), (answer, True)] for one entry of FORMATS.

    Example (alpaca): {"instruction": "Add 2 and 3.", "input": "", "output": "2 plus 3 is 5."} ->
    [("Below is ... ### Instruction:\\nAdd 2 and 3.\\n\\n### Response:\\n", False), ("2 plus 3 is 5.", True)]
    """

    def __init__(self, name: str, train_on_inputs: bool = False, fmt: InstructFormat | None = None):
        super().__init__(name, train_on_inputs)
        self.fmt = fmt or FORMATS[name]
        self.eos_count = self.fmt.eos_count

    def render(self, instruction: str, input_: str = "", system: str = "") -> str:
        fmt, system = self.fmt, system or self.fmt.default_system
        if input_.strip():
            head = fmt.system + fmt.turn[0].format(instruction=instruction, input=input_)
        else:
            head = fmt.system_no_input + fmt.turn[1].format(instruction=instruction)
        return (fmt.system_format.format(system=system) if system and fmt.system_format else "") + head

    def segments(self, row: dict) -> list[Segment]:
        instruction, input_, answer, *system = self.fmt.fields(row, self.name)
        return [Segment(self.render(instruction, input_, *system), False), Segment(answer, True)]

    def prompt_for(self, text: str) -> str:
        return self.render(text)


def custom_format(t) -> InstructFormat:
    """`type:` as a mapping (a format written in the recipe): the columns it names, its templates, its system text."""
    return InstructFormat(_cols(t.field_instruction, t.field_output, t.field_input, t.field_system), "", "",
                          (t.format, t.no_input_format), t.system_format, default_system=t.system_prompt)


class AlpacaStrategy(InstructStrategy):
    """The plain alpaca format (kept as a class for callers that name it directly)."""

    def __init__(self, train_on_inputs: bool = False, **_):
        super().__init__("alpaca", train_on_inputs)

    def inference_row(self, text: str) -> dict:
        """A row built from a user's prompt text."""
        return {"instruction": text, "input": "", "output": ""}
