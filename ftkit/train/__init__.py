"""Training: one `run` for SFT and every `rl:` method, and the plumbing they share (callbacks, checkpoints, ...)."""
from ftkit.train.run import run

__all__ = ["run"]
