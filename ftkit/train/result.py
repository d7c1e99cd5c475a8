"""The seam between the one run skeleton (train/run.py) and a method (sft, preference, grpo, reward): what the
method supplies (Method), and what the run showed (TrainResult, written to output_dir/metrics.json, with
what the run's plumbing saw at the end: `finish`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class Method:
    """What a training method supplies to the one run skeleton: only what differs between methods. Its rows come
    from data.prepare, its TRL config from train/args.py; everything else is shared."""

    name: str  # sft, dpo, ipo, kto, orpo, simpo, grpo, gdpo, reward
    trainer_class: Callable  # () -> the TRL trainer class
    trainer_kwargs: Callable  # (recipe, model, tokenizer) -> extra trainer arguments: collator, reference model
    measure: Callable  # (recipe, trainer, tokenizer, prepared, before) -> {"eval_loss"|"heldout"|"reward": ...}
    history_keys: dict  # trainer log key -> TrainResult.history key


@dataclass
class TrainResult:
    """Loss curve, before/after measurements and samples of one run (SFT or an `rl:` method).

    SFT measures eval loss on the val_set_size split; preference methods measure held-out pairs
    (plugins/pairs.py pair_scores: logp(chosen) - logp(rejected)), the reward model its scores of them
    (plugins/reward.py pair_accuracy), GRPO the mean reward of held-out prompts' completions (plugins/grpo.py
    measure). `history` holds one dict per logged step with the method's metrics (loss; preference: margin,
    accuracy, logps_chosen, ...).
    """

    output_dir: str
    method: str  # sft, dpo, ipo, kto, orpo, simpo, grpo, gdpo, reward
    first_loss: float = float("nan")
    final_loss: float = float("nan")
    steps: int = 0
    seconds: float = 0.0
    losses: list = field(default_factory=list)  # (step, loss) pairs as logged
    history: list = field(default_factory=list)
    eval_loss_before: float | None = None  # SFT
    eval_loss_after: float | None = None
    heldout_before: dict = field(default_factory=dict)  # preference methods, the reward model (pair scores)
    heldout_after: dict = field(default_factory=dict)
    reward_before: dict = field(default_factory=dict)  # GRPO: mean reward of held-out prompts' completions
    reward_after: dict = field(default_factory=dict)
    samples_before: list = field(default_factory=list)  # {"prompt", "completion"} for each eval_prompts entry
    samples_after: list = field(default_factory=list)
    tokens_seen: int | None = None  # real (non-padding) tokens the training steps fed the model, packed or not
    trainable_params: int = 0
    total_params: int = 0
    data: dict = field(default_factory=dict)  # data.prepare's counts
    runtime: dict = field(default_factory=dict)  # stop reason, resume point, replicas (finish, below)
    diverged: bool = False  # the loss watchdog stopped the run: no model saved (output_dir/diverged/ holds why)
    saved_to: str | None = None  # where the model (or, diverged, the evidence) was written

    @property
    def ok(self) -> bool:
        """The run finished with a model saved (False when the loss watchdog stopped it)."""
        return not self.diverged

    def series(self, key: str) -> list[float]:
        """One logged metric over steps, e.g. series('margin')."""
        return [h[key] for h in self.history if h.get(key) is not None]

    def summary(self) -> str:
        head = "" if self.method == "sft" else f"{self.method}: "
        tokens = f", {self.tokens_seen:,} tokens" if self.tokens_seen else ""
        lines = [f"{head}train loss {self.first_loss:.3f} -> {self.final_loss:.3f} over {self.steps} steps "
                 f"({self.seconds:.1f}s{tokens}; {self.trainable_params:,} of {self.total_params:,} params trained)"]
        if self.eval_loss_before is not None and self.eval_loss_after is not None:
            lines.append(f"eval loss  {self.eval_loss_before:.3f} -> {self.eval_loss_after:.3f}")
        if m := self.series("margin"):
            lines.append(f"reward margin {m[0]:+.3f} -> {m[-1]:+.3f} (first -> last logged step)")
        if r := self.series("reward"):
            lines.append(f"reward {r[0]:.3f} -> {r[-1]:.3f} (first -> last logged step)")
        if self.heldout_before and self.heldout_after:
            b, a = self.heldout_before, self.heldout_after
            what = "score" if self.method == "reward" else "logp"
            lines.append(f"held-out {what}(chosen) - {what}(rejected): {b['margin']:+.2f} -> {a['margin']:+.2f}; "
                         f"pairs preferred {b['accuracy']:.0%} -> {a['accuracy']:.0%} (n={b['n']})")
        if self.reward_before and self.reward_after:
            b, a = self.reward_before, self.reward_after
            lines.append(f"held-out mean reward {b['mean']:.3f} -> {a['mean']:.3f} "
                         f"({b['n']} prompts x {b['generations']} completions)")
        if self.runtime.get("stop_reason"):
            lines.append(f"stopped early: {self.runtime['stop_reason']}")
        if self.diverged:
            lines.append(f"no model saved (diverged): the loss curve and metrics are in {self.saved_to}; "
                         f"{self.output_dir} keeps what it held before")
        for before, after in zip(self.samples_before, self.samples_after):
            lines += [f"prompt: {before['prompt']}", f"  before: {before['completion']!r}",
                      f"  after:  {after['completion']!r}"]
        return "\n".join(lines)


def finish(trainer, resumed_from: str | None) -> dict:
    """Close the run's loggers; return what the plumbing saw, for metrics.json (stop reason, resume, replicas).
    Weights that are not finite at the end count as diverged (stop_key names the option to change)."""
    import torch

    from ftkit.train import callbacks as cb
    from ftkit.train import distributed, tracking

    tracking.finish()
    peak = int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None  # vs `ftkit memory`; GPU only
    out = {"world_size": distributed.world_size(), "resumed_from": resumed_from, "stop_reason": None, "replicas": [],
           "peak_device_memory_bytes": peak, "diverged": False}
    for c in trainer.callback_handler.callbacks:
        if isinstance(c, cb.LossWatchdog) and c.reason:
            out["stop_reason"], out["diverged"] = c.reason, True
        elif isinstance(c, cb.EarlyStoppingCallback) and c.early_stopping_patience_counter >= c.early_stopping_patience:
            out["stop_reason"] = out["stop_reason"] or "early stopping: eval_loss stopped improving"
        elif isinstance(c, cb.ReplicaCheck):
            out["replicas"] = c.replicas
    if not out["diverged"] and (bad := nonfinite_weights(trainer.model)):  # never published as a success
        out.update(diverged=True, stop_key="learning_rate", stop_reason=(
            f"the trained weights hold NaN or infinite values ({bad}) after step {trainer.state.global_step}. Fix: "
            f"lower learning_rate (now {trainer.args.learning_rate}), check weight_decay and max_grad_norm, or set "
            "loss_watchdog_threshold to stop such a run early"))
    return out


def nonfinite_weights(model) -> str | None:
    """Which trained tensors hold NaN or inf ("2 of 14 trained tensors, e.g. lm_head.weight"); None when all finite."""
    import torch

    trained = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    bad = [name for name, p in trained if not torch.isfinite(p.detach()).all()]
    return f"{len(bad)} of {len(trained)} trained tensors, e.g. {bad[0]}" if bad else None
