"""Loading, mixing, filtering, the prepared cache, bad-input errors, parity and added tokens."""
import json
import time
from pathlib import Path

import pytest

from ftkit import data, models
from ftkit.data.parity import check_parity, first_mismatch
from ftkit.data.prepare import fingerprint
from ftkit.errors import DataError
from ftkit.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
ALPACA = [{"instruction": "Add 2 and 3.", "input": "", "output": "2 plus 3 is 5."},
          {"instruction": "What color is snow?", "input": "", "output": "Snow is white."},
          {"instruction": "Write the plural of the word.", "input": "man", "output": "The plural of man is men."}]


@pytest.fixture(scope="module")
def tok(tiny_tokenizer):
    return tiny_tokenizer


def jsonl(path: Path, rows, blank_after=None) -> str:
    lines = [json.dumps(r) if not isinstance(r, str) else r for r in rows]
    if blank_after is not None:
        lines.insert(blank_after, "")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def recipe(tmp_path, datasets, **kw):
    return load_recipe({"base_model": "tiny:llama", "datasets": datasets, "sequence_len": 256,
                        "dataset_prepared_path": str(tmp_path / "prepared"), **kw})


def prep(tmp_path, tok, datasets, **kw):
    return data.prepare(recipe(tmp_path, datasets, **kw), tok)


# ---------------------------------------------------------------- bad input: file, line, field and fix

def test_malformed_jsonl_line(tmp_path, tok):
    f = jsonl(tmp_path / "bad.jsonl", [ALPACA[0], '{"instruction": "x", "output": ', ALPACA[1]])
    with pytest.raises(DataError, match=r"bad\.jsonl:2: malformed JSON .*Fix: each line must be one JSON object"):
        prep(tmp_path, tok, [{"path": f}])


def test_missing_field_names_line_even_after_blank_lines(tmp_path, tok):
    f = jsonl(tmp_path / "x.jsonl", [ALPACA[0], ALPACA[1], {"instruction": "Hi"}], blank_after=1)
    with pytest.raises(DataError, match=r"x\.jsonl:4: output: row has no 'output' field\. Fix: every alpaca row needs it"):
        prep(tmp_path, tok, [{"path": f}])


def test_unknown_role(tmp_path, tok):
    rows = [{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]},
            {"messages": [{"role": "user", "content": "Hi"}, {"role": "bot", "content": "Yo"}]}]
    f = jsonl(tmp_path / "chat.jsonl", rows)
    with pytest.raises(DataError, match=r"chat\.jsonl:2: messages\[1\]\.role: unknown role 'bot'\. "
                                        r"Fix: .*roles: \{assistant: \[bot\]\}"):
        prep(tmp_path, tok, [{"path": f, "type": "chat_template"}])


def test_empty_dataset(tmp_path, tok):
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match=r"empty\.jsonl: datasets\.0\.path: the file has no rows\. Fix: add JSON lines"):
        prep(tmp_path, tok, [{"path": str(tmp_path / "empty.jsonl")}])


def test_all_rows_too_long(tmp_path, tok):
    f = jsonl(tmp_path / "x.jsonl", ALPACA)
    with pytest.raises(DataError, match=r"no usable rows: 3 of 3 are longer than sequence_len=16 \(the longest has "
                                        r"(\d+) tokens\).*Fix: raise sequence_len to at least \1"):
        prep(tmp_path, tok, [{"path": f}], sequence_len=16)


