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
    assert re.search(r"steps/s: ftkit [\d.]+, bare TRL [\d.]+; time per step ftkit / TRL [\d.]+x", out), out
    assert "== axolotl:" in out
