"""Every prompt format on the tiny llama tokenizer: exact input_ids and labels, hand-checked.

Expected ids are spelled as tokens of the tiny byte-level BPE ('Ġ' = a leading space, 'Ċ' = newline)
and converted with the vocabulary, so each list reads as the text it encodes.
"""
import pytest

from ftkit.errors import ConfigError, FtkitError
from ftkit.formats import RowError
from ftkit.formats.prompt import strategy_for
from ftkit.recipe import load_recipe

M = -100  # masked label


@pytest.fixture(scope="module")
def tok(tiny_tokenizer):
    return tiny_tokenizer


def ids(tok, *tokens):
    out = tok.convert_tokens_to_ids(list(tokens))
    assert None not in out and tok.unk_token_id not in out, tokens
    return out


def text_ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def encode(tok, row, train_on_inputs=False, **stanza):
    recipe = load_recipe({"base_model": "tiny:llama", "train_on_inputs": train_on_inputs,
                          "datasets": [{"path": "unused.jsonl", **stanza}]})
    ex = strategy_for(recipe.datasets[0], recipe, tok).encode_batch([row], tok)
    return ex["input_ids"][0], ex["labels"][0]


BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"
SH, EH, EOT = "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"


def test_alpaca_exact_ids_and_mask(tok):
    got_ids, labels = encode(tok, {"instruction": "Add 2 and 3.", "input": "", "output": "2 plus 3 is 5."},
                             type="alpaca")
    prompt = text_ids(tok, "Below is an instruction that describes a task. Write a response that appropriately "
                           "completes the request.\n\n### Instruction:\nAdd 2 and 3.\n\n### Response:\n")
    # prompt tail: "Add 2 and 3." "\n\n" (split: it precedes non-space) "### Response:" "\n"
    assert prompt[-11:] == ids(tok, "Add", "Ġ2", "Ġand", "Ġ3", ".", "Ċ", "Ċ", "###", "ĠResponse", ":", "Ċ")
    answer = ids(tok, "2", "Ġplus", "Ġ3", "Ġis", "Ġ5", ".")
    assert got_ids == ids(tok, BOS) + prompt + answer + ids(tok, EOS)
    assert labels == [M] + [M] * len(prompt) + answer + ids(tok, EOS)  # bos + prompt masked; answer + eos trained


def test_alpaca_train_on_inputs_trains_everything_but_bos(tok):
    got_ids, labels = encode(tok, {"instruction": "Add 2 and 3.", "output": "5."}, train_on_inputs=True, type="alpaca")
    assert labels == [M] + got_ids[1:]


