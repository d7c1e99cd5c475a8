"""The reward module examples/llama-3/qlora-1b-gdpo.yaml names (`rwd.*`; Axolotl does not ship it): a GSM8K
transform and two rewards, written for ftkit's tests with the names the example uses."""
import re


def gsm8k_transform(cfg, *args, **kwargs):
    """GSM8K rows {question, answer: "...#### 42"} -> a chat prompt and the final number as `answer`."""

    def to_prompt(row):
        return {"prompt": [{"role": "system", "content": "Answer with <answer>N</answer>."},
                           {"role": "user", "content": row["question"]}],
                "answer": row["answer"].split("####")[-1].strip()}

    return to_prompt, {"remove_columns": ["question"]}


def format_reward(completions, **kwargs):
    return [1.0 if re.search(r"<answer>.*</answer>", c[0]["content"]) else 0.0 for c in completions]


def correctness_reward(completions, answer, **kwargs):
    found = [re.search(r"-?\d+", c[0]["content"]) for c in completions]
    return [1.0 if m and m.group() == a else 0.0 for m, a in zip(found, answer)]
