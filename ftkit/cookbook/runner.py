"""`ftkit notebooks run`: execute cookbook notebooks headless with papermill and write a report.

Parameters are checked against each notebook's `parameters` cell before anything runs (papermill
itself only warns about an unknown name and runs with the default). Notebooks run in parallel
worker processes, one kernel per core by default, each kernel's torch held to its share of the cores
(cores / jobs threads: more threads than cores on a busy box cost 4x). Kernels start in the output
folder, so a notebook that depends on the folder it runs from fails here; each writes its executed
copy and metrics (ftkit.cookbook.notebook.record) there, and report.py writes report.md/.html.
"""
from __future__ import annotations

import ast
import difflib
import json
import os
import re
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from ftkit.cookbook.notebook import BATCH_ENV, METRICS_ENV
from ftkit.cookbook.twins import twin_for_model
from ftkit.env import usable_cores
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
    excerpt: str | None = None  # the failing cell's source and the end of its traceback
    params: dict = field(default_factory=dict)  # every parameter as the run used it (defaults + given)
    metrics: dict = field(default_factory=dict)  # what the notebook recorded (notebook.record / record_run)


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
    out, problems = {}, []
    for item in items:
        key, sep, value = item.partition("=")
        try:
            parsed = yaml.safe_load(value) if sep else None
        except yaml.YAMLError as e:
            problems.append(Problem(f"cannot read the value {value!r} ({getattr(e, 'problem', None) or e})",
                                    where=f"-p {key}", fix=f"write a number, true/false or text; quote text that "
                                                           f"holds YAML signs: -p {key}='\"{value}\"'"))
            continue
        if not sep or not key or isinstance(parsed, (list, dict)):
            problems.append(Problem(f"cannot read parameter {item!r}", where="-p",
                                    fix="write -p name=value with a number, true/false or text"))
            continue
        out[key] = "" if parsed is None else parsed
    if problems:
        raise ConfigError(problems)
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


THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")  # torch reads OMP at start-up


def plan(n_notebooks: int, jobs: int | None = None, cores: int | None = None) -> tuple[int, int]:
    """(notebooks at a time, torch threads per kernel): one kernel per core unless `jobs` says otherwise, and
    cores / jobs threads each, so the kernels together never ask for more threads than there are cores."""
    cores = cores or usable_cores()
    jobs = max(1, min(n_notebooks, jobs or cores))
    return jobs, max(1, cores // jobs)


def _excerpt(e) -> str:
    """A failing cell, for the report: its last source lines and the end of its traceback, without colours."""
    source = "\n".join(str(e.source).splitlines()[-12:])
    trace = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(e.traceback or [])).strip().splitlines()[-8:]
    return source + "\n" + "-" * 40 + "\n" + "\n".join(trace)


def _ipc_kernel_manager(sockets: str):
    """jupyter_client's kernel manager on IPC sockets in the folder `sockets` (one per kernel: kernels running
    side by side must not share socket files). A kernel on local TCP without encryption warns at every start,
    and anyone on the machine could connect to it; an IPC socket is a file only this user can open."""
    from jupyter_client import AsyncKernelManager
    from traitlets import default

    class IpcKernelManager(AsyncKernelManager):
        @default("transport")
        def _transport_default(self):
            return "ipc"

        @default("ip")
        def _ip_default(self):
            return os.path.join(sockets, "kernel")

    return IpcKernelManager


def run_one(path: str, params: dict, out_dir: str, threads: int) -> NotebookResult:
    """Execute one notebook with its kernel started in `out_dir` (never the notebook's own folder: notebooks
    must not depend on where they run); a failing cell is named by its index and excerpted."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    path, out = Path(path), Path(out_dir)
    executed = out / path.name
    metrics = out / f"{path.stem}.metrics.json"
    out.mkdir(parents=True, exist_ok=True)
    metrics.unlink(missing_ok=True)
    os.environ.update({BATCH_ENV: "1", METRICS_ENV: str(metrics.resolve()), "MPLBACKEND": "Agg",
                       "TQDM_DISABLE": "1", **{v: str(threads) for v in THREAD_VARS}})
    declared = papermill.inspect_notebook(str(path))
    if "output_dir" in declared and "output_dir" not in params:
        params = {**params, "output_dir": str((out / f"{path.stem}-run").resolve())}  # artifacts beside the report
    used = {k: ast.literal_eval(v["default"]) for k, v in declared.items()} | params
    t0 = time.time()
    status, error, excerpt = "passed", None, None
    try:
        with tempfile.TemporaryDirectory(prefix="ftkit-kernel-") as sockets:  # short: socket paths max ~100 chars
            papermill.execute_notebook(str(path), str(executed), parameters=params, cwd=str(out.resolve()),
                                       progress_bar=False, kernel_name="python3", coalesce_streams=True,
                                       kernel_manager_class=_ipc_kernel_manager(sockets))
    except PapermillExecutionError as e:
        status, error = "failed", f"cell {e.cell_index}: {e.ename}: {str(e.evalue).splitlines()[0] if e.evalue else ''}"
        excerpt = _excerpt(e)
    except Exception as e:  # kernel died, missing kernel: report it in the row, keep the other notebooks going
        status, error = "failed", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    m = _metrics(metrics)
    return NotebookResult(path.stem, status, round(time.time() - t0, 1), str(executed),
                          m.get("final_loss"), m.get("eval_score"), error, excerpt, used, m)


def run(names: list[str] | None = None, params: dict | None = None, *, tiny: bool = False,
        output_dir: str = "outputs/notebooks", jobs: int | None = None) -> list[NotebookResult]:
    """Validate every notebook's parameters first, then run them (in parallel) and write report.md/.html."""
    import papermill

    from ftkit.cookbook import report

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
    jobs, threads = plan(len(paths), jobs)
    log.info(f"running {len(paths)} notebooks, {jobs} at a time, {threads} torch thread(s) each -> {out}")
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(run_one, str(p), per_book[p], str(out), threads) for p in paths]
        results = []
        for f in futures:
            r = f.result()
            log.info(f"{r.name}: {r.status} in {r.seconds:.1f}s" + (f" ({r.error})" if r.error else ""))
            results.append(r)
    report.write(results, out)
    (out / "results.json").write_text(json.dumps([asdict(r) for r in results], indent=1, default=str))
    log.info(report.markdown(results, out))
    return results
