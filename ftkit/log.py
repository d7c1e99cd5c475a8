"""ftkit's one console voice: every announcement is `log.info(...)` on the "ftkit" logger.

One handler prints `[ftkit] message` lines to the current sys.stdout (pytest, papermill and Jupyter
swap it, so it is looked up at each line); `ftkit infer` moves it to stderr so stdout carries only
answers. Warnings are `log.warning` and print `[ftkit] warning: ...`. Silence ftkit with
`logging.getLogger("ftkit").setLevel(logging.WARNING)`; nothing is threaded through function calls.
"""
from __future__ import annotations

import contextlib
import logging
import sys

log = logging.getLogger("ftkit")


class _Console(logging.Handler):
    """Writes `[ftkit] ...` to sys.stdout (or sys.stderr) as they are at the time of the line."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.to_stderr = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            prefix = "[ftkit] warning: " if record.levelno >= logging.WARNING else "[ftkit] "
            stream = sys.stderr if self.to_stderr else sys.stdout
            stream.write(prefix + record.getMessage() + "\n")
            stream.flush()
        except Exception:  # a closed stream must not break a training run  # noqa: BLE001
            self.handleError(record)


_console = _Console()


def install() -> None:
    """Attach the console handler once (idempotent); ftkit's package import calls it."""
    if _console not in log.handlers:
        log.addHandler(_console)
    if log.level == logging.NOTSET:
        log.setLevel(logging.INFO)


@contextlib.contextmanager
def to_stderr():
    """Inside the block ftkit's lines go to stderr, so stdout carries only results (`ftkit infer` answers)."""
    before = _console.to_stderr
    _console.to_stderr = True
    try:
        yield
    finally:
        _console.to_stderr = before


@contextlib.contextmanager
def quiet():
    """Hold back ftkit's info lines inside the block (e.g. re-resolving settings already announced)."""
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)
