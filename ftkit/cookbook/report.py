"""The batch runner's report: report.md (one table row per notebook) and report.html (a page worth opening).

report.html shows, per notebook: status and whether its answers pass their checks ("passed" means the
notebook's own asserts held; wrong answers are counted beside it, never hidden), time, the parameters it
ran with, its loss-curve thumbnail, the answers before and after training, the assertion eval's score
explained, links to the executed notebook (rendered to HTML by nbconvert when installed, and the .ipynb),
and for a failing notebook the failing cell's source and traceback. The versions of the stack head the page.
"""
from __future__ import annotations

import base64
import html
import json
import os
import platform
from pathlib import Path

STACK = ("ftkit", "torch", "transformers", "peft", "trl", "datasets", "accelerate", "papermill")
CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
h1{margin-bottom:0}.sub{color:#666;margin-top:.2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;
vertical-align:top}th{background:#f4f4f4}.nb{border:1px solid #ccc;border-radius:6px;padding:1em;margin:1em 0}
.nb h2{margin:0 0 .4em 0;font-size:1.2em}.badge{display:inline-block;border-radius:4px;padding:1px 8px;
margin-right:6px;font-weight:600}.passed{background:#c8f7c5;color:#064}.failed{background:#f7c5c5;color:#700}
.wrong{background:#fde9b8;color:#7a4b00}.right{background:#e3f2fd;color:#0b4a7a}
.row{display:flex;gap:1.5em;flex-wrap:wrap}.thumb{width:320px;border:1px solid #ddd}
pre{background:#fbf3f3;border:1px solid #e6c4c4;padding:.6em;overflow-x:auto;font-size:85%}
td.ok{background:#eefbee}td.bad{background:#fff1e0}code{font-size:90%}"""


def versions() -> dict:
    """Python and the stack's package versions (what a reader needs to reproduce the run)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in STACK:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def answers(metrics: dict) -> tuple[int, int] | None:
    """(answers that pass every check on their prompt, answers checked), or None if the notebook recorded none."""
    checked = [s["after_ok"] for s in metrics.get("samples", []) if s.get("after_ok") is not None]
    return (sum(checked), len(checked)) if checked else None


def thumbnail(executed: Path, dest: Path) -> Path | None:
    """The executed notebook's first PNG output (its loss curve) saved as `dest`, or None."""
    try:
        nb = json.loads(executed.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png")
            if png:
                dest.write_bytes(base64.b64decode("".join(png) if isinstance(png, list) else png))
                return dest
    return None


def render_html(executed: Path, dest: Path) -> Path | None:
    """The executed notebook as a standalone HTML page (nbconvert), or None without nbconvert or a notebook."""
    try:
        import nbformat
        from nbconvert import HTMLExporter
    except ImportError:
        return None
    if not executed.is_file():
        return None
    body, _ = HTMLExporter().from_notebook_node(nbformat.read(str(executed), as_version=4))
    dest.write_text(body, encoding="utf-8")
    return dest


def _num(v) -> str:
    return "" if v is None else f"{v:.3f}"


def _verdict(metrics: dict) -> str:
    a = answers(metrics)
    return "" if a is None else f"{a[0]}/{a[1]} answers pass their checks"


def markdown(results, out_dir: Path) -> str:
    rows = ["| notebook | status | answers | time (s) | final loss | eval score | executed | error |",
            "|---|---|---|---|---|---|---|---|"]
    for r in results:
        link = os.path.relpath(r.output, out_dir)
        rows.append(f"| {r.name} | {r.status} | {_verdict(r.metrics)} | {r.seconds:.1f} | {_num(r.final_loss)} | "
                    f"{_num(r.eval_score)} | [{link}]({link}) | {(r.error or '').replace('|', '/')} |")
    return "\n".join(rows) + "\n\n" + _totals(results) + "\n"


def _totals(results) -> str:
    passed = sum(r.status == "passed" for r in results)
    wrong = [r.name for r in results if (a := answers(r.metrics)) and a[0] < a[1]]
    line = f"{passed}/{len(results)} passed, {sum(r.seconds for r in results):.0f} s in notebooks"
    if wrong:
        line += (f"; {len(wrong)} with answers that fail their checks ({', '.join(wrong)}): see each notebook's "
                 "answers (a few dozen steps on a tiny twin teach the format, not the facts)")
    return line


def _judged(answer: str, ok: bool | None) -> str:
    """One answer's table cell: green and ✓ when judged right, orange and ✗ when wrong, plain when not judged."""
    mark = {None: ("", ""), True: ("ok", " ✓"), False: ("bad", " ✗")}[ok]
    return f'<td class="{mark[0]}">{html.escape(answer)}{mark[1]}</td>'


def _card(r, out_dir: Path) -> str:
    """One notebook's section of report.html."""
    e = html.escape
    stem = Path(r.output).stem
    badges = [f'<span class="badge {r.status}">{r.status}</span>']
    a = answers(r.metrics)
    if a:
        badges.append(f'<span class="badge {"right" if a[0] == a[1] else "wrong"}">{e(_verdict(r.metrics))}</span>')
    rendered = render_html(Path(r.output), out_dir / f"{stem}.html")
    links = [f'<a href="{e(os.path.relpath(rendered, out_dir))}">executed notebook</a>' if rendered else
             "executed notebook (install nbconvert for the rendered page)",
             f'<a href="{e(os.path.relpath(r.output, out_dir))}">.ipynb</a>']
    facts = [("time", f"{r.seconds:.1f} s")]
    if r.metrics.get("first_loss") is not None:
        facts.append(("train loss", f"{r.metrics['first_loss']:.3f} -> {r.metrics['final_loss']:.3f}"))
    if r.eval_score is not None:
        facts.append(("right answers", f"{r.metrics.get('eval_score_before', 0):.0%} -> {r.eval_score:.0%}"))
    facts += [(k, e(repr(v))) for k, v in r.params.items()]
    params = "<table>" + "".join(f"<tr><th>{e(k)}</th><td>{v}</td></tr>" for k, v in facts) + "</table>"
    thumb = thumbnail(Path(r.output), out_dir / f"{stem}.loss.png")
    thumb_html = (f'<img class="thumb" alt="{e(r.name)} loss curve" src="{e(thumb.name)}">' if thumb
                  else "<p><i>no plot</i></p>")
    parts = [f'<div class="nb" id="{e(r.name)}"><h2>{e(r.name)} {"".join(badges)}</h2>',
             f'<div class="row"><div>{params}</div><div>{thumb_html}</div></div>', " | ".join(links)]
    samples = r.metrics.get("samples") or []
    if samples:
        rows = "".join(f"<tr><td>{e(s['prompt'])}</td>{_judged(s['before'], s.get('before_ok'))}"
                       f"{_judged(s['after'], s.get('after_ok'))}</tr>" for s in samples)
        parts.append(f"<h3>Answers before / after training</h3><table><tr><th>prompt</th><th>before</th>"
                     f"<th>after</th></tr>{rows}</table>")
    if r.metrics.get("eval_explained"):
        fails = r.metrics.get("eval_failures") or []
        parts.append(f"<p><b>Right answers {r.eval_score:.0%}</b>: {e(r.metrics['eval_explained'])}.</p>" +
                     (f"<details><summary>{len(fails)} failing checks</summary><ul>" +
                      "".join(f"<li><code>{e(f)}</code></li>" for f in fails) + "</ul></details>" if fails else ""))
    if r.error:
        parts.append(f"<h3>Failed: {e(r.error)}</h3>" + (f"<pre>{e(r.excerpt)}</pre>" if r.excerpt else ""))
    return "\n".join(parts) + "</div>"


def html_page(results, out_dir: Path) -> str:
    e = html.escape
    v = versions()
    toc = "".join(f'<li><a href="#{e(r.name)}">{e(r.name)}</a>: {r.status}'
                  f'{", " + e(_verdict(r.metrics)) if answers(r.metrics) else ""}</li>' for r in results)
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>ftkit notebooks</title><style>{CSS}</style>"
            f"</head><body><h1>ftkit notebooks</h1><p class=\"sub\">{e(_totals(results))}</p>"
            f"<p class=\"sub\">{e(', '.join(f'{k} {val}' for k, val in v.items()))}</p><ul>{toc}</ul>"
            + "\n".join(_card(r, out_dir) for r in results) + "</body></html>\n")


def write(results, out_dir: Path) -> None:
    """report.md and report.html (with each notebook's thumbnail and rendered page) in `out_dir`."""
    (out_dir / "report.md").write_text(markdown(results, out_dir), encoding="utf-8")
    (out_dir / "report.html").write_text(html_page(results, out_dir), encoding="utf-8")
