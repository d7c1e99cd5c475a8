"""Axolotl's own verdict on every config of tests/wild_configs/: what `axolotl train` does before training.

Maintainer script, run with the Python of a venv that has Axolotl (not ftkit's: Axolotl pins other versions):

    python3 -m venv /work/axvenv && /work/axvenv/bin/pip install torch==2.13.0 && \
        /work/axvenv/bin/pip install axolotl torch==2.13.0
    /work/axvenv/bin/python tools/axolotl_verdicts.py > tests/wild_configs/axolotl_verdicts.json

It reads only the corpus files and runs, per config, the steps of axolotl.cli.config.load_cfg up to the first
one that needs the real model weights or data: YAML -> validate_config (Axolotl's pydantic schema and its
validators) -> normalize_config + normalize_cfg_datasets (which read the model's config.json). Verdict:
"accepted", or "rejected" with the first error and the step that raised it. Nothing is downloaded:

  - base_model (and base_model_config) -> a local folder named after the architecture, holding only a config.json
    of it (transformers' defaults for that model_type), so normalize_config reads a config offline (validators
    that look for family names in base_model see that name); tokenizer_config is left as written (load_cfg
    does not read it);
  - output_dir -> a temporary folder (load_cfg writes its debug.log there);
  - the GPU capabilities validate_config checks against are one Hopper GPU (bf16, tf32, sm_90; no fp8), the
    card these configs were written for, not this CPU machine, which has none: bf16: true would otherwise be
    refused for the machine, not for the config.
Everything else, datasets included, stays as written.

For an accepted config it then asks Axolotl's data loaders, without reading any rows, whether they have a
strategy for each dataset's `type` (the step `axolotl train` reaches next): with rl:, the dpo/kto/orpo loaders
(axolotl.prompt_strategies.<rl>.load); without, what get_dataset_wrapper tries (a custom format, the
prompt_strategies registry, the built-in alpaca-family handlers), called with a small local tokenizer.
"loads": true, or false with the loader's error: Axolotl's schema accepts such a file, yet `axolotl train` stops
at that step.

"dropped": the keys of the file (top level and datasets.N.*) that Axolotl's schema does not define. Pydantic's
default drops them without a word, so they do nothing in Axolotl; an "unknown option" from ftkit for one of them
is its typo guard, not a missing option.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.update({"AXOLOTL_DO_NOT_TRACK": "1", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1",
                   "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "disabled"})

import yaml  # noqa: E402

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "wild_configs"
CAPABILITIES = {"bf16": True, "fp8": False, "tf32": True, "n_gpu": 1, "compute_capability": "sm_90"}
# base_model name hints -> transformers model_type (first match wins; mixtral before mistral)
HINTS = [("mixtral", "mixtral"), ("mistral", "mistral"), ("zephyr", "mistral"), ("qwen", "qwen2"),
         ("phi-3", "phi3"), ("phi-4", "phi3"), ("pythia", "gpt_neox"), ("dialogpt", "gpt2"), ("stablelm", "stablelm"),
         ("starcoder2", "starcoder2"), ("gpt-oss", "gpt_oss"), ("deepseek-coder", "llama"), ("smollm", "llama"),
         ("llama", "llama")]
# model_type written as a class name (MistralForCausalLM) -> model_type, for bases named by a local path
CLASSES = {"MistralForCausalLM": "mistral", "LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2"}


def architecture(cfg: dict) -> str:
    name = str(cfg.get("base_model") or "").lower()
    hit = next((arch for hint, arch in HINTS if hint in name), None)
    return hit or CLASSES.get(str(cfg.get("model_type")), "llama")


def local_config_dir(arch: str, root: Path) -> str:
    """A folder with only config.json for `arch`: what normalize_config reads of base_model."""
    from transformers import AutoConfig

    folder = root / arch
    if not (folder / "config.json").is_file():
        AutoConfig.for_model(arch).save_pretrained(folder)
    return str(folder)


def first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            e = errors()[0]
            where = ".".join(str(p) for p in e.get("loc", ()))
            return f"{where}: {e.get('msg')}" if where else str(e.get("msg"))
        except Exception:  # noqa: BLE001 - fall back to the text
            pass
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"


CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def small_tokenizer():
    """A word-level tokenizer built here (no download) with the special tokens and chat template loaders expect."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>", "<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>", "user", "assistant", "system"]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                  unk_token="<unk>")
    tok.chat_template = CHATML
    return tok


