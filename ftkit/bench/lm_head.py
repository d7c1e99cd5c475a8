"""The LM head's loss alone, three ways, for `ftkit bench memory --sections lm-head`.

One forward + backward of one micro-batch's loss (random hidden states and head weight, every third label
-100 as prompts are), each in a fresh process (`python -m ftkit.bench.lm_head KERNEL TOKENS VOCAB HIDDEN`):
  full logits   log-softmax of hidden @ W.T, what a model's own loss does
  TRL's tiles   trl.kernels.ChunkedLogProbFunction as TRL's fused head runs it on CPU: 4,096 x 32,768 tiles
                folded by torch ops, every position scored
  ftkit         plugins/kernels.ChunkedCrossEntropy as ftkit runs it on CPU: labelled positions only
Printed: peak RSS above the start, CPU and wall seconds, and the loss (the same for all three).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

KERNELS = ("full logits", "TRL's tiles", "ftkit")


def _kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def measure(kernel: str, tokens: int, vocab: int, hidden: int) -> dict:
    """In the child: build the inputs, reset the high-water mark, run one forward + backward."""
    import torch
    from trl.kernels import ChunkedLogProbFunction

    from ftkit.bench.timing import cpu_seconds
    from ftkit.plugins.kernels import ChunkedCrossEntropy

    torch.manual_seed(0)
    h = torch.randn(tokens, hidden, requires_grad=True)
    w = (torch.randn(vocab, hidden) * 0.02).requires_grad_()
    labels = torch.randint(0, vocab, (tokens,))
    labels[::3] = -100
    mask = labels != -100
    before = _kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    wall, cpu = time.perf_counter(), cpu_seconds()
    if kernel == "full logits":
        loss = torch.nn.functional.cross_entropy(h @ w.t(), labels, reduction="sum")
    elif kernel == "TRL's tiles":
        log_p = ChunkedLogProbFunction.apply(h, w, None, labels.clamp(min=0), 1.0, 32768, None, 1.0, ("log_probs",))[0]
        loss = -(log_p * mask).sum()
    else:
        loss = -ChunkedCrossEntropy.apply(h[mask], w, None, labels[mask])[0].sum()
    loss.backward()
    return {"peak_bytes": (_kb("VmHWM") - before) * 1024, "cpu": cpu_seconds() - cpu,
            "wall": time.perf_counter() - wall, "loss": loss.item()}


def in_child(kernel: str, tokens: int, vocab: int, hidden: int) -> dict:
    from ftkit.resources import shipped

    env = {**os.environ, "PYTHONPATH": str(shipped(""))}
    out = subprocess.run([sys.executable, "-m", "ftkit.bench.lm_head", kernel, str(tokens), str(vocab), str(hidden)],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1], *map(int, sys.argv[2:5]))))
