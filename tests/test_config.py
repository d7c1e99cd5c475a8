"""Recipe validation: every bad recipe names the file, the key (and line), what is wrong, and the fix."""
import os
import textwrap

import pytest

from ftkit.errors import ConfigError
from ftkit.recipe import Recipe, load_recipe, options_reference, parse_overrides

GOOD = """\
base_model: tiny:llama
datasets:
  - path: data_samples/alpaca.jsonl
    type: alpaca
sequence_len: 256
learning_rate: 0.001
"""


def write(tmp_path, text, name="r.yml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def error_of(tmp_path, text, overrides=None) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_recipe(path, overrides)
    return str(exc.value)


def test_good_recipe_loads_with_defaults(tmp_path):
    r = load_recipe(write(tmp_path, GOOD))
    assert r.base_model == "tiny:llama" and r.sequence_len == 256 and r.learning_rate == 0.001
    assert r.datasets[0].type == "alpaca" and r.micro_batch_size == 1 and r.adapter is None  # Axolotl's default batch


BAD_RECIPES = [
    # (description, recipe text, [substrings the message must contain])
    ("misspelled key", GOOD + "lerning_rate: 0.1\n", ["r.yml:7", "lerning_rate", "unknown option", "did you mean learning_rate"]),
    ("refused axolotl key", GOOD + "loraplus_lr_ratio: 16\n",
     ["r.yml:7: loraplus_lr_ratio", "per-group learning rates need optimizer parameter groups",
      "ftkit refuses rather than ignores", "Fix: remove it; nearest supported: learning_rate"]),
    ("wrong type", GOOD.replace("sequence_len: 256", "sequence_len: long"),
     ["sequence_len", "r.yml:5", "valid integer", "'long'", "Fix: expected: Longest example"]),
    ("out of range", GOOD + "micro_batch_size: 0\n", ["micro_batch_size", "greater than or equal to 1", "Fix:"]),
    ("negative learning rate", GOOD.replace("0.001", "-1"), ["learning_rate", "greater than 0", "Fix: expected: Peak"]),
    ("missing base_model", GOOD.replace("base_model: tiny:llama\n", ""),
     ["base_model", "required option is missing", "Fix: add `base_model:`"]),
    ("missing datasets", "base_model: tiny:llama\n", ["datasets", "required option is missing", "Fix: add `datasets:`"]),
    ("empty datasets", "base_model: tiny:llama\ndatasets: []\n", ["datasets", "at least 1", "Fix:"]),
    ("dataset without path", "base_model: tiny:llama\ndatasets:\n  - type: alpaca\n",
     ["datasets.0.path", "required option is missing", "Fix: add `path:`"]),
    ("unknown dataset key", GOOD.replace("    type: alpaca\n", "    type: alpaca\n    feild: x\n"),
     ["datasets.0.feild", "r.yml:5", "unknown option"]),
    ("format key at the dataset level", GOOD.replace("    type: alpaca\n", "    type: alpaca\n    field_instruction: q\n"),
     ["datasets.0.field_instruction", "custom-format key written at the dataset level", "put it under type:"]),
    ("type with a semicolon", GOOD.replace("type: alpaca", "type: \"alp;aca\""),
     ["r.yml:4: datasets.0.type: unsupported dataset type 'alp;aca'", "Fix: did you mean alpaca?"]),
    ("bf16 and fp16", GOOD + "bf16: true\nfp16: true\n", ["fp16", "both true", "Fix: choose one"]),
    ("bad adapter name", GOOD + "adapter: lorra\n", ["adapter", "'lorra'", "Fix:"]),
    ("bad precision value", GOOD + "bf16: maybe\n", ["bf16", "Fix:"]),
    ("invalid yaml", GOOD + "  bad: [unclosed\n", ["r.yml", "not valid YAML", "Fix:"]),
    ("not a mapping", "- just\n- a list\n", ["r.yml", "mapping", "Fix:"]),
    ("shard index past the shards", GOOD.replace("    type: alpaca\n", "    type: alpaca\n    shards: 2\n    shards_idx: 2\n"),
     ["datasets.0.shards_idx: is 2 but there are only 2 shards", "Fix: use 0 to 1"]),
    # a preference recipe too: before, only SFT recipes were checked and DPO data prep stopped in datasets' shard()
    ("dpo shard index past the shards", "base_model: tiny:llama\nrl: dpo\ndatasets:\n  - path: "
     "data_samples/preference_pairs.jsonl\n    type: chat_template.prompt_pairs\ndataset_shard_num: 2\n"
     "dataset_shard_idx: 5\n", ["dataset_shard_idx: is 5 but dataset_shard_num is 2", "Fix: use 0 to 1"]),
]


@pytest.mark.parametrize("desc,text,needles", BAD_RECIPES, ids=[b[0] for b in BAD_RECIPES])
def test_bad_recipe_message_names_key_and_fix(tmp_path, desc, text, needles):
    msg = error_of(tmp_path, text)
    for needle in needles:
        assert needle in msg, f"{desc}: {needle!r} not in:\n{msg}"


def test_all_problems_reported_together(tmp_path):
    msg = error_of(tmp_path, GOOD + "lerning_rate: 0.1\nmicro_batch_size: 0\n")
    assert msg.startswith("2 problems") and "lerning_rate" in msg and "micro_batch_size" in msg


def test_missing_recipe_file(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yml: recipe file not found\. Fix: check the path"):
        load_recipe(tmp_path / "nope.yml")


def test_overrides_are_typed_by_schema(tmp_path):
    r = load_recipe(write(tmp_path, GOOD), ["--lora_r=16", "--learning_rate=3e-4", "--adapter=lora",
                                            "--train_on_inputs=true", "--datasets.0.path=other.jsonl",
                                            "--output_dir=123", "--special_tokens.pad_token=<pad>"])
    assert r.lora_r == 16 and isinstance(r.lora_r, int)
    assert r.learning_rate == 3e-4 and r.adapter == "lora" and r.train_on_inputs is True
    assert r.datasets[0].path == "other.jsonl"
    assert r.output_dir == os.path.abspath("123")  # a str field keeps the text (made absolute), not an int
    assert r.special_tokens == {"pad_token": "<pad>"}


def test_override_adds_list_entry_and_reports_bad_values(tmp_path):
    r = load_recipe(write(tmp_path, GOOD), ["--datasets.1.path=b.jsonl"])
    assert [d.path for d in r.datasets] == ["data_samples/alpaca.jsonl", "b.jsonl"]
    with pytest.raises(ConfigError, match=r"lora_r: input should be a valid integer.*'x'"):
        load_recipe(write(tmp_path, GOOD), ["--lora_r=x"])
    with pytest.raises(ConfigError, match="index 5 is past the end"):
        load_recipe(write(tmp_path, GOOD), ["--datasets.5.path=x"])
    with pytest.raises(ConfigError, match="write overrides as --key=value"):
        parse_overrides(["lora_r"])


def test_a_bad_override_names_no_recipe_line(tmp_path):
    """The value came from the command line, so the error must not point at the file's line holding the old one."""
    assert "r.yml:5: sequence_len" in error_of(tmp_path, GOOD.replace("256", "-1"))
    msg = error_of(tmp_path, GOOD, ["--sequence_len=-1"])
    assert "r.yml: sequence_len: input should be greater than" in msg and "r.yml:5" not in msg
    msg = error_of(tmp_path, GOOD, ["--datasets.0.type=alpacca"])
    assert "r.yml: datasets.0.type: unsupported dataset type 'alpacca'" in msg


def test_override_misspelled_is_caught(tmp_path):
    msg = error_of(tmp_path, GOOD, ["--lora_rr=4"])
    assert "lora_rr: unknown option" in msg and "did you mean lora_r" in msg


def test_every_recipe_in_tree_validates():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "recipes"
    found = sorted(root.rglob("*.yml"))
    assert len(found) >= 1
    for path in found:
        load_recipe(path)


def test_options_reference_covers_every_field():
    ref = options_reference()
    for name in Recipe.model_fields:
        if name != "source":
            assert f"`{name}`" in ref


def test_list_override_is_parsed_not_kept_as_text(tmp_path):
    r = load_recipe(write(tmp_path, GOOD), ["--eval_prompts=[]", "--lora_target_modules=[q_proj, v_proj]"])
    assert r.eval_prompts == [] and r.lora_target_modules == ["q_proj", "v_proj"]


def test_resolved_recipe_dump_reloads_identically(tmp_path):
    """output_dir/recipe.yml holds every option; it must load back to the same recipe."""
    import yaml

    r = load_recipe(write(tmp_path, GOOD), ["--adapter=lora", "--lora_r=4"])
    dumped = tmp_path / "dumped.yml"
    dumped.write_text(yaml.safe_dump(r.dump(), sort_keys=False))
    again = load_recipe(dumped)
    assert again.dump() == r.dump()
