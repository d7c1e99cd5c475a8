"""Ctrl-C during training: the first one finishes the step, writes a checkpoint and stops; a second one aborts.

Without this a Ctrl-C raises KeyboardInterrupt wherever the step happens to be: a traceback, and every step
since the last checkpoint lost. The handler is installed for the length of `trainer.train` only (data
preparation and model loading keep Python's own Ctrl-C, which the CLI reports as "interrupted", exit 130).
"""
from __future__ import annotations

import signal
import threading

from transformers import TrainerCallback

from ftkit.errors import FtkitError
from ftkit.log import log


class Interrupted(FtkitError):
    """Training stopped by Ctrl-C after writing a checkpoint: exit code 130 (128 + SIGINT), as shells expect."""

    exit_code = 130


class StopOnCtrlC(TrainerCallback):
    """SIGINT -> finish this optimizer step, save (even with save_strategy: no), stop. `step` is where it stopped."""

    def __init__(self):
        self.step: int | None = None
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame):
        if self.requested:  # the second Ctrl-C: the user wants out now
            signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)
            raise KeyboardInterrupt
        self.requested = True
        log.warning("Ctrl-C: finishing this step, then writing a checkpoint and stopping (Ctrl-C again aborts at "
                    "once, without a checkpoint)")

    def on_train_begin(self, args, state, control, **kwargs):
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def on_step_end(self, args, state, control, **kwargs):
        if self.requested and self.step is None:
            self.step = state.global_step
            control.should_save = True  # later callbacks may still veto it (a diverged run, a user's folder)
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        self.restore()

    def restore(self) -> None:
        """Python's own Ctrl-C again (also when training ended in an error, which skips on_train_end)."""
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def of(trainer) -> StopOnCtrlC | None:
    """The trainer's Ctrl-C callback."""
    return next((c for c in trainer.callback_handler.callbacks if isinstance(c, StopOnCtrlC)), None)
