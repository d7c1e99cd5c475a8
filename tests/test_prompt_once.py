"""Issue 25: the prompt is resolved in one place (formats/prompt.py). The chat template is read only by the modules
allowed below, inference never branches on the training method, and the Prompt's inference ids are the tokens
training put before the answer, for an instruction format, a chat template and a preference-tuned run alike."""
from __future__ import annotations

import io
import tokenize
from pathlib import Path

from ftkit.formats.prompt import Prompt
from ftkit.recipe import load_recipe

from conftest import QUICKSTART

FTKIT = Path(__file__).resolve().parents[1] / "ftkit"
# who may name `chat_template` in code (comments, docstrings and strings do not count), and why
ALLOWED = {
    "formats/prompt.py": "the run's prompt: resolves, writes and serves the template",
    "formats/chat.py": "the chat-template strategy renders conversations with its resolved Jinja",
    "formats/options.py": "recipe-time checks of the chat_template options' values",
    "recipe/data_options.py": "declares the chat_template options",
    "models/tiny.py": "a tiny twin ships its family's template, as the real tokenizer does",
    "data/cache.py": "the prepared-data fingerprint hashes the tokenizer's template",
}


def _names(path: Path) -> set[str]:
    return {t.string for t in tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
            if t.type == tokenize.NAME}


def test_chat_template_is_read_only_by_the_allowed_modules():
    readers = {p.relative_to(FTKIT).as_posix() for p in FTKIT.rglob("*.py") if "chat_template" in _names(p)}
    assert readers - set(ALLOWED) == set(), "read the template through formats.prompt.Prompt instead"
    assert len(ALLOWED) <= 7  # issue 25's bound


def test_the_check_sees_a_read_in_code_and_ignores_comments_and_strings(tmp_path):
    (tmp_path / "a.py").write_text('x = tok.chat_template\n')
    (tmp_path / "b.py").write_text('"""chat_template"""\n# tok.chat_template\ny = "chat_template"\n')
    assert "chat_template" in _names(tmp_path / "a.py") and "chat_template" not in _names(tmp_path / "b.py")


def test_the_format_of_a_dataset_is_built_through_the_prompt():
    builders = {p.relative_to(FTKIT).as_posix() for p in FTKIT.rglob("*.py") if "strategy_for" in _names(p)}
    assert builders == {"formats/prompt.py"}, builders  # everyone else asks the run's Prompt


def test_inference_never_branches_on_the_training_method():
    assert [p.name for p in (FTKIT / "infer").rglob("*.py") if "rl" in _names(p)] == []


def _first_prompt_tokens(example: dict) -> list[int]:
    first = next(i for i, label in enumerate(example["labels"]) if label != -100)
    return example["input_ids"][:first]


def test_the_prompt_sends_what_training_put_before_the_answer(tiny_tokenizer, tmp_path):
    tok = tiny_tokenizer.__class__.from_pretrained(tiny_tokenizer.name_or_path)
    alpaca = Prompt(load_recipe(QUICKSTART, {"output_dir": str(tmp_path)}), tok)
    row = {"instruction": "Add 2 and 3.", "input": "", "output": "5"}
    trained = alpaca.strategy().encode_batch([row], tok)
    assert alpaca.ids("Add 2 and 3.") == _first_prompt_tokens({k: v[0] for k, v in trained.items()})
    assert alpaca.stop_ids() == [tok.eos_token_id] and not alpaca.keeps_turns
    assert alpaca.strategy() is alpaca.strategy()  # built once per dataset, then handed out

    chat = Prompt(load_recipe(QUICKSTART, {"output_dir": str(tmp_path), "datasets": [
        {"path": "data_samples/chat.jsonl", "type": "chat_template"}]}), tok)
    talk = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]
    trained = chat.strategy().encode_batch([{"messages": talk}], tok)
    assert chat.ids("Hi") == _first_prompt_tokens({k: v[0] for k, v in trained.items()})
    assert chat.keeps_turns and tok.convert_tokens_to_ids("<|eot_id|>") in chat.stop_ids()
    assert chat.serving_template() is None  # the tokenizer's own template already renders the training prompt

    dpo = Prompt(load_recipe(QUICKSTART, {"output_dir": str(tmp_path), "rl": "dpo", "datasets": [
        {"path": "data_samples/preference_pairs.jsonl", "type": "chat_template.prompt_pairs"}]}), tok)
    served = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True)["input_ids"]
    assert dpo.conversational and dpo.keeps_turns and dpo.ids("Hi") == list(served)
    assert dpo.serving_template() is None and dpo.stop_ids() == chat.stop_ids()
