"""`ftkit notebooks run`: execute cookbook notebooks headless with papermill and write a report.

Parameters are checked against each notebook's `parameters` cell before anything runs (papermill
itself only warns about an unknown name and runs with the default). Notebooks run in parallel
worker processes, each kernel pinned to its share of the cores; each writes its executed copy and
metrics.json (ftkit.notebook.record) into the output folder, and the report has one row per notebook.
"""
from __future__ import annotations

import ast
import difflib
import html
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from ftkit.cookbook.notebook import BATCH_ENV, METRICS_ENV
from ftkit.cookbook.twins import twin_for_model
from ftkit.errors import ConfigError, FtkitError, Problem
from ftkit.log import log
from ftkit.resources import shipped

NOTEBOOK_DIR = shipped("notebooks")
PY_TYPES = {"int": int, "float": (int, float), "bool": bool, "str": str}


@dataclass
class NotebookResult:
    name: str
    status: str  # "passed" | "failed"
    seconds: float
    output: str  # the executed notebook
    final_loss: float | None = None
    eval_score: float | None = None
    error: str | None = None  # "cell 12: AssertionError: ..." for a failing cell


def find_notebooks(names: list[str] | None = None, folder: Path = NOTEBOOK_DIR) -> list[Path]:
    """The named notebooks (`mistral` or `mistral.ipynb`), or every notebook in the folder."""
    found = sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith((".", "_")))
    if not names:
        return found
    by_name = {p.stem: p for p in found}
    out, problems = [], []
    for n in names:
        stem = Path(n).stem
        if stem in by_name:
            out.append(by_name[stem])
        else:
            guess = difflib.get_close_matches(stem, by_name, n=1)
            problems.append(Problem(f"no notebook {n!r} in {folder}", where="NAMES",
                                    fix=(f"did you mean {guess[0]}? " if guess else "") + f"choose from {', '.join(by_name)}"))
    if problems:
        raise FtkitError(problems)
    return out


def parse_params(items: list[str]) -> dict:
    """`["max_steps=10", "tiny=true"]` -> {"max_steps": 10, "tiny": True} (YAML scalars: primitives only)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        parsed = yaml.safe_load(value) if sep else None
        if not sep or not key or isinstance(parsed, (list, dict)):
            raise ConfigError(Problem(f"cannot read parameter {item!r}", where="-p",
                                      fix="write -p name=value with a number, true/false or text"))
        out[key] = "" if parsed is None else parsed
    return out


def check_params(path: Path, params: dict) -> None:
    """Every name must be in the notebook's parameters cell, with a value of the default's type."""
    import papermill

    declared = papermill.inspect_notebook(str(path))
    if not declared:
        raise ConfigError(Problem("the notebook has no cell tagged `parameters`", str(path),
                                  fix="tag its first code cell `parameters` (View > Cell toolbar > Tags)"))
    problems = []
    for key, value in params.items():
        if key not in declared:
            guess = difflib.get_close_matches(key, declared, n=1)
            problems.append(Problem(f"unknown parameter {key!r}", str(path), where=key,
                                    fix=(f"did you mean {guess[0]}? " if guess else "") +
                                        f"parameters: {', '.join(declared)}"))
            continue
        default = ast.literal_eval(declared[key]["default"])  # parameters cells hold literals only
        kind = type(default).__name__
        want = PY_TYPES.get(kind)
        if want and (not isinstance(value, want) or (kind != "bool" and isinstance(value, bool))):
            problems.append(Problem(f"{key}={value!r} is not a {kind}", str(path), where=key,
                                    fix=f"give a {kind} like the default {declared[key]['default']}"))
    if problems:
        raise ConfigError(problems)


def _metrics(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def run_one(path: str, params: dict, out_dir: str, threads: int) -> NotebookResult:
    """Execute one notebook in its own folder (as Jupyter would); a failing cell is named by its index."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    path, out = Path(path), Path(out_dir)
    executed = out / path.name
    metrics = out / f"{path.stem}.metrics.json"
    out.mkdir(parents=True, exist_ok=True)
    metrics.unlink(missing_ok=True)
    os.environ.update({BATCH_ENV: "1", METRICS_ENV: str(metrics.resolve()), "OMP_NUM_THREADS": str(threads),
                       "MPLBACKEND": "Agg"})
    if "output_dir" in papermill.inspect_notebook(str(path)) and "output_dir" not in params:
        params = {**params, "output_dir": str((out / f"{path.stem}-run").resolve())}  # artifacts beside the report
    t0 = time.time()
    status, error = "passed", None
    try:
        papermill.execute_notebook(str(path), str(executed), parameters=params, cwd=str(path.parent),
                                   progress_bar=False, kernel_name="python3")
    except PapermillExecutionError as e:
        status, error = "failed", f"cell {e.cell_index}: {e.ename}: {str(e.evalue).splitlines()[0] if e.evalue else ''}"
    except Exception as e:  # kernel died, missing kernel: report it in the row, keep the other notebooks going
        status, error = "failed", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    m = _metrics(metrics)
    return NotebookResult(path.stem, status, round(time.time() - t0, 1), str(executed),
                          m.get("final_loss"), m.get("eval_score"), error)


