"""ftkit.notebook helpers headless (plain Python, no kernel); evals in test_evals.py, the panel in test_widgets.py."""
import json
import re

import pytest

from ftkit.cookbook import notebook as nb
from ftkit.cookbook.twins import twin_for_model, twin_for_recipe
from ftkit.formats import get_strategy
from ftkit.formats.tokenize import encode_segments

ROW = {"instruction": "Add 2 and 3.", "input": "", "output": "2 plus 3 is 5."}


def test_mask_html_marks_every_token(tiny_tokenizer, capsys):
    ex = encode_segments(get_strategy("alpaca").segments(ROW), tiny_tokenizer)
    page = nb.mask_html(ex, tiny_tokenizer)
    spans = re.findall(r'<span title="id (\d+), (trained|masked \(-100\))"', page)
    assert [int(i) for i, _ in spans] == ex["input_ids"]  # one box per token, in order
    assert [k == "trained" for _, k in spans] == [lab != -100 for lab in ex["labels"]]
    assert f"{len(ex['input_ids'])} tokens, {sum(l != -100 for l in ex['labels'])} trained" in page
    nb.show_mask(ex, tiny_tokenizer)  # no kernel: the plain-text view of data.show_mask
    assert "[[2 plus 3 is 5.<|end_of_text|>]]" in capsys.readouterr().out


def test_record_writes_metrics_json(tmp_path, monkeypatch):
    monkeypatch.setenv(nb.METRICS_ENV, str(tmp_path / "m.json"))
    nb.record("final_loss", 1.5)
    nb.record("eval_score", 0.75)
    assert json.loads((tmp_path / "m.json").read_text()) == {"final_loss": 1.5, "eval_score": 0.75}
    nb.reset_metrics()
    assert not (tmp_path / "m.json").exists()


def test_headless_panel_shows_nothing_and_loss_plot_saves_png(tmp_path):
    from ftkit.cookbook import workshop

    assert not nb.interactive()
    panel = workshop.TrainingPanel(workshop.preference_recipe, {"method": "dpo", "base_model": "tiny:llama",
                                                                "max_steps": 3, "output_dir": str(tmp_path)})
    assert panel.show() is None and panel.box is None and panel.fields == {}  # papermill: the parameters cell rules
    cb = nb.loss_plot_callback(tmp_path / "loss.png")

    class State:
        global_step = 0
    for step, loss in [(1, 3.0), (2, 2.0), (3, 1.0)]:
        State.global_step = step
        cb.on_log(None, State, None, logs={"loss": loss})
    cb.on_train_end(None, State, None)
    assert cb.losses == [(1, 3.0), (2, 2.0), (3, 1.0)]
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_twin_for_recipe_conventions(tmp_path):
    from ftkit.errors import FtkitError

    assert twin_for_recipe("recipes/mistral/qlora.yml") == "tiny:mistral"  # folder name
    assert twin_for_recipe("recipes/quickstart.yml") == "tiny:llama"  # base_model: tiny:...
    (tmp_path / "odd").mkdir()
    header = tmp_path / "odd" / "x.yml"
    header.write_text("# tiny twin: tiny:qwen3\nbase_model: Qwen/Qwen3-8B-Base\n")
    assert twin_for_recipe(header) == "tiny:qwen3"
    header.write_text("base_model: someone/model\n")
    with pytest.raises(FtkitError, match=r"cannot tell which tiny twin.*add a header line `# tiny twin: tiny:<family>`"):
        twin_for_recipe(header)


def test_twin_for_model_names():
    assert twin_for_model("mistralai/Mixtral-8x7B-v0.1") == "tiny:mixtral"
    assert twin_for_model("meta-llama/Llama-3.2-1B-Instruct") == "tiny:llama"
    assert twin_for_model("EleutherAI/pythia-1.4b-deduped") == "tiny:gpt_neox"
    assert twin_for_model("microsoft/Phi-3-mini-4k-instruct") == "tiny:phi3"
    assert twin_for_model("tiny:qwen3") == "tiny:qwen3"
    from ftkit.errors import FtkitError

    with pytest.raises(FtkitError, match=r"cannot tell the family of 'acme/model'.*-p base_model=tiny:llama"):
        twin_for_model("acme/model")
