"""Data behaviours that match Axolotl: tokenized rows without a type, completion chunks, chat whitespace and
end-of-turn tokens, message field names, deduplication, shuffle-then-filter order, preference field names,
Axolotl's template names and prompt styles; plus unfrozen_parameters, the eval table, the cosine variants and
the hub push check."""
import json
from pathlib import Path

import pytest

from ftkit import data
from ftkit.errors import ConfigError, FtkitError
from ftkit.formats.prompt import strategy_for
from ftkit.formats.tokenize import IGNORE
from ftkit.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
M = IGNORE


@pytest.fixture(scope="module")
def tok(tiny_tokenizer):
    return tiny_tokenizer


def strategy(tok, recipe_extra=None, **dataset):
    recipe = load_recipe({"base_model": "tiny:llama", **(recipe_extra or {}),
                          "datasets": [{"path": "unused.jsonl", **dataset}]})
    return strategy_for(recipe.datasets[0], recipe, tok)


def trained_text(tok, strat, row) -> str:
    ex = strat.encode_batch([row], tok)
    return tok.decode([t for t in ex["labels"][0] if t != M])


def write_rows(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


# ---------------------------------------------------------------- tokenized rows, completion chunks

def test_tokenized_rows_without_a_type_pass_through(tok, tmp_path):
    rows = [json.loads(line) for line in (ROOT / "data_samples" / "pretokenized.jsonl").read_text().splitlines()[:6]]
    r = load_recipe({"base_model": "tiny:llama", "datasets": [{"path": write_rows(tmp_path / "t.jsonl", rows)}],
                     "dataset_prepared_path": None, "shuffle_merged_datasets": False})
    prepared = data.prepare(r, tok)
    assert prepared.train["input_ids"] == [row["input_ids"] for row in rows]
    assert prepared.train["labels"] == [row["labels"] for row in rows]
    text = strategy(tok)  # no type, text rows: alpaca
    assert trained_text(tok, text, {"instruction": "Hi", "input": "", "output": "Yo"}) == "Yo" + tok.eos_token


def test_completion_rows_longer_than_sequence_len_are_split(tok, tmp_path):
    long = " ".join(["The sky is blue."] * 30)
    strat = strategy(tok, {"sequence_len": 16}, type="completion")
    cols = strat.encode_batch([{"text": long}], tok)
    whole = tok(long)["input_ids"] + [tok.eos_token_id]
    assert [len(c) for c in cols["input_ids"][:-1]] == [16] * (len(cols["input_ids"]) - 1)
    assert sum(cols["input_ids"], []) == whole[:len(sum(cols["input_ids"], []))]  # consecutive, no overlap
    assert cols["input_ids"][0][0] == tok.bos_token_id and cols["input_ids"][-1][-1] == tok.eos_token_id
    assert all(len(c) >= 2 for c in cols["input_ids"])  # a 1-token tail has nothing to predict: dropped
    file = write_rows(tmp_path / "c.jsonl", [{"text": long}, {"text": "Short."}])
    kept = data.prepare(load_recipe({"base_model": "tiny:llama", "sequence_len": 16, "datasets": [
        {"path": file, "type": "completion"}]}), tok)
    assert kept.stats["dropped_too_long"] == 0 and kept.stats["kept"] == len(cols["input_ids"]) + 1
    dropped = data.prepare(load_recipe({"base_model": "tiny:llama", "sequence_len": 16, "datasets": [
        {"path": file, "type": "completion", "chunk_long_rows": False}]}), tok)
    assert (dropped.stats["dropped_too_long"], dropped.stats["kept"]) == (1, 1)  # dropping stays available


# ---------------------------------------------------------------- chat: whitespace, end-of-turn tokens

CHATML = {"chat_template": "chatml"}


@pytest.fixture(scope="module")
def chatml_tok(tiny_llama_dir):
    from ftkit import models

    return models.load_tokenizer(load_recipe({"base_model": "tiny:llama", "chat_template": "chatml",
                                              "datasets": [{"path": "x", "type": "chat_template"}]}))


def test_trailing_whitespace_of_an_answer_is_trained_where_the_template_keeps_it(tok, chatml_tok):
    row = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "ok\n"}]}
    assert trained_text(chatml_tok, strategy(chatml_tok, CHATML, type="chat_template"), row) == "ok\n<|im_end|>"
    # llama3's template trims content: nothing after "ok" is written, so nothing more is trained
    assert trained_text(tok, strategy(tok, type="chat_template"), row) == "ok<|eot_id|>"