# type, row, the prompt text the format must write, the answer as hand-spelled tokens, eos count
CAPITAL_Q = "What is the capital of Peru?"
INSTRUCT_CASES = [
    ("alpaca_chat", {"instruction": CAPITAL_Q, "input": "", "response": " Lima."},
     "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
     "USER: What is the capital of Peru?\nASSISTANT:", ["ĠLima", "."], 1),
    ("alpaca_chat.load_qa", {"question": CAPITAL_Q, "answer": " Lima."},
     "Below is an instruction from a USER that describes a task. The ASSISTANT writes a response that appropriately "
     "and concisely completes the request.\n\nUSER: What is the capital of Peru?\nASSISTANT:", ["ĠLima", "."], 1),
    ("alpaca_chat.load_concise", {"instruction": CAPITAL_Q, "response": " Lima."},
     "Below is an instruction that describes a task. Write a response that appropriately and concisely completes "
     "the request.\n\nUSER: What is the capital of Peru?\nASSISTANT:", ["ĠLima", "."], 1),
    ("alpaca_chat.load_camel_ai", {"message_1": CAPITAL_Q, "message_2": " Lima."},
     "Below is an instruction from a USER that describes a task. The ASSISTANT writes a response that appropriately "
     "and concisely completes the request.\n\nUSER: What is the capital of Peru?\nASSISTANT:", ["ĠLima", "."], 1),
    ("alpaca_w_system", {"system": "Be brief.", "instruction": CAPITAL_Q, "output": " Lima."},
     "### System:\nBe brief.\n\nUSER: What is the capital of Peru?\nASSISTANT:", ["ĠLima", "."], 1),
    ("alpaca_w_system.load_instruct", {"system": "Be brief.", "instruction": CAPITAL_Q, "output": "Lima"},
     "### System:\nBe brief.\n\n### Instruction:\nWhat is the capital of Peru?\n\n### Response:\n", ["L", "im", "a"], 1),
    ("alpaca_w_system.load_open_orca", {"system_prompt": "Be brief.", "question": CAPITAL_Q, "response": "Lima"},
     "### System:\nBe brief.\n### Human:\nWhat is the capital of Peru?\n### Assistant:\n", ["L", "im", "a"], 1),
    ("jeopardy", {"question": "Its capital is Lima.", "category": "CAPITALS", "answer": "Peru?"},
     "Below is a Jeopardy clue paired with input providing the category of the clue. Write a concise response that "
     "best answers the clue given the category.\n\n### Instruction:\nIts capital is Lima.\n\n### Input:\nCAPITALS"
     "\n\n### Response:\n", ["w", "hat", "Ġis", "ĠPeru", "?"], 1),
    ("oasst", {"INSTRUCTION": CAPITAL_Q, "RESPONSE": "Lima"},
     "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
     "### Instruction:\nWhat is the capital of Peru?\n\n### Response:\n", ["L", "im", "a"], 1),
    ("gpteacher", {"instruction": "Write the plural of the word.", "input": "man", "response": "men"},
     "Below is an instruction that describes a task, paired with an input that provides further context. Write a "
     "response that appropriately completes the request.\n\n### Instruction:\nWrite the plural of the word.\n\n"
     "### Input:\nman\n\n### Response:\n", ["me", "n"], 1),
    ("explainchoice", {"question": CAPITAL_Q, "choices": ["Lima", "Oslo"], "explanation": "Lima"},
     "Choose the answer that best answers the question. Explain your reasoning.\n### Instruction:\n"
     "What is the capital of Peru?\n\n### Input:\n- \"Lima\"\n- \"Oslo\"\n\n### Response:\n", ["L", "im", "a"], 1),
    ("concisechoice", {"question": CAPITAL_Q, "choices": ["Lima", "Oslo"], "solution": " Lima"},
     "Choose the answer that best answers the question. Be concise in your response.\n\nUSER: What is the capital "
     "of Peru?\n- \"Lima\"\n- \"Oslo\"\nASSISTANT:", ["ĠLima"], 1),
    ("summarizetldr", {"article": "Lima is big.", "summary": " Lima"},
     "USER: Summarize the following article as a TL;DR.\nLima is big.\nASSISTANT:", ["ĠLima"], 1),
    ("context_qa", {"article": "Lima is in Peru.", "question": CAPITAL_Q, "answer": " Lima"},
     "Use the following contextual information to concisely answer the question.\nUSER: Lima is in Peru.\n===\n"
     "What is the capital of Peru?\nASSISTANT:", ["ĠLima"], 1),
    ("context_qa.load_v2", {"context": "Lima is in Peru.", "question": CAPITAL_Q, "answer": "Lima"},
     "Context: Lima is in Peru.\nQuestion: What is the capital of Peru?\n", ["A", "ns", "w", "er", ":", "ĠLima"], 1),
    ("metharme", {"prompt": "Hi", "generation": " Lima"}, "Hi", ["ĠLima"], 3),
    ("creative_acr.load_answer", {"instruction": CAPITAL_Q, "revision": " Lima"},
     "Answer the following question in a comprehensive, in-depth, and creative way. Additionally your response "
     "should be relevant, accurate, and free of any ambiguity.\nUSER: What is the capital of Peru?\nASSISTANT:",
     ["ĠLima"], 1),
]


