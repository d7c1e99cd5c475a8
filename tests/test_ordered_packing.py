"""sample_packing_sequentially packs in the data's order (next-fit); curriculum_sampling draws batches in that
order: the examples come out of the trainer's own dataloader in the order of the data file."""
from __future__ import annotations

import json
import re

import pytest
from axolotl_corpus import twin_run_overrides
from twin import ROOT

from ftkit.plugins import packing
from ftkit.recipe import load_recipe

EXAMPLES = ROOT / "tests" / "data" / "axolotl_examples"  # Axolotl's own, byte for byte after a source line

ROWS = 40


def rows_file(tmp_path):
    """Completion rows that say their own index, of lengths that vary (so a by-length packer would reorder them)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "numbered.jsonl"
    path.write_text("".join(json.dumps({"text": f"row {i:03d} " + "one two three " * (i * 7 % 5)}) + "\n"
                            for i in range(ROWS)))
    return path


def recipe_for(tmp_path, **options):
    return load_recipe({"base_model": "tiny:llama", "datasets": [{"path": str(rows_file(tmp_path)), "type": "completion"}],
                        "sequence_len": 64, "micro_batch_size": 2, "max_steps": 3, "output_dir": str(tmp_path / "out"),
                        "dataset_prepared_path": str(tmp_path / "prepared"), "bf16": False, **options})


def order_seen(recipe) -> list[int]:
    """The row numbers of the examples in the batches the trainer draws, in the order it draws them."""
    from ftkit.train.run import build

    built = build(recipe)
    tok, seen = built.tokenizer, []
    for batch in built.trainer.get_train_dataloader():
        for row in range(batch["input_ids"].shape[0]):
            ids = batch["input_ids"][row].tolist()
            pos = batch["position_ids"][row].tolist() if "position_ids" in batch else [0] + [1] * (len(ids) - 1)
            starts = [i for i, p in enumerate(pos) if p == 0] + [len(ids)]
            for a, b in zip(starts, starts[1:]):
                found = re.search(r"row (\d{3})", tok.decode(ids[a:b]))
                if found:  # padding holds no example
                    seen.append(int(found.group(1)))
    return seen


def test_next_fit_keeps_the_order_and_the_length_packer_does_not():
    import datasets

    lengths = [5, 4, 3, 6, 2, 2, 7]
    ds = datasets.Dataset.from_dict({"input_ids": [[i] * n for i, n in enumerate(lengths)],
                                     "labels": [[i] * n for i, n in enumerate(lengths)]})
    packed, stats = packing.pack_in_order(ds, 8)
    assert packed["seq_lengths"] == [[5], [4, 3], [6, 2], [2], [7]]  # a new row when the next one does not fit
    assert sum(packed["input_ids"], []) == sum(([i] * n for i, n in enumerate(lengths)), [])  # order kept
    assert (stats.rows, stats.bins, stats.tokens) == (7, 5, 29)
    by_length, _ = packing.pack(ds, 8)
    assert sum(by_length["input_ids"], []) != sum(packed["input_ids"], [])  # best-fit regroups them by length


def test_ordered_packing_with_curriculum_trains_in_the_files_order(tmp_path):
    recipe = recipe_for(tmp_path, sample_packing=True, sample_packing_sequentially=True, curriculum_sampling=True)
    assert order_seen(recipe) == list(range(ROWS))
    shuffled = recipe_for(tmp_path / "shuffled", sample_packing=True)  # the default: rows shuffled, bins by length
    seen = order_seen(shuffled)
    assert sorted(seen) == list(range(ROWS)) and seen != list(range(ROWS))


def test_curriculum_sampling_draws_unpacked_rows_in_order(tmp_path):
    assert order_seen(recipe_for(tmp_path, curriculum_sampling=True)) == list(range(ROWS))


def test_ordered_packing_settings_are_checked(tmp_path):
    from ftkit.errors import ConfigError

    with pytest.raises(ConfigError, match=r"sample_packing_sequentially: has no effect without sample_packing"):
        recipe_for(tmp_path, sample_packing_sequentially=True)
    with pytest.raises(ConfigError, match=r"group_by_length: conflicts with curriculum_sampling"):
        recipe_for(tmp_path, curriculum_sampling=True, group_by_length=True)
    noted = recipe_for(tmp_path, sample_packing=True, sample_packing_sequentially=True).report.of("note")
    assert any(n.key == "sample_packing_sequentially" and "add curriculum_sampling: true" in n.detail for n in noted)


def test_axolotls_sequential_packing_example_trains_two_steps_on_its_twin(tmp_path, said):
    """examples/llama-3/lora-1b-sample-packing-sequentially.yml (8-bit LoRA, two datasets, ordered packing and
    curriculum sampling) with model and data swapped."""
    from ftkit import train

    path = EXAMPLES / "llama-3-lora-1b-sample-packing-sequentially.yml"
    recipe = load_recipe(path, twin_run_overrides(path, tmp_path, "tiny:llama"))
    assert recipe.sample_packing_sequentially and recipe.curriculum_sampling and recipe.load_in_8bit
    result = train.run(recipe)
    assert result.steps == 2 and all(loss == loss for _, loss in result.losses)
    # two datasets, shuffle_merged_datasets left at its default: mixed rows are shuffled, as in Axolotl, and said
    assert any("curriculum_sampling: the mixed datasets are shuffled" in m for m in said)
