"""Axolotl configs run as they are: a corpus of Axolotl-style configs (tests/axolotl_configs/, our own files), the
YAML snippets of the reference docs, and (opt-in) Axolotl's own examples/ directory.

Every corpus config validates as written; a cross-section of them trains 2 steps on its tiny twin with its
datasets swapped for data_samples/ rows of the same type (tests/axolotl_corpus.py).
"""
import math
import os
from pathlib import Path

import pytest
import yaml

from axolotl_corpus import ROOT, twin_run_overrides
from ftkit import train
from ftkit.axolotl import NOT_AXOLOTL, USED
from ftkit.errors import ConfigError
from ftkit.recipe import inspect_recipe, load_recipe

CORPUS = sorted((ROOT / "tests" / "axolotl_configs").glob("*.yml"))
# trained 2 steps on the CPU (the others are validated; their features are trained by other tests or need a GPU:
# 4-bit bases under DeepSpeed, and 2048-token 4-bit steps that take tens of seconds on a CPU)
TRAINED = {"01": "lora, packing, alpaca", "02": "qlora, chat_template, eot_tokens", "03": "full, fsdp",
           "05": "dpo, chat_template.default field names", "06": "orpo, qlora", "07": "kto", "08": "full, completion",
           "10": "lora, phi_3 chat", "18": "full, chat packing, dedup", "19": "custom format, two datasets"}


def test_corpus_covers_the_families_and_methods():
    text = " ".join(p.read_text().split("\n")[0] for p in CORPUS)
    for word in ("lora", "qlora", "full", "dpo", "kto", "orpo", "ipo", "simpo", "fsdp", "deepspeed", "packing",
                 "chat_template", "completion"):
        assert word in text, word
    assert len(CORPUS) == 22


@pytest.mark.parametrize("path", CORPUS, ids=[p.name[:2] for p in CORPUS])
def test_corpus_config_validates_as_written(path):
    recipe = load_recipe(path)
    written = yaml.safe_load(path.read_text())
    reported = {line.key.split(".")[0] for line in recipe.report.lines}
    assert set(written) <= reported  # every key of the file has a status
    assert not recipe.report.of("refused")
    assert not [line.key for line in recipe.report.lines if line.detail.startswith(NOT_AXOLOTL)]  # none dropped
    assert recipe.report.of(USED)


def _param(path: Path):
    return pytest.param(path, id=f"{path.name[:2]}-{TRAINED[path.name[:2]]}")


@pytest.fixture
def own_process_state():
    """An FSDP/DeepSpeed run without a launcher sets the process-group variables and accelerate's state in this
    process; put both back, so the next test starts as a plain single process."""
    before = dict(os.environ)
    yield
    import torch.distributed as dist
    from accelerate.state import AcceleratorState

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    AcceleratorState._reset_state(reset_partial_state=True)
    os.environ.clear()
    os.environ.update(before)


@pytest.mark.parametrize("path", [_param(p) for p in CORPUS if p.name[:2] in TRAINED])
def test_corpus_config_trains_two_steps_on_its_twin(path, tmp_path, own_process_state):
    recipe = load_recipe(path, twin_run_overrides(path, tmp_path))
    result = train.run(recipe)
    losses = [v for _, v in getattr(result, "losses", [])] or [h["loss"] for h in getattr(result, "history", [])]
    assert result.steps == 2 and losses and all(math.isfinite(v) for v in losses), result.summary()
    assert result.trainable_params > 0
    assert (Path(recipe.output_dir) / "recipe.yml").is_file()


# ---------------------------------------------------------------- the reference docs' snippets

SNIPPETS = list(yaml.safe_load_all((ROOT / "tests" / "data" / "reference_snippets.yml").read_text()))
# Snippets that list mutually exclusive alternatives side by side (the docs show each option once): the
# problems ftkit reports for them, all at once. Every other snippet validates.
ALTERNATIVES = {
    "precision choices": ["load_in_8bit: load_in_4bit and load_in_8bit are both true",
                          "load_in_4bit: 4-bit weights cannot be trained directly", "load_in_8bit: 8-bit weights cannot be trained",
                          "float16: bfloat16 and float16 are both true"],
    "all options": ["gptq: a GPTQ base is already quantized", "fp16: bf16 and fp16 are both true",
                    "float16: bfloat16 and float16 are both true", "warmup_ratio: conflicts with warmup_steps",
                    "default_system_message: the chat template has no built-in default system text",
                    "early_stopping_patience: needs evaluations during training",
                    "val_set_size: test_datasets is the eval set",  # with lora + load_in_4bit (a QLoRA, as Axolotl):
                    "loftq_config: LoftQ initialises a LoRA on the full-precision base"],
}


def _snippet_recipe(doc) -> dict:
    data = {"datasets": doc} if isinstance(doc, list) else dict(doc)
    data.setdefault("base_model", "tiny:llama")
    data.setdefault("datasets", [{"path": "data_samples/alpaca.jsonl", "type": "alpaca"}])
    return data


