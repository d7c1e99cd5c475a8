"""The one error type for user mistakes: it says where (file, key or line), what is wrong, and the fix.

The CLI prints these without a traceback; anything else is a bug in ftkit and keeps its traceback.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Problem:
    """One thing wrong with user input, e.g. ``recipes/x.yml:3: lerning_rate: unknown option``."""

    problem: str
    file: str | None = None
    where: str | None = None  # a key path like "datasets.0.type", or "line 12"
    line: int | None = None
    fix: str | None = None

    def __str__(self) -> str:
        loc = self.file or ""
        if self.line is not None:
            loc += f":{self.line}"
        head = ": ".join(p for p in (loc, self.where) if p)
        text = f"{head}: {self.problem}" if head else self.problem
        sep = " " if text.endswith((".", "!", "?")) else ". "  # a problem written as a sentence keeps one stop
        return f"{text}{sep}Fix: {self.fix}" if self.fix else text


class FtkitError(Exception):
    """A user-facing error: one or more Problems, printed together."""

    def __init__(self, problems: Problem | str | list[Problem], **kwargs):
        if isinstance(problems, str):
            problems = Problem(problems, **kwargs)
        self.problems = problems if isinstance(problems, list) else [problems]
        super().__init__(str(self))

    def __str__(self) -> str:
        if len(self.problems) == 1:
            return str(self.problems[0])
        return f"{len(self.problems)} problems:\n" + "\n".join(f"  - {p}" for p in self.problems)


class ConfigError(FtkitError):
    """A recipe that does not validate (all problems collected, not just the first)."""


class DataError(FtkitError):
    """A dataset file or row that cannot be used."""


class DiskFull(FtkitError):
    """A full disk (or quota) that stopped a command: exit code 3, as a run that produced no model."""

    exit_code = 3


DISK_FULL_TEXT = ("No space left on device", "Disk quota exceeded", "StorageFull", "os error 28", "file write failed")
# What torch.save's zip writer says when a write came up short, without the OS error behind it: a full disk
# when the folder written to has (almost) no space left, some other I/O failure otherwise.
SHORT_WRITE_TEXT = ("unexpected pos", "iostream error", "PytorchStreamWriter failed")
NEARLY_FULL = 64 << 20  # bytes free below which a short write is taken for a full disk


def _chain(exc: BaseException | None):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def is_disk_full(exc: BaseException, folder=None) -> bool:
    """A full disk (or quota), however the writer reports it, anywhere in the exception's chain: OSError
    ENOSPC/EDQUOT, safetensors' "StorageFull"; torch.save's short-write texts when `folder` (where it wrote) has
    less than NEARLY_FULL bytes free (on a real full disk torch says only "unexpected pos N vs M")."""
    import errno
    import shutil

    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(text in str(e) for text in DISK_FULL_TEXT):
            return True
        if folder is not None and any(text in str(e) for text in SHORT_WRITE_TEXT):
            try:
                return shutil.disk_usage(folder).free < NEARLY_FULL
            except OSError:
                return False
    return False


def interrupted(exc: BaseException) -> bool:
    """Ctrl-C, even when a library turned it into another error on its way out (datasets' worker pool raises a
    TimeoutError while it handles the KeyboardInterrupt)."""
    return any(isinstance(e, KeyboardInterrupt) for e in _chain(exc))