@pytest.mark.parametrize("fmt,row,prompt,answer,n_eos", INSTRUCT_CASES, ids=[c[0] for c in INSTRUCT_CASES])
def test_instruct_family_exact(tok, fmt, row, prompt, answer, n_eos):
    got_ids, labels = encode(tok, row, type=fmt)
    p = text_ids(tok, prompt)
    a = ids(tok, *answer)
    assert got_ids == ids(tok, BOS) + p + a + ids(tok, EOS) * n_eos
    assert labels == [M] * (1 + len(p)) + a + ids(tok, EOS) * n_eos


def test_reflection_and_creative_answers_and_404(tok):
    _, labels = encode(tok, {"instruction": "Hi", "output": "Yo", "reflection": "Hi", "corrected": "Lima"},
                       type="reflection")
    trained = tok.decode([t for t in labels if t != M])
    assert trained == ("### Thought:\nYo\n\n### Agent Reflection:\nHi\n\n### Final Response:\nLima" + EOS)
    _, labels = encode(tok, {"article": "Lima is in Peru.", "unanswerable_question": "Who?"}, type="context_qa.load_404")
    assert tok.decode([t for t in labels if t != M]).startswith("The context provided does not contain")
    row = {"instruction": "Hi", "answer": "Yo", "scores": {"creativity": 3}, "critiques": {"creativity": "short"},
           "revision": "Lima"}
    _, labels = encode(tok, row, type="creative_acr.load_critique")
    assert tok.decode([t for t in labels if t != M]) == "creativity: 3\ncreativity: short\n" + EOS
    ids_, labels = encode(tok, row, type="creative_acr.load_revise")
    assert tok.decode([t for t in labels if t != M]) == "Lima" + EOS
    assert "Evaluation:\ncreativity: 3\ncreativity: short\n" in tok.decode(ids_)


def test_user_defined_format(tok):
    fmt = {"system_prompt": "Be brief.", "system_format": "SYS: {system}\n", "field_instruction": "q",
           "field_output": "a", "format": "Q: {instruction} {input}\nA:", "no_input_format": "Q: {instruction}\nA:"}
    got_ids, labels = encode(tok, {"q": "Hi", "a": " Lima"}, type=fmt)
    p = text_ids(tok, "SYS: Be brief.\nQ: Hi\nA:")
    assert p[-8:] == ids(tok, "Q", ":", "Ġ", "H", "i", "Ċ", "A", ":")  # prompt tail, hand-spelled
    assert got_ids == ids(tok, BOS) + p + ids(tok, "ĠLima", EOS)
    assert labels == [M] * (1 + len(p)) + ids(tok, "ĠLima", EOS)
    with pytest.raises(ConfigError, match=r"datasets\.0\.type\.no_input_format.*Fix: write it with \{instruction\}"):
        load_recipe({"base_model": "tiny:llama", "datasets": [{"path": "x", "type": {"no_input_format": "{input}"}}]})


def test_completion_trains_every_token(tok):
    got_ids, labels = encode(tok, {"body": "Hi there"}, type="completion", field="body")
    assert got_ids == ids(tok, BOS, "H", "i", "Ġthe", "re", EOS)
    assert labels == [M] + ids(tok, "H", "i", "Ġthe", "re", EOS)


def test_input_output_segments_as_written(tok):
    row = {"segments": [{"label": False, "text": BOS + "Q: Hi"}, {"label": False, "text": "\nA:"},
                        {"label": True, "text": " Lima" + EOS}]}
    got_ids, labels = encode(tok, row, type="input_output")
    prompt = ids(tok, BOS, "Q", ":", "Ġ", "H", "i", "Ċ", "A", ":")  # the two false segments, joined
    assert got_ids == prompt + ids(tok, "ĠLima", EOS)  # no bos/eos added: the text carries them
    assert labels == [M] * 9 + ids(tok, "ĠLima", EOS)


