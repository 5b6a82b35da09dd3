"""benchmarks/keep_scan.py: every scanned choice stays within the seed rate's MACs and keeps its share of importance."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import load_benchmark


def test_keep_scan_on_a_course_work_folder(tiny_course, tmp_path):
    course, _ = tiny_course
    course.latency_table()  # measured and cached in work/tiny/latency/, as a finished course leaves it
    out = tmp_path / "scan.md"
    scan = load_benchmark("keep_scan")
    assert scan.main(["--work", str(course.work.parent), "--profile", "tiny", "--keeps", "1,0.95,0.8",
                      "--min_keep", "0.25", "--out", str(out)]) == 0
    rows = pd.read_csv(out.with_suffix(".csv"))
    assert list(rows["keep"]) == [1.0, 0.95, 0.8]
    assert (rows["MAC share"] <= rows["seed MAC share"] + 1e-12).all()
    most = rows.loc[rows["keep"] == 1.0, "importance"].item()
    assert (rows["importance"] >= rows["keep"] * most - 1e-9).all()
    text = out.read_text()
    assert "keep 0.95" in text and "keep 0.8" in text
    assert f"{rows['speed-up'].iloc[1]:.2f}x ({rows['MAC share'].iloc[1]:.2f})" in text


def test_keep_scan_needs_a_source():
    with pytest.raises(SystemExit):
        load_benchmark("keep_scan").parse([])