def test_non_utf8_jsonl_and_csv(tmp_path, tok):
    (tmp_path / "x.jsonl").write_bytes(json.dumps(ALPACA[0]).encode() + b'\n{"instruction": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"x\.jsonl:2: not UTF-8 text \(byte 0xe9 .*Fix: re-save the file as UTF-8"):
        prep(tmp_path, tok, [{"path": str(tmp_path / "x.jsonl")}])
    (tmp_path / "x.csv").write_bytes(b"instruction,output\nHi,Yo\nHi,caf\xe9\n")
    with pytest.raises(DataError, match=r"x\.csv:3: not UTF-8 text"):
        prep(tmp_path, tok, [{"path": str(tmp_path / "x.csv")}])


def test_wrong_field_type(tmp_path, tok):
    f = jsonl(tmp_path / "x.jsonl", [ALPACA[0], {"instruction": "Hi", "output": 5}])
    with pytest.raises(DataError, match=r"x\.jsonl:2: output: field 'output' is a number here but text on line 1\. "
                                        r"Fix: give output the same type"):
        prep(tmp_path, tok, [{"path": f}])
    f = jsonl(tmp_path / "y.jsonl", [{"instruction": "Hi", "output": 5}])
    with pytest.raises(DataError, match=r"y\.jsonl:1: output: field 'output' must be text, got int .*Fix: store output"):
        prep(tmp_path, tok, [{"path": f}])


def test_missing_file_and_missing_data_files(tmp_path, tok):
    with pytest.raises(DataError, match=r"datasets\.0\.path: dataset path 'nope\.jsonl' does not exist\. Fix: give a local"):
        prep(tmp_path, tok, [{"path": "nope.jsonl"}])
    (tmp_path / "d").mkdir()
    with pytest.raises(DataError, match=r"datasets\.0\.data_files: data_files 'b\.jsonl' matches no file in .*d \(it "
                                        r"holds nothing\)\. Fix: name files relative to path"):
        prep(tmp_path, tok, [{"path": str(tmp_path / "d"), "data_files": ["b.jsonl"]}])


@pytest.mark.parametrize("switch", ["1", "true"])  # datasets and huggingface_hub read 1/true/yes/on alike
def test_hub_name_offline_is_a_clear_error(tmp_path, tok, monkeypatch, switch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", switch)
    monkeypatch.setenv("HF_HUB_OFFLINE", switch)
    with pytest.raises(DataError, match=r"hub dataset 'nobody-xyz/no-such-set' is not in the local datasets cache.*"
                                        r"Fix: on a machine with network run"):
        prep(tmp_path, tok, [{"path": "nobody-xyz/no-such-set"}])


# ---------------------------------------------------------------- loading and mixing

def test_every_local_format_gives_the_same_tokens(tmp_path, tok):
    import datasets

    ds = datasets.Dataset.from_list(ALPACA)
    (tmp_path / "d").mkdir()
    jsonl(tmp_path / "d" / "a.jsonl", ALPACA[:2])
    jsonl(tmp_path / "d" / "b.jsonl", ALPACA[2:])
    ds.to_parquet(str(tmp_path / "x.parquet"))
    ds.to_csv(str(tmp_path / "x.csv"), index=False)  # "2 plus 3 is 5." etc.; numbers-only cells stay text too
    (tmp_path / "x.json").write_text(json.dumps(ALPACA))
    ds.save_to_disk(str(tmp_path / "saved"))
    want = None
    for path in ("d", "x.parquet", "x.csv", "x.json", "saved"):
        got = prep(tmp_path, tok, [{"path": str(tmp_path / path)}], shuffle_merged_datasets=False).train["input_ids"]
        want = want or got
        assert got == want, path
    assert len(want) == 3


def test_mixing_split_shards_and_counts(tmp_path, tok):
    chat = [{"messages": [{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["output"]}]}
            for r in ALPACA] + [{"messages": [{"role": "user", "content": "nothing to train"}]}]
    p = prep(tmp_path, tok, [{"path": jsonl(tmp_path / "a.jsonl", ALPACA * 4)},
                             {"path": jsonl(tmp_path / "c.jsonl", chat), "type": "chat_template"}], val_set_size=3)
    s = p.stats
    assert (s["rows_in"], s["kept"], s["dropped_no_trainable"], s["train_rows"], s["eval_rows"]) == (16, 15, 1, 12, 3)
    assert s["per_dataset"]["1:c.jsonl"]["dropped_no_trainable"] == 1
    assert "1:c.jsonl: 4 in, 3 kept, 0 too long, 0 truncated, 1 untrainable" in p.summary()
    half = prep(tmp_path, tok, [{"path": str(tmp_path / "a.jsonl"), "shards": 2, "shards_idx": 1}])
    assert half.stats["rows_in"] == 6
    quarter = prep(tmp_path, tok, [{"path": str(tmp_path / "a.jsonl")}], dataset_shard_num=4, dataset_shard_idx=3)
    assert len(quarter.train) == 3


def test_truncate_instead_of_drop(tmp_path, tok):
    p = prep(tmp_path, tok, [{"path": jsonl(tmp_path / "x.jsonl", ALPACA)}], sequence_len=40,
             excess_length_strategy="truncate")
    assert p.stats["truncated"] == 3 and p.stats["dropped_too_long"] == 0
    assert {len(x) for x in p.train["input_ids"]} == {40}


def test_dataset_processes_gives_identical_rows(tmp_path, tok):
    f = jsonl(tmp_path / "x.jsonl", ALPACA * 4)
    one = prep(tmp_path, tok, [{"path": f}], shuffle_merged_datasets=False)
    two = data.prepare(recipe(tmp_path / "b", [{"path": f}], shuffle_merged_datasets=False, dataset_processes=2), tok)
    assert one.train["input_ids"] == two.train["input_ids"] and one.train["labels"] == two.train["labels"]


# ---------------------------------------------------------------- the prepared cache

def test_second_preprocess_reuses_cache_quickly(tmp_path, tok, said):
    r = recipe(tmp_path, [{"path": str(ROOT / "data_samples" / "alpaca.jsonl")}], val_set_size=0.05)
    first = data.prepare(r, tok)
    t0 = time.perf_counter()
    again = data.prepare(r, tok)
    seconds = time.perf_counter() - t0
    assert not first.cache_hit and again.cache_hit and seconds < 1.0, seconds
    assert any("re-using prepared data" in s for s in said)
    assert again.train["input_ids"] == first.train["input_ids"] and len(again.eval) == len(first.eval) == 120


def test_cache_invalidated_by_tokenizer_template_length_and_data(tmp_path, tok):
    f = jsonl(tmp_path / "x.jsonl", ALPACA)
    chat = jsonl(tmp_path / "c.jsonl", [{"messages": [{"role": "user", "content": "Hi"},
                                                      {"role": "assistant", "content": "Yo"}]}])
    base = [{"path": f}, {"path": chat, "type": "chat_template"}]

    def fp(**kw):
        r = recipe(tmp_path, base, **kw)
        t = models.load_tokenizer(r)
        return fingerprint(r, t, [f, chat])

    ref = fp()
    assert fp() == ref  # deterministic
    assert fp(sequence_len=128) != ref
    assert fp(chat_template="chatml") != ref  # template (and its added tokens)
    assert fp(tokens=["<pet>"]) != ref  # vocabulary
    jsonl(tmp_path / "x.jsonl", ALPACA[:2])
    assert fp() != ref  # data bytes
    p = prep(tmp_path, tok, base)
    assert not p.cache_hit and prep(tmp_path, tok, base).cache_hit


def test_killed_write_leaves_no_trusted_cache(tmp_path, tok, monkeypatch):
    import datasets

    r = recipe(tmp_path, [{"path": jsonl(tmp_path / "x.jsonl", ALPACA)}], val_set_size=1)
    real = datasets.Dataset.save_to_disk
    calls = []

    def dies_on_eval(self, path, *a, **k):
        calls.append(path)
        if path.endswith("eval"):
            raise KeyboardInterrupt("killed mid-write")
        return real(self, path, *a, **k)

    monkeypatch.setattr(datasets.Dataset, "save_to_disk", dies_on_eval)
    with pytest.raises(KeyboardInterrupt):
        data.prepare(r, tok)
    monkeypatch.setattr(datasets.Dataset, "save_to_disk", real)
    prepared_dir = tmp_path / "prepared"
    assert len(calls) == 2 and list(prepared_dir.iterdir()) == []  # train was written, then removed with the temp dir
    # a directory at the fingerprint path without the marker (e.g. copied half-way) is not trusted either
    fp = fingerprint(r, tok, [str(tmp_path / "x.jsonl")])
    (prepared_dir / fp / "train").mkdir(parents=True)
    again = data.prepare(r, tok)
    assert not again.cache_hit and (prepared_dir / fp / "ftkit_prepared.json").is_file()
    assert data.prepare(r, tok).cache_hit



def test_a_cache_missing_its_eval_split_is_prepared_again(tmp_path, tok, said):
    import shutil

    r = recipe(tmp_path, [{"path": jsonl(tmp_path / "x.jsonl", ALPACA * 4)}], val_set_size=3)
    first = data.prepare(r, tok)
    shutil.rmtree(Path(first.cache_dir) / "eval")  # e.g. a partial copy of the cache folder
    again = data.prepare(r, tok)
    assert not again.cache_hit and any("is missing its eval split; preparing again" in s for s in said)
    assert len(again.eval) == 3 and again.eval["input_ids"] == first.eval["input_ids"]
    assert data.prepare(r, tok).cache_hit


def test_temp_dirs_of_killed_runs_are_removed_and_a_live_writers_is_kept(tmp_path, tok, said):
    from ftkit.data import cache

    prepared = tmp_path / "prepared"
    stale = prepared / ".ftkit-tmp-killed"
    (stale / "train").mkdir(parents=True)
    (stale / "train" / "data.arrow").write_bytes(b"x" * 1000)
    cache._lock(stale)
    cache._unlock(stale)  # ftkit's lock file, held by nobody: left by a killed run
    live = prepared / ".ftkit-tmp-live"
    live.mkdir()
    cache._lock(live)  # a writer holds its lock
    try:
        data.prepare(recipe(tmp_path, [{"path": jsonl(tmp_path / "x.jsonl", ALPACA)}]), tok)
        assert not stale.exists() and live.is_dir()
        assert any("removed 1 temporary dir(s) left by killed preprocess runs" in s and ".ftkit-tmp-killed" in s
                   for s in said)
    finally:
        cache._unlock(live)
    assert cache.clean_stale(prepared) == [str(live)]  # its lock released: stale now


def test_a_row_too_big_to_fit_is_dropped_before_the_tokenizer_sees_it(tmp_path, tok, said, monkeypatch):
    huge = {"instruction": "Repeat.", "input": "", "output": "word " * 20_000}  # 100 kB >> 64 x 32 bytes
    f = jsonl(tmp_path / "x.jsonl", ALPACA + [huge])
    seen = []
    real = type(tok).__call__
    monkeypatch.setattr(type(tok), "__call__", lambda self, text=None, *a, **k: (seen.extend(
        t for t in (text if isinstance(text, list) else [text]) if isinstance(t, str)), real(self, text, *a, **k))[1])
    p = prep(tmp_path, tok, [{"path": f}], sequence_len=64)
    assert p.stats["dropped_too_long"] == 1 and p.stats["kept"] == 3
    assert seen and max(len(t) for t in seen) < 1000  # the 100 kB text never reached the tokenizer
    assert any("1 row(s) hold more than 2,048 bytes of text" in s and "x.jsonl:4" in s for s in said)
    cut = prep(tmp_path / "t", tok, [{"path": f}], sequence_len=64, excess_length_strategy="truncate")
    assert cut.stats["kept"] == 4 and cut.stats["truncated"] == 1
    assert max(len(ids) for ids in cut.train["input_ids"]) == 64


def test_the_packed_layout_is_cached_with_the_rows_and_keyed_by_group_size(tmp_path, tok, said, monkeypatch):
    from ftkit.plugins import packing

    calls = []
    real_pack = packing.pack
    monkeypatch.setattr(packing, "pack", lambda *a, **k: (calls.append(a[1:]), real_pack(*a, **k))[1])
    rows = [{"path": str(ROOT / "data_samples" / "alpaca.jsonl")}]
    first = prep(tmp_path, tok, rows, sample_packing=True)
    assert len(calls) == 1
    said.clear()
    again = prep(tmp_path, tok, rows, sample_packing=True)
    assert len(calls) == 1  # a cache hit never packs again
    assert again.cache_hit and any("packing train: re-using the packed rows cached" in s for s in said)
    assert again.train["input_ids"] == first.train["input_ids"]
    assert len(again.train) == first.stats["packing_train"]["bins"] < first.stats["train_rows"]
    assert again.stats["packing_train"] == first.stats["packing_train"]
    said.clear()
    other = prep(tmp_path, tok, rows, sample_packing=True, sample_packing_group_size=1000)
    assert other.cache_hit and not any("re-using the packed rows" in s for s in said) and len(calls) == 2
    packed_dirs = sorted(d.name for d in Path(first.cache_dir).iterdir() if d.name.startswith("packed-"))
    assert len(packed_dirs) == 2, packed_dirs


# ---------------------------------------------------------------- parity

def test_parity_holds_for_data_samples(tok):
    r = load_recipe({"base_model": "tiny:llama", "datasets": [
        {"path": str(ROOT / "data_samples" / "alpaca.jsonl")},
        {"path": str(ROOT / "data_samples" / "chat.jsonl"), "type": "chat_template"},
        {"path": str(ROOT / "data_samples" / "input_output.jsonl"), "type": "input_output"}]})
    report = check_parity(r, tok, rows=6)
    assert report.ok and report.checked == 18, report.summary()


def gpt2_split_llama():
    """The Llama twin's tokenizer with GPT-2's split everywhere (the twin before it kept a newline run that opens a
    text piece whole, as Llama 3's tokenizer does): a tokenizer that has the string-tokenization trap."""
    import dataclasses

    from ftkit.models.families import FAMILIES
    from ftkit.models.tiny import build_tokenizer

    return build_tokenizer(dataclasses.replace(FAMILIES["llama"].twin, isolate=None))


def test_parity_reports_the_string_tokenization_trap(tok):
    # With GPT-2's split, tokenizing a whole llama3 conversation as one string splits the assistant header's "\n\n"
    # as 'Ċ','Ċ' (text follows), while the generation prompt alone ends in 'ĊĊ': the trap ftkit's per-piece
    # tokenization avoids. Position 14 = bos, SH, user, EH, Ċ, Ċ, H, i, EOT, SH, as, s, istant, EH -> the 15th token.
    old = gpt2_split_llama()
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]
    whole = old(old.apply_chat_template(msgs, tokenize=False), add_special_tokens=False)["input_ids"]
    prompt = old.apply_chat_template(msgs[:1], add_generation_prompt=True, tokenize=True)["input_ids"]
    labels = [-100] * (len(prompt) + 1) + whole[len(prompt) + 1:]
    why = first_mismatch(whole, labels, prompt, old)
    assert why.startswith("token 14: training has 'Ċ' (204), inference has 'ĊĊ' (368)"), why
    # the twin splits like Llama 3: the whole string and the generation prompt agree
    whole = tok(tok.apply_chat_template(msgs, tokenize=False), add_special_tokens=False)["input_ids"]
    served = tok.apply_chat_template(msgs[:1], add_generation_prompt=True)["input_ids"]
    assert whole[:len(served)] == served
    # a prompt ending in a space: training merged ' Paris' into one token, inference feeds 'Ġ'
    train = tok("A: Paris", add_special_tokens=False)["input_ids"]
    assert "training has 'ĠParis'" in first_mismatch(train, [-100, -100, train[2]], tok("A: ")["input_ids"][1:], tok)


def test_preprocess_cli_checks_parity(tmp_path):
    from conftest import run_cli

    out = run_cli("preprocess", str(ROOT / "recipes" / "quickstart.yml"), "--check-parity", "--parity-rows=4",
                  f"--dataset_prepared_path={tmp_path}", "--datasets.0.path=data_samples/chat.jsonl",
                  "--datasets.0.type=chat_template")
    assert out.returncode == 0, out.stderr
    assert "parity: 4 rows checked, 0 mismatches" in out.stdout and "prepared cache written" in out.stdout


# ---------------------------------------------------------------- tokens, templates, inference prompts

def test_added_tokens_resize_and_lora_modules_to_save(tmp_path, said):
    r = recipe(tmp_path, [{"path": "x"}], tokens=["<pet>"], adapter="lora", special_tokens={"pad_token": "<|end_of_text|>"})
    t = models.load_tokenizer(r)
    assert any("pad_token == eos_token" in s and "never learns to stop" in s for s in said)
    assert t.convert_ids_to_tokens(t("a <pet>", add_special_tokens=False)["input_ids"])[-1] == "<pet>"
    model = models.load_model(r, t)
    assert model.get_input_embeddings().weight.shape[0] == len(t)
    assert set(model.peft_config["default"].modules_to_save) == {"embed_tokens", "lm_head"}
    assert any("lora_modules_to_save: ['embed_tokens', 'lm_head']" in s for s in said)


def test_infer_prompt_for_chat_is_the_generation_prompt(tmp_path, tok):
    from ftkit import infer

    r = recipe(tmp_path, [{"path": "x", "type": "chat_template"}])
    want = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True)["input_ids"]
    assert infer.prompt_ids(r, tok, "Hi") == list(want)
    assert infer.stop_token_ids(r, tok) == tok.convert_tokens_to_ids(["<|end_of_text|>", "<|eot_id|>"])