def test_pretokenized_passthrough_and_errors(tok):
    got_ids, labels = encode(tok, {"input_ids": [0, 57, 262, 1], "labels": [M, M, 262, 1]}, type="pretokenized")
    assert (got_ids, labels) == ([0, 57, 262, 1], [M, M, 262, 1])
    assert encode(tok, {"input_ids": [0, 57]}, type="pretokenized")[1] == [0, 57]  # labels default to the ids
    with pytest.raises(RowError, match="outside the vocabulary"):
        encode(tok, {"input_ids": [0, 99999]}, type="pretokenized")
    with pytest.raises(RowError, match="labels has 1 entries but input_ids has 2"):
        encode(tok, {"input_ids": [0, 5], "labels": [5]}, type="pretokenized")


# ---------------------------------------------------------------- chat

TWO_TURNS = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"},
                          {"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Lima"}]}


def _llama3_two_turns(tok, user_trained: bool):
    """The llama3 rendering of TWO_TURNS as (tokens, kind) with kind in prompt/user/answer/eot_user/eot_answer."""
    # the header's "\n\n" is one token 'ĊĊ' whether text follows it in the same piece or not (as in Llama 3's
    # tokenizer: the twin keeps a newline run that opens a text piece whole; roles_to_train splits the pieces)
    nl = ["ĊĊ"]
    return ([(t, "prompt") for t in [BOS, SH, "user", EH, *nl]] + [("H", "user"), ("i", "user"), (EOT, "eot_user")]
            + [(t, "prompt") for t in [SH, "as", "s", "istant", EH, "ĊĊ"]] + [("Y", "answer"), ("o", "answer")]
            + [(EOT, "eot_answer")] + [(t, "prompt") for t in [SH, "user", EH, *nl]]
            + [(t, "user") for t in ["H", "i", "Ġthe", "re"]] + [(EOT, "eot_user")]
            + [(t, "prompt") for t in [SH, "as", "s", "istant", EH, "ĊĊ"]]
            + [(t, "answer") for t in ["L", "im", "a"]] + [(EOT, "eot_answer")])


@pytest.mark.parametrize("train_on_eos,trained_eots", [("turn", [1, 3]), ("last", [3]), ("all", [0, 1, 2, 3]),
                                                       ("none", [])])
def test_chat_two_turns_train_on_eos(tok, train_on_eos, trained_eots):
    got_ids, labels = encode(tok, TWO_TURNS, type="chat_template", train_on_eos=train_on_eos)
    spelled = _llama3_two_turns(tok, user_trained=False)
    assert got_ids == ids(tok, *[t for t, _ in spelled])
    eot_no = iter(range(4))
    want = []
    for t, kind in spelled:
        trained = kind == "answer" or (kind.startswith("eot") and next(eot_no) in trained_eots)
        want.append(tok.convert_tokens_to_ids(t) if trained else M)
    assert labels == want


def test_chat_roles_to_train_user_and_assistant(tok):
    got_ids, labels = encode(tok, TWO_TURNS, type="chat_template", roles_to_train=["user", "assistant"])
    spelled = _llama3_two_turns(tok, user_trained=True)
    assert got_ids == ids(tok, *[t for t, _ in spelled])
    assert labels == [M if kind == "prompt" else tok.convert_tokens_to_ids(t) for t, kind in spelled]


def test_chatml_via_recipe_chat_template_adds_tokens(tok, tiny_llama_dir, said):
    from ftkit import models

    recipe = load_recipe({"base_model": "tiny:llama", "chat_template": "chatml",
                          "datasets": [{"path": "x", "type": "chat_template"}]})
    t = models.load_tokenizer(recipe)
    assert len(t) == len(tok) + 2 and any("added special tokens ['<|im_start|>', '<|im_end|>']" in s for s in said)
    ex = strategy_for(recipe.datasets[0], recipe, t).encode_batch([{"messages": TWO_TURNS["messages"][:2]}], t)
    spelled = ["<|im_start|>", "user", "Ċ", "H", "i", "<|im_end|>", "Ċ", "<|im_start|>", "as", "s", "istant", "Ċ",
               "Y", "o", "<|im_end|>", "Ċ"]  # chatml writes no bos
    assert ex["input_ids"][0] == t.convert_tokens_to_ids(spelled)
    assert ex["labels"][0] == [M] * 12 + t.convert_tokens_to_ids(["Y", "o", "<|im_end|>"]) + [M]


