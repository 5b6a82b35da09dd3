"""benchmarks/latency_frontier.py end to end at smoke size: every model of the validation set is built, timed
and predicted, the targets table is written, and target (d) is read from a course run's map.csv (exact)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import load_benchmark
from support.fake_clock import conv_clock

from hrank_ssd.latency.table import LatencyTable


@pytest.fixture(scope="module")
def frontier():
    return load_benchmark("latency_frontier")


def _course(folder, matched, paper):
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"model": ["vgg16-ssd", "vgg16-ssd-pruned", "vgg16-ssd-lat-paper-macs"],
                  "mAP": [0.9, paper, matched]}).to_csv(folder / "map.csv", index=False)
    return folder


@pytest.mark.parametrize("matched, result", [(0.7, "met"), (0.695, "met"), (0.6899, "not met")])
def test_map_target_reads_the_course_results(frontier, tmp_path, matched, result):
    row = frontier.map_target(_course(tmp_path / "results", matched, 0.7))
    assert row["result"] == result
    assert row["measured"].startswith(f"{matched - 0.7:+.4f}")


def test_map_target_without_a_course_run_says_how_to_get_it(frontier, tmp_path):
    assert frontier.map_target(None)["result"].startswith("not measured: pass --course_results")
    (tmp_path / "map.csv").write_text("model,mAP\nvgg16-ssd,0.5\n")
    assert "lacks the two models" in frontier.map_target(tmp_path)["result"]


def test_smoke_run_writes_every_model_and_the_targets(frontier, tmp_path, monkeypatch):
    """On the conv clock (tests/support/fake_clock.py): the tables, the knapsack's choices and the timings are the
    same on any machine, so the run takes the same path everywhere."""
    out = tmp_path / "lf.md"
    course = _course(tmp_path / "results", 0.71, 0.7)
    with conv_clock(monkeypatch):
        assert frontier.main(["--smoke", "--options", "channels_last", "--out", str(out),
                              "--course_results", str(course)]) == 0
    rows = pd.read_csv(out.with_suffix(".csv"))
    assert rows["model"].iloc[0] == "unpruned" and len(rows) >= 6
    assert (rows["predicted_ms"] > 0).all() and (rows["measured_ms"] > 0).all()
    assert rows["predicted_speedup"].iloc[0] == pytest.approx(1.0, rel=1e-12)  # predict(full widths) is full_ms
    np.testing.assert_allclose(rows["predicted_speedup"], rows["predicted_ms"].iloc[0] / rows["predicted_ms"], rtol=1e-9)
    text = out.read_text()
    assert "| (d) mAP" in text and "+0.0100 (0.7100 vs 0.7000) | >= -0.01 | met |" in text
    assert out.with_name("lf_table.json").is_file() and out.with_suffix(".png").is_file()
    check = LatencyTable.load(out.with_name("lf_check_table.json"), threads=2)  # the benchmark times at 2 threads
    assert [c["name"] for c in check.checks] == list(rows["model"])
    np.testing.assert_array_equal(rows["check_predicted_ms"], [c["predicted_ms"] for c in check.checks])
    np.testing.assert_array_equal(rows["check_measured_ms"], [c["measured_ms"] for c in check.checks])
    assert check.drift["chunks"] >= 1 and f"ran at {check.drift['p10']:.2f}-" in text
    worst = rows["check_error_%"].abs().max()
    assert f"| (c) \\|prediction error\\|, all {len(rows)} models, each timed among the check table's own models " \
           f"| max {worst:.1f}% (" in text
    assert "| (c-later) |" not in text and "(c-later) \\|prediction error\\|, the first table" in text


def test_error_targets_read_the_check_table_when_there_is_one(frontier):
    rows = pd.DataFrame({"model": ["a", "b"], "error_%": [-12.0, 3.0], "check_error_%": [4.0, -9.5]})
    (c, later) = frontier.error_targets(rows)
    assert (c["measured"], c["required"], c["result"]) == ("max 9.5% (b)", "<= 10%", "met")
    assert (later["measured"], later["required"], later["result"]) == ("max 12.0% (a)", "-", "drift, for reading")
    (only,) = frontier.error_targets(rows.drop(columns=["check_error_%"]))
    assert only["target"].startswith("(c) ") and "--no_check_table" in only["target"]
    assert (only["measured"], only["result"]) == ("max 12.0% (a)", "not met")
