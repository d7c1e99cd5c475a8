"""`ftkit train`: one path for SFT and every `rl:` method, top to bottom.

build: precision -> tokenizer and chat template -> the run's prompt -> data -> model (adapter, quantization) ->
the method's trainer with the shared plumbing (callbacks, checkpoints, evals, tracking); run: measure before ->
train (resume) -> measure after -> save. train/args.py turns the recipe into the method's TRL config; the method
(train/sft.py; the others are plug-ins reached through ftkit/hooks.py: ftkit/plugins/preference.py, grpo.py,
reward.py) supplies only what else differs: its trainer, the trainer's extra arguments (collator, reference
model, reward functions) and its before/after measurement. TRL and peft do the training.
"""
from __future__ import annotations

import math
import sys
import time
from typing import NamedTuple

from ftkit import data, hooks, models
from ftkit.formats.prompt import Prompt
from ftkit.log import log
from ftkit.recipe import Recipe
from ftkit.train.result import Method, TrainResult

# The training modules import transformers, peft and TRL (seconds); they load when a run starts, so
# `import ftkit.train` stays instant for `ftkit memory` and the launcher.


def method_for(recipe: Recipe) -> Method:
    """SFT, or the method a plug-in gives for `rl:` or `reward_model:` (GRPO imports its reward functions now: a
    bad path fails before data and model)."""
    from ftkit.train import sft

    return next(iter(hooks.call(recipe, "method", recipe)), sft.SFT)


class Built(NamedTuple):
    """A run up to its first step: everything `run` trains and measures (tests inspect it without training)."""

    method: Method
    prompt: Prompt  # formats/prompt.py: the rows' formats, the template, stop tokens; made once, handed down
    prepared: data.Prepared
    trainer: object  # the TRL trainer; trainer.model is the model being trained, trainer.args its config

    @property
    def tokenizer(self):
        return self.prompt.tokenizer


def build(recipe: Recipe, callbacks=(), overwrite: bool = False) -> Built:
    """precision -> tokenizer -> data -> model -> the method's TRL trainer with the shared plumbing."""
    from transformers import set_seed

    from ftkit.train import args as trainer_args
    from ftkit.train import callbacks as cb
    from ftkit.train import outputs, preflight
    from ftkit.train.save import no_draft_card

    outputs.check(recipe, overwrite)  # output_dir: a folder ftkit may write into (not a file, not a user's folder)
    checked = preflight.before_data(recipe)  # what `ftkit check` refuses: optimizer, hub, model_type, LoRA targets...
    checked.raise_problems()
    recipe = checked.recipe  # announced corrections (W&B offline without a login)
    method = method_for(recipe)
    precision = models.resolve_precision(recipe)  # bf16/fp16/tf32: auto -> what this device has
    tokenizer = checked.tokenizer  # special tokens, the run's chat template, pad check; round-tripped
    prompt = Prompt(recipe, tokenizer)  # read by data preparation, the row checks and the save
    prepared = data.prepare(recipe, tokenizer, prompt=prompt)  # the method's rows, drops counted, cached, packed (SFT)
    if outputs.is_main_process():  # one summary per run, not one per process
        log.info(prepared.summary())
    preflight.row_checks(checked, tokenizer, prepared, prompt)  # the rows' text survives the tokenizer; warm-up < run
    checked.raise_problems()
    set_seed(recipe.seed)  # the adapter's random init (and new token rows) follow the recipe's seed, in any process
    model = models.load_model(recipe, tokenizer, precision)  # dtype or 4/8-bit, adapter
    hooks.call(recipe, "patch_model", recipe, model)  # the CUDA kernels the recipe names (Liger, CCE): said
    args = trainer_args.config(recipe, precision, prepared.eval is not None, prepared.n_train)  # train/args.py
    _fresh_bnb_overrides()
    trainer = method.trainer_class()(
        model=model, args=args, train_dataset=prepared.train, eval_dataset=prepared.eval, processing_class=tokenizer,
        callbacks=cb.build(recipe, prepared) + list(callbacks),  # Ctrl-C, ReLoRA, LISA, watchdog, checkpoints...
        **method.trainer_kwargs(recipe, model, tokenizer))  # SFT: packing collator; DPO/KTO: reference model
    cb.plain_progress(trainer)  # TQDM_DISABLE=1 (batch runs, CI): a few plain lines, not a log dict per step
    _full_modules_in_compute_dtype(trainer.model, precision)
    no_draft_card(trainer)  # TRL's draft README.md at each checkpoint would replace the card in output_dir
    preflight.first_loss(recipe, trainer)  # loss_watchdog_threshold below the loss before step 1: refused now
    hooks.call(recipe, "trainer_built", recipe, trainer)  # packed rows: TRL would count one row's width per batch
    return Built(method, prompt, prepared, trainer)