def loader_error(cfg, tokenizer) -> str | None:
    """None when Axolotl's loaders have a strategy for every dataset type of `cfg`, else the first one's error."""
    from axolotl.prompt_strategies import load as load_sft
    from axolotl.utils.data.wrappers import DATASET_HANDLERS

    for key in ("datasets", "test_datasets"):
        for i, ds in enumerate(cfg.get(key) or []):
            kind = ds.get("type")
            try:
                if cfg.rl:
                    import importlib

                    rl = str(getattr(cfg.rl, "value", cfg.rl))
                    package = rl if rl in ("kto", "orpo", "ebft") else "dpo"  # as axolotl.utils.data.rl._load_split
                    loader = importlib.import_module(f"axolotl.prompt_strategies.{package}").load
                    name = "user_defined.default" if isinstance(kind, dict) else kind
                    found = loader(name, cfg, dataset_idx=i)
                elif isinstance(kind, dict) or str(kind).startswith(("bradley_terry", "stepwise_supervised")):
                    found = True
                else:
                    found = load_sft(kind, tokenizer, cfg, ds) or str(kind).split(":")[0] in DATASET_HANDLERS
            except Exception as e:  # noqa: BLE001 - the loader's own error is the finding
                return f"{key}.{i}.type {kind!r}: {first_error(e)}"
            if not found:
                return f"{key}.{i}.type {kind!r}: no {'rl: ' + rl if cfg.rl else 'supervised'} strategy of that name"
    return None


def _names(model) -> set[str]:
    fields = model.model_fields
    return set(fields) | {f.alias for f in fields.values() if f.alias} | {
        a for f in fields.values() for a in getattr(f.validation_alias, "choices", []) if isinstance(a, str)}


def dropped_keys(raw: dict) -> list[str]:
    """The keys Axolotl's schema does not define (it drops them silently), top level and per dataset entry."""
    from axolotl.utils.schemas.config import AxolotlConfigWCapabilities
    from axolotl.utils.schemas.datasets import DPODataset, KTODataset, SFTDataset

    if raw.get("plugins"):  # the plugins' own options join the schema (validate_config does the same)
        from axolotl.integrations.config import merge_input_args

        AxolotlConfigWCapabilities, _ = merge_input_args()
    top = _names(AxolotlConfigWCapabilities) | {"debug"}  # --debug is a CLI flag Axolotl also reads from the YAML
    entry = _names({"kto": KTODataset}.get(raw.get("rl"), DPODataset if raw.get("rl") else SFTDataset))
    out = [k for k in raw if k not in top]
    for key in ("datasets", "test_datasets"):
        items = raw.get(key)
        for i, ds in enumerate(items if isinstance(items, list) else []):
            out += [f"{key}.{i}.{k}" for k in (ds if isinstance(ds, dict) else {}) if k not in entry]
    return out


def verdict(path: Path, models: Path, out: Path, tokenizer=None) -> dict:
    from axolotl.cli.config import prepare_plugins
    from axolotl.utils.config import normalize_cfg_datasets, normalize_config, validate_config
    from axolotl.utils.dict import DictDefault

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        return {"verdict": "rejected", "step": "yaml", "error": first_error(e)}
    arch = architecture(raw)
    cfg = DictDefault(raw)
    cfg.base_model = local_config_dir(arch, models)
    if raw.get("base_model_config"):
        cfg.base_model_config = cfg.base_model
    cfg.output_dir = str(out)
    cfg.axolotl_config_path = str(path)
    step = "prepare_plugins"
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            prepare_plugins(cfg)
            step = "validate_config"
            cfg = validate_config(cfg, capabilities=dict(CAPABILITIES), env_capabilities={"torch_version": "2.13.0"})
            step = "normalize_config"
            normalize_config(cfg)
            normalize_cfg_datasets(cfg)
    except Exception as e:  # noqa: BLE001 - any error is the verdict
        return {"verdict": "rejected", "step": step, "error": first_error(e), "architecture": arch}
    error = loader_error(cfg, tokenizer or small_tokenizer())
    return {"verdict": "accepted", "architecture": arch, "loads": error is None, **({"load_error": error} if error else {}),
            "dropped": dropped_keys(raw)}


def one(path: Path) -> dict:
    """The verdict on one file, in a process of its own (Axolotl's plugin registry and env vars are per process)."""
    proc = subprocess.run([sys.executable, __file__, "--one", str(path)], capture_output=True, text=True)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return {"verdict": "rejected", "step": "process", "error": proc.stderr.strip().splitlines()[-1:]}


def main() -> int:
    import axolotl

    if sys.argv[1:2] == ["--one"]:
        logging.disable(logging.WARNING)  # Axolotl's per-config warnings; the verdict is the result
        # a fixed folder: Axolotl's validators read family names in base_model ("mpt" in a random tmp name trips one)
        models = Path(tempfile.gettempdir()) / "axolotl-verdicts" / "models"
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(verdict(Path(sys.argv[2]), models, Path(tmp) / "out")))
        return 0
    results = {path.name: one(path) for path in sorted(CORPUS.glob("*.yml"))}
    json.dump({"axolotl_version": axolotl.__version__, "capabilities": CAPABILITIES,
               "swapped": ["base_model (a local config.json of the same architecture)", "output_dir"],
               "configs": results}, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