def _kind(doc) -> str | None:
    if isinstance(doc, dict) and "base_model_ignore_patterns" in doc:
        return "all options"
    if isinstance(doc, dict) and {"load_in_4bit", "load_in_8bit", "bfloat16"} <= set(doc):
        return "precision choices"
    return None


@pytest.mark.parametrize("doc", SNIPPETS, ids=[f"snippet{i}" for i in range(len(SNIPPETS))])
def test_reference_doc_snippet_validates(doc):
    _, migration, problems = inspect_recipe(_snippet_recipe(doc))
    assert not [p for p in problems if "unknown option" in p.problem]  # every name is an option with a status
    assert not [line.key for line in migration.report.lines if line.detail.startswith(NOT_AXOLOTL)]  # not dropped
    expected = ALTERNATIVES.get(_kind(doc), [])
    got = [str(p) for p in problems]
    assert len(got) == len(expected) and all(any(e in g for g in got) for e in expected), got


def test_snippets_were_extracted():
    assert len(SNIPPETS) >= 20 and sum(_kind(d) is not None for d in SNIPPETS) == 3


# ---------------------------------------------------------------- Axolotl's own examples (opt-in)

EXAMPLES = os.environ.get("AXOLOTL_EXAMPLES")
FAMILIES = {"llama-2": "llama", "llama-3": "llama", "mistral": "mistral", "qwen2": "qwen2", "qwen3": "qwen3", "phi": "phi3",
            "gemma2": "gemma2", "gemma3": "gemma3", "archived/falcon": "falcon", "archived/pythia": "gpt_neox",
            "archived/pythia-12b": "gpt_neox", "archived/gptj": "gptj", "archived/cerebras": "gpt2",
            "archived/tiny-llama": "llama", "archived/openllama-3b": "llama", "archived/code-llama": "llama",
            "archived/qwen": "qwen2", "archived/gemma": "gemma", "archived/mpt-7b": "mpt", "archived/jeopardy-bot": "llama"}


# examples that Axolotl's own schema rejects (`tokens:` written as a mapping; Axolotl types it as a list)
INVALID_IN_AXOLOTL = {"archived/mpt-7b/config.yml", "archived/jeopardy-bot/config.yml"}


def example_configs(root: Path) -> list[tuple[Path, str]]:
    """(config, twin) for every example config of the families ftkit covers (vision configs excluded): the twin of
    the config's base_model family (a Mixtral config in mistral/ gets the Mixtral twin), else of its folder."""
    from ftkit.cookbook.twins import twin_for_model
    from ftkit.errors import FtkitError

    out = []
    for folder, family in FAMILIES.items():
        for p in sorted((root / folder).rglob("*.y*ml")):
            if "vision" in p.name:
                continue
            base = str((yaml.safe_load(p.read_text()) or {}).get("base_model", ""))
            try:
                twin = twin_for_model(base)
            except FtkitError:
                twin = f"tiny:{family}"
            out.append((p, "tiny:mixtral" if "mixtral" in base.lower() else twin))
    return out


def check_example(path: Path, twin: str) -> tuple[str, str]:
    """('ok' | 'refused' | 'error', detail) for one Axolotl example with base_model swapped for its twin."""
    _, migration, problems = inspect_recipe(path, {"base_model": twin})
    if not problems:
        return "ok", ""
    kind = "refused" if any("ftkit refuses" in p.problem for p in problems) else "error"
    return kind, "; ".join(str(p).split(": ", 1)[-1][:160] for p in problems)


@pytest.mark.skipif(not EXAMPLES, reason="set AXOLOTL_EXAMPLES to a checkout of Axolotl's examples/ directory")
def test_axolotl_examples_validate_or_are_refused_by_name():
    results = [(p, *check_example(p, twin)) for p, twin in example_configs(Path(EXAMPLES))]
    assert results
    errors = [f"{p}: {detail}" for p, kind, detail in results
              if kind == "error" and p.relative_to(EXAMPLES).as_posix() not in INVALID_IN_AXOLOTL]
    assert not errors, "\n".join(errors)


def test_example_checker_tells_refusals_from_errors(tmp_path):
    ok = tmp_path / "ok.yml"
    ok.write_text("base_model: x\ndatasets:\n  - path: data_samples/alpaca.jsonl\n    type: alpaca\nflash_attention: true\n")
    assert check_example(ok, "tiny:llama") == ("ok", "")
    refused = tmp_path / "qat.yml"
    refused.write_text(ok.read_text() + "qat:\n  weight_dtype: int8\n")
    assert check_example(refused, "tiny:llama")[0] == "refused"
    bad = tmp_path / "bad.yml"
    bad.write_text(ok.read_text() + "lerning_rate: 1\n")
    assert check_example(bad, "tiny:llama")[0] == "error"
    with pytest.raises(ConfigError, match="quantization-aware training"):
        load_recipe(refused)
