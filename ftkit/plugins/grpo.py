"""`rl: grpo` (and `rl: gdpo`), the part that differs from SFT: TRL's GRPOConfig + GRPOTrainer, the reward
functions, the prompt rows, and the mean reward on held-out prompts as the before/after measurement.
train/run.py and data/prepare.py do the rest: they reach this plug-in through ftkit/hooks.py.

Each step TRL samples `trl.num_generations` completions per prompt with transformers' generate (on the policy
itself: on-policy, on a CPU too), scores each with the reward functions (weighted sum), and turns the rewards
into advantages relative to the prompt's group: A = (r - mean(group)) / std(group). The loss raises the
log-probability of completions with A > 0 and lowers it for A < 0 (PPO-clipped ratio), plus rl_beta x KL to the
reference model when rl_beta > 0. GDPO (rl: gdpo) normalizes each reward within the group before summing.
micro_batch_size counts completions: 2 prompts x 4 generations fill micro_batch_size 8.

Reference model (rl_beta > 0): with an adapter, the policy with its adapter at step 0 (TRL: adapter disabled
for a fresh one); with a full fine-tune TRL loads base_model again, so a run whose model differs from the file
(added tokens, config overrides, reinit_weights) is refused there.

The rows: prompts, and the columns the reward functions read, from any dataset; drops counted.
Two ways in, as in Axolotl:
  no type               rows already hold `prompt`: a text (one user turn) or a list of {role, content} messages
  type: MODULE.FUNCTION  a transform named by import path (load_function: next to the recipe):
                        FUNCTION(cfg, dataset_idx=i) returns map_fn or (map_fn, map_kwargs); map_fn(row) (or
                        map_fn(row, tokenizer=...)) returns the new columns; map_kwargs.remove_columns drops the
                        raw ones (a list, or "__all__")
Every other column passes through: TRL hands them to each reward function as keyword arguments. Example:
    {"question": "What is 2 plus 3?", "answer": "5"}  --transform-->
    {"prompt": [{"role": "user", "content": "What is 2 plus 3?"}], "answer": "5"}
    reward(completions=[[{"role": "assistant", "content": "5"}], ...], answer=["5", ...], ...) -> [1.0, ...]
TRL renders the prompt with the chat template (the prompt inference sends) and generates the completions. A row
with an empty prompt, or one longer than sequence_len tokens, is dropped and counted.
"""
from __future__ import annotations

import importlib
import inspect
import sys
from functools import partial
from pathlib import Path

from ftkit import models
from ftkit.data.files import RawData, locate_row
from ftkit.errors import DataError, FtkitError, Problem
from ftkit.formats.prompt import encode_messages, user_turn
from ftkit.log import log
from ftkit.plugins import pairs
from ftkit.recipe import DatasetSpec, Recipe
from ftkit.recipe.base import GRPO
from ftkit.train.result import Method

HISTORY_KEYS = {"loss": "loss", "reward": "reward", "reward_std": "reward_std", "kl": "kl", "entropy": "entropy",
                "completions/mean_length": "completion_length", "frac_reward_zero_std": "zero_std_groups"}
SIGNATURE = "NAME(completions, **kwargs) -> list[float], one reward per completion"
REASONS = ("empty", "too_long")  # why a row is dropped, counted as stats["dropped_<reason>"]
TRANSFORM = "FUNCTION(cfg, **kwargs) returning map_fn(row) -> {'prompt': [...messages], ...}"
refused_options = pairs.refused_options  # the option values no rl: method can honour (a hook)


def applies(recipe: Recipe) -> bool:
    return recipe.rl in GRPO


def rows(recipe: Recipe):
    """This module converts the datasets into prompt rows (convert, REASONS, mixed_stats)."""
    return sys.modules[__name__]


# ---------------------------------------------------------------- the rows

def data_files(recipe: Recipe) -> list[str]:
    """The transform modules the datasets name: part of the prepared-data fingerprint (editing one re-prepares)."""
    dirs = search_dirs(recipe)
    specs = [*recipe.datasets, *recipe.test_datasets]
    found = [module_file(s.type.rpartition(".")[0], dirs) for s in specs if isinstance(s.type, str) and "." in s.type]
    return [str(f) for f in found if f]


