"""report.py: tables from hand-made results files, missing-file notes, README block replacement."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from hrank_ssd.course import plots, report, report_tables
from hrank_ssd.course.results import load_results, missing_note
from hrank_ssd.errors import HRankError
from hrank_ssd.measure.tables import markdown_table


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
    # comparison: our mAP, their published mAP, eval predict ms, their T4 predict ms, bench forward ms and FPS
    assert "| VGG16-SSD | 0.6125 | 0.7731 | 42.1 | 26.2 | 400.0 | 2.50 | 500.0 | 2.00 | 1,000 |" in text
    assert "| VGG16-SSD pruned (HRank) | 0.5875 | 0.6953 | 31.2 | 42.6 | 250.0 | 4.00 |" in text
    assert "| MobileNetV1-SSD | 0.5000 | 0.6759 | 10.5 | 24.9 | 125.0 | 8.00 |" in text
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
    for png in ("per_class_ap.png", "loss_vgg16-ssd.png"):
        assert (run / "plots" / png).is_file() and f"plots/{png}" in text
    _, made = report.build_report(run)  # the list of plots is the files the report links
    assert sorted(p.name for p in made) == ["loss_vgg16-ssd.png", "per_class_ap.png"]
    assert all(isinstance(p, Path) and p.is_file() for p in made)
    # no frontier.csv -> no frontier plot; no flops.csv -> no published plot; notes say what writes them
    assert not (run / "plots" / "frontier.png").exists() and "`results/frontier.csv` is missing" in text
    assert not (run / "plots" / "published_map_vs_macs.png").exists()
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
    assert "python -m hrank_ssd course" in missing_note("bench.csv")
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
         "MACs": 31374277120, "GMACs": 31.374, "published_params": 19434304.0, "published_flops": 31784832000.0,
         "params_ratio": 1.0, "MACs_ratio": 1.0},
        {"model": "VGG16-SSD pruned", "net": "vgg16-ssd", "compress_rate": "[0.1]*7+[0.5]*7", "params": 12157314,
         "MACs": 18336088810, "GMACs": 18.336, "published_params": 3591598.0, "published_flops": 14224900401.0,
         "params_ratio": 0.4625, "MACs_ratio": 0.5844},
    ]).to_csv(res / "flops.csv", index=False)
    text = _write_report(run)[0].read_text()
    assert "| VGG16-SSD pruned | [0.1]*7+[0.5]*7 | 12,157,314 | 18,336,088,810 | 18.336 |" in text
    assert "| VGG16-SSD pruned | 3591598 | 14224900401 | 3591598 | 14224900401 |" in text
    assert (run / "plots" / "published_map_vs_macs.png").is_file() and "plots/published_map_vs_macs.png" in text
    comp = report_tables.comparison_table(load_results(run))
    assert comp.loc[1, "params (full size)"] == 12157314


def test_markdown_table_formats():
    df = pd.DataFrame({"name": ["a|b", "c"], "n": [1234567, 2], "x": [0.5, float("nan")]})
    assert markdown_table(df, floatfmt=".2f").splitlines() == [
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
    assert results.results_file(tmp_path, results.log_name("mb1-ssd")) == tmp_path / "log_mb1-ssd.csv"
    assert results.results_file(tmp_path, "map.csv") == tmp_path / "map.csv"
    with pytest.raises(HRankError, match="add it to hrank_ssd.course.results.RESULTS"):
        results.results_file(tmp_path, "mystery.csv")
    assert "--steps" not in results.missing_note("layer_speed.csv")  # no --steps name runs it


def test_pareto_frontier_is_exact_on_hand_made_points():
    # cost, mAP: a dominates b (cheaper, better); c and d tie exactly (both stay); e is cheapest but worst (stays);
    # f is the most accurate (stays); g has a NaN (never on it); h is beaten by c on cost at equal mAP
    cost = [1.0, 2.0, 3.0, 3.0, 0.5, 9.0, float("nan"), 4.0]
    quality = [0.5, 0.4, 0.7, 0.7, 0.1, 0.9, 0.95, 0.7]
    assert report_tables.pareto_mask(cost, quality) == [True, False, True, True, True, True, False, False]
    assert report_tables.pareto_mask([], []) == []
    assert report_tables.pareto_mask([2.0, 1.0], [0.5, 0.6]) == [False, True]


def _frontier_files(res):
    keys = ["vgg16-ssd", "vgg16-ssd-pruned", "vgg16-ssd-lat-paper-macs", "vgg16-ssd-lat-small", "mb1-ssd",
            "mb1-ssd-pruned"]
    pd.DataFrame({"model": keys, "mAP": [0.9, 0.85, 0.88, 0.7, 0.6, 0.5], "avg_predict_s": 0.01,
                  "params": 1000}).to_csv(res / "map.csv", index=False)
    pd.DataFrame({"model": keys, "net": ["vgg16-ssd"] * 4 + ["mb1-ssd"] * 2, "params": [6, 3, 3, 2, 4, 3],
                  "GMACs": [0.55, 0.32, 0.31, 0.2, 0.12, 0.08], "forward_median_ms": [20.0, 16.0, 10.0, 8.0, 5.0, 4.0],
                  "forward_p90_ms": 1.0, "forward_fps": 1.0, "forward_speedup": 1.0, "mac_ratio": 1.0,
                  "predicted_ms": [21.0, 15.0, 11.0, 7.5, float("nan"), float("nan")],
                  "finetune_epochs": [0, 4, 4, 1, 0, 1]}).to_csv(res / "frontier.csv", index=False)
    (res / "frontier_machine.json").write_text(json.dumps({"device": "cpu", "device_name": "AMD EPYC", "cpu": "AMD EPYC",
                                                            "threads": 2, "torch": "2.14", "date": "2026-12-01"}))


def test_frontier_table_joins_map_with_measured_costs_and_marks_the_frontier(tmp_path):
    run = tmp_path / "run"
    res = _results(run)
    _frontier_files(res)
    table = report_tables.frontier_table(load_results(run)).set_index("model")
    assert list(table.index) == ["VGG16-SSD", "VGG16-SSD pruned (HRank)", "VGG16-SSD latency-pruned (paper rate's MACs)",
                                 "VGG16-SSD latency-pruned (small budget)", "MobileNetV1-SSD",
                                 "MobileNetV1-SSD pruned (HRank)"]
    assert table["speed-up vs unpruned"].tolist() == [1.0, 20 / 16, 2.0, 2.5, 1.0, 1.25]  # each against its own net
    assert table["speed-up vs VGG16-SSD"].tolist() == [1.0, 20 / 16, 2.0, 2.5, 4.0, 5.0]
    # latency: the paper-rate model (16 ms, 0.85) is beaten by the paper-MACs one (10 ms, 0.88)
    assert table["frontier (latency)"].tolist() == [True, False, True, True, True, True]
    # MACs: 0.31 G at 0.88 beats 0.32 G at 0.85 as well
    assert table["frontier (MACs)"].tolist() == [True, False, True, True, True, True]
    text = _write_report(run)[0].read_text()
    assert ("| VGG16-SSD latency-pruned (paper rate's MACs) | 0.8800 | 10.00 | 11.00 | 0.3100 | 3 | 2.00 | 2.00 | 4 | yes | yes |"
            in text)
    assert "| VGG16-SSD pruned (HRank) | 0.8500 | 16.00 | 15.00 | 0.3200 | 3 | 1.25 | 1.25 | 4 |  |  |" in text
    assert "measured on AMD EPYC, 2 threads" in text and (run / "plots" / "frontier.png").is_file()
    # the surprising numbers explained beside the table: a 0.2 mAP drop after a 1-epoch finetune
    assert ("**What these numbers say** (written from them):\n\n- VGG16-SSD latency-pruned (small budget) loses "
            "0.2000 mAP against VGG16-SSD (0.7000 vs 0.9000): it keeps 33% of the parameters and was finetuned 1 "
            "epoch") in text
    assert "`results/latency_models.csv` is missing" in text and "--steps latency" in text
    block = report.readme_results_block(run)  # the README shows all six, then the full-size three
    assert "| VGG16-SSD latency-pruned (small budget) | 0.7000 |" in block and "| VGG16-SSD | 0.9000 | 0.7731 |" in block


def test_published_figures_get_their_own_axes(tmp_path):
    """One data set per axis: our mAPs (synthetic data, our machine) and their published VOC mAPs never share one."""
    run = tmp_path / "run"
    res = _results(run)
    _frontier_files(res)
    pd.DataFrame([{"model": label, "net": net, "compress_rate": rate, "params": 1, "MACs": macs}
                  for label, net, rate, macs in (("VGG16-SSD", "vgg16-ssd", "[0]*14", 31374277120),
                                                 ("VGG16-SSD pruned", "vgg16-ssd", "[0.1]*7+[0.5]*7", 18336088810),
                                                 ("MobileNetV1-SSD", "mb1-ssd", "[0]*14", 1536059904))
                  ]).to_csv(res / "flops.csv", index=False)
    loaded = load_results(run)
    points = report_tables.published_points(loaded["flops.csv"])
    assert points["mAP (theirs, published)"].tolist() == list(report_tables.PUBLISHED_MAP.values())
    assert points["GMACs (full size)"].tolist() == [31.37427712, 18.33608881, 1.536059904]
    ours = report_tables.frontier_table(loaded)
    fig_ours = plots.plot_frontier(ours, report_tables.machine_title(loaded["frontier_machine.json"]))
    fig_theirs = plots.plot_published(points)

    def ys(fig):
        return {round(float(y), 6) for ax in fig.axes for c in ax.collections for y in c.get_offsets()[:, 1]}

    assert ys(fig_ours) == {0.9, 0.85, 0.88, 0.7, 0.6, 0.5}  # our mAPs only
    assert ys(fig_theirs) == {round(m, 6) for m in report_tables.PUBLISHED_MAP.values()}  # theirs only
    for a in fig_ours.axes:
        for b in fig_theirs.axes:
            assert a is not b and not a.get_shared_x_axes().joined(a, b) and not a.get_shared_y_axes().joined(a, b)
    assert "AMD EPYC, 2 threads" in fig_ours._suptitle.get_text()
    theirs = fig_theirs.axes[0]
    assert "theirs" in theirs.get_ylabel() and "VOC2007" in theirs.get_ylabel()
    assert not theirs.child_axes  # no estimated time axis: only what was measured or published
    plt = pytest.importorskip("matplotlib.pyplot")
    plt.close(fig_ours)
    plt.close(fig_theirs)


def _add_yours(res, separate: bool):
    """yours.json as Course.evaluate writes it, and (``separate``) the student's rows in map, per-class, bench and
    frontier files."""
    info = {"compress_rate": "[0.3]*14" if separate else "[0.1]*7+[0.5]*7", "source": "chosen in notebook 02",
            "file": "vgg16-ssd-pruned-0.3x14-ft4.pth" if separate else "vgg16-ssd-pruned.pth",
            "model": "yours-0.3x14" if separate else None, "same_as": None if separate else "vgg16-ssd-pruned"}
    (res / "yours.json").write_text(json.dumps(info))
    if not separate:
        return
    for name, row in (("map.csv", {"model": "yours-0.3x14", "title": "yours ([0.3]*14)", "mAP": 0.55,
                                   "avg_predict_s": 0.02, "params": 400}),
                      ("bench.csv", {"model": "yours-0.3x14", "params": 9000000, "GMACs": 15.0,
                                     "forward_median_ms": 200.0, "forward_speedup": 2.0, "mac_ratio": 2.09}),
                      ("frontier.csv", {"model": "yours-0.3x14", "net": "vgg16-ssd", "params": 2, "GMACs": 0.25,
                                        "forward_median_ms": 12.0, "predicted_ms": 12.5, "finetune_epochs": 4})):
        table = pd.read_csv(res / name)
        pd.concat([table, pd.DataFrame([row])], ignore_index=True).to_csv(res / name, index=False)
    pc = pd.read_csv(res / "per_class_ap.csv")
    mine = pc[pc["model"] == "vgg16-ssd-pruned"].assign(model="yours-0.3x14", ap=[0.5, 0.6])
    pd.concat([pc, mine], ignore_index=True).to_csv(res / "per_class_ap.csv", index=False)


@pytest.mark.parametrize("separate", [True, False])
def test_yours_is_a_row_beside_the_paper_rate_or_said_once(tmp_path, separate):
    """The student's model (notebooks 02-03): its own rows, or one line when it is the paper-rate model; a run
    without it (not finetuned, or not recorded) never says "yours"."""
    run = tmp_path / "run"
    res = _results(run)
    _frontier_files(res)
    _add_yours(res, separate)
    text = _write_report(run)[0].read_text()
    if separate:
        assert ("Yours: your rate `[0.3]*14`, chosen in notebook 02, finetuned in notebook 03, is the row "
                "*yours ([0.3]*14)*.") in text
        assert "| yours ([0.3]*14) | 0.5500 | 12.00 | 12.50 | 0.2500 | 2 | 1.67 | 1.67 | 4 |" in text  # frontier
        # comparison: its full-size params and MACs are bench's (it built the model), so the column stays integers
        assert "| yours ([0.3]*14) | 0.5500 | n/a | 20.0 | n/a | 200.0 | 5.00 | n/a | n/a | 400 | 9,000,000 | 15.000 |" \
            in text and "| VGG16-SSD | 0.9000 | 0.7731 | 10.0 | 26.2 | 400.0 | 2.50 | 500.0 | 2.00 | 1,000 | 26,285,998 |" in text
        assert "| circle | 0.7000 | 0.6000 | 0.5500 | 0.5000 |" in text  # per class, yours last
        assert "- yours ([0.3]*14): 2.09x fewer MACs than VGG16-SSD, but a 2.00x faster forward pass." in text
        frontier = report_tables.frontier_table(load_results(run))
        assert frontier["label"].tolist()[-1] == "yours ([0.3]*14)"
    else:
        assert ("Yours: your rate `[0.1]*7+[0.5]*7`, chosen in notebook 02, gives the compared paper-rate model "
                "itself: its rows are *VGG16-SSD pruned (HRank)* (no second row).") in text
        assert "| yours" not in text and text.count("Yours:") == 1
        (res / "yours.json").write_text(json.dumps({"compress_rate": "[0.3]*14", "source": "x", "file": None,
                                                    "model": None, "same_as": None}))  # not finetuned
        assert "yours" not in _write_report(run)[0].read_text().lower()
        (res / "yours.json").unlink()
        assert "yours" not in _write_report(run)[0].read_text().lower()


def test_the_per_model_summary_is_one_row_per_model(tmp_path):
    run = tmp_path / "run"
    res = _results(run)
    pc = pd.read_csv(res / "per_class_ap.csv")
    pc.loc[1, ["gts", "recall", "precision", "ap"]] = [0, float("nan"), float("nan"), float("nan")]  # no squares
    table = report_tables.per_model_summary(pc)
    assert table.to_dict("records")[0] == {"model": "VGG16-SSD", "classes": 1, "objects": 10, "detections": 66,
                                           "mean recall": 0.9, "mean precision": 0.25, "mAP": 0.7}
    assert table["model"].tolist() == ["VGG16-SSD", "VGG16-SSD pruned (HRank)", "MobileNetV1-SSD"]
    assert table["mAP"].tolist()[1:] == [(0.6 + 0.575) / 2, (0.55 + 0.45) / 2]  # as mean_ap sums them
    assert report_tables.title("yours-0.1x7_0.5x7") == "yours ([0.1]*7+[0.5]*7)"
    assert report_tables.title(report_tables.your_key([0.1, 0.2] + [0.5] * 12)) == "yours ([0.1]+[0.2]+[0.5]*12)"


def _paper_and_yours(tiny_course, monkeypatch, rate=None):
    """The tiny course with its paper-rate model in place (pruned, standing in for its finetune) and, at ``rate``,
    the student's notebook-03 model; ``course.model`` gives the paper-rate model or the baseline (nothing trains)."""
    from hrank_ssd.nets.models import load_model, save_model

    course, _ = tiny_course
    paper = course.path("vgg16-ssd-pruned")
    save_model(load_model(course.prune()), paper)
    if rate is not None:
        course.choose_compress_rate(rate)
        save_model(load_model(course.prune(rate)), course.your_model() or course.path("vgg16-ssd-pruned-0.3x14-ft1"))
    monkeypatch.setattr(course, "model", lambda key: paper if key == "vgg16-ssd-pruned" else course.path("vgg16-ssd"))
    return course


