"""report.py: tables from hand-made results files, missing-file notes, README block replacement."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from hrank_ssd.course import report
from hrank_ssd.errors import HRankError


def _results(run_dir):
    res = run_dir / "results"
    res.mkdir(parents=True)
    pd.DataFrame([
        {"model": "vgg16-ssd", "title": "VGG16-SSD", "mAP": 0.6125, "avg_predict_s": 0.0421, "params": 1000},
        {"model": "vgg16-ssd-pruned", "title": "x", "mAP": 0.5875, "avg_predict_s": 0.0312, "params": 500},
        {"model": "mb1-ssd", "title": "y", "mAP": 0.5, "avg_predict_s": 0.0105, "params": 700},
    ]).to_csv(res / "map.csv", index=False)
    rows = []
    for model, aps in (("vgg16-ssd", (0.7, 0.525)), ("vgg16-ssd-pruned", (0.6, 0.575)), ("mb1-ssd", (0.55, 0.45))):
        for cls, ap in zip(("circle", "square"), aps):
            rows.append({"class": cls, "gts": 10, "dets": 33, "recall": 0.9, "precision": 0.25, "ap": ap,
                         "model": model})
    pd.DataFrame(rows).to_csv(res / "per_class_ap.csv", index=False)
    pd.DataFrame([
        {"model": "vgg16-ssd", "params": 26285998, "GMACs": 31.374, "forward_median_ms": 400.0,
         "forward_p90_ms": 410.0, "forward_fps": 2.5, "predict_median_ms": 500.0, "predict_p90_ms": 520.0,
         "predict_fps": 2.0, "forward_speedup": 1.0, "mac_ratio": 1.0},
        {"model": "vgg16-ssd-pruned", "params": 12157314, "GMACs": 18.336, "forward_median_ms": 250.0,
         "forward_p90_ms": 260.0, "forward_fps": 4.0, "predict_median_ms": 350.0, "predict_p90_ms": 360.0,
         "predict_fps": 2.857, "forward_speedup": 1.6, "mac_ratio": 1.711},
        {"model": "mb1-ssd", "params": 9468996, "GMACs": 1.536, "forward_median_ms": 125.0,
         "forward_p90_ms": 130.0, "forward_fps": 8.0, "predict_median_ms": 200.0, "predict_p90_ms": 210.0,
         "predict_fps": 5.0, "forward_speedup": 3.2, "mac_ratio": 20.42},
    ]).to_csv(res / "bench.csv", index=False)
    pd.DataFrame([{"epoch": e, "train_loss": 5.0 - e, "val_loss": 6.0 - e, "mAP": 0.1 * e if e else None,
                   "time_s": 2.5} for e in range(3)]).to_csv(res / "log_vgg16-ssd.csv", index=False)
    (res / "timings.json").write_text(json.dumps({"train vgg16-ssd": 12.5, "ranks": 3.0}))
    (res / "settings.json").write_text(json.dumps({"name": "offline", "synthetic": True, "vgg_width": 0.125,
                                                   "mb1_width": 0.25}))
    return res


def _write_report(run):
    pytest.importorskip("markdown", reason="report.html needs markdown (the colab extra)")
    return report.write_report(run)


def test_report_tables_hold_the_numbers_of_the_files(tmp_path):
    run = tmp_path / "20250101-000000"
    _results(run)
    md, html = _write_report(run)
    text = md.read_text()
    # comparison: our mAP, their published mAP, eval predict ms, bench forward ms and FPS
    assert "| VGG16-SSD | 0.6125 | 0.7731 | 42.1 | 400.0 | 2.50 | 500.0 | 2.00 | 1,000 |" in text
    assert "| VGG16-SSD pruned (HRank) | 0.5875 | 0.6953 | 31.2 | 250.0 | 4.00 |" in text
    assert "| MobileNetV1-SSD | 0.5000 | 0.6759 | 10.5 | 125.0 | 8.00 |" in text
    assert "theirs, VOC2007 test" in text
    # per-class AP pivot with the mean as the last row
    assert "| class | VGG16-SSD | VGG16-SSD pruned (HRank) | MobileNetV1-SSD |" in text
    assert "| circle | 0.7000 | 0.6000 | 0.5500 |" in text
    assert "| mAP (mean) | 0.6125 | 0.5875 | 0.5000 |" in text
    assert "| circle | 10 | 33 | 0.9000 | 0.2500 | 0.7000 |" in text
    assert "1.71x fewer MACs than VGG16-SSD, but a 1.60x faster forward pass" in text
    assert "not comparable" in text  # synthetic profile warning
    assert "| train vgg16-ssd | 12.5 |" in text
    assert "| VGG16-SSD | 3 | 3.0000 | 4.0000 | 0.2000 | 7.5 |" in text  # training summary: last row, total time
    for png in ("map_vs_latency.png", "per_class_ap.png", "loss_vgg16-ssd.png"):
        assert (run / "plots" / png).is_file() and f"plots/{png}" in text
    _, made = report.build_report(run)  # the list of plots is the files the report links
    assert sorted(p.name for p in made) == ["loss_vgg16-ssd.png", "map_vs_latency.png", "per_class_ap.png"]
    assert all(isinstance(p, Path) and p.is_file() for p in made)
    # no flops.csv -> no MACs scatter, and a note that says what writes it
    assert not (run / "plots" / "map_vs_macs.png").exists()
    h = html.read_text()
    assert "<table>" in h and "<td>0.6125</td>" in h.replace(' style="text-align: right;"', "")
    assert "Latencies: the machine was not recorded" in text
    (run / "results" / "machine.json").write_text(json.dumps({
        "device": "cuda", "device_name": "Tesla T4", "cpu": "Intel Xeon", "threads": 2, "torch": "2.11.0+cu126",
        "date": "2026-08-01T10:00:00+00:00"}))
    text = _write_report(run)[0].read_text()
    assert ("Latencies measured on Tesla T4 (device `cuda`, CPU Intel Xeon, 2 threads), torch 2.11.0+cu126, "
            "2026-08-01T10:00:00+00:00.") in text


def test_missing_files_say_which_command_makes_them(tmp_path):
    run = tmp_path / "run"
    (run / "results").mkdir(parents=True)
    md, _ = _write_report(run)
    text = md.read_text()
    assert "`results/map.csv` is missing" in text and "--steps evaluate" in text
    assert "`results/flops.csv` is missing" in text and "Course.flops()" in text
    assert "`results/sensitivity.csv` is missing" in text and "02_hrank_pruning.ipynb" in text
    assert "python -m hrank_ssd course" in report.missing_note("bench.csv")
    with pytest.raises(HRankError):
        _write_report(tmp_path / "nope")


def test_damaged_results_files_are_one_line_errors(tmp_path):
    from hrank_ssd.course.steps import Course

    run = tmp_path / "run"
    (run / "results").mkdir(parents=True)
    (run / "results" / "log_vgg16-ssd.csv").write_text("")  # e.g. a killed step
    with pytest.raises(HRankError, match="log_vgg16-ssd.csv is not a readable CSV"):
        _write_report(run)
    (run / "results" / "timings.json").write_text("{not json")
    with pytest.raises(HRankError, match="timings.json is not valid JSON"):
        Course("tiny", run, tmp_path / "work", progress=False).load_json("timings.json")


def test_flops_section_puts_seed_beside_exact_and_quotes_theirs(tmp_path):
    run = tmp_path / "run"
    res = _results(run)
    pd.DataFrame([
        {"model": "VGG16-SSD", "net": "vgg16-ssd", "compress_rate": "[0]*14", "params": 26285998,
         "MACs": 31374277120, "GMACs": 31.374, "seed_params": 19434304.0, "seed_flops": 31784832000.0,
         "params_ratio": 1.0, "MACs_ratio": 1.0},
        {"model": "VGG16-SSD pruned", "net": "vgg16-ssd", "compress_rate": "[0.1]*7+[0.5]*7", "params": 12157314,
         "MACs": 18336088810, "GMACs": 18.336, "seed_params": 3591598.0, "seed_flops": 14224900401.0,
         "params_ratio": 0.4625, "MACs_ratio": 0.5844},
    ]).to_csv(res / "flops.csv", index=False)
    text = _write_report(run)[0].read_text()
    assert "| VGG16-SSD pruned | [0.1]*7+[0.5]*7 | 12,157,314 | 18,336,088,810 | 18.336 |" in text
    assert "| VGG16-SSD pruned | 3591598 | 14224900401 | 3591598 | 14224900401 |" in text
    assert (run / "plots" / "map_vs_macs.png").is_file()
    comp = report.comparison_table(report.load_results(run))
    assert comp.loc[1, "params (full size)"] == 12157314


def test_markdown_table_formats():
    df = pd.DataFrame({"name": ["a|b", "c"], "n": [1234567, 2], "x": [0.5, float("nan")]})
    assert report.markdown_table(df, floatfmt=".2f").splitlines() == [
        "| name | n | x |", "|---|---:|---:|", "| a\\|b | 1,234,567 | 0.50 |", "| c | 2 | n/a |"]


def test_update_readme_replaces_only_the_marked_block(tmp_path):
    run = tmp_path / "run"
    _results(run)
    readme = tmp_path / "README.md"
    before = "# Title\n\nintro text\n\n<!-- results:start -->\nold numbers 0.1234\n<!-- results:end -->\n\n## After\nkeep me\n"
    readme.write_text(before)
    report.update_readme(readme, run)
    after = readme.read_text()
    assert after.startswith("# Title\n\nintro text\n\n<!-- results:start -->\n")
    assert after.endswith("<!-- results:end -->\n\n## After\nkeep me\n")
    assert "old numbers" not in after and "| VGG16-SSD | 0.6125 | 0.7731 |" in after
    report.update_readme(readme, run)  # idempotent
    assert readme.read_text() == after
    readme.write_text("# no markers\n")
    with pytest.raises(HRankError, match="markers"):
        report.update_readme(readme, run)
    assert readme.read_text() == "# no markers\n"


def test_results_table_names_known_steps_and_notebooks(tmp_path):
    from hrank_ssd.course import results

    for name, entry in results.RESULTS.items():
        assert entry.step in (*results.STEPS, "all", None), name
        assert set(entry.notebooks) <= set(results.NOTEBOOKS), name
    assert results.table_entry("log_vgg16-ssd.csv") == results.LOGS
    assert results.log_key(results.log_name("mb1-ssd")) == "mb1-ssd"
    assert results.results_file(tmp_path, "map.csv") == tmp_path / "map.csv"
    with pytest.raises(HRankError, match="add it to hrank_ssd.course.results.RESULTS"):
        results.results_file(tmp_path, "mystery.csv")
    assert "--steps" not in results.missing_note("layer_speed.csv")  # no --steps name runs it