def test_an_answer_starting_with_a_space_is_tokenized_as_generated_after_the_header(chatml_tok):
    from ftkit.formats.tokenize import encode_prompt_text

    row = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": " Lima"}]}
    strat = strategy(chatml_tok, CHATML, type="chat_template")
    ex = strat.encode_batch([row], chatml_tok)
    first = next(i for i, lab in enumerate(ex["labels"][0]) if lab != M)
    prompt_ids = encode_prompt_text(strat.prompt_text(row), chatml_tok, add_bos=False)
    assert ex["input_ids"][0][:first] == prompt_ids  # the prompt is exactly what inference sends
    answer = chatml_tok(" Lima", add_special_tokens=False)["input_ids"]
    assert ex["input_ids"][0][first:first + len(answer)] == answer  # " Lima" as the model generates it


TWO = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Yo"}, {"role": "user", "content": "More"},
                    {"role": "assistant", "content": "Lima"}]}


def test_train_on_inputs_trains_every_turn_and_its_end_of_turn_token_not_headers(tok):
    text = trained_text(tok, strategy(tok, {"train_on_inputs": True}, type="chat_template"), TWO)
    assert text == "Be brief.<|eot_id|>Hi<|eot_id|>Yo<|eot_id|>More<|eot_id|>Lima<|eot_id|>"
    assert trained_text(tok, strategy(tok, type="chat_template"), TWO) == "Yo<|eot_id|>Lima<|eot_id|>"


def test_eot_tokens_and_train_on_eot(tok):
    none = strategy(tok, {"eot_tokens": ["<|eot_id|>"]}, type="chat_template", train_on_eot="none")
    assert trained_text(tok, none, TWO) == "YoLima"
    last = strategy(tok, type="chat_template", train_on_eot="last", train_on_eos="all")
    assert trained_text(tok, last, TWO) == "YoLima<|eot_id|>"  # train_on_eot decides for the template's eot
    with pytest.raises(FtkitError, match=r"eot_tokens \['<end_of_turn>'\] are not single tokens.*additional_special"):
        strategy(tok, {"eot_tokens": ["<end_of_turn>"]}, type="chat_template")


def test_message_field_names_properties_and_system_handling(tok):
    row = {"conversations": [{"from": "human", "value": "Hi", "speaker": "Ann"}, {"from": "gpt", "value": "Yo"}],
           "system": "Be brief."}
    named = strategy(tok, {"chat_template": "{% for m in messages %}{{ m['role'] + (':' + m['name'] if m['name'] else '')"
                                            " + '|' + m['content'] + '<|eot_id|>' }}{% endfor %}"
                                            "{% if add_generation_prompt %}{{ 'assistant|' }}{% endif %}"},
                     type="chat_template", field_messages="conversations",
                     message_property_mappings={"role": "from", "content": "value", "name": "speaker"})
    full = "".join(s.text for s in named.segments(row))
    assert full == "system|Be brief.<|eot_id|>user:Ann|Hi<|eot_id|>assistant|Yo<|eot_id|>"  # system column first
    dropped = strategy(tok, type="chat_template", drop_system_message=True)
    assert "Be brief." not in "".join(s.text for s in dropped.segments(TWO))


def test_axolotl_template_names_render_as_axolotl_does(chatml_tok):
    from ftkit.formats.chat_templates import TEMPLATES

    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]
    render = lambda name, m, gen=False: chatml_tok.apply_chat_template(  # noqa: E731
        m, chat_template=TEMPLATES[name].jinja, tokenize=False, add_generation_prompt=gen, bos_token="<s>")
    assert render("gemma3", msgs) == "<s><start_of_turn>user\nS\n\nQ<end_of_turn>\n<start_of_turn>model\nA<end_of_turn>\n"
    assert render("phi_3", msgs) == "<s><|system|>\nS<|end|>\n<|user|>\nQ<|end|>\n<|assistant|>\nA<|end|>\n"
    assert render("qwen3", msgs) == ("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n"
                                     "<|im_start|>assistant\n<think>\n\n</think>\n\nA<|im_end|>\n")
    assert render("qwen3", msgs[:2], gen=True).endswith("<|im_start|>assistant\n<think>\n\n")
    assert render("qwen_25", msgs[1:2]).startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud.")
    # gemma3 writes the system text into the first user turn: an untrained message found only later is fine
    segs = strategy(chatml_tok, {"chat_template": "gemma3"}, type="chat_template").segments({"messages": msgs})
    assert [s.text for s in segs if s.trainable] == ["A", "<end_of_turn>"]


