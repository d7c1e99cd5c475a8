"""Checks before a run: what `ftkit train` would refuse, found before it loads weights; `ftkit check` runs them too.

The stages and what each reads (docs/preflight.md lists every check):
  config - the recipe, the environment and the installed packages (optimizer package, hub push, W&B login,
           model_type, device_map, DeepSpeed/FSDP and bitsandbytes settings, warm-up against max_steps)
  model  - the tokenizer and the model's config.json, no weights: the tokenizer must encode and decode a probe
           text unchanged, the model is built on the meta device (accelerate) with the recipe's adapter on it
  rows   - the prepared rows: a sample of their text must decode back unchanged; a warm-up longer than the run
           is said (a warning: smoke runs do it on purpose) (train: after data preparation; check: with --data)
and, in train only, after the weights load: the first batch's loss against loss_watchdog_threshold.
Train and check call the same functions, so a recipe check refuses is refused by train with the same message.
"""
from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import torch
import transformers

from ftkit import models
from ftkit.env import offline_switch
from ftkit.errors import ConfigError, FtkitError, Problem
from ftkit.formats.prompt import Prompt
from ftkit.log import log
from ftkit.recipe import Recipe
from ftkit.train.args import hub_kwargs

PROBE = "Hello world.\nA second line."  # spaces and a newline: what a mismatched tokenizer class drops
SAMPLE_ROWS = 8  # rows per dataset whose text is round-tripped


@dataclass
class Report:
    """What the checks found: problems (errors), notes (said and carried on), checks not run (and why); the
    recipe to run (with announced corrections, e.g. W&B offline) and the tokenizer, once loaded."""

    recipe: Recipe
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)
    tokenizer: object = None

    def collect(self, check, *args, **kwargs) -> object:
        """Run one check that raises FtkitError; keep its problems instead of stopping at the first."""
        try:
            return check(*args, **kwargs)
        except FtkitError as e:
            for p in e.problems:  # a recipe key without its line gets it here
                if p.line is None and p.where and p.file == self.recipe.source:
                    p.line = self.recipe.line_of(p.where)
            self.problems += e.problems
            return None

    def problem(self, key: str, what: str, fix: str) -> None:
        self.problems.append(Problem(what, self.recipe.source, key, self.recipe.line_of(key), fix))

    def raise_problems(self) -> None:
        if self.problems:
            raise ConfigError(self.problems)


# ---------------------------------------------------------------- config

def config_checks(report: Report, local_only: bool = False) -> None:
    """What the recipe and this machine say, without reading the model (local_only: nor the network)."""
    from ftkit.models import quant
    from ftkit.train import distributed

    r = report.recipe
    _optimizer(report)
    _model_type(report)
    _device_map(report)
    _warmup(report, r.max_steps or 0, "max_steps")
    report.collect(check_hub, r, not local_only)
    if r.deepspeed:
        report.collect(distributed.deepspeed_path, r)
    if r.fsdp:
        report.collect(distributed.fsdp_kwargs, r)
    report.collect(quant.check_gptq, r)
    report.collect(quant.bnb_config, r, None)  # unknown bnb_config_kwargs; the compute dtype does not matter here
    _wandb(report)


def _optimizer(report: Report) -> None:
    """An optimizer from another package (torchao, galore_torch, ...) that is not installed."""
    from ftkit.recipe.train_options import missing_optimizer_package

    name = report.recipe.optimizer
    if pip := missing_optimizer_package(name):
        report.problem("optimizer", f"optimizer {name} comes from the {pip} package, which is not installed",
                       f"pip install {pip}, or use an optimizer torch has (adamw_torch, adamw_torch_fused, sgd, adafactor)")


def _model_type(report: Report) -> None:
    import difflib

    name = report.recipe.model_type
    if not hasattr(getattr(transformers, name, None), "from_pretrained"):
        close = difflib.get_close_matches(name, [n for n in dir(transformers) if n.endswith("ForCausalLM")], n=1)
        report.problem("model_type", f"transformers has no model class {name!r}",
                       "use AutoModelForCausalLM" + (f" (or did you mean {close[0]}?)" if close else ""))


