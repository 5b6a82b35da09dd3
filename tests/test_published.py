"""The original project's published results: one data file, read everywhere, shown beside ours."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest

from hrank_ssd.course import published, report, report_tables
from hrank_ssd.course.profiles import PROFILES
from hrank_ssd.course.report_tables import SHORT_FINETUNE
from hrank_ssd.course.results import load_results
from hrank_ssd.data.voc import VOC_CLASSES
from hrank_ssd.errors import HRankError

REPO = Path(__file__).resolve().parents[1]


def test_each_published_map_is_the_mean_of_its_per_class_aps():
    data = published.published()
    assert "評估結果" in data["source"] and "T4" in data["environment"] and "11-point" in data["metric"]
    for key, model in data["models"].items():
        aps = list(model["ap"].values())
        assert list(model["ap"]) == list(VOC_CLASSES) and len(aps) == 20
        assert abs(math.fsum(aps) / len(aps) - model["mAP"]) <= 1e-12, key
    assert list(published.published_map()) == ["vgg16-ssd", "vgg16-ssd-pruned", "mb1-ssd"]
    assert published.published_ap().loc["pottedplant", "vgg16-ssd-pruned"] == 0.3949796299586133


def test_their_finetune_and_ranks_used_voc2012_alone():
    theirs = published.published_finetune()
    assert (theirs["dataset"], theirs["num_epochs"], theirs["lr"], theirs["batch_size"]) == \
        ("VOC2012 trainval", 120, 1e-5, 8)
    assert "--datasets VOCdevkit/VOC2012/ " in theirs["command"] and "2007 " not in theirs["dataset"]
    assert published.published()["ranks"]["command"] == "python HR_rank_generation.py --dataset VOCdevkit/VOC2012/"
    assert (PROFILES["full"].finetune_epochs, PROFILES["full"].finetune_lr) == (120, 1e-5)


def test_their_pruned_model_was_slower_on_their_t4():
    ms = published.published_predict_ms()
    assert ms["vgg16-ssd-pruned"] == pytest.approx(42.58417543956652) and ms["vgg16-ssd"] == pytest.approx(26.228126012065683)
    line = published.slower_pruned_line()
    assert "42.6 ms per image against 26.2 ms unpruned (1.62x the time): slower" in line


def test_the_numbers_have_one_copy():
    """PUBLISHED_MAP and the report read the file; no module or notebook source types the numbers again."""
    assert report_tables.PUBLISHED_MAP == published.published_map()
    needles = [f"{m:.4f}" for m in published.published_map().values()]
    needles += [f"{v:.4f}" for v in published.published_ap().to_numpy().ravel()]
    sources = list((REPO / "lib").rglob("*.py")) + list((REPO / "notebooks").glob("[0-9][0-9]_*.py"))
    for path in sources:
        text = path.read_text(encoding="utf-8")
        found = [n for n in needles if re.search(rf"(?<![\d.]){re.escape(n)}(?!\d)", text)]
        assert not found, f"{path.relative_to(REPO)} types published figures {found}: read them from published.json"


def test_a_damaged_file_is_a_one_line_error(tmp_path):
    bad = tmp_path / "published.json"
    bad.write_text(json.dumps({"models": {"vgg16-ssd": {"mAP": 0.7}}}))
    with pytest.raises(HRankError, match=r"is not the published results file .*restore it") as e:
        published.published(bad)
    assert "\n" not in str(e.value)


def _run_with_voc_classes(run):
    res = run / "results"
    res.mkdir(parents=True)
    theirs = published.published_ap()
    rows = [{"class": c, "gts": 1, "dets": 1, "recall": 1.0, "precision": 1.0, "ap": 0.5 + i / 100, "model": key}
            for key in ("vgg16-ssd", "vgg16-ssd-pruned", "mb1-ssd") for i, c in enumerate(theirs.index)]
    pd.DataFrame(rows).to_csv(res / "per_class_ap.csv", index=False)
    pd.DataFrame([{"model": k, "mAP": 0.6, "avg_predict_s": 0.01, "params": 1} for k in published.MODELS]) \
        .to_csv(res / "map.csv", index=False)
    (res / "settings.json").write_text(json.dumps({"name": "full", "synthetic": False}))
    return res


def test_report_and_notebook_04_show_their_per_class_aps_beside_ours(tmp_path):
    run = tmp_path / "run"
    _run_with_voc_classes(run)
    text, _ = report.build_report(run)
    assert "### The published per-class AP (theirs)" in text
    assert ("| class | VGG16-SSD (ours) | VGG16-SSD (theirs) | VGG16-SSD pruned (HRank) (ours) | "
            "VGG16-SSD pruned (HRank) (theirs) | MobileNetV1-SSD (ours) | MobileNetV1-SSD (theirs) |") in text
    assert "| aeroplane | 0.5000 | 0.8025 | 0.5000 | 0.7261 | 0.5000 | 0.6843 |" in text
    assert "| mAP (mean) | 0.5950 | 0.7731 | 0.5950 | 0.6953 | 0.5950 | 0.6759 |" in text
    assert published.slower_pruned_line() in text and "評估結果" in text
    assert "| VGG16-SSD pruned (HRank) | 0.6000 | 0.6953 | 10.0 | 42.6 |" in text  # their T4 predict ms beside ours
    table = report_tables.published_ap_table(None)  # offline: theirs alone
    assert list(table.columns) == ["class", "VGG16-SSD (theirs)", "VGG16-SSD pruned (HRank) (theirs)",
                                   "MobileNetV1-SSD (theirs)"]
    mean = table.set_index("class").loc["mAP (mean)"]
    assert [abs(mean.iloc[i] - m) <= 1e-12 for i, m in enumerate(published.published_map().values())] == [True] * 3
    source = (REPO / "notebooks" / "04_eval_map_fps.py").read_text(encoding="utf-8")
    assert "report_tables.published_ap_table(per_class)" in source and "published.slower_pruned_line()" in source
    assert "report_tables.PUBLISHED_PREDICT_MS" in source


def test_readme_quotes_the_generated_published_block():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start, end = text.index(report.PUBLISHED_START), text.index(report.PUBLISHED_END)
    assert text[start + len(report.PUBLISHED_START):end].strip("\n") == report.published_block()


def test_short_finetunes_get_a_note_from_the_numbers(tmp_path):
    theirs = published.published_finetune()["num_epochs"]
    note = report_tables.finetune_note
    assert note(3) == f"short stand-in: finetuned 3 of the published {theirs} epochs"
    assert note(0) == note(theirs) == note(math.ceil(theirs * SHORT_FINETUNE)) == note(float("nan")) == ""
    # offline the yardstick is the paper-rate model's own finetune
    assert note(1, 4) == "finetuned 1 of the paper-rate model's 4 epochs: not a fair comparison"
    assert note(4, 4) == note(5, 4) == note(0, 4) == ""
    res = _run_with_voc_classes(tmp_path / "run")
    pd.DataFrame({"model": list(published.MODELS), "net": ["vgg16-ssd", "vgg16-ssd", "mb1-ssd"], "params": 1,
                  "GMACs": [3.0, 2.0, 1.0], "forward_median_ms": [3.0, 2.0, 1.0], "predicted_ms": math.nan,
                  "finetune_epochs": [0, 3, 0]}).to_csv(res / "frontier.csv", index=False)
    table = report_tables.frontier_table(load_results(tmp_path / "run"))
    assert table["note"].tolist() == ["", report_tables.finetune_note(3), ""]

