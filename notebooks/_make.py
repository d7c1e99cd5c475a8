"""Writes notebooks/*.ipynb from their readable sources in notebooks/src/ (jupytext's percent format).

    python notebooks/_make.py          # rewrite every notebook (tests fail when a committed one differs)

src/<name>.py         one notebook each (the quickstart, preference tuning, the method lessons)
src/_family.py        the family lesson, written once per entry of src/families.yml: `{{name}}` in a cell is
                      replaced by that entry's value (title, recipe, twins, lesson; name is the entry's key)
src/_lesson_start.py  the parameters and setup cells of every family and method lesson
src/_shared_path.py   the cells every training lesson ends with
A cell `# %% include="_shared_path.py"` is replaced by that file's cells; its other keys fill the file's
placeholders: `# %% include="_lesson_start.py" recipe="recipes/quickstart.yml" max_steps=40 ...`

A source opens in any editor, or as a notebook in JupyterLab with jupytext installed (right click > Open With >
Notebook): markdown cells are `# %% [markdown]` blocks of `# ` lines, code cells `# %%` blocks, the parameters
cell `# %% tags=["parameters"]`. The .ipynb files are written without outputs, with stable cell ids.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import jupytext
import nbformat
import yaml

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"
PLACEHOLDER = re.compile(r"\{\{ *(\w+) *\}\}")
KERNEL = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
          "language_info": {"name": "python"}}


def families() -> dict[str, dict]:
    """src/families.yml: family notebook name -> {title, recipe, twins, lesson}."""
    return yaml.safe_load((SRC / "families.yml").read_text(encoding="utf-8"))


def _fill(text: str, values: dict, source: Path) -> str:
    def one(m):
        if m.group(1) not in values:
            sys.exit(f"{source}: unknown placeholder {m.group(0)} (known: {', '.join(values)})")
        return str(values[m.group(1)])
    return PLACEHOLDER.sub(one, text)


def cells(source: Path, values: dict) -> list:
    """The cells of one source, placeholders filled, `include` cells replaced by the included file's cells (filled
    with the include cell's other keys too)."""
    out = []
    for cell in jupytext.read(source, fmt="py:percent").cells:
        if "include" in cell.metadata:
            given = {k: _fill(v, values, source) if isinstance(v, str) else v for k, v in cell.metadata.items()}
            out += cells(SRC / given.pop("include"), {**values, **given})
            continue
        tags = cell.metadata.get("tags")
        cell.metadata = {"tags": tags} if tags else {}
        cell.source = _fill(cell.source, values, source)
        out.append(cell)
    return out


def notebook(source: Path, values: dict | None = None) -> str:
    """The .ipynb text of a source: nbformat 4.5, outputs empty, ids c00, c01, ... (byte-identical every time)."""
    nb = nbformat.v4.new_notebook(metadata=KERNEL)
    nb.cells = cells(source, values or {})
    banner = (f"<!-- generated from notebooks/src/{source.name}{' and src/families.yml' if values else ''} by "
              "notebooks/_make.py: edit the source, not this file -->\n")
    nb.cells[0].source = banner + nb.cells[0].source
    for i, cell in enumerate(nb.cells):
        cell.id = f"c{i:02d}"
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nbformat.writes(nb) + "\n"


def render_all() -> dict[str, str]:
    """File name -> notebook text, for every notebook the sources describe."""
    books = {f"{p.stem}.ipynb": notebook(p) for p in sorted(SRC.glob("[!_]*.py"))}
    for name, lesson in families().items():
        twins = ", ".join(f"`tiny:{t}`" for t in lesson["twins"])
        books[f"{name}.ipynb"] = notebook(SRC / "_family.py", {**lesson, "name": name, "twins": twins})
    return books


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    written = render_all()
    for name, text in written.items():
        (target / name).write_text(text, encoding="utf-8")
    print(f"wrote {len(written)} notebooks to {target}")
