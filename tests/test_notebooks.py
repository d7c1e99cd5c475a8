"""Notebooks: stored clean with a literal `parameters` cell, identical to what notebooks/_make.py writes from the
readable sources in notebooks/src/, and every one executed headless by the batch runner on the tiny twins (found by
glob): quietly, with their plots embedded, from a folder outside the repository, writing nothing into it; then the
report is checked, in a browser too."""
import ast
import base64
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import OFFLINE, ROOT, run_cli

from ftkit.cookbook import runner
from ftkit.errors import ConfigError, FtkitError

NOTEBOOKS = runner.find_notebooks()


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _default_recipe(path: Path) -> str | None:
    import papermill

    declared = papermill.inspect_notebook(str(path))
    return ast.literal_eval(declared["recipe_path"]["default"]) if "recipe_path" in declared else None


def _recipe_missing(path: Path) -> bool:
    """The notebook's default recipe is in neither the repo root nor relative to notebooks/ (both conventions)."""
    recipe = _default_recipe(path)
    return recipe is not None and not ((ROOT / recipe).is_file() or (path.parent / recipe).is_file())


def test_notebooks_found():
    names = {p.stem for p in NOTEBOOKS}
    assert {"mistral", "qwen", "gemma", "rwkv", "datasets_and_masking", "evaluation", "grpo"} <= names, names
    assert len(NOTEBOOKS) >= 14


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_stored_clean_with_parameters_cell(path):
    nb = _load(path)
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code), "stored with outputs"
    assert "parameters" in code[0]["metadata"].get("tags", []), "first code cell must be tagged parameters"
    for stmt in ast.parse("".join(code[0]["source"])).body:  # literals only: values derive in the next cell
        assert isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant), ast.dump(stmt)
    assert "assert " in "".join(code[-1]["source"]), "the last cell asserts what the notebook showed"
    import papermill  # every parameter must be one papermill can see (a second "=" on a line hides it)

    assigned = [t.id for stmt in ast.parse("".join(code[0]["source"])).body for t in stmt.targets]
    assert list(papermill.inspect_notebook(str(path))) == assigned
    assert "import papermill" not in json.dumps(nb["cells"]), "notebooks must run in Jupyter without papermill"


def _make_module():
    spec = importlib.util.spec_from_file_location("nb_make", ROOT / "notebooks" / "_make.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_generated_notebooks_are_current():
    """One source of truth: every committed notebook is what notebooks/src/ produces, byte for byte."""
    rendered = _make_module().render_all()
    assert set(rendered) == {p.name for p in NOTEBOOKS}, set(rendered) ^ {p.name for p in NOTEBOOKS}
    for name, text in rendered.items():
        path = ROOT / "notebooks" / name
        assert path.read_text(encoding="utf-8") == text, f"{name} differs from its source: run python notebooks/_make.py"
        assert "by notebooks/_make.py: edit the source, not this file" in text


def test_sources_are_percent_scripts_a_teacher_can_edit(tmp_path):
    """The sources are plain jupytext percent files: the markdown is readable as comments, code as code; a shared
    cell edited once changes every lesson that includes it; an unknown placeholder is an error naming the file."""
    make = _make_module()
    shared = (ROOT / "notebooks" / "src" / "_shared_path.py").read_text(encoding="utf-8")
    assert "# ## Before / after: looking is not checking" in shared and "ev = evals.judge(result)" in shared
    families = make.families()
    assert set(families) == {"llama", "mistral", "mixtral", "qwen", "gemma", "phi", "falcon", "gpt_neox", "gptj", "mpt",
                             "gpt2", "rwkv"}
    text = json.loads(make.render_all()["mistral.ipynb"])
    assert families["mistral"]["lesson"] in "".join(text["cells"][3]["source"])  # the YAML's lesson text, as written
    includes = [p.stem for p in (ROOT / "notebooks" / "src").glob("[!_]*.py")
                if 'include="_shared_path.py"' in p.read_text(encoding="utf-8")]
    assert sorted(includes) == ["datasets_and_masking", "evaluation", "sample_packing"], includes
    bad = tmp_path / "bad.py"
    bad.write_text('# %% [markdown]\n# # {{titel}}\n')
    with pytest.raises(SystemExit, match=r"bad.py: unknown placeholder \{\{titel\}\} \(known: title"):
        make.notebook(bad, {"title": "x"})


# ---------------------------------------------------------------- execution (all notebooks, in parallel)

def test_no_notebook_assert_passes_on_startswith():
    """A lesson's checks test its claim (the right answer), not the shape of a sentence."""
    for path in NOTEBOOKS:
        asserts = [line for c in _load(path)["cells"] if c["cell_type"] == "code"
                   for line in "".join(c["source"]).splitlines() if line.lstrip().startswith("assert ")]
        assert asserts and not [a for a in asserts if "startswith(" in a], (path.name, asserts)


def _tree(folder: Path) -> set:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Every notebook through the runner (kernels start in a temp folder outside the repository)."""
    out = tmp_path_factory.mktemp("notebooks")
    before = _tree(ROOT / "notebooks")
    runnable = [p.stem for p in NOTEBOOKS if not _recipe_missing(p)]
    results = runner.run(runnable, tiny=True, output_dir=str(out), jobs=2)
    return out, {r.name: r for r in results}, before


def _param(path: Path):
    marks = [pytest.mark.xfail(strict=True, raises=KeyError, reason=f"{_default_recipe(path)} arrives with "
                               "another branch (recipes/llama: adapters)")] if _recipe_missing(path) else []
    return pytest.param(path.stem, id=path.stem, marks=marks)


@pytest.mark.parametrize("name", [_param(p) for p in NOTEBOOKS])
def test_notebook_executes_headless(name, executed):
    out, results, _ = executed
    r = results[name]
    assert r.status == "passed", r.error
    if 'nb.record("parity_ok"' not in (ROOT / "notebooks" / f"{name}.ipynb").read_text(encoding="utf-8"):
        return  # the quickstart and the preference lesson: their own asserts ran (status passed)
    metrics = json.loads((out / f"{name}.metrics.json").read_text())
    assert metrics["final_loss"] < metrics["first_loss"], metrics  # the notebook's own assert is stricter
    assert metrics["parity_ok"] is True and 0 <= metrics["eval_score"] <= 1, metrics
    assert metrics["serving_ok"] is True, metrics  # the saved tokenizer prompts like training
    assert Path(r.output).is_file()


def _outputs(path: Path):
    """(cell source, output) pairs of an executed notebook."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    return [("".join(c["source"]), o) for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"]]