def _transform(ds, spec: DatasetSpec, recipe: Recipe, tokenizer, where: str, num_proc, fingerprint):
    """The dataset through its `type:` transform (Axolotl's GRPO dataset transform)."""
    made = load_function(spec.type, recipe, f"{where}.type", "dataset transform", TRANSFORM)(
        recipe, dataset_idx=int(where.rsplit(".", 1)[-1]))
    map_fn, kwargs = made if isinstance(made, tuple) else (made, {})
    kwargs = dict(kwargs or {})
    if "tokenizer" in inspect.signature(map_fn).parameters:
        map_fn = partial(map_fn, tokenizer=tokenizer)
    remove = kwargs.pop("remove_columns", None)
    remove = ds.column_names if remove == "__all__" else [c for c in remove or [] if c in ds.column_names]
    try:
        return ds.map(map_fn, remove_columns=remove, num_proc=num_proc, load_from_cache_file=False,
                      new_fingerprint=f"{fingerprint}-transform", desc=f"{spec.type} on {Path(spec.path).name}",
                      **kwargs)
    except Exception as e:  # the user's function failed on a row: name it, the dataset and the error
        raise FtkitError(f"the dataset transform {spec.type} failed on {spec.path}: {type(e).__name__}: {e}",
                         file=recipe.source, where=f"{where}.type",
                         fix="make map_fn return {'prompt': [...messages]} (and the columns your rewards read) "
                             "for every row of this dataset") from e


def _prompt(row: dict, files: list[str], index: int) -> list[dict]:
    """The row's prompt as messages (a text is one user turn); an error naming the file and line otherwise."""
    value = row.get("prompt")
    if isinstance(value, str):
        return user_turn(value)
    if isinstance(value, list) and all(isinstance(m, dict) and isinstance(m.get("role"), str)
                                       and isinstance(m.get("content"), str) for m in value):
        return [{"role": m["role"], "content": m["content"]} for m in value]
    file, line, n = locate_row(files, index)
    raise DataError(Problem(f"field 'prompt' must be a text or a list of {{role, content}} messages, got "
                            f"{type(value).__name__}", file, None if line else f"row {n + 1}", line,
                            "give each row a prompt, or a type: transform that builds one (recipes/llama/grpo.yml)"))


def convert(raw: RawData, spec: DatasetSpec, recipe: Recipe, tokenizer, where: str, num_proc: int | None,
            fingerprint: str) -> tuple[object, dict]:
    """One dataset as GRPO rows {prompt: messages, ...its other columns}, drops counted per reason."""
    ds = raw.rows
    if isinstance(spec.type, str):
        ds = _transform(ds, spec, recipe, tokenizer, where, num_proc, fingerprint)
    if "prompt" not in ds.column_names:
        raise DataError(Problem(f"the rows have no 'prompt' column (columns: {', '.join(ds.column_names)})",
                                raw.files[0], f"{where}.type", fix="add a type: transform that builds the prompt "
                                "(e.g. type: rewards.arithmetic_prompt, see recipes/llama/rewards.py)"))

    def one(row, idx):
        prompt = _prompt(row, raw.files, raw.first_row + idx)
        if not prompt or any(not m["content"].strip() for m in prompt):
            reason = "empty"
        else:
            reason = "too_long" if len(encode_messages(tokenizer, prompt, True)) > recipe.sequence_len else ""
        return {"prompt": prompt, "_drop": reason}

    marked = ds.map(one, with_indices=True, num_proc=num_proc, load_from_cache_file=False,
                    new_fingerprint=f"{fingerprint}-prompts", desc=f"reading {Path(spec.path).name}")
    kept, stats, counts = pairs.keep_marked(marked, len(raw.rows), REASONS, fingerprint)
    if not len(kept):
        raise DataError(Problem(f"no usable prompts: {counts['empty']} empty, {counts['too_long']} longer than "
                                f"sequence_len={recipe.sequence_len}", raw.files[0], f"{where}.path",
                                fix="check the prompts, or raise sequence_len"))
    return kept, stats