def _device_map(report: Report) -> None:
    """device_map entries that name a device this machine lacks (from_pretrained fails deep inside torch)."""
    dm = report.recipe.device_map
    for value in (dm.values() if isinstance(dm, dict) else [dm]):
        if value is None or value in ("auto", "balanced", "balanced_low_0", "sequential", "cpu", "disk", "meta"):
            continue
        try:
            device = torch.device(f"cuda:{value}" if isinstance(value, int) else value)
        except (RuntimeError, TypeError):
            report.problem("device_map", f"{value!r} is not a device", 'use auto, cpu, or a GPU number, e.g. {"": 0}')
            continue
        if device.type == "cuda" and (device.index or 0) >= (count := torch.cuda.device_count()):
            has = f"has {count} CUDA device(s)" if count else "has no CUDA device"
            report.problem("device_map", f"places the model on {device}, but this machine {has}",
                           "remove device_map (ftkit puts the model on this process's device: the GPU when there "
                           "is one, else the CPU), or use device_map: auto")


def _warmup(report: Report, total: int, how: str) -> None:
    """A warm-up longer than the run: the learning rate climbs from 0 all run and never reaches its value. Said,
    not refused: a smoke run (`--max_steps=2` on a real recipe) is the usual cause and trains as asked."""
    steps = report.recipe.warmup_steps
    if total and steps is not None and steps >= 1 and steps > total:
        log.warning(f"warmup_steps: the warm-up ({steps:g} steps) is longer than the run ({total} steps, {how}): "
                    f"the learning rate climbs from 0 and ends at {total / steps:.0%} of learning_rate. Fine for a "
                    f"smoke run; for a real one set warmup_steps below {total} (e.g. {total // 10}), or use "
                    "warmup_ratio: 0.03")


def check_hub(recipe: Recipe, verify: bool = True) -> None:
    """hub_model_id: raise a ConfigError now when the push could not work (the hub switched off, as the Makefile
    and the tests set it; no token; a token the hub rejects), not after hours of training. `verify`: ask the
    hub whether it takes the token (`ftkit check` reads no network, so it only says it did not)."""
    if not hub_kwargs(recipe):
        return
    where, file = "hub_model_id", recipe.source
    if var := offline_switch():
        raise ConfigError(Problem(f"pushing to {recipe.hub_model_id} needs the hub, but it is switched off ({var}=1)",
                                  file, where, fix=f"unset {var} (`unset {var}`) and log in (`hf auth login`, or set "
                                                   "HF_TOKEN), or set push_to_hub: false"))
    from huggingface_hub import HfApi, get_token

    if not (token := get_token()):
        raise ConfigError(Problem(f"pushing to {recipe.hub_model_id} needs a hub token, and none is set", file, where,
                                  fix="run `hf auth login` (or set HF_TOKEN); or set push_to_hub: false"))
    if not verify:
        log.info(f"hub_model_id: a hub token is set; ftkit train asks the hub whether it takes the push to "
                 f"{recipe.hub_model_id} before training starts")
        return
    try:
        user = HfApi().whoami(token=token)
    except Exception as e:  # network down or token rejected: either way the push would fail later  # noqa: BLE001
        raise ConfigError(Problem(f"the hub does not accept the push ({str(e).splitlines()[0][:120]})", file, where,
                                  fix="check the network and the token (`hf auth whoami`)")) from None
    log.info(f"hub_model_id: pushing to {recipe.hub_model_id} as {user.get('name', '?')} (private repo)")