def _text(output: dict) -> str:
    text = output.get("text") or output.get("data", {}).get("text/plain") or ""
    return "".join(text) if isinstance(text, list) else text


NOISE = ("Failed to load CPU gemm_4bit_forward", "Setting accelerator to CPU", "is deprecated and will be removed")


def test_batch_outputs_are_a_few_plain_lines_with_the_plot_embedded(executed):
    out, results, _ = executed
    for name, r in results.items():
        pairs = _outputs(Path(r.output))
        text = "\n".join(_text(o) for _, o in pairs)
        assert "\r" not in text and "it/s]" not in text and "{'loss'" not in text, (name, text[-2000:])
        assert not [n for n in NOISE if n in text], (name, [n for n in NOISE if n in text])
        per_cell: dict = {}
        for source, _ in pairs:
            per_cell[source] = per_cell.get(source, 0) + 1
        assert max(per_cell.values()) <= 4, (name, per_cell)  # streams coalesced; no output per step
        train_cells = [(s, o) for s, o in pairs if "panel.train(" in s]
        assert train_cells, name
        lines = "".join(_text(o) for _, o in train_cells).count("[ftkit] step ")
        assert 2 <= lines <= 14, (name, lines)  # ProgressLines: about ten per run
        pngs = [o for _, o in pairs if "image/png" in o.get("data", {})]
        if name != "sample_packing" or pngs:
            assert pngs and base64.b64decode(pngs[0]["data"]["image/png"])[:4] == b"\x89PNG", name


def test_quickstart_gets_the_answers_right_by_default(executed):
    """With its default parameters the first lesson reaches the claim it checks: Madrid, slow, blue."""
    _, results, _ = executed
    samples = results["00_quickstart"].metrics["samples"]
    assert [s["after"] for s in samples] == ["The capital of Spain is Madrid.", "The opposite of fast is slow.",
                                             "The sky is blue."], samples
    assert all(s["after_ok"] for s in samples) and not any(s.get("after_ok") is False for s in samples)
    assert results["00_quickstart"].params["max_steps"] == 0  # the default: the recipe's three epochs


def test_notebooks_write_nothing_into_the_repository(executed):
    _, _, before = executed
    assert _tree(ROOT / "notebooks") == before, _tree(ROOT / "notebooks") ^ before
    for stray in ("metrics.json", "outputs", "last_run_prepared", "preference_tuning.png"):  # what once leaked
        assert stray in before or not (ROOT / "notebooks" / stray).exists(), stray  # a leftover of a local run is not this run's


def test_report_has_one_row_per_notebook(executed):
    out, results, _ = executed
    md = (out / "report.md").read_text()
    for name in results:
        assert f"| {name} | passed |" in md, md