def _fresh_bnb_overrides() -> None:
    """bitsandbytes keeps the Trainer's "embeddings in 32-bit" optimizer overrides in a process-wide manager, keyed
    by (param group, index): a second run in one process (a notebook) would give its own parameters at those places
    32-bit states. Start each run's optimizer from an empty manager."""
    if "bitsandbytes" in sys.modules:
        sys.modules["bitsandbytes"].optim.GlobalOptimManager.get_instance().initialize()


def _full_modules_in_compute_dtype(model, precision) -> None:
    """TRL casts every trainable weight of a 4/8-bit model to bf16 (QLoRA's recipe). LoRA layers cast their input
    to their own dtype, but a module trained in full (lora_modules_to_save: lm_head, embed_tokens) does not: in
    an fp32 run (a CPU) its bf16 weight meets fp32 activations and the matmul fails. Put those back in the
    run's compute dtype; LoRA A/B keep TRL's choice, except under ZeRO-3, which flattens every trainable weight
    into one buffer of one dtype (its optimizer asserts on two)."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    dtype, zero3, cast = precision.dtype, is_deepspeed_zero3_enabled(), []
    for name, param in model.named_parameters():
        if param.requires_grad and (zero3 or "lora_" not in name) and param.dtype != dtype \
                and param.is_floating_point():
            param.data = param.data.to(dtype)
            cast.append(name)
    if zero3 and any("lora_" in name for name in cast):
        log.info(f"ZeRO-3: LoRA weights in {dtype} too, like every weight trained (ZeRO-3 holds them in one buffer)")


def run(recipe: Recipe, callbacks=(), overwrite: bool = False, resume_changed_data: bool = False) -> TrainResult:
    """Train as the recipe says and report what changed. `callbacks`: extra TrainerCallbacks (notebook plots).

    output_dir is ftkit's (train/outputs.py): a non-empty folder ftkit did not write is refused unless
    `overwrite`; one training at a time holds it. A run the loss watchdog stops, or whose weights are not finite,
    returns with `result.ok` False and saves no model. A full disk raises RunFailed naming what was kept; Ctrl-C
    raises Interrupted after writing a checkpoint. A checkpoint of other data is resumed only with
    `resume_changed_data`."""
    from ftkit.env import die_with_parent
    from ftkit.train import outputs

    die_with_parent()  # data workers forked by this run die with it, even when it is killed
    with outputs.claim(recipe, overwrite) as earlier:  # checked, locked, marked as ftkit's
        try:
            return _train(recipe, callbacks, overwrite, earlier, resume_changed_data)
        finally:
            hooks.call(recipe, "run_end", recipe)  # e.g. after DeepSpeed/FSDP the next run here starts plain


def _train(recipe: Recipe, callbacks, overwrite: bool, earlier: dict | None, changed_ok: bool) -> TrainResult:
    import torch

    from ftkit.errors import is_disk_full
    from ftkit.infer.generate import generate
    from ftkit.train import checkpoint_files, checkpoints, outputs
    from ftkit.train.allocator import set_cpu_malloc
    from ftkit.train.callbacks import StopOnCtrlC
    from ftkit.train.result import finish

    t0 = time.time()
    if not torch.cuda.is_available():
        set_cpu_malloc()  # CPU: glibc's malloc, or FTKIT_CPU_MALLOC=lean (see train/allocator.py)
    method, prompt, prepared, trainer = build(recipe, callbacks, overwrite)
    tokenizer = prompt.tokenizer
    if outputs.is_main_process():
        outputs.check_space(recipe, trainer.model, prepared.n_train)  # a warning now, not a lost run at the end
    trainable, total = models.count_parameters(trainer.model)
    prompts = recipe.eval_prompts
    samples_before = generate(trainer.model, tokenizer, recipe, prompts, prompt=prompt) if prompts else []
    before = method.measure(recipe, trainer, tokenizer, prepared, before=True)  # eval loss / held-out pairs
    resumed_from = checkpoints.resume_from(recipe, prepared.data, changed_ok)  # explicit or newest complete checkpoint
    if not resumed_from:
        outputs.start_afresh(recipe, earlier, overwrite)  # the earlier run's checkpoints would mix with this run's
    hooks.call(recipe, "resume", trainer, resumed_from)  # a stream continues at its saved position
    existing = {d.name for _, d in checkpoint_files.numbered(recipe.output_dir)}
    ctrl_c = next(c for c in trainer.callback_handler.callbacks if isinstance(c, StopOnCtrlC))
    try:
        if resumed_from and not (recipe.deepspeed or recipe.fsdp) and checkpoints.is_last_step(trainer, resumed_from):
            checkpoints.finish_from(recipe, trainer, resumed_from)  # e.g. after a full disk at the final save: just save it
        else:
            trainer.train(resume_from_checkpoint=resumed_from)
    except Exception as e:
        if is_disk_full(e, recipe.output_dir):
            raise outputs.disk_full(recipe, f"checkpoint-{trainer.state.global_step}", e, existing) from None
        raise
    finally:
        ctrl_c.restore()
    if ctrl_c.step is not None:
        raise _interrupted(recipe, ctrl_c.step)
    after = method.measure(recipe, trainer, tokenizer, prepared, before=False)
    samples_after = generate(trainer.model, tokenizer, recipe, prompts, prompt=prompt) if prompts else []

    logged = [h for h in trainer.state.log_history if "loss" in h and "step" in h]
    losses = [(h["step"], h["loss"]) for h in logged]
    if not losses or not all(math.isfinite(v) for _, v in losses):
        log.warning("no finite training loss was logged")
    finished = finish(trainer, resumed_from)  # diverged: the watchdog stopped it, or weights not finite
    result = TrainResult(
        output_dir=recipe.output_dir, method=method.name, first_loss=losses[0][1] if losses else float("nan"),
        final_loss=losses[-1][1] if losses else float("nan"), steps=trainer.state.global_step,
        seconds=time.time() - t0, losses=losses,
        history=[{"step": h["step"], **{short: h.get(key) for key, short in method.history_keys.items()}}
                 for h in logged],
        **{f"{k}_before": v for k, v in before.items()}, **{f"{k}_after": v for k, v in after.items()},
        samples_before=[{"prompt": p, "completion": c} for p, c in zip(prompts, samples_before)],
        samples_after=[{"prompt": p, "completion": c} for p, c in zip(prompts, samples_after)],
        tokens_seen=getattr(trainer, "_total_train_tokens", None) or None,  # SFT (real tokens: count_real_tokens)
        trainable_params=trainable, total_params=total, data=prepared.stats,
        runtime=finished, diverged=finished["diverged"])
    result.model = trainer.model  # not a field, so not in metrics.json: callers can generate or compare logits
    result.saved_to = str(_save(recipe, trainer, prompt, result, existing))
    if outputs.is_main_process():  # one summary per run, not one per process
        log.info(result.summary())
        if not result.diverged:
            log.info(f"saved to {recipe.output_dir}")
    return result


def _save(recipe: Recipe, trainer, prompt: Prompt, result, existing: set[str]):
    """save_run; a full disk raises the error naming what was kept, after saving the finished model on another disk
    when there is no checkpoint to resume from (outputs.rescue)."""
    from ftkit.errors import is_disk_full
    from ftkit.train import checkpoint_files, outputs
    from ftkit.train.save import save_run

    try:
        return save_run(recipe, trainer, prompt, result, diverged=result.diverged)
    except Exception as e:
        if not is_disk_full(e, recipe.output_dir):
            raise
        intact = any(checkpoint_files.problem_with(d) is None for _, d in checkpoint_files.numbered(recipe.output_dir))
        rescued = None if intact or result.diverged else outputs.rescue(recipe, lambda folder: save_run(
            recipe, trainer, prompt, result, folder=folder))
        raise outputs.disk_full(recipe, "the final model", e, existing, rescued) from None


def _interrupted(recipe: Recipe, step: int):
    """The error after a Ctrl-C: where the checkpoint is and the command that continues the run."""
    from pathlib import Path

    from ftkit.errors import Problem
    from ftkit.train import checkpoint_files
    from ftkit.train.outputs import Interrupted

    written = Path(recipe.output_dir) / f"checkpoint-{step}"
    intact = next((d for _, d in checkpoint_files.numbered(recipe.output_dir) if checkpoint_files.problem_with(d)
                   is None), None)
    where = (f"checkpoint {written} written" if intact == written else
             f"the newest intact checkpoint is {intact}" if intact else "no checkpoint could be written")
    command = f"ftkit train {recipe.source or 'RECIPE'} --resume_from_checkpoint={intact}"
    return Interrupted(Problem(f"interrupted (Ctrl-C) after step {step}; {where}; no final model was saved",
                               recipe.source, fix=f"continue with: {command}" if intact else
                               "run again (the run had no checkpoint to continue from)"))