def _wandb_login() -> bool:
    """An API key in the environment or a `wandb login` entry in the netrc file (where wandb itself looks)."""
    import netrc
    from urllib.parse import urlsplit

    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlsplit(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").netloc
    try:
        return netrc.netrc(os.environ.get("NETRC") or os.path.expanduser("~/.netrc")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def _wandb(report: Report) -> None:
    """wandb_project without a login: online logging would stop the run once training started (wandb asks for a
    key it cannot prompt for). Log offline instead, said; an explicit online mode is an error."""
    r = report.recipe
    env = os.environ.get("WANDB_MODE")
    if not r.wandb_project or r.wandb_mode in ("offline", "disabled") or (r.wandb_mode is None and env in (
            "offline", "disabled", "dryrun")) or _wandb_login():
        return
    login = "`wandb login` (or set WANDB_API_KEY)"
    if r.wandb_mode == "online" or env == "online":
        asked = "wandb_mode: online" if r.wandb_mode else "WANDB_MODE=online"
        report.problem("wandb_mode" if r.wandb_mode else "wandb_project",
                       f"{asked} logs to W&B online, but there is no W&B login here (no WANDB_API_KEY, no netrc entry)",
                       f"{login}, or set wandb_mode: offline")
        return
    report.recipe = r.model_copy(update={"wandb_mode": "offline"})
    report.notes.append(f"wandb_project: no W&B login here (no WANDB_API_KEY, no netrc entry), so the run logs offline "
                        f"(WANDB_MODE=offline, under {r.output_dir}/wandb; `wandb sync` uploads it later); to log "
                        f"online, {login} or set wandb_mode: online")


# ---------------------------------------------------------------- model: tokenizer and config, no weights

def _readable(name: str, recipe: Recipe, local_only: bool) -> str | None:
    """A path or hub id from_pretrained can read now; None when only a download would give it (check reads no
    network: a hub model counts when it is in the hub cache)."""
    from ftkit.models.tiny import is_tiny

    if is_tiny(name) or Path(name).exists() or not local_only:
        return name
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(name, revision=recipe.revision_of_model, local_files_only=True)
    except Exception:  # not cached, or not a hub id at all: either way nothing to read here  # noqa: BLE001
        return None


def model_checks(report: Report, local_only: bool = False) -> None:
    """The tokenizer round trip and the model built on the meta device, with the recipe's adapter applied."""
    r = report.recipe
    names = {k: getattr(r, k) for k in ("base_model", "tokenizer_config", "base_model_config") if getattr(r, k)}
    readable = {k: _readable(v, r, local_only) for k, v in names.items()}
    if missing := [names[k] for k, v in readable.items() if v is None]:
        report.not_run.append(f"tokenizer and model checks: {', '.join(missing)} is not on this machine (check reads "
                              "no network; train downloads it and runs them before loading the weights)")
        return
    local = r.model_copy(update=readable)
    report.tokenizer = _tokenizer(report, local)
    if report.tokenizer is not None and not any(p.where == "model_type" for p in report.problems):
        _meta_model(report, local)


def _tokenizer_key(recipe: Recipe) -> tuple[str, str]:
    """The option that picks the tokenizer, and how to fix a tokenizer that mangles text."""
    if recipe.tokenizer_type:
        return "tokenizer_type", ("remove tokenizer_type (AutoTokenizer loads the class the tokenizer was saved "
                                  "with), or name that class")
    return ("tokenizer_config" if recipe.tokenizer_config else "base_model",
            "use a tokenizer that covers this text (a byte-level BPE covers any text), or clean the data")


def _tokenizer(report: Report, recipe: Recipe):
    """The recipe's tokenizer (as train loads it), checked to encode and decode a probe text unchanged."""
    key, fix = _tokenizer_key(recipe)
    try:
        tok = report.collect(models.load_tokenizer, recipe)
    except Exception as e:  # a class that cannot read these files (T5Tokenizer on a BPE): no traceback  # noqa: BLE001
        cls = recipe.tokenizer_type or "AutoTokenizer"
        report.problem(key, f"{cls} cannot read the tokenizer files ({type(e).__name__}: {_first_line(e)})", fix)
        return None
    if tok is not None and (lost := round_trip(tok, [PROBE], key, fix, report)):
        report.problem(key, f"{type(tok).__name__} does not give text back: {lost}", fix)
    return tok


def round_trip(tok, texts, key: str, fix: str, report: Report, where: str = "") -> str | None:
    """How the first text that does not survive encode -> decode comes back (None when all do). Compared after
    NFKC normalisation (a tokenizer may normalise Unicode without losing text). An encoder that fails (a class
    whose required tokens, e.g. [UNK], the vocabulary lacks) is a problem of `key`."""
    for text in texts:
        try:
            ids = tok(text, add_special_tokens=False)["input_ids"]
        except Exception as e:  # noqa: BLE001 - the tokenizers library raises plain Exception
            report.problem(key, f"{type(tok).__name__} cannot encode text ({_first_line(e)})", fix)
            return None
        back = tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if unicodedata.normalize("NFKC", back) != unicodedata.normalize("NFKC", text):
            return f"{where}{_excerpt(text)} decodes as {_excerpt(back)}"
    return None


def _excerpt(text: str, size: int = 60) -> str:
    return repr(text[:size] + ("..." if len(text) > size else ""))


def _first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0][:200].rstrip(".")


def _meta_model(report: Report, recipe: Recipe) -> None:
    """Build the model from its config on the meta device (no weights, no memory) and apply the adapter: a
    model_type that cannot build this config, LoRA targets the model lacks, settings peft refuses. What fails
    on the meta device for another reason (an initialisation that computes on the weights) is not checked."""
    from accelerate import init_empty_weights

    from ftkit.models.adapters import apply_adapter
    from ftkit.models.load import model_config

    if (config := report.collect(model_config, recipe)) is None:
        return
    cls = getattr(transformers, recipe.model_type)
    try:
        with init_empty_weights():
            model = cls.from_config(config, trust_remote_code=recipe.trust_remote_code) if hasattr(
                cls, "from_config") else cls._from_config(config)  # Auto classes / a model class itself
    except (ValueError, TypeError, AttributeError) as e:  # e.g. AutoModelForSeq2SeqLM on a llama config
        report.problem("model_type", f"{recipe.model_type} cannot build this model ({config.model_type}): "
                       f"{_first_line(e)}", "use AutoModelForCausalLM")
        return
    if recipe.adapter and not recipe.lora_model_dir:  # a saved adapter brings its own targets
        try:
            report.collect(apply_adapter, recipe.model_copy(update={"loftq_config": None, "peft": None}), model)
        except Exception as e:  # noqa: BLE001 - see the docstring; train applies it to the real weights
            report.not_run.append(f"the adapter on the meta device ({type(e).__name__}: {_first_line(e)})")


# ---------------------------------------------------------------- rows

def row_checks(report: Report, tokenizer, prepared, prompt=None) -> None:
    """The prepared rows: a sample of their text round-trips through the tokenizer; the warm-up ends in time.
    `prompt`: the run's formats/prompt.Prompt (train hands its own; without one, it is built from the tokenizer)."""
    from ftkit.env import world_size
    from ftkit.train.args import total_steps

    r = report.recipe
    n = prepared.n_train  # a stream: the rows max_steps reads
    per_step = r.micro_batch_size * r.gradient_accumulation_steps * world_size()
    if not r.max_steps:  # with max_steps, config_checks said it already
        _warmup(report, total_steps(r, n, world_size()), f"{n} rows x {r.num_epochs:g} epochs / {per_step} rows per step")
    key, fix = _tokenizer_key(r)
    for where, texts in _sample_texts(r, prompt or Prompt(r, tokenizer), prepared):
        if lost := round_trip(tokenizer, texts, key, fix, report, where):
            report.problem(key, f"the data's text does not survive the tokenizer ({type(tokenizer).__name__}): {lost}",
                           fix)
            return


def _sample_texts(recipe: Recipe, prompt, prepared):
    """(where, texts) per dataset: the text pieces the first rows are tokenized from (SFT: the prompt format's
    segments, as data/sft.py encodes them), or the strings of the first preference rows (TRL tokenizes those)."""
    if recipe.rl or recipe.reward_model:
        rows = prepared.train.select(range(min(SAMPLE_ROWS, len(prepared.train))))
        yield "preference rows: ", [s for row in rows for s in _strings(row) if s.strip()]
        return
    from ftkit.data.files import load_raw
    from ftkit.formats import RowError
    from ftkit.formats.tokenize import merge_segments

    for i, spec in enumerate(recipe.datasets):
        raw = load_raw(spec, recipe, f"datasets.{i}")
        strategy = prompt.strategy(spec, f"datasets.{i}")
        texts = []
        for row in raw.rows.select(range(min(SAMPLE_ROWS, len(raw.rows)))):
            try:
                texts += [seg.text for seg in merge_segments(strategy.segments(row))]
            except (RowError, NotImplementedError):  # a bad row is the data checks' (with its line); tokens have no text
                continue
        yield f"{Path(spec.path).name}: ", texts


def _strings(value):
    """Every string inside a row's nested dicts and lists."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, (dict, list)):
        for v in value.values() if isinstance(value, dict) else value:
            yield from _strings(v)


# ---------------------------------------------------------------- after the weights load (train only)

def first_loss(recipe: Recipe, trainer) -> None:
    """loss_watchdog_threshold below the model's loss before any step: the watchdog would stop the run at its first
    logged steps and blame the learning rate. Measured on the first rows (no optimizer step, RNG untouched)."""
    if (threshold := recipe.loss_watchdog_threshold) is None:
        return
    import copy

    rows = trainer.train_dataset
    n = min(recipe.micro_batch_size, len(rows))
    batch = trainer.data_collator([rows[i] for i in range(n)])
    metrics = copy.deepcopy(getattr(trainer, "_metrics", None))  # TRL records metrics per loss call: not this one's
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        loss = float(trainer.compute_loss(trainer.model, trainer._prepare_inputs(batch)))
    if metrics is not None:
        trainer._metrics = metrics
    if not loss <= threshold:
        raise ConfigError(Problem(
            f"the model's loss before training is {loss:.4g} (first {n} rows), above "
            f"loss_watchdog_threshold {threshold:g}: the watchdog would stop the run at its first logged steps",
            recipe.source, "loss_watchdog_threshold", recipe.line_of("loss_watchdog_threshold"),
            fix=f"set loss_watchdog_threshold above {loss:.4g} (e.g. {2 * loss:.0f}), or remove it"))
    log.info(f"loss_watchdog_threshold {threshold:g}: the loss before training is {loss:.4g}, below it")


# ---------------------------------------------------------------- entry points

def before_data(recipe: Recipe, local_only: bool = False) -> Report:
    """train (and check): the config and model checks, before any row is prepared or weight loaded."""
    report = Report(recipe)
    config_checks(report, local_only)
    model_checks(report, local_only)
    for note in report.notes:
        log.info(note)
    return report


def check(recipe: Recipe, data: bool = False) -> Report:
    """`ftkit check [--data]`: what train checks before loading weights, reading nothing from the network;
    with `data`, the rows are prepared (and cached, as train would) and checked too."""
    from ftkit import data as data_prep

    report = before_data(recipe, local_only=True)
    if not data:
        report.not_run.append("row checks (a trainable row left, the rows' text through the tokenizer, the warm-up "
                              "against the run's length in steps): ftkit check RECIPE --data")
    elif report.tokenizer is None and not report.problems:
        report.not_run.append("row checks: they need the tokenizer, which is not on this machine")
    elif not report.problems:
        prompt = Prompt(report.recipe, report.tokenizer)  # one for preparing and checking the rows, as in train
        if (prepared := report.collect(data_prep.prepare, report.recipe, report.tokenizer, prompt=prompt)) is not None:
            row_checks(report, report.tokenizer, prepared, prompt)
    if recipe.loss_watchdog_threshold is not None:
        report.not_run.append("loss_watchdog_threshold against the loss before training: train measures it once "
                              "the weights are loaded, before the first step")
    for line in report.not_run:
        log.info(f"not checked: {line}")
    return report