def test_the_course_evaluates_and_times_yours_beside_the_paper_rate(tiny_course, monkeypatch):
    from hrank_ssd.course import measures

    course = _paper_and_yours(tiny_course, monkeypatch, [0.3] * 14)
    assert course.your_model() == course.path("vgg16-ssd-pruned-0.3x14-ft1")
    summary, per_class = course.evaluate(keys=("vgg16-ssd", "vgg16-ssd-pruned"))
    assert summary["model"].tolist() == ["vgg16-ssd", "vgg16-ssd-pruned", "yours-0.3x14"]
    assert summary["title"].tolist()[-1] == "yours ([0.3]*14)"
    assert list(dict.fromkeys(per_class["model"])) == summary["model"].tolist()
    assert (measures.eval_dir(course, "yours-0.3x14") / "det_test_circle.txt").is_file()  # its detections kept
    assert course.load_json("yours.json") == {"compress_rate": "[0.3]*14", "source": course.chosen_compress_rate()[1],
                                              "file": "vgg16-ssd-pruned-0.3x14-ft1.pth", "model": "yours-0.3x14",
                                              "same_as": None}
    timed = {}

    def bench(course, models, name, *args, **kw):  # what would be timed, and its widths
        timed[name] = {k: m.plan.prunable for k, m in models.items()}
        return pd.DataFrame({"model": list(models), "forward_median_ms": 1.0, "GMACs": 1.0, "params": 1})

    monkeypatch.setattr(measures, "_bench", bench)
    monkeypatch.setattr(course, "latency_table", lambda: type("T", (), {"net": "vgg16-ssd", "predict": sum})())
    course.bench()
    assert list(timed["bench"]) == ["vgg16-ssd", "mb1-ssd", "vgg16-ssd-pruned", "yours-0.3x14"]
    assert timed["bench"]["yours-0.3x14"] == [int(c * 0.7) for c in timed["bench"]["vgg16-ssd"]]  # full size
    front = course.frontier()
    assert front["model"].tolist()[-1] == "yours-0.3x14" and list(timed["frontier"])[-1] == "yours-0.3x14"
    assert front["finetune_epochs"].tolist()[-1] == course.profile.finetune_epochs