def test_default_system_message_replaces_the_templates_default(tok):
    strat = strategy(tok, {"chat_template": "qwen", "default_system_message": "Answer in French."}, type="chat_template")
    text = "".join(s.text for s in strat.segments({"messages": TWO["messages"][1:3]}))
    assert text.startswith("<|im_start|>system\nAnswer in French.<|im_end|>") and "helpful" not in text
    with pytest.raises(ConfigError, match="default_system_message: the chat template has no built-in default system"):
        load_recipe({"base_model": "tiny:llama", "chat_template": "chatml", "default_system_message": "x",
                     "datasets": [{"path": "x", "type": "chat_template"}]})


def test_alpaca_prompt_styles(tok):
    row = {"instruction": "Add 2 and 3.", "input": "", "output": "5"}
    chat = strategy(tok, type="alpaca:chat")
    assert chat.prompt_text(row) == ("SYSTEM: Below is an instruction that describes a task. Write a response that "
                                     "appropriately completes the request.\nUSER: Add 2 and 3.\nASSISTANT:")
    assert strategy(tok, type="alpaca:instruct").prompt_text(row) == strategy(tok, type="alpaca").prompt_text(row)


# ---------------------------------------------------------------- dedup, order, preference field names

def test_exact_deduplication_drops_repeated_rows(tok, tmp_path, said):
    rows = [{"instruction": f"Q{i % 3}", "input": "", "output": f"A{i % 3}"} for i in range(9)]
    r = load_recipe({"base_model": "tiny:llama", "dataset_exact_deduplication": True,
                     "datasets": [{"path": write_rows(tmp_path / "d.jsonl", rows), "type": "alpaca"}]})
    prepared = data.prepare(r, tok)
    assert (len(prepared.train), prepared.stats["dropped_duplicate"]) == (3, 6)
    assert any("6 duplicate rows dropped" in line for line in said)


def test_rows_come_in_axolotl_order_shuffled_before_the_length_filter(tok, tmp_path):
    import datasets

    a = [{"instruction": f"A{i}", "input": "", "output": "x" if i != 2 else "long " * 200} for i in range(6)]
    b = [{"instruction": f"B{i}", "input": "", "output": "y"} for i in range(5)]
    r = load_recipe({"base_model": "tiny:llama", "sequence_len": 64, "seed": 3, "datasets": [
        {"path": write_rows(tmp_path / "a.jsonl", a), "type": "alpaca"},
        {"path": write_rows(tmp_path / "b.jsonl", b), "type": "alpaca"}]})
    got = [tok.decode(ids) for ids in data.prepare(r, tok).train["input_ids"]]
    # Axolotl: concatenate the tokenized rows, shuffle with the seed, then drop the too-long row
    ref = datasets.Dataset.from_dict({"q": [x["instruction"] for x in a + b]}).shuffle(seed=3)["q"]
    want = [q for q in ref if q != "A2"]
    assert [next(q for q in want if f"### Instruction:\n{q}\n" in text) for text in got] == want


def test_preference_rows_read_axolotl_field_names(tok, tmp_path):
    from ftkit import data

    rows = [{"conversation": [{"from": "human", "value": "Is it hot?"}], "good": {"from": "gpt", "value": "Yes."},
             "bad": "NO!!!"}]
    r = load_recipe({"base_model": "tiny:llama", "rl": "dpo", "chat_template": "llama3", "datasets": [
        {"path": write_rows(tmp_path / "p.jsonl", rows), "type": "chat_template.default", "field_messages": "conversation",
         "field_chosen": "good", "field_rejected": "bad", "roles": {"user": ["human"], "assistant": ["gpt"]},
         "message_property_mappings": {"role": "from", "content": "value"}}]})
    prepared = data.prepare(r, tok)
    assert prepared.train[0] == {"prompt": [{"role": "user", "content": "Is it hot?"}],
                                 "chosen": [{"role": "assistant", "content": "Yes."}],
                                 "rejected": [{"role": "assistant", "content": "NO!!!"}]}


# ---------------------------------------------------------------- unfrozen_parameters, eval table, schedules, hub

