"""Tiny twins: an offline, deterministic stand-in for a real base model of a given architecture.

`base_model: tiny:llama` resolves to a directory holding a byte-level BPE tokenizer trained locally
(with the family's special tokens and chat template) and a random-init model of that architecture at
toy size. Tests and the demo swap a recipe's real hub model for its twin, so the same code path runs
without a download. Built once per spec into the cache (~/.cache/ftkit/tiny, or $FTKIT_CACHE/tiny).

Which families exist and their toy sizes, tokens and templates are in ftkit/assets/families.yaml.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

from ftkit.errors import FtkitError
from ftkit.formats.chat_templates import TEMPLATES
from ftkit.models.families import ALIASES, FAMILIES, TinySpec

TINY_PREFIX = "tiny:"
BUILD_VERSION = "2"  # bump when the build procedure changes, so stale caches are not reused
VOCAB_SIZE = 1024
INIT_RANGE = 0.1
CORPUS = Path(__file__).resolve().parents[1] / "assets" / "tiny_corpus.txt"


def is_tiny(name: str) -> bool:
    return name.startswith(TINY_PREFIX)


def cache_root() -> Path:
    base = os.environ.get("FTKIT_CACHE") or Path.home() / ".cache" / "ftkit"
    return Path(base) / "tiny"


def _spec_for(name: str) -> tuple[str, TinySpec]:
    family = name[len(TINY_PREFIX):] if is_tiny(name) else name
    family = ALIASES.get(family, family)
    if family not in FAMILIES:
        import difflib

        guess = difflib.get_close_matches(family, FAMILIES, n=1)
        raise FtkitError(f"no tiny twin for family {family!r}", where="base_model",
                         fix=(f"did you mean tiny:{guess[0]}? " if guess else "")
                         + f"The twins: {', '.join('tiny:' + f for f in FAMILIES)}")
    return family, FAMILIES[family].twin


def _key(family: str, spec: TinySpec) -> str:
    blob = json.dumps([BUILD_VERSION, family, asdict(spec), CORPUS.read_text(encoding="utf-8")], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def tiny_path(name: str) -> Path:
    """Directory of the twin (tokenizer + model); builds it on first use. `name` is 'tiny:llama' or 'llama'."""
    family, spec = _spec_for(name)
    target = cache_root() / f"{family}-{_key(family, spec)}"
    if (target / "config.json").is_file():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{family}-", dir=target.parent))
    except OSError as e:  # a read-only home: the twin is built locally, nothing to download
        raise FtkitError(f"cannot build the tiny twin {TINY_PREFIX}{family} in {target.parent} ({e.strerror})",
                         where="base_model", fix="set FTKIT_CACHE to a folder you can write (the twins are built "
                         "there, offline; e.g. export FTKIT_CACHE=/tmp/ftkit-cache), and HF_HOME too if the Hugging "
                         "Face cache is under the same read-only home") from None
    try:
        _build(family, spec, tmp)
        try:
            os.rename(tmp, target)  # atomic: a half-built twin is never visible
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _corpus_lines() -> list[str]:
    # The corpus plus the words of the prompt templates, so prompts tokenize compactly.
    from ftkit.formats.alpaca import TEMPLATE_WORDS

    return CORPUS.read_text(encoding="utf-8").splitlines() + TEMPLATE_WORDS + ["user assistant system"] * 20


def build_tokenizer(spec: TinySpec):
    """A byte-level BPE (any text encodes) trained on the local corpus, wrapped for transformers."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    template = TEMPLATES[spec.template] if spec.template else None
    extra = list(template.special_tokens) if template else []
    specials = [t for t in (spec.bos, spec.eos, spec.pad) if t] + extra
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    # GPT-2's split turns "\n\nThe" into "\n" + "\n" + "The" but "\n\n" alone into one token, so the Llama 3
    # template's "<|end_header_id|>\n\n" tokenized with an answer differs from the generation prompt alone; the
    # real tokenizer keeps the newline run whole. Llama's twin isolates it where a text piece starts (after a
    # special token): the template boundary is then the real one, and every other text tokenizes as before.
    if spec.isolate:
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(spec.isolate), "isolated"),
                                                     tok.pre_tokenizer])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus_lines(), trainer)
    if spec.add_bos and spec.bos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{spec.bos} $A", pair=f"{spec.bos} $A {spec.bos} $B",
            special_tokens=[(spec.bos, tok.token_to_id(spec.bos))])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=spec.bos, eos_token=spec.eos,
                                 pad_token=spec.pad, additional_special_tokens=extra)
    if template:
        hf.chat_template = template.jinja
    return hf


def _build(family: str, spec: TinySpec, out: Path) -> None:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, GenerationConfig

    tok = build_tokenizer(spec)
    ids = {k: tok.convert_tokens_to_ids(v) if v else None for k, v in
           (("bos_token_id", spec.bos), ("eos_token_id", spec.eos), ("pad_token_id", spec.pad))}
    config = getattr(transformers, spec.config_class)(vocab_size=len(tok), **spec.sizes, **spec.config_extra, **ids)
    # Real checkpoints have a trained head with large logits; a toy model at the usual init (0.02) gives
    # near-uniform logits that frozen-head LoRA cannot move. 0.1 lets LoRA learn in a few dozen steps.
    if hasattr(config, "initializer_range"):
        config.initializer_range = INIT_RANGE
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config = GenerationConfig(**{k: v for k, v in ids.items() if v is not None})
    model.save_pretrained(out)
    tok.save_pretrained(out)
    (out / "TINY_TWIN.json").write_text(json.dumps({"family": family, "spec": asdict(spec)}, indent=1, default=str))