def report_markdown(results: list[NotebookResult], out_dir: Path) -> str:
    def num(v):
        return "" if v is None else f"{v:.3f}"
    rows = ["| notebook | status | time (s) | final loss | eval score | executed | error |", "|---|---|---|---|---|---|---|"]
    for r in results:
        link = os.path.relpath(r.output, out_dir)
        rows.append(f"| {r.name} | {r.status} | {r.seconds:.1f} | {num(r.final_loss)} | {num(r.eval_score)} | "
                    f"[{link}]({link}) | {(r.error or '').replace('|', '/')} |")
    passed = sum(r.status == "passed" for r in results)
    return "\n".join(rows) + f"\n\n{passed}/{len(results)} passed, {sum(r.seconds for r in results):.0f} s in notebooks\n"


def report_html(results: list[NotebookResult], out_dir: Path) -> str:
    head = "<tr><th>notebook</th><th>status</th><th>time (s)</th><th>final loss</th><th>eval score</th><th>error</th></tr>"
    rows = []
    for r in results:
        link = html.escape(os.path.relpath(r.output, out_dir))
        color = "#c8f7c5" if r.status == "passed" else "#f7c5c5"
        cells = [f'<a href="{link}">{html.escape(r.name)}</a>', r.status, f"{r.seconds:.1f}",
                 "" if r.final_loss is None else f"{r.final_loss:.3f}",
                 "" if r.eval_score is None else f"{r.eval_score:.3f}", html.escape(r.error or "")]
        rows.append(f'<tr style="background:{color}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<html><body><h1>ftkit notebooks</h1><table border=1>{head}{''.join(rows)}</table></body></html>\n"


def run(names: list[str] | None = None, params: dict | None = None, *, tiny: bool = False,
        output_dir: str = "outputs/notebooks", jobs: int | None = None) -> list[NotebookResult]:
    """Validate every notebook's parameters first, then run them (in parallel) and write report.md/.html."""
    import papermill

    paths = find_notebooks(names)
    per_book = {p: dict(params or {}) for p in paths}
    for p in paths:  # --tiny: `tiny=True`, else base_model -> its twin; a notebook with neither is tiny by design
        declared = papermill.inspect_notebook(str(p)) if tiny else {}
        if "tiny" in declared:
            per_book[p].setdefault("tiny", True)
        elif "base_model" in declared:
            per_book[p].setdefault("base_model", twin_for_model(ast.literal_eval(declared["base_model"]["default"])))
    problems = []
    for p in paths:
        try:
            check_params(p, per_book[p])
        except ConfigError as e:
            problems += e.problems
    if problems:
        raise ConfigError(problems)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    cores = os.cpu_count() or 1
    jobs = max(1, min(len(paths), jobs or cores // 2 or 1))
    threads = max(1, cores // jobs)  # kernels share the cores instead of each spinning up cores threads
    log.info(f"running {len(paths)} notebooks, {jobs} at a time, {threads} thread(s) each -> {out}")
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(run_one, str(p), per_book[p], str(out), threads) for p in paths]
        results = []
        for f in futures:
            r = f.result()
            log.info(f"{r.name}: {r.status} in {r.seconds:.1f}s" + (f" ({r.error})" if r.error else ""))
            results.append(r)
    (out / "report.md").write_text(report_markdown(results, out))
    (out / "report.html").write_text(report_html(results, out))
    (out / "results.json").write_text(json.dumps([asdict(r) for r in results], indent=1))
    log.info(report_markdown(results, out))
    return results
