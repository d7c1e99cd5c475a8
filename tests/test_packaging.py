"""A non-editable install carries what ftkit ships: recipes, DeepSpeed configs, notebooks, data samples.

Builds the wheel from a copy of the checkout (pip wheel --no-deps --no-build-isolation: no network), checks
its file list, then runs ftkit from the unpacked wheel, outside any checkout, as `pip install .` users do.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import OFFLINE, ROOT

SOURCES = ["pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "ftkit", "recipes", "notebooks", "data_samples"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("setuptools", reason="building the wheel offline needs setuptools in this environment")
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(ROOT / name, src / name, **({"ignore": shutil.ignore_patterns("__pycache__", "outputs", ".ipynb_checkpoints",
                                                                           "last_run_prepared")}
                                         if (ROOT / name).is_dir() else {}))
    dist = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(dist), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (whl,) = dist.glob("ftkit-*.whl")
    return whl


def test_wheel_ships_every_module_and_every_shipped_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "ftkit").rglob("*.py") if "__pycache__" not in p.parts}
    assert modules <= names, sorted(modules - names)
    from ftkit.resources import SHIPPED, shipped_files

    shipped = {f"ftkit/_shipped/{p}" for folder in SHIPPED for p in shipped_files(folder, ROOT)}
    assert shipped <= names, sorted(shipped - names)
    for must in ("recipes/quickstart.yml", "recipes/deepspeed/zero2.json", "recipes/llama/dpo.yml",
                 "recipes/llama/rewards.py", "recipes/cloud/slurm.sbatch", "recipes/cloud/ssh-pair.sh",
                 "notebooks/00_quickstart.ipynb", "data_samples/alpaca.jsonl",
                 "data_samples/make_samples.py"):
        assert f"ftkit/_shipped/{must}" in names, must
    assert "ftkit/assets/tiny_corpus.txt" in names
    assert {"ftkit/axolotl/catalogue.yaml", "ftkit/axolotl/harvested_names.txt"} <= names  # the Axolotl door's data
    assert not [n for n in names if n.startswith(("recipes/", "notebooks/", "data_samples/"))]  # no top-level clutter
    assert not [n for n in names if "_make.py" in n or "__pycache__" in n]


def test_installed_wheel_finds_its_shipped_files_outside_a_checkout(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    work = tmp_path / "elsewhere"
    work.mkdir()
    script = """
from ftkit.resources import root, shipped
from ftkit.cookbook import runner, preference
from ftkit.plugins.distributed import deepspeed_path
from ftkit.recipe import load_recipe
from ftkit.recipe.reference import option_counts
print("root", root())
print("axolotl", sum(option_counts().values()))
print("notebooks", len(runner.find_notebooks()))
print("dpo", preference.method_recipe("dpo").rl)
print("ds", deepspeed_path(load_recipe(shipped("recipes/quickstart.yml"), {"deepspeed": "zero2.json"})))
"""
    env = {**os.environ, **OFFLINE, "PYTHONPATH": str(site)}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=work, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
    assert lines["root"] == str(site / "ftkit" / "_shipped"), proc.stdout
    assert int(lines["notebooks"]) >= 14 and lines["dpo"] == "dpo"
    assert int(lines["axolotl"]) >= 800  # catalogue.yaml and harvested_names.txt came with the wheel
    assert lines["ds"] == str(site / "ftkit" / "_shipped" / "recipes" / "deepspeed" / "zero2.json")
    fetch = subprocess.run([sys.executable, "-m", "ftkit", "fetch", "examples", "--dest", "ex"], capture_output=True,
                           text=True, cwd=work, env=env, timeout=300)
    assert fetch.returncode == 0, fetch.stderr[-2000:]
    assert (work / "ex" / "quickstart.yml").read_bytes() == (ROOT / "recipes" / "quickstart.yml").read_bytes()
    assert f"from {site / 'ftkit' / '_shipped' / 'recipes'}" in fetch.stdout
