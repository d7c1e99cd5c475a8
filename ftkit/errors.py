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
        return f"{text}. Fix: {self.fix}" if self.fix else text


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


DISK_FULL_TEXT = ("No space left on device", "Disk quota exceeded", "StorageFull", "os error 28", "file write failed")


def is_disk_full(exc: BaseException) -> bool:
    """A full disk (or quota), however the writer reports it: OSError ENOSPC/EDQUOT, safetensors' "StorageFull",
    torch.save's "file write failed" (a RuntimeError), anywhere in the exception's chain."""
    import errno

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(text in str(exc) for text in DISK_FULL_TEXT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
