"""The core's size in code lines: recipe, data, models, train and formats (and the plug-in seam ftkit/hooks.py),
without docstrings, comments or blank lines (issue 25 asks for 5,500 at most; tests/test_line_budget.py keeps the count from growing past CEILING).

    .venv/bin/python tools/line_budget.py          # total, then per package
"""
from __future__ import annotations

import ast
import io
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ("recipe", "data", "models", "train", "formats")
TARGET = 5_500  # issue 25's budget
CEILING = 5_450  # 5,416 on 2026-12-07 (8,055 before the cuts and the plug-in split), rounded up: it may shrink, never grow


def code_lines(source: str) -> int:
    """Lines holding a token of code: not a docstring, a comment or blank."""
    docs: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body and \
                isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) and \
                isinstance(body[0].value.value, str):
            docs.update(range(body[0].lineno, body[0].end_lineno + 1))
    skip = (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER)
    lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in skip:
            lines.update(n for n in range(tok.start[0], tok.end[0] + 1) if n not in docs)
    return len(lines)


def core_lines() -> dict[str, int]:
    """Per core package, plus the plug-in seam (ftkit/hooks.py), which the core calls."""
    counts = {pkg: sum(code_lines(p.read_text(encoding="utf-8")) for p in sorted((ROOT / "ftkit" / pkg).rglob("*.py")))
              for pkg in CORE}
    return {**counts, "hooks": code_lines((ROOT / "ftkit" / "hooks.py").read_text(encoding="utf-8"))}


if __name__ == "__main__":
    counts = core_lines()
    print(f"core: {sum(counts.values()):,} code lines (target {TARGET:,}, ceiling {CEILING:,})")
    for pkg, n in counts.items():
        print(f"  {pkg:8} {n:,}")
    sys.exit(0)
