"""Checks on data files that name the file, the line and the fix, where datasets/pyarrow report badly.

Fast path: a JSON-lines file is read once, line by line (each line one object, each field one JSON
type), which also gives the line of every row for later row errors. Everything else is left to
datasets. When datasets fails anyway ("An error occurred while generating the dataset"),
`explain_failure` re-reads the files slowly to say which rows are bad and why: duplicate keys, lone
surrogates, a trailing comma in a JSON array, an empty file. Every check lists the first few bad
lines and the total, never only the first.
"""
from __future__ import annotations

import json
from pathlib import Path

from ftkit.errors import DataError, Problem

LISTED = 5  # bad lines shown per file; the total is always given
_LINES: dict[tuple, list[int]] = {}  # (path, size, mtime) -> line number of each row of a JSON-lines file


class _Collector:
    """The first LISTED problems of a file and how many lines were bad in all."""

    def __init__(self, path: Path):
        self.path, self.problems, self.bad, self.lines = path, [], 0, 0

    def add(self, line: int | None, problem: str, fix: str, where: str | None = None) -> None:
        self.bad += 1
        if len(self.problems) < LISTED:
            self.problems.append(Problem(problem, str(self.path), where, line, fix))

    def raise_if_bad(self) -> None:
        if not self.bad:
            return
        if self.bad > len(self.problems):
            self.problems.append(Problem(f"{self.bad} of {self.lines} lines are bad ({len(self.problems)} shown)",
                                         str(self.path), fix="fix or delete those lines; the first ones are above"))
        raise DataError(self.problems)


_KINDS = {str: "text", int: "a number", float: "a number", bool: "true/false", list: "a list", dict: "a mapping",
          type(None): None}  # a JSON value's Python type -> how the type check names it


def check_json_lines(path: Path) -> list[int]:
    """Every line parses to an object and each field keeps one JSON type; returns the line of each row.

    The type check runs per field only when a row's fields or their types differ from the row before (most
    files repeat one shape), so the pass costs little more than json.loads per line."""
    key = (str(path), path.stat().st_size, path.stat().st_mtime_ns)
    if key in _LINES:
        return _LINES[key]
    rows, kinds, bad = [], {}, _Collector(path)
    shape, no = None, 0  # shape: (field names, their value types) of the last row checked field by field
    with open(path, "rb") as f:
        for no, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                bad.add(no, f"not UTF-8 text (byte {raw[e.start]:#x} at column {e.start + 1})", "re-save the file as UTF-8")
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as e:
                if line.strip():  # a blank line is skipped (as datasets does)
                    bad.add(no, f"malformed JSON ({e.msg} at column {e.colno})",
                            "each line must be one JSON object; fix or delete that line")
                continue
            if type(value) is not dict:
                bad.add(no, f"a JSON line must be an object, got {type(value).__name__}", 'write rows as {"field": "value", ...}')
                continue
            now = (tuple(value), tuple(map(type, value.values())))
            if now != shape:
                shape = now
                for k, v in value.items():
                    kind = _KINDS[type(v)]
                    first = kinds.setdefault(k, (kind, no)) if kind else None
                    if first and first[0] != kind:
                        bad.add(no, f"field {k!r} is {kind} here but {first[0]} on line {first[1]}",
                                f"give {k} the same type on every line", where=k)
                        shape = None  # check the next row field by field again
            rows.append(no)
        bad.lines = no
    bad.raise_if_bad()
    _LINES[key] = rows
    return rows


def check_utf8(path: Path) -> None:
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(Problem("not UTF-8 text", str(path), line=data[:e.start].count(b"\n") + 1,
                                fix="re-save the file as UTF-8")) from None


# ---------------------------------------------------------------- after datasets failed

def _strict_object(pairs: list[tuple]) -> dict:
    """json object hook: a key written twice is an error (json.loads would silently keep the last)."""
    seen = set()
    for k, _ in pairs:
        if k in seen:
            raise ValueError(f"key {k!r} appears twice in one row")
        seen.add(k)
    return dict(pairs)


def _lone_surrogate(value) -> str | None:
    """The first string holding half of a UTF-16 surrogate pair (JSON "\\ud800" alone), which Arrow cannot store."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value
        return None
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return next((s for s in map(_lone_surrogate, items) if s is not None), None)


def _row_problem(value) -> tuple[str, str] | None:
    if not isinstance(value, dict):
        return f"a row must be a JSON object, got {type(value).__name__}", 'write rows as {"field": "value", ...}'
    s = _lone_surrogate(value)
    if s is not None:
        return (f"text {s[:40]!r} holds a lone surrogate escape (\\ud800-\\udfff without its pair)",
                "write the character itself, or its full surrogate pair")
    return None


def _scan_json_lines(path: Path, bad: _Collector) -> None:
    with open(path, encoding="utf-8", errors="replace") as f:
        for no, line in enumerate(f, 1):
            bad.lines = no
            if not line.strip():
                continue
            try:
                found = _row_problem(json.loads(line, object_pairs_hook=_strict_object))
            except ValueError as e:  # JSONDecodeError is a ValueError, so are duplicate keys
                found = (str(e).split(": line")[0], "each line must be one JSON object with each key once")
            if found:
                bad.add(no, *found)


def _scan_json_document(path: Path, bad: _Collector) -> None:
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        bad.add(None, "the file is empty", "add rows (a JSON array of objects, or one object per line in a .jsonl)")
        return
    try:
        doc = json.loads(text, object_pairs_hook=_strict_object)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":  # one object per line in a .json file: read it as JSON lines
            _scan_json_lines(path, bad)
            return
        before = text[:e.pos].rstrip()
        if before.endswith(","):  # JSON allows no comma before ] or }: point at the comma, not the bracket
            bad.add(before.count("\n") + 1, "a trailing comma before ']' or '}' (JSON allows none)", "delete that comma")
        else:
            bad.add(e.lineno, f"malformed JSON ({e.msg} at column {e.colno})", "fix the JSON at that line")
        return
    except ValueError as e:
        bad.add(None, str(e), "write each key once per row")
        return
    rows = doc if isinstance(doc, list) else [doc]
    bad.lines = len(rows)
    for i, row in enumerate(rows):
        found = _row_problem(row)
        if found:
            bad.add(None, *found, where=f"row {i + 1}")


def explain_failure(files: list[Path], builder: str, error: Exception) -> DataError:
    """The DataError for a file set datasets could not read: the bad rows found by a slow re-read, else its message."""
    for f in files:
        bad = _Collector(f)
        if f.stat().st_size == 0:
            bad.add(None, "the file is empty", "add rows, or remove the file from the dataset")
        elif builder == "json" and f.suffix == ".jsonl":
            _scan_json_lines(f, bad)
        elif builder == "json":
            _scan_json_document(f, bad)
        try:
            bad.raise_if_bad()
        except DataError as found:
            return found
    first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
    return DataError(Problem(f"could not read: {first[:300]}", ", ".join(map(str, files)),
                             fix=f"check the file is valid {builder}"))