# ---------------------------------------------------------------- sharegpt with a FastChat `conversation:`

SHARE = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"},
                           {"from": "human", "value": "Why?"}, {"from": "gpt", "value": "Sky."}]}
VICUNA_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
                 "detailed, and polite answers to the user's questions.")
# What FastChat's Conversation.get_prompt() returns for SHARE (lm-sys/FastChat fastchat/conversation.py at commit
# 27a05b04, the commit Axolotl pinned; chatml and llama3 as Axolotl registered them in
# src/axolotl/prompt_strategies/sharegpt.py), written out by hand from each template's separator style:
FASTCHAT_TEXT = {
    # ADD_COLON_TWO: system + sep, then "ROLE: message" + sep / sep2 alternating
    "vicuna_v1.1": VICUNA_SYSTEM + " USER: Hi ASSISTANT: Yo</s>USER: Why? ASSISTANT: Sky.</s>",
    "alpaca": ("Below is an instruction that describes a task. Write a response that appropriately completes the "
               "request.\n\n### Instruction: Hi\n\n### Response: Yo</s>### Instruction: Why?\n\n### Response: Sky.</s>"),
    # LLAMA2 without a system message: "[INST] " + first message + " ", then "TAG message" + sep / sep2
    "llama-2": "[INST] Hi [/INST] Yo </s><s>[INST] Why? [/INST] Sky. </s><s>",
    "mistral": "[INST] Hi [/INST] Yo</s>[INST] Why? [/INST] Sky.</s>",
    # CHATML: system_template + sep + "\n" when not empty, then role + "\n" + message + sep + "\n"
    "chatml": ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
               "<|im_start|>assistant\nYo<|im_end|>\n<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\nSky.<|im_end|>\n"),
    "zephyr": "<|system|>\n</s>\n<|user|>\nHi</s>\n<|assistant|>\nYo</s>\n<|user|>\nWhy?</s>\n<|assistant|>\nSky.</s>\n",
    # LLAMA3 (FastChat writes <|begin_of_text|> as text; ftkit lets the tokenizer add its bos, as Axolotl did)
    "llama-3": (f"{SH}user{EH}\n\nHi{EOT}{SH}assistant{EH}\n\nYo{EOT}{SH}user{EH}\n\nWhy?{EOT}"
                f"{SH}assistant{EH}\n\nSky.{EOT}"),
}


def fastchat(tok, conversation, **extra):
    recipe = load_recipe({"base_model": "tiny:llama", "datasets": [{"path": "unused.jsonl", "type": "sharegpt",
                                                                    "conversation": conversation, **extra}]})
    return strategy_for(recipe.datasets[0], recipe, tok)


@pytest.mark.parametrize("conversation", list(FASTCHAT_TEXT))
def test_sharegpt_conversation_renders_fastchat_text_and_trains_the_answers(tok, conversation):
    strat = fastchat(tok, conversation)
    segs = strat.segments(SHARE)
    # the text is FastChat's, plus eos after an answer whose separator does not hold it (Axolotl appended it too;
    # the tiny tokenizer's eos is <|end_of_text|>, so "</s>" is text here)
    want = FASTCHAT_TEXT[conversation]
    for answer in ("Yo", "Sky."):
        sep = {"vicuna_v1.1": "</s>", "alpaca": "</s>", "llama-2": " </s><s>", "mistral": "</s>", "zephyr": "</s>\n",
               "chatml": "<|im_end|>\n", "llama-3": EOT}[conversation]
        want = want.replace(answer + sep, answer + sep + EOS, 1)
    assert "".join(s.text for s in segs) == want
    # trained: the answers with what follows their header (the space or newline), their separator and eos
    trained = [s.text for s in segs if s.trainable]
    head = {"vicuna_v1.1": " ", "alpaca": " ", "llama-2": " ", "mistral": " ", "chatml": "\n", "zephyr": "\n",
            "llama-3": "\n\n"}[conversation]
    assert trained == [head + "Yo" + sep + EOS, head + "Sky." + sep + EOS]
    # the inference prompt is the text before the first trained token
    assert strat.prompt_for("Hi") == want[:want.index(trained[0])]