def mixed_stats(ds) -> dict:
    """Nothing beyond the counts: TRL renders the prompts when it generates."""
    return {}


# ---------------------------------------------------------------- the trainer

def trainer_class():
    from trl import GRPOTrainer

    return GRPOTrainer


def _model_dir(name: str, recipe: Recipe) -> Path | None:
    """A local directory holding a sequence-classification model (or its adapter): a reward model for TRL."""
    for base in search_dirs(recipe):
        path = Path(base) / name
        if path.is_dir() and any((path / f).is_file() for f in ("config.json", "adapter_config.json")):
            return path.resolve()
    return None


def reward_functions(recipe: Recipe) -> list:
    """trl.reward_funcs as TRL takes them: functions (by import path, next to the recipe) or reward-model
    directories. A path that does not import, or a function TRL cannot call, is an error naming the key."""
    out = []
    for i, name in enumerate(recipe.trl.reward_funcs or []):
        key = f"trl.reward_funcs.{i}"
        if (path := _model_dir(name, recipe)) is not None:
            log.info(f"{key}: the reward model in {path} scores prompt + completion")
            out.append(str(path))
            continue
        fn = load_function(name, recipe, key, "reward function", SIGNATURE)
        params = inspect.signature(fn).parameters.values()
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            raise FtkitError(f"reward function {name!r} takes no **kwargs: TRL calls it with prompts=, completions=, "
                             "completion_ids= and every column of the dataset", file=recipe.source, where=key,
                             fix=f"define it as {SIGNATURE}")
        out.append(fn)
    return out


def _reward_tokenizers(funcs: list) -> dict:
    """A reward-model directory scores text rendered by its own tokenizer and chat template (saved beside it); TRL
    would take the base model's (an adapter's config names the base)."""
    from transformers import AutoTokenizer

    toks = [AutoTokenizer.from_pretrained(f) if isinstance(f, str) and (Path(f) / "tokenizer_config.json").is_file()
            else None for f in funcs]
    return {"reward_processing_classes": toks} if any(t is not None for t in toks) else {}


def _check_reference(recipe: Recipe, model, tokenizer) -> None:
    """TRL builds a full fine-tune's reference by loading base_model again: refuse when that is not this model."""
    from peft import PeftModel

    if not recipe.rl_beta or isinstance(model, PeftModel):
        return
    from transformers import AutoConfig

    on_disk = AutoConfig.from_pretrained(models.resolve_model_path(recipe.base_model),
                                         trust_remote_code=recipe.trust_remote_code)
    grew = getattr(on_disk, "vocab_size", None) != model.config.vocab_size
    differs = [why for why, bad in ((f"its embeddings grew to {model.config.vocab_size} rows", grew),
                                    ("overrides_of_model_config changed it", bool(recipe.overrides_of_model_config)),
                                    ("reinit_weights gave it new weights", recipe.reinit_weights)) if bad]
    if differs:
        raise FtkitError(f"rl_beta > 0 needs a reference model; with a full fine-tune TRL loads base_model again as "
                         f"the reference, which would not be the model trained here ({'; '.join(differs)})",
                         file=recipe.source, where="rl_beta",
                         fix="use adapter: lora (the reference is the adapter at step 0), or rl_beta: 0 (no reference)")


def method(recipe: Recipe) -> Method:
    """The GRPO Method; the reward functions are imported now, before any data or model loads."""
    funcs = reward_functions(recipe)

    def trainer_kwargs(recipe: Recipe, model, tokenizer) -> dict:
        _check_reference(recipe, model, tokenizer)
        return {"reward_funcs": funcs, **_reward_tokenizers(funcs)}

    return Method(recipe.rl, trainer_class, trainer_kwargs, measure, HISTORY_KEYS)


# ---------------------------------------------------------------- before / after

