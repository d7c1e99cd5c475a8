"""`ftkit bench compare` prints its side-by-side table (tiny sizes: the smoke test, not a measurement)."""
from __future__ import annotations

import re


def test_bench_compare_prints_every_section(tmp_path, monkeypatch, capsys):
    from ftkit.cli import main

    monkeypatch.setenv("FTKIT_CACHE", str(tmp_path))
    assert main(["bench", "compare", "--rows", "300", "--seq-lens", "512", "--sets", "longtail", "--prep-rows", "200",
                 "--steps", "3", "--rounds", "2"]) == 0
    out = capsys.readouterr().out
    # packing: ftkit and TRL on the same 300 rows; ftkit's bins never above TRL's, never below the bound
    row = re.search(r"longtail\s+512\s+300 \|\s+[\d.]+\s+[\d.]+\s+[\d.]+x \|\s+(\d+)\s+(\d+)\s+(\d+) \|", out)
    assert row, out
    ours, trl, bound = map(int, row.groups())
    assert bound <= ours <= trl
    assert re.search(r"\n\s+200 \|\s+[\d.]+\s+[\d.]+\s+[\d.]+x \|", out), out  # preprocess: ftkit vs bare loop
    assert re.search(r"steps/s: ftkit [\d.]+, bare TRL [\d.]+; time per step ftkit / TRL [\d.]+x wall, [\d.]+x CPU",
                     out), out
    # each side's seconds per step: wall and CPU, median (min-max) of the 1 round training gets at --rounds 2
    assert re.search(r"ftkit    s/step: wall [\d.]+, CPU [\d.]+\n\s+bare TRL s/step: wall [\d.]+, CPU [\d.]+", out), out
    assert re.search(r"load average [\d.]+ at the start, [\d.]+ at the end", out), out
    assert "== axolotl:" in out


def test_versus_axolotl_runs_both_clis_on_one_yaml_and_compares_losses(tmp_path, monkeypatch):
    """A stand-in `axolotl` package (its CLI prints what Axolotl's does: the Trainer's loss and train_runtime
    dicts) checks the plumbing: both tools get the same YAML, runtimes are read from their output, and the
    loss gap is measured step by step against ftkit's real training."""
    import os
    import sys
    from pathlib import Path

    import yaml

    from ftkit.bench import compare, versus_axolotl

    fake = tmp_path / "fake" / "axolotl" / "cli"
    fake.mkdir(parents=True)
    (fake.parent / "__init__.py").write_text("__version__ = 'stand-in'\n")
    (fake / "__init__.py").write_text("")
    seen = tmp_path / "seen.yml"
    (fake / "train.py").write_text(
        f"import sys, shutil\nshutil.copy(sys.argv[1], {str(seen)!r})\n"
        "print({'loss': '9.0'}); print({'loss': '1.0'}); print({'train_runtime': '2.0'})\n")
    (fake / "preprocess.py").write_text("")
    root = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path / "fake"), str(root)]))
    printed = []
    res = versus_axolotl.run(sys.executable, steps=4, rounds=1, prep_rows=[150], work=tmp_path / "w",
                             rows_file=compare.repeated_rows, print_=printed.append)
    train = res["training"]
    ftkit_losses = train["losses"]["ftkit"]
    assert len(ftkit_losses) == 1 and ftkit_losses[0] > 4  # logging_steps 4: one logged loss, the twin's start
    assert train["max_rel_loss_gap"] == abs(ftkit_losses[0] - 9.0) / 9.0
    assert train["time_ratio"] == train["seconds"]["ftkit"] / 2.0 and train["seconds"]["ftkit-lean"] > 0
    axolotl_yaml = yaml.safe_load(seen.read_text())
    assert axolotl_yaml["max_steps"] == 4 and axolotl_yaml["micro_batch_size"] == 16  # the YAML ftkit trained on
    assert res["preprocess"][0]["rows"] == 150 and any("Axolotl stand-in from" in p for p in printed)


def test_timings_print_their_spread_and_flag_a_busy_machine(monkeypatch):
    from ftkit.bench import timing

    assert timing.spread([3.0, 1.0, 2.0]) == "2.000 (1.000-3.000, 3 rounds)" and timing.spread([1.5]) == "1.500"
    monkeypatch.setattr(timing.os, "cpu_count", lambda: 2)
    assert timing.busy([1.5, 2.0]) == ""
    assert "load average up to 9.3 on 2 cores" in timing.busy([1.0, 9.3])
    assert timing.cpu_seconds() > 0


def test_bench_preprocess_measures_every_sample_file_cold_and_warm(monkeypatch, capsys):
    """`ftkit bench preprocess` (a prepare() signature change once broke it unseen): every data_samples file is
    tokenized cold, then re-used from the cache warm, and the totals add up."""
    from ftkit.bench.preprocess import catalog
    from ftkit.cli import main

    assert main(["bench", "preprocess"]) == 0
    out = capsys.readouterr().out
    rows = {m.group(1): (int(m.group(2)), int(m.group(3))) for m in
            re.finditer(r"^(\S+\.jsonl)\s+(\d+)\s+(\d+)\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+\d+x$", out, re.M)}
    assert set(rows) == set(catalog()) and all(n > 0 and tokens > n for n, tokens in rows.values()), out
    total = re.search(r"^all\s+(\d+)\s+(\d+)", out, re.M)
    assert total and tuple(map(int, total.groups())) == tuple(map(sum, zip(*rows.values()))), out
