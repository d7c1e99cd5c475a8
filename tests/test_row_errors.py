"""Bad rows found while tokenizing list the first five with their lines and the total; a val_set_size that
leaves nothing to train on is an error naming the option."""
import json

import pytest

from ftkit import data
from ftkit.errors import DataError


def test_bad_rows_at_tokenize_time_list_the_first_five_and_the_total(make_recipe, tiny_tokenizer, tmp_path):
    path = tmp_path / "rows.jsonl"
    rows = [{"instruction": "q", "output": "a"} if i % 3 else {"instruction": "q"} for i in range(20)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError) as e:
        data.prepare(make_recipe(datasets=[{"path": str(path), "type": "alpaca"}]), tiny_tokenizer)
    msg = str(e.value)
    assert msg.startswith("6 problems:") and "rows.jsonl:1: output: row has no 'output' field" in msg
    assert "rows.jsonl:13: output:" in msg and "rows.jsonl: 7 of 20 rows are bad (5 shown)" in msg, msg


@pytest.mark.parametrize("size, held", [(20, 20), (50, 50), (0.99, 20)])
def test_val_set_size_that_leaves_no_training_rows(make_recipe, tiny_tokenizer, tmp_path, size, held):
    from ftkit.errors import ConfigError

    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"instruction": f"q{i}", "output": "a"}) + "\n" for i in range(20)))
    with pytest.raises(ConfigError, match=rf"val_set_size: val_set_size {size:g} holds out {held} of the 20 rows left "
                                          r"after filtering, so no row is left to train on. Fix: hold out fewer rows"):
        data.prepare(make_recipe(datasets=[{"path": str(path), "type": "alpaca"}], val_set_size=size), tiny_tokenizer)