def test_report_html_shows_what_each_notebook_did(executed):
    out, results, _ = executed
    page = (out / "report.html").read_text(encoding="utf-8")
    for name in ("torch", "transformers", "peft", "trl"):
        assert re.search(rf"{name} \d+\.\d+", page), name  # versions
    for name, r in results.items():
        section = page[page.index(f'id="{name}"'):]
        section = section[:section.index('<div class="nb"', 1) if '<div class="nb"' in section[1:] else None]
        assert '<span class="badge passed">passed</span>' in section and f"{r.seconds:.1f} s" in section
        assert "<th>max_steps</th>" in section or "<th>method</th>" in section  # the parameters it ran with
        thumb = re.search(r'<img class="thumb" [^>]*src="([^"]+)"', section)
        assert thumb and (out / thumb.group(1)).read_bytes()[:4] == b"\x89PNG", name  # the loss curve
        if r.metrics.get("eval_explained"):
            assert "Answers before / after training" in section and "answers right after training" in section
            samples = r.metrics["samples"]
            ok, n = sum(s["after_ok"] for s in samples), len(samples)
            ok_before = sum(s["before_ok"] for s in samples)
            assert f"{ok}/{n} answers pass their checks" in section  # "passed" never hides wrong answers
            # before and after side by side, each answer marked as judged
            assert section.count(" ✗</td>") == 2 * n - ok - ok_before and section.count(" ✓</td>") == ok + ok_before
        rendered = out / f"{name}.html"
        try:
            import nbconvert  # noqa: F401
            assert f'href="{name}.html"' in section and "<html" in rendered.read_text(encoding="utf-8")[:2000]
        except ImportError:
            assert "install nbconvert for the rendered page" in section
    wrong = [n for n, r in results.items() if any(s.get("after_ok") is False for s in r.metrics.get("samples", []))]
    assert wrong and f"{len(wrong)} with answers that fail their checks" in page


def test_report_in_a_browser(executed, tmp_path):
    from browser import page, screenshot_path

    out, results, _ = executed
    with page() as browser:
        browser.goto((out / "report.html").as_uri())
        assert browser.title() == "ftkit notebooks"
        assert browser.locator(".nb").count() == len(results)
        thumbs = browser.locator("img.thumb")
        assert thumbs.count() == len(results)
        assert all(thumbs.nth(i).evaluate("img => img.complete && img.naturalWidth > 100") for i in range(thumbs.count()))
        quick = browser.locator('[id="00_quickstart"]')
        assert "3/3 answers pass their checks" in quick.inner_text()
        assert "The capital of Spain is Madrid." in quick.inner_text()
        browser.screenshot(path=str(screenshot_path(tmp_path, "report.html.png")), full_page=False)
        quick.screenshot(path=str(screenshot_path(tmp_path, "report_quickstart.png")))


def _untracked() -> list[str]:
    """Files git would offer to add (new and not ignored)."""
    out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT, capture_output=True,
                         text=True).stdout
    return [line for line in out.splitlines() if line.startswith("??")]