def test_unfrozen_parameters_train_only_matching_rows(tiny_llama_dir):
    import torch
    from transformers import AutoModelForCausalLM

    from ftkit.models.freeze import unfreeze_only

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    n = unfreeze_only(model, ["^model.layers.1.mlp", "model.embed_tokens.weight$[:10]"])
    trained = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trained == {"model.embed_tokens.weight", "model.layers.1.mlp.gate_proj.weight",
                       "model.layers.1.mlp.up_proj.weight", "model.layers.1.mlp.down_proj.weight"}
    assert n == sum(p.numel() for p in model.parameters() if p.requires_grad)
    model(input_ids=torch.tensor([[1, 5, 20, 30]]), labels=torch.tensor([[1, 5, 20, 30]])).loss.backward()
    grad = model.model.embed_tokens.weight.grad
    assert grad[10:].abs().sum() == 0 and grad[:10].abs().sum() > 0  # rows outside [:10] stay as they were
    with pytest.raises(Exception, match="leaves nothing to train"):
        unfreeze_only(model, ["^nothing"])


def test_eval_table_logs_prompt_reference_and_generation(tiny_llama_dir, tok, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from ftkit.train.callbacks import EvalTable

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    batch = {"input_ids": torch.tensor([[1, 10, 11, 12, 13]]), "attention_mask": torch.ones(1, 5, dtype=torch.long),
             "labels": torch.tensor([[M, M, M, 12, 13]])}
    table = EvalTable(2, 3, str(tmp_path))

    class State:
        is_world_process_zero, global_step = True, 7

    class Args:
        report_to = []
    table.on_evaluate(Args(), State(), None, model=model, processing_class=tok, eval_dataloader=[batch])
    rows = [json.loads(line) for line in (tmp_path / "eval_tables" / "step-7.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["prompt"] == tok.decode([1, 10, 11]) and rows[0]["reference"] == tok.decode([12, 13])
    assert isinstance(rows[0]["prediction"], str) and model.training is False


def test_cosine_variants_follow_axolotl_formulas():
    from ftkit.plugins.schedules import factor

    assert factor(5, 10, 100, quadratic=True) == 0.25  # (5/10)^2 during warm-up
    assert factor(10, 10, 100, 0.1) == 1.0 and abs(factor(100, 10, 100, 0.1) - 0.1) < 1e-9
    assert abs(factor(55, 10, 100, 0.1, constant_ratio=0.5) - 0.1) < 1e-9  # the minimum is reached at 50, then held
    assert factor(30, 10, 100, 0.1, constant_ratio=0.5) > 0.1


def test_cosine_constant_ratio_replaces_the_schedule_in_a_run(make_recipe):
    from transformers import TrainerCallback

    from ftkit import train
    from ftkit.plugins.schedules import factor

    class Rates(TrainerCallback):
        seen: dict = {}

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "learning_rate" in logs:
                self.seen[state.global_step] = logs["learning_rate"]

    r = make_recipe(max_steps=6, sequence_len=64, micro_batch_size=4, learning_rate=0.01, warmup_steps=2,
                    cosine_min_lr_ratio=0.2, cosine_constant_lr_ratio=0.5, lr_scheduler="cosine")
    rates = Rates()
    train.run(r, callbacks=[rates])
    want = {s: 0.01 * factor(s - 1, 2, 6, 0.2, 0.5) for s in rates.seen}  # logged at step s: the rate step s used
    assert rates.seen and all(abs(rates.seen[s] - want[s]) < 1e-9 for s in rates.seen), (rates.seen, want)
    assert rates.seen[4] == rates.seen[6] == pytest.approx(0.002)  # held at the minimum (0.2 x 0.01) from step 3


def test_hub_push_fails_before_training_when_it_cannot_work(make_recipe, monkeypatch):
    from ftkit.train.args import hub_kwargs
    from ftkit.train.preflight import check_hub

    r = make_recipe(hub_model_id="me/model", hub_strategy="end")
    assert hub_kwargs(r) == {"push_to_hub": True, "hub_model_id": "me/model", "hub_private_repo": True,
                                     "hub_always_push": True, "hub_strategy": "end"}
    with pytest.raises(ConfigError, match=r"hub_model_id: pushing to me/model needs the hub, but it is switched off"):
        check_hub(r)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    with pytest.raises(ConfigError, match="needs a hub token, and none is set"):
        check_hub(r)
    assert hub_kwargs(make_recipe(hub_model_id="me/model", push_to_hub=False)) == {}
