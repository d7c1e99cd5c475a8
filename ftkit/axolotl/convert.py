"""Value conversions of aliases that need code, named in catalogue.yaml (`convert: true_means(sdpa)`).

Each conversion takes (value, the mapping the key was written in) and returns the canonical option's value;
None means "leave the canonical option unset". A value that cannot be converted raises Unconvertible.

    true_means(sdpa)   flash-style flags:  sdp_attention: true  -> attn_implementation: sdpa; false -> unset
    report_to          TrainingArguments:  report_to: [comet_ml] -> use_comet: true (see report_to below)
    sampling_strategy  TrainingArguments:  train_sampling_strategy: group_by_length -> group_by_length: true
"""
from __future__ import annotations

import re
from typing import Any, Callable


class Unconvertible(ValueError):
    """A value an alias cannot carry over: the problem and the fix."""

    def __init__(self, problem: str, fix: str):
        super().__init__(problem)
        self.problem, self.fix = problem, fix


def true_means(value_when_true: str) -> Callable[[Any, dict], Any]:
    """`flash_attention: true` = attn_implementation: flash_attention_2; `false` = unset."""
    return lambda on, _raw: value_when_true if on else None


def report_to(value, _raw: dict):
    """TrainingArguments report_to -> use_comet for comet_ml. Axolotl drops report_to and turns each logger on by
    its own keys (wandb_project, mlflow_tracking_uri, ...); ftkit does the same, so `report_to: wandb` alone
    logs to no W&B project (said in the report) and `none` leaves the loggers those keys turn on."""
    names = {str(v) for v in ([value] if isinstance(value, str) else value or [])}
    return True if "comet_ml" in names else None


def sampling_strategy(value, _raw):
    """TrainingArguments train_sampling_strategy: group_by_length -> group_by_length: true; random -> unset."""
    if value in ("random", "group_by_length"):
        return True if value == "group_by_length" else None
    if value == "sequential":
        raise Unconvertible("sequential is Axolotl's curriculum_sampling", "write curriculum_sampling: true instead")
    raise Unconvertible(f"{value}: this sampler is not implemented (ftkit draws batches at random)",
                        "remove it; group_by_length: true or curriculum_sampling: true are the other orders ftkit has")


_NAMED = {"true_means": true_means, "report_to": lambda: report_to, "sampling_strategy": lambda: sampling_strategy}


def named(spec: str) -> Callable[[Any, dict], Any]:
    """The conversion a catalogue entry names: `report_to`, or `true_means(sdpa)` (a name with one argument)."""
    m = re.fullmatch(r"(\w+)(?:\((.*)\))?", spec.strip())
    if not m or m.group(1) not in _NAMED:
        raise ValueError(f"catalogue.yaml: unknown conversion {spec!r} (known: {', '.join(_NAMED)})")
    return _NAMED[m.group(1)](*([m.group(2)] if m.group(2) else []))