def test_sharegpt_conversation_token_mask(tok):
    got_ids, labels = encode(tok, {"conversations": SHARE["conversations"][:2]}, type="sharegpt",
                             conversation="vicuna_v1.1")
    prompt = text_ids(tok, VICUNA_SYSTEM + " USER: Hi ASSISTANT:")
    answer = text_ids(tok, " Yo</s>") + ids(tok, EOS)
    assert got_ids == ids(tok, BOS) + prompt + answer
    assert labels == [M] * (1 + len(prompt)) + answer  # bos + system + user turn + header masked


def test_sharegpt_conversation_roles_system_weight_and_default_system(tok):
    row = {"conversations": [{"from": "system", "value": "Be brief."}, {"from": "prompter", "value": "Hi"},
                             {"from": "bot", "value": "Yo"}, {"from": "prompter", "value": "Why?"},
                             {"from": "bot", "value": "Sky.", "weight": 0}]}
    strat = fastchat(tok, "chatml", field_human="prompter", field_model="bot")
    segs = strat.segments(row)
    assert "".join(s.text for s in segs).startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi")
    assert [s.text for s in segs if s.trainable] == ["\nYo<|im_end|>\n" + EOS]  # weight 0: context only
    recipe = load_recipe({"base_model": "tiny:llama", "default_system_message": "Answer in French.", "datasets": [
        {"path": "x.jsonl", "type": "sharegpt", "conversation": "chatml"}]})
    assert strategy_for(recipe.datasets[0], recipe, tok).prompt_for("Hi").startswith(
        "<|im_start|>system\nAnswer in French.<|im_end|>")  # Axolotl registered chatml with default_system_message
    with pytest.raises(RowError, match=r"role 'tool' has no place in the FastChat chatml template"):
        strat.segments({"conversations": [{"from": "tool", "value": "x"}]})


def test_sharegpt_conversation_prepares_rows_with_chatml_tokens_added(tiny_llama_dir, tmp_path):
    import json

    from ftkit import data, models

    rows = [SHARE] * 6
    (tmp_path / "s.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = load_recipe({"base_model": "tiny:llama", "datasets": [
        {"path": str(tmp_path / "s.jsonl"), "type": "sharegpt", "conversation": "chatml"}]})
    tok = models.load_tokenizer(recipe)  # chatml's special tokens are added, as for chat_template: chatml
    assert len(tok.tokenize("<|im_start|>")) == 1 and len(tok.tokenize("<|im_end|>")) == 1
    prepared = data.prepare(recipe, tok)
    assert prepared.stats["kept"] == 6
    ex = prepared.train[0]
    assert tok.decode([t for t, lab in zip(ex["input_ids"], ex["labels"]) if lab != M]) == \
        "\nYo<|im_end|>\n" + EOS + "\nSky.<|im_end|>\n" + EOS


def test_sharegpt_unknown_conversation_names_the_key_and_the_templates(tok):
    with pytest.raises(ConfigError, match=r"datasets\.0\.conversation: conversation 'vicuna' is not one of the "
                                          r"FastChat templates.*did you mean vicuna_v1\.1\?.*llama-2.*chat_template"):
        load_recipe({"base_model": "tiny:llama", "datasets": [{"path": "x", "type": "sharegpt", "conversation": "vicuna"}]})


def test_sharegpt_without_conversation_uses_the_tokenizer_template_and_maps_roles(tok):
    row = {"conversations": [{"from": "prompter", "value": "Hi"}, {"from": "bot", "value": "Yo"}]}
    got_ids, labels = encode(tok, row, type="sharegpt", field_human="prompter", field_model="bot")
    chat_ids, chat_labels = encode(tok, {"messages": TWO_TURNS["messages"][:2]}, type="chat_template")
    assert (got_ids, labels) == (chat_ids, chat_labels)
    assert tok.decode([t for t in labels if t != M]) == "Yo" + EOT


