"""Exact token ids and label masks for a known Alpaca example on the tiny llama tokenizer."""
from ftkit.formats.alpaca import AlpacaStrategy
from ftkit.formats.tokenize import IGNORE, encode_prompt, encode_segments

ROW = {"instruction": "Add 2 and 3.", "input": "", "output": "2 plus 3 is 5."}
BOS, EOS = 0, 1  # <|begin_of_text|>, <|end_of_text|>
PROMPT = [  # "Below is an instruction that describes a task. Write a response that appropriately completes
    #          the request.\n\n### Instruction:\nAdd 2 and 3.\n\n### Response:\n"
    418, 266, 286, 415, 345, 425, 313, 422, 19, 394, 313, 411, 345, 426, 424, 267, 417, 19, 204, 204,
    346, 412, 31, 204, 338, 393, 337, 375, 19, 204, 204, 346, 416, 31, 204,
]
ANSWER = [23, 336, 375, 266, 384, 19]  # "2", " plus", " 3", " is", " 5", "."


def test_alpaca_ids_and_labels(tiny_tokenizer):
    ex = encode_segments(AlpacaStrategy().segments(ROW), tiny_tokenizer)
    assert ex["input_ids"] == [BOS] + PROMPT + ANSWER + [EOS]
    assert ex["labels"] == [IGNORE] + [IGNORE] * len(PROMPT) + ANSWER + [EOS]  # eos trained: the model learns to stop
    assert ex["attention_mask"] == [1] * len(ex["input_ids"])
    assert tiny_tokenizer.decode(ANSWER) == "2 plus 3 is 5."


def test_train_on_inputs_trains_prompt_but_not_bos(tiny_tokenizer):
    ex = encode_segments(AlpacaStrategy().segments(ROW), tiny_tokenizer, train_on_inputs=True)
    assert ex["labels"] == [IGNORE] + PROMPT + ANSWER + [EOS]


def test_inference_prompt_is_training_prefix(tiny_tokenizer):
    strategy = AlpacaStrategy()
    prompt = encode_prompt(strategy.prompt_segments(strategy.inference_row(ROW["instruction"])), tiny_tokenizer)
    assert prompt == [BOS] + PROMPT
    # and the string path agrees: tokenizing the rendered prompt text gives the same ids
    assert tiny_tokenizer(strategy.prompt_text(ROW))["input_ids"] == [BOS] + PROMPT


def test_input_field_uses_input_template(tiny_tokenizer):
    seg = AlpacaStrategy().segments({"instruction": "Name the sound this animal makes.", "input": "dog",
                                     "output": "The dog says woof."})
    assert "### Input:\ndog\n\n### Response:\n" in seg[0].text and seg[1].text == "The dog says woof."