def test_yours_at_the_paper_rate_is_the_compared_model_not_a_second_row(tiny_course, monkeypatch):
    from hrank_ssd.course import measures

    course = _paper_and_yours(tiny_course, monkeypatch)
    assert course.your_model() == course.path("vgg16-ssd-pruned")  # no choice: the profile's rate, its finetune
    assert measures.yours(course) == {"compress_rate": "[0.1]*7+[0.5]*7", "source": "the tiny profile's",
                                      "file": "vgg16-ssd-pruned.pth", "model": None, "same_as": "vgg16-ssd-pruned"}
    assert list(measures.compared(course, ("vgg16-ssd-pruned",))[0]) == ["vgg16-ssd-pruned"]
    course.path("vgg16-ssd-pruned").unlink()  # not finetuned yet: no row and nothing it is the same as
    assert measures.yours(course)["model"] is None and measures.yours(course)["same_as"] is None


def test_the_frontier_question_knows_yours_by_its_title(tmp_path, capsys):
    from hrank_ssd.course import questions

    run = tmp_path / "run"
    res = _results(run)
    _frontier_files(res)
    _add_yours(res, separate=True)
    front = pd.read_csv(res / "frontier.csv")
    front.loc[front["model"] == "yours-0.3x14", "forward_median_ms"] = 3.0  # the fastest: on the frontier
    front.to_csv(res / "frontier.csv", index=False)
    table = report_tables.frontier_table(load_results(run))
    on = table.loc[table["frontier (latency)"], "model"].tolist()
    assert on[-1] == "yours ([0.3]*14)" and "MobileNetV1-SSD pruned (HRank)" not in on  # 4 ms at 0.5: beaten
    assert questions.check_frontier(lambda: on, table)
    assert not questions.check_frontier(lambda: on[:-1], table)
    assert "1 frontier model(s) missing" in capsys.readouterr().out