def measure(recipe: Recipe, trainer, tokenizer, prepared, before: bool) -> dict:
    """Mean reward of completions sampled for held-out prompts (num_generations each), by TRL's own evaluation.
    The sampling is seeded the same before and after training, and leaves the training's random stream alone."""
    import torch

    rows = pairs.heldout(recipe, tokenizer, prepared, convert, say=before)
    if rows is None:
        return {"reward": {}}
    if before and (recipe.fsdp or recipe.deepspeed):
        log.info("no held-out reward before training under fsdp/deepspeed (the engine prepares the model in train())")
        return {"reward": {}}
    with torch.random.fork_rng():
        torch.manual_seed(recipe.seed)
        trainer.evaluate(eval_dataset=rows)
    logged = trainer.state.log_history[-1]
    per_func = {k.split("/")[1]: v for k, v in logged.items() if k.startswith("eval_rewards/") and k.endswith("/mean")}
    return {"reward": {"n": len(rows), "generations": trainer.num_generations_eval, "mean": logged["eval_reward"],
                       "per_func": per_func, "completion_length": logged.get("eval_completions/mean_length")}}


# ---------------------------------------------------------------- functions a recipe names by import path
# As Axolotl names them: `rewards.correct_sum` is `correct_sum` in rewards.py (or rewards/__init__.py). Reward
# functions (`trl.reward_funcs`) and prompt transforms (`datasets[].type`) are found this way. The module is looked
# up in the recipe's folder first, then the working directory (Axolotl imports from the working directory only, so
# a recipe run from elsewhere finds its rewards.py here too). Two recipes in different folders may each have a
# rewards.py: the one next to the recipe being run is the one imported.

def search_dirs(recipe: Recipe) -> list[str]:
    """The recipe's folder, then the working directory."""
    dirs = [str(Path(recipe.source).resolve().parent)] if recipe.source else []
    return list(dict.fromkeys([*dirs, str(Path.cwd())]))


def module_file(module: str, dirs: list[str]) -> Path | None:
    """The file `module` (dotted) resolves to in the first of `dirs` that holds it."""
    rel = Path(*module.split("."))
    for d in dirs:
        for candidate in (Path(d) / rel.with_suffix(".py"), Path(d) / rel / "__init__.py"):
            if candidate.is_file():
                return candidate.resolve()
    return None


def _import(module: str, dirs: list[str]):
    """Import `module` with `dirs` searched first; a module of that name imported from another file before (the
    rewards.py of another recipe) is imported again from the file found now."""
    wanted = module_file(module, dirs)
    cached = sys.modules.get(module)
    if wanted and cached is not None and Path(getattr(cached, "__file__", "") or "").resolve() != wanted:
        for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
            del sys.modules[name]
    sys.path[:0] = dirs
    try:
        importlib.invalidate_caches()
        return importlib.import_module(module)
    finally:
        del sys.path[:len(dirs)]


def load_function(dotted: str, recipe: Recipe, key: str, what: str, example: str):
    """The function a dotted path names; an error naming the recipe file, the key and the fix when the path does
    not import, the module lacks the name, or the name is not a function."""
    module, _, name = dotted.rpartition(".")
    dirs = search_dirs(recipe)
    where = f" (looked in {', '.join(dirs)})"
    fix = f"define {example} in {module or 'MODULE'}.py next to the recipe, and name it {module or 'MODULE'}.{name}"
    if not module:
        raise FtkitError(f"{what} {dotted!r} is not an import path (MODULE.FUNCTION)", file=recipe.source, where=key,
                         fix=fix)
    try:
        mod = _import(module, dirs)
    except ModuleNotFoundError as e:
        raise FtkitError(f"{what} {dotted!r} does not import: no module named {e.name!r}{where}", file=recipe.source,
                         where=key, fix=fix) from None
    except Exception as e:  # the user's module raised while importing: say which and why
        raise FtkitError(f"{what} {dotted!r}: importing {module} failed: {type(e).__name__}: {e}", file=recipe.source,
                         where=key, fix=f"fix {module_file(module, dirs) or module}") from e
    fn = getattr(mod, name, None)
    if not callable(fn):
        found = "has no" if fn is None else "has a non-function"
        raise FtkitError(f"{what} {dotted!r}: {mod.__file__} {found} {name!r}", file=recipe.source, where=key, fix=fix)
    return fn