def test_quickstart_from_the_repository_root_with_plain_papermill_and_its_checks_can_fail():
    """`papermill notebooks/00_quickstart.ipynb out.ipynb` from the repo root runs every cell (paths come from the
    root, the plot is embedded without a batch runner); with 25 steps the answers are wrong and the last cell says so
    (fewer than the recipe's 20 warm-up steps would be refused before training: train/preflight.py)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.ipynb"
        status = _untracked()
        env = {**os.environ, **OFFLINE, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        proc = subprocess.run([sys.executable, "-m", "papermill", "notebooks/00_quickstart.ipynb", str(out),
                               "-p", "max_steps", "25", "--no-progress-bar"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode != 0, "25 steps cannot teach Madrid: the quickstart's checks must fail"
        nb = json.loads(out.read_text(encoding="utf-8"))
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        failed = [c for c in code if any(o["output_type"] == "error" for o in c["outputs"])]
        assert failed == [code[-1]], [c["source"][:1] for c in failed]  # only the checks cell, every lesson cell ran
        error = next(o for o in code[-1]["outputs"] if o["output_type"] == "error")
        assert error["ename"] == "AssertionError" and "capital of Spain" in error["evalue"], error["evalue"][:500]
        pngs = [o for c in code for o in c["outputs"] if "image/png" in o.get("data", {})]
        assert pngs, "the loss plot is embedded in a plain papermill run too"
        assert _untracked() == status, _untracked()  # all it wrote is git-ignored (outputs/, last_run_prepared/)


# ---------------------------------------------------------------- runner errors

def test_params_are_checked_against_the_parameters_cell():
    path = ROOT / "notebooks" / "mistral.ipynb"
    with pytest.raises(ConfigError, match=r"mistral.ipynb: max_stepz: unknown parameter.*did you mean max_steps"):
        runner.check_params(path, {"max_stepz": 3})
    with pytest.raises(ConfigError, match=r"tiny: tiny=3 is not a bool.*Fix: give a bool like the default True"):
        runner.check_params(path, {"tiny": 3})
    runner.check_params(path, {"max_steps": 3, "learning_rate": 1, "tiny": False})  # int for a float is fine
    assert runner.parse_params(["max_steps=3", "tiny=false", "recipe_path=recipes/x.yml"]) == \
        {"max_steps": 3, "tiny": False, "recipe_path": "recipes/x.yml"}
    with pytest.raises(ConfigError, match=r"-p: cannot read parameter 'max_steps'.*name=value"):
        runner.parse_params(["max_steps"])


def test_unknown_notebook_name_via_cli():
    res = run_cli("notebooks", "run", "mistrel", "--tiny")
    assert res.returncode == 2
    assert "no notebook 'mistrel'" in res.stderr and "did you mean mistral?" in res.stderr


def test_failing_cell_is_reported_with_its_index(tmp_path):
    nb = {"cells": [{"cell_type": "code", "id": "a", "metadata": {"tags": ["parameters"]}, "execution_count": None,
                     "outputs": [], "source": ["x = 1"]},
                    {"cell_type": "code", "id": "b", "metadata": {}, "execution_count": None, "outputs": [],
                     "source": ["raise ValueError(f'boom {x}')"]}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    nb["cells"].insert(1, {"cell_type": "code", "id": "t", "metadata": {}, "execution_count": None, "outputs": [],
                           "source": ["import os, torch\n", "from ftkit.cookbook import notebook as nb\n",
                                      "nb.record('torch_threads', torch.get_num_threads())\n",
                                      "nb.record('cwd', os.getcwd())"]})
    path = tmp_path / "broken.ipynb"
    path.write_text(json.dumps(nb))
    r = runner.run_one(str(path), {"x": 7}, str(tmp_path / "out"), threads=1)
    assert r.status == "failed" and r.error == "cell 3: ValueError: boom 7", r.error
    assert "raise ValueError(f'boom {x}')" in r.excerpt and "ValueError: boom 7" in r.excerpt  # the failing cell
    assert "\x1b[" not in r.excerpt and r.params == {"x": 7}
    assert r.metrics["torch_threads"] == 1  # the kernel's torch holds to its share of the cores
    assert r.metrics["cwd"] == str((tmp_path / "out").resolve())  # kernels start outside the notebooks' folder
    from ftkit.cookbook import report

    report.write([r], tmp_path / "out")
    page = (tmp_path / "out" / "report.html").read_text()
    assert '<span class="badge failed">failed</span>' in page and "cell 3: ValueError: boom 7" in page
    assert "<pre>" in page and "raise ValueError(f&#x27;boom {x}&#x27;)" in page
    with pytest.raises(FtkitError, match="no notebook 'nope'"):
        runner.find_notebooks(["nope"], folder=tmp_path)


def test_runner_gives_each_kernel_its_share_of_the_cores():
    assert runner.plan(16, None, cores=2) == (2, 1)  # one notebook per core, one torch thread each
    assert runner.plan(16, 1, cores=2) == (1, 2)
    assert runner.plan(1, None, cores=8) == (1, 8)
    assert runner.plan(16, None, cores=8) == (8, 1) and runner.plan(3, 2, cores=8) == (2, 4)


def test_family_memory_lessons_size_the_recipes_real_model():
    """Each family notebook's memory cell sizes its recipe's own base model (the llama lesson once printed an 8B
    shape under the 1B recipe): the parameter count matches the size in the model's name."""
    from ftkit.cookbook import notebook as nb
    from ftkit.recipe import load_recipe

    for name, lesson in _make_module().families().items():
        cells = "".join("".join(c["source"]) for c in _load(ROOT / "notebooks" / f"{name}.ipynb")["cells"])
        assert "nb.real_size(real_recipe.base_model)" in cells and f'recipe_path = "{lesson["recipe"]}"' in cells, name
        base = load_recipe(ROOT / lesson["recipe"]).base_model
        size = nb.real_size(base)
        assert size["base_model"] == base and size["params_b"], (name, size)
        m = re.search(r"(\d+)x(\d+(?:\.\d+)?)b|(\d+(?:\.\d+)?)([bm])\b", base.lower().replace("-", " "))
        if m is None:  # e.g. Phi-3-mini: no size in the name
            continue
        named = float(m.group(1)) * float(m.group(2)) if m.group(1) else float(m.group(3)) / (1000 if m.group(4) == "m" else 1)
        assert 0.75 * named <= size["params_b"] <= 1.3 * named, (name, base, size["params_b"], named)
