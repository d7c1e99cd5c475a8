"""Measure ftkit on the configs from the wild: `ftkit check`, then a 2-step `ftkit train` on the twin, one
subprocess each, for every tests/wild_configs/*.yml (or --only NN,NN), with the model and data swapped as
tests/axolotl_corpus.py says (wild_run_overrides). Prints one line per config and writes every result as JSON:

    .venv/bin/python tools/wild_results.py --out wild_results.json [--only 02,13] [--timeout 900] [--in-process]

`--in-process` runs both verbs through ftkit.cli.main in this one process (same parsing of what they print): about
faster, as it pays for the imports once; the subprocess run is exactly what a user sees (rerun a config in doubt
that way). Set the offline environment first (the Makefile's variables), as the subprocess run does.

Each result: Axolotl's verdict (tests/wild_configs/axolotl_verdicts.json), check's exit code and problems,
train's exit code, steps trained, its loss line, and its problems or the last line of its traceback.
`--markdown FILE` renders a results JSON as a table (config, Axolotl, check, train, each problem with its class).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from axolotl_corpus import WILD, as_cli, run_ftkit, wild_configs, wild_run_overrides  # noqa: E402


def in_process(verb: str, config: Path, args: list[str], timeout: int = 0) -> dict:
    """run_ftkit's result, from ftkit.cli.main in this process (its stdout/stderr captured)."""
    import contextlib
    import io
    import time
    import traceback

    from axolotl_corpus import STEPS, problems, traceback_tail
    from ftkit.cli import main as ftkit_main

    out_text, err_text, t = io.StringIO(), io.StringIO(), time.perf_counter()
    with contextlib.redirect_stdout(out_text), contextlib.redirect_stderr(err_text):
        try:
            rc = ftkit_main([verb, str(config), *args])
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 1
        except BaseException:  # noqa: BLE001 - a traceback is a result here
            err_text.write(traceback.format_exc())
            rc = 1
    stdout, stderr = out_text.getvalue(), err_text.getvalue()
    out = {"rc": rc, "seconds": round(time.perf_counter() - t, 1), "problems": problems(stderr, config),
           "traceback": traceback_tail(stderr)}
    if verb == "train" and (m := STEPS.search(stdout + stderr)):
        out.update(steps=int(m.group(3)), loss=f"{m.group(1)} -> {m.group(2)}")
    return out


def measure(config: Path, verdicts: dict, timeout: int, run=run_ftkit) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"wild{config.name[:2]}-") as tmp:
        args = as_cli(wild_run_overrides(config, Path(tmp)))
        check = run("check", config, args, timeout)
        train = run("train", config, args, timeout)
    return {"file": config.name, "axolotl": verdicts.get(config.name, {}), "check": check, "train": train}


# problem text -> its class (first match); {key} is the option the problem names
CLASSES = [
    (r"written twice in one mapping", "duplicate key refused ({key})"),
    (r"a custom-format key written at the dataset level", "custom-format key outside type: ({key})"),
    (r"unknown option", "unknown key {key}"),
    (r"applies only to type", "dataset key not read by this type ({key})"),
    (r"an Axolotl feature ftkit refuses", "refused option {key}"),
    (r"unsupported dataset type", "dataset type unsupported ({key})"),
    (r"required option is missing", "required option missing ({key})"),
    (r"input should be", "value narrower than Axolotl's ({key})"),
    (r"no usable rows", "no row has anything to train ({key})"),
    (r"needs|is not read by|both true|conflicts", "cross-option rule ({key})"),
]


def problem_class(problem: str) -> str:
    m = re.match(r"(?:line \d+: |\S+\.\w+: )?([\w.]+): ", problem)  # after "line 12: " or a data file's name
    key = re.sub(r"\.\d+\.", ".N.", m.group(1)) if m else "?"
    return next((label.format(key=key) for pattern, label in CLASSES if re.search(pattern, problem)), "other")


def classes(result: dict) -> list[str]:
    """The classes of what stopped one config: check's problems, else train's, else its traceback."""
    c, t = result["check"], result["train"]
    if c["rc"] != 0:
        return list(dict.fromkeys(problem_class(p) for p in c["problems"]))
    if t["rc"] != 0:
        if t.get("traceback"):
            return [f"traceback in train: {t['traceback']}"]
        return list(dict.fromkeys(problem_class(p) for p in t["problems"])) or [f"train rc {t['rc']}"]
    return []


def markdown(results: list[dict]) -> str:
    """One row per config; Axolotl's verdict read from tests/wild_configs/axolotl_verdicts.json as it is now."""
    verdicts = json.loads((WILD / "axolotl_verdicts.json").read_text())["configs"]
    rows = ["| config | Axolotl | ftkit check | 2-step train | what stops it (exact message) | class |",
            "| --- | --- | --- | --- | --- | --- |"]
    for r in results:
        ax = verdicts.get(r["file"], r["axolotl"])
        verdict = ax.get("verdict", "?") + ("" if ax.get("loads", True) else " (its loader: no strategy for the type)")
        c, t = r["check"], r["train"]
        trained = f"2 steps, loss {t['loss']}" if t.get("steps") == 2 else f"refused (rc {t['rc']})" if t["problems"] \
            else f"crashed (rc {t['rc']})"
        why = "<br>".join(c["problems"] or t["problems"] or [t.get("traceback") or ""]).replace("|", "\\|")
        rows.append(f"| {r['file'][:-4]} | {verdict} | {'ok' if c['rc'] == 0 else 'refused'} | {trained} | {why} | "
                    f"{'<br>'.join(classes(r))} |")
    return "\n".join(rows) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="wild_results.json")
    p.add_argument("--only", default="", help="config numbers, e.g. 02,13")
    p.add_argument("--timeout", type=int, default=900, help="seconds per check or train")
    p.add_argument("--markdown", metavar="RESULTS_JSON", help="print RESULTS_JSON as a markdown table and exit")
    p.add_argument("--in-process", action="store_true", help="run the verbs in this process (faster; see above)")
    args = p.parse_args()
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())), end="")
        return 0
    verdicts = json.loads((WILD / "axolotl_verdicts.json").read_text())["configs"]
    only = {n for n in args.only.split(",") if n}
    results = []
    for config in wild_configs():
        if only and config.name[:2] not in only:
            continue
        r = measure(config, verdicts, args.timeout, in_process if args.in_process else run_ftkit)
        results.append(r)
        Path(args.out).write_text(json.dumps(results, indent=1))
        c, t = r["check"], r["train"]
        print(f"{config.name[:2]} axolotl={r['axolotl'].get('verdict', '?'):8} check={c['rc']} train={t['rc']} "
              f"steps={t.get('steps')} {(t['problems'] or [t['traceback'] or ''])[0][:140]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
