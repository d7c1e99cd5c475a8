"""The LM head's loss without the [tokens, vocabulary] logits (ftkit's CPU kernel under TRL's fused head), and
the CUDA kernels a recipe names. A plug-in (ftkit/hooks.py): on when the recipe names a kernel or training runs
on a CPU.

TRL 1.16's trainers (SFT, DPO, KTO, GRPO, RLOO) patch a fused LM head onto the model
(trl.trainer.utils.add_fused_lm_head): the forward runs the backbone, then scores each position's label
through ChunkedLogProbFunction in tiles of 4,096 tokens x 32,768 vocabulary entries, recomputing them in
backward; the full logits never exist. On CUDA a Triton kernel folds the tiles, for labelled positions only.
On CPU TRL folds them with about ten fp32 torch passes over strided views of a 4,096 x 32,768 buffer and
scores every position, prompt and padding included.

So on CPU ftkit stands `ChunkedCrossEntropy` where TRL calls its function (`install`, `Dispatch`): slices of
at most TILE logits (1 << 25: 261 tokens at a 128k vocabulary, the whole micro-batch of a tiny twin),
log-softmax by torch's fused logsumexp, labelled positions only; backward recomputes each slice and turns it
into the logits' gradient in place (softmax - one-hot). `ftkit bench memory --sections lm-head`, the loss of
4,096 tokens (a third -100) x 128,256 vocabulary x hidden 256, forward + backward: full logits 6.3 GB peak,
14.5 s CPU; TRL's tiles 4.9 GB, 41.0 s; this kernel 0.42 GB, 15.2 s. Loss and gradients equal the
full-logits loss to float tolerance (tests/test_chunked_loss.py). Elsewhere TRL's kernel runs unchanged.

CUDA kernels a recipe names (Liger's, Cut Cross-Entropy): which of them run here, applied, and said (apply_kernels).

Each computes what transformers' modules compute (speed and memory only), and needs CUDA and its package;
without them the recipe trains with transformers' modules and ftkit's chunked LM head, announced.
  liger_rope, liger_rms_norm, liger_layer_norm, liger_glu_activation
        Liger's patching of the model's family (rope, rms_norm, layer_norm, swiglu/geglu), on the instance
  liger_fused_linear_cross_entropy, liger_cross_entropy
        nothing to add: the loss never builds the logits already (TRL's fused LM head, a Triton kernel on
        CUDA; above). Liger's own replaces the model's forward, which TRL's SFTTrainer refuses.
  cut_cross_entropy
        CCE's linear_cross_entropy computes the LM head's loss on the steps that log no metrics (logged steps
        need entropy and accuracy: TRL's kernel), with exact gradients (filter_eps off).
"""
from __future__ import annotations

import importlib.util
from typing import Callable

import torch

from ftkit.log import log

TILE = 1 << 25  # logits per slice: 32M fp32 = 128 MiB, a few times that while a slice is live
OWN_OUTPUTS = {"log_probs", "entropy", "is_top1"}  # what SFT asks for; other fields go to TRL's kernel