def test_roles_to_train_goes_through_the_role_mapping(tok):
    # Axolotl maps roles_to_train through `roles` (prompter.roles.get(role, role)): [gpt] trains the assistant turns
    row = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}]}
    got_ids, labels = encode(tok, row, type="chat_template", field_messages="conversations",
                             message_property_mappings={"role": "from", "content": "value"},
                             roles={"assistant": ["gpt"], "user": ["human"]}, roles_to_train=["gpt"])
    spelled = [(BOS, 0), (SH, 0), ("user", 0), (EH, 0), ("ĊĊ", 0), ("H", 0), ("i", 0), (EOT, 0),  # "\n\n" whole
               (SH, 0), ("as", 0), ("s", 0), ("istant", 0), (EH, 0), ("ĊĊ", 0), ("Y", 1), ("o", 1), (EOT, 1)]
    assert got_ids == ids(tok, *[t for t, _ in spelled])
    assert labels == [tok.convert_tokens_to_ids(t) if trained else M for t, trained in spelled]


def test_chat_row_errors_name_the_field(tok):
    with pytest.raises(RowError, match=r"unknown role 'bot'") as e:
        encode(tok, {"messages": [{"role": "bot", "content": "Hi"}]}, type="chat_template")
    assert e.value.field == "messages[0].role" and "roles: {assistant: [bot]}" in e.value.fix
    with pytest.raises(RowError, match=r"the row has no field 'messages' \(its fields: msgs\)"):
        encode(tok, {"msgs": []}, type="chat_template")
    with pytest.raises(RowError, match="must be a non-empty list of messages, got list"):
        encode(tok, {"messages": []}, type="chat_template")
    with pytest.raises(RowError, match="message content must be text, got int"):
        encode(tok, {"messages": [{"role": "user", "content": 3}]}, type="chat_template")


def test_unknown_type_names_closest(tok):
    with pytest.raises(ConfigError, match=r"datasets\.0\.type: unsupported dataset type 'sharegtp'.*did you mean sharegpt"):
        load_recipe({"base_model": "tiny:llama", "datasets": [{"path": "x", "type": "sharegtp"}]})
    with pytest.raises(ConfigError, match=r"datasets\.0\.roles_to_train: applies only to type chat_template or sharegpt"):
        load_recipe({"base_model": "tiny:llama", "datasets": [{"path": "x", "type": "alpaca", "roles_to_train": ["user"]}]})
    with pytest.raises(ConfigError, match=r"chat_template: unknown chat template 'chatmll'.*did you mean chatml"):
        load_recipe({"base_model": "tiny:llama", "chat_template": "chatmll", "datasets": [{"path": "x"}]})
    with pytest.raises(FtkitError, match="the tokenizer has no chat template"):
        from ftkit.formats.chat import resolve_template

        class NoTemplate:
            chat_template = None
        resolve_template("tokenizer_default", NoTemplate())


def test_chat_content_equal_to_role_name_is_not_the_header(tok):
    row = {"messages": [{"role": "user", "content": "user"}, {"role": "assistant", "content": "assistant"}]}
    got_ids, labels = encode(tok, row, type="chat_template", roles_to_train=["user", "assistant"])
    spelled = [(BOS, 0), (SH, 0), ("user", 0), (EH, 0), ("ĊĊ", 0), ("user", 1), (EOT, 1),
               (SH, 0), ("as", 0), ("s", 0), ("istant", 0), (EH, 0), ("ĊĊ", 0), ("as", 1), ("s", 1), ("istant", 1),
               (EOT, 1)]  # headers masked (0), contents and their end-of-turn trained (1)
    assert got_ids == ids(tok, *[t for t, _ in spelled])
    assert labels == [tok.convert_tokens_to_ids(t) if trained else M for t, trained in spelled]


def test_chat_message_training_flag_overrides_role(tok):
    row = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo", "training": False},
                        {"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Lima"}]}
    _, labels = encode(tok, row, type="chat_template")
    assert tok.decode([t for t in labels if t != M]) == "Lima" + EOT  # the first answer is context only