def test_data_samples_readme_is_current():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_samples", ROOT / "data_samples" / "make_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (ROOT / "data_samples" / "README.md").read_text(encoding="utf-8") == module.readme()
    files = {p.relative_to(ROOT / "data_samples").as_posix() for p in (ROOT / "data_samples").rglob("*.jsonl")}
    preference_doc = (ROOT / "data_samples" / "PREFERENCE.md").read_text(encoding="utf-8")
    undocumented = [f for f in files - set(module.CATALOG) if f"`{f}`" not in preference_doc]
    assert not undocumented, f"sample files in neither README.md's catalog nor PREFERENCE.md: {undocumented}"


def test_parity_notes_multi_turn_history_drift(tok):
    from ftkit.data.parity import ParityReport, check_rows
    from ftkit.formats.prompt import strategy_for

    row = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"},
                        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Lima"}]}
    notes = {}
    for template, t in (("llama3", None), ("chatml", None), ("llama3 (GPT-2 split)", gpt2_split_llama())):
        r = load_recipe({"base_model": "tiny:llama", "chat_template": template.split()[0],
                         "datasets": [{"path": "x", "type": "chat_template"}]})
        t = t or models.load_tokenizer(r)
        report = ParityReport()
        check_rows(strategy_for(r.datasets[0], r, t), [(0, row)], t, "chat", report)
        assert report.ok, report.summary()  # the first trained turn always matches
        notes[template] = report.later_turns
    # With GPT-2's split, training keeps the first answer's header "\n\n" as 'ĊĊ' (it ends its piece), while the
    # whole history as one string splits it before "Yo" (token 14, as in the trap test above). The twin splits like
    # Llama 3 (a newline run that opens a text piece stays whole), and chatml's header ends in a single "\n": both
    # tokenize the same either way.
    assert notes["llama3 (GPT-2 split)"] == ["chat row 1 message 3: token 14: training has 'ĊĊ' (368), "
                                             "the whole-history string gives 'Ċ' (204)"]
    assert notes["llama3"] == notes["chatml"] == []


def test_csv_numbers_are_text(tmp_path, tok):
    (tmp_path / "n.csv").write_text("instruction,input,output\nAdd 8 and 7.,,15\n")
    p = prep(tmp_path, tok, [{"path": str(tmp_path / "n.csv")}])
    answer = [t for t in p.train[0]["labels"] if t != -100]
    assert tok.decode(answer) == "15<|end_of_text|>"


def test_pretokenized_rows_mix_with_a_prompt_format(tmp_path, tok):
    """Pretokenized JSON rows (int64) and alpaca rows (the tokenizer's int32) go into one mix, ids kept."""
    pre = jsonl(tmp_path / "pre.jsonl", [{"input_ids": [1, 5, 6, 7, 2], "labels": [-100, 5, 6, 7, 2]}] * 2)
    p = prep(tmp_path, tok, [{"path": pre}, {"path": jsonl(tmp_path / "a.jsonl", ALPACA), "type": "alpaca"}],
             shuffle_merged_datasets=False)
    assert p.stats["kept"] == 5 and p.train["input_ids"][:2] == [[1, 5, 6, 7, 2]] * 2
    assert p.train["labels"][0] == [-100, 5, 6, 7, 2] and len(p.train["input_ids"][2]) > 5