def slice_tokens(vocab: int) -> int:
    return max(1, TILE // max(vocab, 1))


def _compute_dtype(hidden):
    """Under CPU autocast (bf16: true on a CPU) the projection runs in bf16, in backward as in forward."""
    return torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else hidden.dtype


def _project(hidden, weight, bias, scale: float, softcap: float | None, inv_t: float):
    """Logits of one slice in fp32 as TRL transforms them: x scale, softcap * tanh(. / softcap), / temperature;
    also tanh's value (None without softcapping), which backward needs."""
    z = torch.nn.functional.linear(hidden.to(weight.dtype), weight, bias).float()
    if scale != 1.0:
        z.mul_(scale)
    t = None
    if softcap:
        t = torch.tanh(z / softcap)
        z = t * softcap
    if inv_t != 1.0:
        z.mul_(inv_t)
    return z, t


class ChunkedCrossEntropy(torch.autograd.Function):
    """Per-token log p(label) of `hidden @ weight.T (+ bias)`, a slice of tokens at a time; optionally the
    entropy and whether the label is the (first) argmax, as TRL's ChunkedLogProbFunction returns them."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, temperature=1.0, softcap=None, scale=1.0, outputs=("log_probs",)):
        ctx.set_materialize_grads(False)
        n, step, dtype = hidden.shape[0], slice_tokens(weight.shape[0]), _compute_dtype(hidden)
        w, b = weight.to(dtype), None if bias is None else bias.to(dtype)
        log_z, log_probs = hidden.new_empty(n, dtype=torch.float32), hidden.new_empty(n, dtype=torch.float32)
        entropy = hidden.new_empty(n, dtype=torch.float32) if "entropy" in outputs else None
        top1 = hidden.new_empty(n, dtype=torch.bool) if "is_top1" in outputs else None
        for s in range(0, n, step):
            z, _ = _project(hidden[s:s + step], w, b, scale, softcap, 1 / temperature)
            lse = log_z[s:s + step] = torch.logsumexp(z, -1)
            log_probs[s:s + step] = z.gather(-1, targets[s:s + step, None]).squeeze(-1) - lse
            if top1 is not None:
                top1[s:s + step] = z.argmax(-1) == targets[s:s + step]
            if entropy is not None:  # H = -sum p log p (not log Z - sum p z: that cancels digits away)
                log_p = z.sub_(lse[:, None])
                entropy[s:s + step] = -log_p.exp().mul_(log_p).sum(-1)
        ctx.save_for_backward(hidden, weight, bias, targets, log_z, entropy)
        ctx.args = (scale, softcap, 1 / temperature, dtype)
        if top1 is not None:
            ctx.mark_non_differentiable(top1)
        return log_probs, entropy, None, None, top1

    @staticmethod
    def backward(ctx, g_logp, g_ent, *_):
        hidden, weight, bias, targets, log_z, entropy = ctx.saved_tensors
        scale, softcap, inv_t, dtype = ctx.args
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        n, step = hidden.shape[0], slice_tokens(weight.shape[0])
        w, b = weight.to(dtype), None if bias is None else bias.to(dtype)
        gh = torch.zeros(hidden.shape, dtype=torch.float32) if need_h else None
        gw = torch.zeros(weight.shape, dtype=torch.float32) if need_w else None
        gb = torch.zeros(weight.shape[0], dtype=torch.float32) if need_b else None
        for s in range(0, n, step):
            h, rows = hidden[s:s + step], slice(s, s + step)
            z, t = _project(h, w, b, scale, softcap, inv_t)
            log_p = z.sub_(log_z[rows, None])
            # dH/dz_j = -p_j (log p_j + H); d log p_y / dz_j = 1[j = y] - p_j, the latter in place on the slice
            ent = None if g_ent is None else log_p.exp() * (log_p + entropy[rows, None]) * -g_ent[rows, None]
            g = (log_z.new_zeros(h.shape[0]) if g_logp is None else g_logp[rows].float())[:, None]
            grad = log_p.exp_().mul_(-g)
            grad.scatter_add_(-1, targets[rows, None], g)
            if ent is not None:
                grad += ent
            if t is not None:  # through softcap * tanh(scale * y / softcap) / temperature
                grad.mul_((1 - t * t).mul_(scale * inv_t))
            elif scale * inv_t != 1.0:
                grad.mul_(scale * inv_t)
            grad = grad.to(dtype)
            if gh is not None:
                gh[s:s + step] = grad @ w
            if gw is not None:
                gw.addmm_(grad.t().float(), h.float())
            if gb is not None:
                gb += grad.sum(0, dtype=torch.float32)
        return (gh.to(hidden.dtype) if gh is not None else None, gw.to(weight.dtype) if gw is not None else None,
                gb.to(bias.dtype) if gb is not None else None, None, None, None, None, None)


def route(device: str, outputs, plain: bool, cce: bool) -> str:
    """Which kernel scores a call: "ftkit" (CPU, the fields SFT asks for), "cce" (CUDA, Cut Cross-Entropy asked
    for, log-probabilities only, no bias/scale/temperature: `plain`), else "trl"."""
    if device == "cpu" and set(outputs) <= OWN_OUTPUTS:
        return "ftkit"
    if device == "cuda" and cce and tuple(outputs) == ("log_probs",) and plain:
        return "cce"
    return "trl"


class Dispatch:
    """Stands where TRL's fused head calls ChunkedLogProbFunction.apply and sends each call to `route`'s kernel
    (`trl`: TRL's function; `cce`: set by apply_kernels below when the recipe asks for Cut Cross-Entropy)."""

    trl = None  # TRL's ChunkedLogProbFunction
    trl_compacts = None  # TRL's _use_triton: where its head passes labelled positions only
    cce = None

    @classmethod
    def apply(cls, hidden, weight, bias, targets, temperature, chunk_size, softcap=None, scale=1.0,
              outputs=("log_probs",)):
        plain = bias is None and scale == 1.0 and temperature == 1.0
        kernel = route(hidden.device.type, outputs, plain, cls.cce is not None)
        if kernel == "ftkit":
            return ChunkedCrossEntropy.apply(hidden, weight, bias, targets, temperature, softcap, scale, tuple(outputs))
        if kernel == "cce":
            return cls.cce(hidden, weight, targets, softcap), None, None, None, None
        return cls.trl.apply(hidden, weight, bias, targets, temperature, chunk_size, softcap, scale, outputs)


def install() -> bool:
    """Put Dispatch where TRL's fused LM head calls its kernel, and have the head pass only labelled positions
    on CPU too (TRL compacts them where its Triton kernel runs; on CPU it scores every position, padding
    included). Process-wide (every TRL trainer's fused head) and idempotent; False (announced) when TRL's
    fused head no longer has the names this relies on."""
    from trl.trainer import utils

    if getattr(utils, "_ChunkedLogProbFunction", None) is Dispatch:
        return True
    if not (hasattr(utils, "_ChunkedLogProbFunction") and hasattr(utils, "_use_triton")):
        log.warning("LM head: TRL's fused head changed (no _ChunkedLogProbFunction/_use_triton in trl.trainer.utils); "
                    "on CPU its own tiles compute the loss (slower, more memory)")
        return False
    Dispatch.trl, Dispatch.trl_compacts = utils._ChunkedLogProbFunction, utils._use_triton
    utils._ChunkedLogProbFunction = Dispatch
    utils._use_triton = lambda device: device.type == "cpu" or Dispatch.trl_compacts(device)  # labelled rows only
    return True


def describe(tokens: int, vocab: int, device: str) -> str:
    """One line for the log: the logits a micro-batch would hold, and what computes the loss instead."""
    full = tokens * vocab * 4 / 1e9
    if device == "cpu" and slice_tokens(vocab) >= tokens:
        return (f"LM head: the micro-batch's {tokens:,} x {vocab:,} logits ({full:.2f} GB) fit in one slice of ftkit's "
                "chunked cross-entropy (under TRL's fused head)")
    if device == "cpu":
        step = slice_tokens(vocab)
        return (f"LM head: loss and gradients in slices of {step:,} tokens x {vocab:,} vocabulary "
                f"({step * vocab * 4 / 1e9:.2f} GB of fp32 logits at a time) instead of the micro-batch's "
                f"{tokens:,} x {vocab:,} = {full:.2f} GB (ftkit's chunked cross-entropy under TRL's fused head)")
    return (f"LM head: TRL's fused head computes the loss in tiles of at most 4,096 tokens x 32,768 vocabulary "
            f"entries instead of the micro-batch's {tokens:,} x {vocab:,} fp32 logits ({full:.2f} GB)")


def applies(recipe) -> bool:
    """Kernels named, a CPU run (ftkit's chunked loss), or CCE still routed by an earlier run in this process (undone)."""
    return bool(kernels_named(recipe)) or not torch.cuda.is_available() or Dispatch.cce is not None


def sft_loss(recipe, model) -> None:
    """TRL's fused head with ftkit's chunked cross-entropy on CPU, said with the logits it spares."""
    install()
    vocab = model.get_output_embeddings().weight.shape[0]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    log.info(describe(recipe.micro_batch_size * recipe.sequence_len, vocab, device))


# ---------------------------------------------------------------- CUDA kernels a recipe names

LIGER = {"liger_rope": ("rope",), "liger_rms_norm": ("rms_norm",), "liger_layer_norm": ("layer_norm",),
         "liger_glu_activation": ("swiglu", "geglu")}  # recipe field -> Liger's keyword(s)
LOSS_KERNELS = ("liger_fused_linear_cross_entropy", "liger_cross_entropy")
PACKAGES = {"liger_kernel": "liger-kernel", "cut_cross_entropy": "cut-cross-entropy"}  # module -> pip name


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def kernels_named(recipe) -> list[str]:
    return [k for k in (*LIGER, *LOSS_KERNELS, "cut_cross_entropy") if getattr(recipe, k, False)]


def plan(recipe, cuda: bool, has: Callable[[str], bool] | None = None) -> tuple[dict, bool, list[str]]:
    """(Liger's keyword arguments, or {} when none apply; whether CCE computes the loss; lines to announce)."""
    has = has or installed
    named = kernels_named(recipe)
    if not named:
        return {}, False, []
    if not cuda:
        return {}, False, [f"{', '.join(named)}: CUDA kernels, not used on this machine (no CUDA device); the same "
                           "training with transformers' modules and ftkit's chunked LM head"]
    trainer = recipe.rl or ("reward" if recipe.reward_model else None)  # TRL computes these losses from the logits
    if trainer:
        said = [f"{k}: not used by {trainer} runs (TRL's trainer computes its loss from the model's logits)"
                for k in named if k in (*LOSS_KERNELS, "cut_cross_entropy")]
        named = [k for k in named if k in LIGER]
    else:
        said = [f"{k}: the LM head's loss never builds the logits already (TRL's fused head, Triton on CUDA); "
                "Liger's would replace the model's forward, which TRL's trainer refuses"
                for k in named if k in LOSS_KERNELS]
    liger = [k for k in named if k in LIGER]
    kwargs = {}
    if liger and not has("liger_kernel"):
        said.append(f"{', '.join(liger)}: liger-kernel is not installed (pip install 'ftkit[gpu]'); transformers' modules")
    elif liger:
        kwargs = {kw: k in liger for k in LIGER for kw in LIGER[k]}
        kwargs.update(cross_entropy=False, fused_linear_cross_entropy=False)  # Liger defaults them on
        said.append(f"Liger kernels: {', '.join(liger)}")
    cce = "cut_cross_entropy" in named and has("cut_cross_entropy")
    if "cut_cross_entropy" in named:
        said.append("cut_cross_entropy: Cut Cross-Entropy computes the loss on steps that log no metrics (exact "
                    "gradients, filter_eps off)" if cce else
                    "cut_cross_entropy: cut-cross-entropy is not installed (pip install 'ftkit[gpu]'); TRL's fused head")
    return kwargs, cce, said


def apply_kernels(recipe, model, cuda: bool | None = None) -> None:
    """Patch `model` (its base under an adapter) with the Liger kernels the recipe names, and route the LM head's
    loss through CCE, where CUDA (default: whether torch sees a device) and the packages allow; say what runs."""
    kwargs, cce, said = plan(recipe, torch.cuda.is_available() if cuda is None else cuda)
    for line in said:
        log.info(line)
    Dispatch.cce = _cce_loss if cce else None
    if kwargs:
        from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN, _apply_liger_kernel_to_instance

        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        if base.config.model_type not in MODEL_TYPE_TO_APPLY_LIGER_FN:
            log.info(f"Liger has no kernels for model type {base.config.model_type!r}: transformers' modules")
            return
        _apply_liger_kernel_to_instance(model=base, **kwargs)


patch_model = apply_kernels  # the hook (ftkit/hooks.py)


def _cce_loss(hidden, weight, targets, softcap):
    """log p(label) per labelled position by Cut Cross-Entropy, in the autocast dtype where one is active."""
    from cut_cross_entropy import linear_cross_entropy

    dtype = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else hidden.dtype
    return -linear_cross_entropy(hidden.to(dtype), weight.to(dtype), targets, softcap=softcap, reduction="none",
                                 filter_eps=None, impl="cce")
