"""The alpaca family: instruction/input/output rows written into a fixed prompt, table-driven.

Every format here is (which columns give instruction, input and answer) + (a system line and a turn
template, with and without input). The strings follow Axolotl's prompters so data prepared for
Axolotl trains the same prompts here; where Axolotl's text is very long (reflection, creative_acr)
ftkit keeps the structure and markers with a shorter preamble.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import yaml

from ftkit.formats.base import PromptStrategy, RowError, Segment, text_field

WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)
# Template text the tiny tokenizer is trained on, so prompts are a handful of tokens.
TEMPLATE_WORDS = [WITH_INPUT.format(instruction="", input=""), NO_INPUT.format(instruction="")] * 20

SYS = WITH_INPUT[:WITH_INPUT.index("### Instruction")]
SYS_NO_INPUT = NO_INPUT[:NO_INPUT.index("### Instruction")]
INSTRUCT = ("### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n",
            "### Instruction:\n{instruction}\n\n### Response:\n")
CHAT = ("USER: {instruction}\n{input}\nASSISTANT:", "USER: {instruction}\nASSISTANT:")
USER_SYS = ("Below is an instruction from a USER that describes a task, paired with an input that provides further "
            "context. The ASSISTANT writes a response that concisely and appropriately completes the request.\n\n")
USER_SYS_NO_INPUT = ("Below is an instruction from a USER that describes a task. The ASSISTANT writes a response "
                     "that appropriately and concisely completes the request.\n\n")
NO_CONTEXT_ANSWER = ("The context provided does not contain any information about your inquiry. "
                     "Therefore, I'm unable to answer your question based on the given context.")
CRITERIA = "refusal, prescriptive_bias, creativity and comprehensiveness (each 0-10)"


@dataclass(frozen=True)
class InstructFormat:
    """One alpaca-family format: `fields(row, name) -> (instruction, input, answer[, system])`."""

    fields: Callable[[dict, str], tuple]
    system: str = SYS
    system_no_input: str = SYS_NO_INPUT
    turn: tuple[str, str] = INSTRUCT  # (with input, without input)
    system_format: str = ""  # for formats whose system text comes from the row, e.g. "### System:\n{system}\n\n"
    eos_count: int = 1


def _cols(instruction: str, output: str, input_: str | None = "input", system: str | None = None, prefix: str = ""):
    """fields() reading plain columns: instruction, optional input, answer (with an optional prefix)."""
    def fields(row, fmt):
        out = (text_field(row, instruction, fmt), text_field(row, input_, fmt, required=False) if input_ else "",
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
        question = text_field(row, "instruction", fmt)
        if kind == "answer":
            return question, "", text_field(row, "revision", fmt)
        answer = text_field(row, "answer", fmt)
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


_CREATIVE_SYS = ("Answer the following question in a comprehensive, in-depth, and creative way. Additionally your "
                 "response should be relevant, accurate, and free of any ambiguity.\n")
_REFLECT_SYS = ("Below is an instruction that describes a task{with_input}. Write a short answer as a Thought, then an "
                "Agent Reflection that looks for flawed reasoning in it, then a corrected Final Response.\n\n")

FORMATS: dict[str, InstructFormat] = {
    "alpaca": InstructFormat(_cols("instruction", "output")),
    "alpaca_chat": InstructFormat(_cols("instruction", "response"), turn=CHAT),
    "alpaca_chat.load_qa": InstructFormat(_cols("question", "answer", None), USER_SYS, USER_SYS_NO_INPUT, CHAT),
    "alpaca_chat.load_concise": InstructFormat(
        _cols("instruction", "response"), SYS.replace("appropriately", "concisely and appropriately"),
        SYS_NO_INPUT.replace("appropriately", "appropriately and concisely"), CHAT),
    "alpaca_chat.load_camel_ai": InstructFormat(_cols("message_1", "message_2", None), USER_SYS, USER_SYS_NO_INPUT, CHAT),
    "alpaca_w_system": InstructFormat(_cols("instruction", "output", system="system"), "", "", CHAT,
                                      system_format="### System:\n{system}\n\n"),
    "alpaca_w_system.load_instruct": InstructFormat(_cols("instruction", "output", system="system"), "", "", INSTRUCT,
                                                    system_format="### System:\n{system}\n\n"),
    "alpaca_w_system.load_open_orca": InstructFormat(
        _cols("question", "response", None, system="system_prompt"), "", "",
        ("### Human:\n{instruction}\n### Additional Context:\n{input}\n### Assistant:\n",
         "### Human:\n{instruction}\n### Assistant:\n"), system_format="### System:\n{system}\n"),
    "jeopardy": InstructFormat(
        _cols("question", "answer", "category", prefix="what is "),
        "Below is a Jeopardy clue paired with input providing the category of the clue. Write a concise response "
        "that best answers the clue given the category.\n\n"),
    "oasst": InstructFormat(_cols("INSTRUCTION", "RESPONSE", None)),
    "gpteacher": InstructFormat(_cols("instruction", "response")),
    "reflection": InstructFormat(_reflection, _REFLECT_SYS.format(with_input=", paired with an input"),
                                 _REFLECT_SYS.format(with_input="")),
    "explainchoice": InstructFormat(_choices, *(["Choose the answer that best answers the question. "
                                                 "Explain your reasoning.\n"] * 2)),
    "concisechoice": InstructFormat(_choices, *(["Choose the answer that best answers the question. "
                                                 "Be concise in your response.\n\n"] * 2), CHAT),
    "summarizetldr": InstructFormat(_cols("article", "summary", None), "", "",
                                    ("USER: Summarize the following article as a TL;DR.\n{instruction}\n{input}\nASSISTANT:",
                                     "USER: Summarize the following article as a TL;DR.\n{instruction}\nASSISTANT:")),
    "context_qa": InstructFormat(
        lambda r, f: (text_field(r, "article", f) + "\n===\n" + text_field(r, "question", f), "",
                      text_field(r, "answer", f)),
        *(["Use the following contextual information to concisely answer the question.\n"] * 2), CHAT),
    "context_qa.load_v2": InstructFormat(
        lambda r, f: (f"Context: {text_field(r, 'context', f)}\nQuestion: {text_field(r, 'question', f)}\n", "",
                      "Answer: " + text_field(r, "answer", f)), "", "", ("{instruction}\n{input}", "{instruction}")),
    "context_qa.load_404": InstructFormat(
        lambda r, f: (text_field(r, "article", f) + "\n===\n" + text_field(r, "unanswerable_question", f), "",
                      NO_CONTEXT_ANSWER),
        *(["Use the following contextual information to concisely answer the question.\n"] * 2), CHAT),
    "metharme": InstructFormat(_cols("prompt", "generation", None), "", "", ("{instruction}", "{instruction}"),
                               eos_count=3),
    "creative_acr.load_answer": InstructFormat(_creative("answer"), _CREATIVE_SYS, _CREATIVE_SYS,
                                               ("USER: {instruction}\nASSISTANT:",) * 2),
    "creative_acr.load_critique": InstructFormat(_creative("critique"), "", "", ("USER: {instruction}\nASSISTANT:",) * 2),
    "creative_acr.load_revise": InstructFormat(_creative("revise"), "", "", ("USER: {instruction}\nASSISTANT:",) * 2),
}
FORMATS["context_qa.load"] = FORMATS["context_qa"]
FORMATS["alpaca_w_system.load_chat"] = FORMATS["alpaca_w_system"]

# Axolotl's `type: alpaca:STYLE`: alpaca rows and system text written in another prompt style,
# as (system line around {system}, turn with input, turn without input).
STYLES = {
    "instruct": ("{system}\n\n", *INSTRUCT),
    "chat": ("SYSTEM: {system}\n", *CHAT),
    "chatml": ("<|im_start|>system\n{system}<|im_end|>\n",
               "<|im_start|>user\n{instruction}\n{input}<|im_end|>\n<|im_start|>assistant\n",
               "<|im_start|>user\n{instruction}<|im_end|>\n<|im_start|>assistant\n"),
    "phi": ("<|system|>\n{system}<|end|>\n", "<|user|>\n{instruction}<|end|>{input}<|assistant|>",
            "<|user|>\n{instruction}<|end|>\n<|assistant|>\n"),
}
for _style, (_system, *_turns) in STYLES.items():
    FORMATS[f"alpaca:{_style}"] = InstructFormat(
        _cols("instruction", "output"), _system.format(system=SYS.rstrip("\n")),
        _system.format(system=SYS_NO_INPUT.rstrip("\n")), tuple(_turns))


class InstructStrategy(PromptStrategy):
    """Row -> [(system + turn prompt, False), (answer, True)] for one entry of FORMATS.

    Example (alpaca): {"instruction": "Add 2 and 3.", "input": "", "output": "2 plus 3 is 5."} ->
    [("Below is ... ### Instruction:\\nAdd 2 and 3.\\n\\n### Response:\\n", False), ("2 plus 3 is 5.", True)]
    """

    def __init__(self, name: str, train_on_inputs: bool = False):
        super().__init__(name, train_on_inputs)
        self.fmt = FORMATS[name]
        self.eos_count = self.fmt.eos_count

    def render(self, instruction: str, input_: str = "", system: str = "") -> str:
        fmt = self.fmt
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


class UserDefinedStrategy(PromptStrategy):
    """`type:` as a mapping: system_format + format/no_input_format over the named columns."""

    def __init__(self, spec, train_on_inputs: bool = False):
        super().__init__("user-defined type", train_on_inputs)
        self.spec = spec

    def render(self, instruction: str, input_: str = "", system: str = "") -> str:
        s = self.spec
        system = system or s.system_prompt
        head = s.system_format.format(system=system) if system else ""
        if input_.strip():
            return head + s.format.format(instruction=instruction, input=input_)
        return head + s.no_input_format.format(instruction=instruction)

    def segments(self, row: dict) -> list[Segment]:
        s, fmt = self.spec, self.name
        prompt = self.render(text_field(row, s.field_instruction, fmt), text_field(row, s.field_input, fmt, required=False),
                             text_field(row, s.field_system, fmt, required=False))
        return [Segment(prompt, False), Segment(text_field(row, s.field_output, fmt), True)]

    def prompt_for(self, text: str) -> str:
        return self.render(text)


class AlpacaStrategy(InstructStrategy):
    """The plain alpaca format (kept as a class for callers that name it directly)."""

    def __init__(self, train_on_inputs: bool = False, **_):
        super().__init__("alpaca", train_on_inputs)

    def inference_row(self, text: str) -> dict:
        return {"instruction": text, "input": "", "output": ""}
