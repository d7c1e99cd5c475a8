"""notebooks/preference_tuning.ipynb runs headless on the tiny twin and asserts what it shows."""
from __future__ import annotations

import json

import nbformat
import papermill

from tests.conftest import OFFLINE, ROOT

NOTEBOOK = ROOT / "notebooks" / "preference_tuning.ipynb"


def test_notebook_is_stored_clean_with_a_primitive_parameters_cell():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert "parameters" in code[0].metadata.get("tags", [])
    params = papermill.inspect_notebook(str(NOTEBOOK))
    assert set(params) == {"method", "base_model", "max_steps", "output_dir", "plot_png"}
    assert params["base_model"]["default"].strip("'\"") == "meta-llama/Llama-3.2-1B-Instruct"  # what a user runs


def test_notebook_runs_headless_on_the_tiny_twin(tmp_path, monkeypatch):
    for k, v in {**OFFLINE, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}.items():
        monkeypatch.setenv(k, v)
    out = tmp_path / "preference_tuning.ipynb"
    png = tmp_path / "margin.png"
    papermill.execute_notebook(str(NOTEBOOK), str(out), kernel_name="python3", cwd=str(ROOT), progress_bar=False,
                               parameters={"base_model": "tiny:llama", "max_steps": 12, "plot_png": str(png),
                                           "output_dir": str(tmp_path / "run")})
    assert png.stat().st_size > 1000  # the margin plot was drawn and saved
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["method"] == "dpo" and metrics["heldout_after"]["margin"] > metrics["heldout_before"]["margin"]
    text = out.read_text()
    assert "held-out prompt" in text and "reward margin" in text  # the comparison table and summary were shown
