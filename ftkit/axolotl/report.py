"""The migration report: one line per key of a recipe (what loading did with it), its summary and its table.

    12 options used, 1 alias, 2 speed-only ignored: liger_rope, strict; 1 ignored (not run by ftkit: use
    `ftkit evaluate`): do_bench_eval; 1 empty (defaults)
    ignored: not an option Axolotl reads: image, gpu
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

USED, EMPTY, ALIAS, IGNORED, REFUSED, NOTE = "used", "empty", "alias", "ignored", "refused", "note"
NOT_AXOLOTL = "not an option Axolotl reads"  # how an ignored key's detail starts when Axolotl drops it too


@dataclass
class Line:
    key: str  # dotted path as written, e.g. datasets.0.field_messages
    status: str  # used, empty, alias, ignored, refused, note
    detail: str = ""
    line: int | None = None


def _plural(n: int, word: str, plural: str = "s") -> str:
    return f"{n} {word}{plural * (n != 1)}"


@dataclass
class Report:
    """What loading did with every key of a recipe (and its overrides)."""

    file: str | None = None
    lines: list[Line] = field(default_factory=list)

    def add(self, key: str, status: str, detail: str = "", line: int | None = None) -> None:
        self.lines.append(Line(key, status, detail, line))

    def of(self, status: str) -> list[Line]:
        return [line for line in self.lines if line.status == status]

    def _ignored(self) -> dict[str, list[str]]:
        """Ignored keys by label: speed-only, internal, NOT_AXOLOTL, or the first words of their why."""
        groups: dict[str, list[str]] = {}
        for line in self.of(IGNORED):
            kind = next((k for k in ("speed only", "internal", NOT_AXOLOTL) if line.detail.startswith(k)), None)
            groups.setdefault(kind or re.split(r"[;(]", line.detail)[0].strip(), []).append(line.key)
        return groups

    def summary(self) -> str:
        """'42 options used, 3 aliases, 2 speed-only ignored: flash_attention, strict; 5 empty (defaults)', and one
        more line naming the keys that are no Axolotl option at all (Axolotl drops them silently; ftkit says so)."""
        groups = self._ignored()
        speed, internal, foreign = (groups.pop(k, []) for k in ("speed only", "internal", NOT_AXOLOTL))
        text = (f"{_plural(len(self.of(USED)), 'option')} used, {_plural(len(self.of(ALIAS)), 'alias', 'es')}, "
                f"{len(speed)} speed-only ignored" + (": " + ", ".join(speed) if speed else ""))
        if internal:
            text += f"; {len(internal)} internal ignored: " + ", ".join(internal)
        for label, keys in groups.items():
            text += f"; {len(keys)} ignored ({label}): " + ", ".join(keys)
        if notes := self.of(NOTE):
            text += f"; {_plural(len(notes), 'note')}: " + ", ".join(f"{n.key} ({n.detail})" for n in notes)
        if self.of(EMPTY):
            text += f"; {len(self.of(EMPTY))} empty (defaults)"
        if self.of(REFUSED):
            text += f"; {len(self.of(REFUSED))} refused: " + ", ".join(line.key for line in self.of(REFUSED))
        return text + (f"\nignored: {NOT_AXOLOTL}: " + ", ".join(foreign) if foreign else "")

    def table(self) -> str:
        """The migration report, option by option (ftkit check)."""
        width = max([len(line.key) for line in self.lines] + [10])
        rows = [f"  {line.status:<8} {line.key:<{width}}  {line.detail}".rstrip() for line in self.lines]
        return "\n".join([f"{self.file or 'recipe'}: {len(self.lines)} keys", *rows, self.summary()])
