"""`ftkit infer` answers a --prompt (streamed) and stdin lines (JSONL); the gradio page answers a client."""
from __future__ import annotations

import json
import socket

from conftest import run_cli
from test_adapters import LORA, run_variant


def _cli_args(recipe):
    return ["infer", str(LORA), "--base_model=tiny:llama", f"--output_dir={recipe.output_dir}", "--max-new-tokens=8"]


def test_infer_prompt_and_stdin_batch(tmp_path_factory):
    _, recipe, _ = run_variant("lora", tmp_path_factory)
    # 6 steps leave the twin near-uniform (greedy would pick eos, p=0.003): sample, seeded
    one = run_cli(*_cli_args(recipe), "--prompt=What is the capital of Spain?", "--temperature=1", "--seed=0")
    assert one.returncode == 0, one.stderr[-2000:]
    assert one.stdout.strip(), one.stderr[-2000:]  # streamed text
    batch = run_cli(*_cli_args(recipe), "--temperature=0.8", "--top-p=0.9", "--seed=1",
                    input="What is the capital of Spain?\n\nGive the opposite of the word fast.\n")
    assert batch.returncode == 0, batch.stderr[-2000:]
    rows = [json.loads(line) for line in batch.stdout.splitlines()]
    assert [r["prompt"] for r in rows] == ["What is the capital of Spain?", "Give the opposite of the word fast."]
    assert all(isinstance(r["completion"], str) and r["completion"] for r in rows), rows


def test_infer_without_an_adapter_says_how_to_fix(tmp_path, capsys):
    from ftkit.cli import main

    assert main(["infer", str(LORA), "--base_model=tiny:llama", f"--lora_model_dir={tmp_path}", "--prompt=hi"]) == 2
    err = capsys.readouterr().err
    assert "lora_model_dir: no LoRA adapter (adapter_config.json) in" in err
    assert "Fix: point it at the output_dir of a LoRA/QLoRA run" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_gradio_chat_answers_one_request(tmp_path_factory):
    from gradio_client import Client

    from ftkit.infer import ui

    _, recipe, _ = run_variant("lora", tmp_path_factory)
    port = _free_port()
    app = ui.launch(recipe, port=port, block=False, max_new_tokens=8,
                    temperature=1.0, seed=0)
    try:
        assert app.server_name == "127.0.0.1"
        answer = Client(f"http://127.0.0.1:{port}/", verbose=False).predict("What is the capital of Spain?",
                                                                             api_name="/chat")
        assert isinstance(answer, str) and answer.strip(), answer
    finally:
        app.close()


def test_chat_page_says_how_it_treats_earlier_turns(tiny_tokenizer, tmp_path):
    """An alpaca-style recipe answers each message alone (and says so); a chat-template recipe sends the
    conversation, rendered as training rendered conversations."""
    from ftkit.infer.generate import conversation_ids, keeps_turns, prompt_ids
    from ftkit.infer.ui import turns_note
    from ftkit.recipe import load_recipe

    from conftest import QUICKSTART

    alpaca = load_recipe(QUICKSTART, {"output_dir": str(tmp_path)})
    assert not keeps_turns(alpaca, tiny_tokenizer)
    assert "Each message is answered on its own" in turns_note(alpaca, tiny_tokenizer)
    talk = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "What is the capital of Spain?"}]
    assert conversation_ids(alpaca, tiny_tokenizer, talk) == prompt_ids(alpaca, tiny_tokenizer, talk[-1]["content"])
    chat = load_recipe(QUICKSTART, {"datasets": [{"path": "data_samples/chat.jsonl", "type": "chat_template"}],
                                    "output_dir": str(tmp_path)})
    assert keeps_turns(chat, tiny_tokenizer) and "Earlier turns are sent" in turns_note(chat, tiny_tokenizer)
    ids = conversation_ids(chat, tiny_tokenizer, talk)
    text = tiny_tokenizer.decode(ids)
    assert text == tiny_tokenizer.apply_chat_template(talk, tokenize=False, add_generation_prompt=True)
    assert "Hello." in text and len(ids) > len(prompt_ids(chat, tiny_tokenizer, talk[-1]["content"]))
