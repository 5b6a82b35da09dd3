"""Sensitivity scan, compress-rate suggestion and criteria comparison."""

import pandas as pd
import pytest

from hrank_ssd.cli import main
from hrank_ssd.errors import HRankError
from hrank_ssd.measure.flops import count_exact
from hrank_ssd.measure.sensitivity import compare_criteria, quick_map, suggest_compress_rate
from hrank_ssd.nets.models import build_model, save_model


def handmade_scan(n=14, robust=(14,)):
    """Layer ``robust`` loses nothing at any rate; every other layer loses 0.1 mAP per 0.1 of rate."""
    rows = []
    for layer in range(1, n + 1):
        for rate in [0.0, 0.3, 0.6, 0.9]:
            drop = 0.0 if layer in robust else rate
            rows.append({"layer": layer, "name": f"l{layer}", "rate": rate, "map": 0.8 - drop})
    return pd.DataFrame(rows)


def test_suggestion_prunes_the_insensitive_layer_first():
    model = build_model("vgg16-ssd", 6, width=0.125)
    full = count_exact(model)["MACs"].sum()
    # fc6 alone at 0.9: its MACs and most of fc7's input go; find the reduction that costs nothing else
    s = suggest_compress_rate(handmade_scan(), model, 0.05, candidate_rates=[0.3, 0.6, 0.9])
    assert s["rates"][13] == 0.9 and s["tolerated_drop"] == 0.0 and all(r == 0 for r in s["rates"][:13])
    pruned = build_model("vgg16-ssd", 6, width=0.125, compress_rate=s["rates"])
    assert s["mac_reduction"] == pytest.approx(1 - count_exact(pruned)["MACs"].sum() / full)
    big = suggest_compress_rate(handmade_scan(), model, 0.5, candidate_rates=[0.3, 0.6, 0.9])
    assert big["mac_reduction"] >= 0.5 and big["tolerated_drop"] > 0
    with pytest.raises(HRankError):
        suggest_compress_rate(handmade_scan(), model, 1.5)


def test_sensitivity_cli_writes_table_and_plot(synthetic_voc, tmp_path, capsys):
    save_model(build_model("vgg16-ssd", 6, width=0.125), tmp_path / "m.pth")
    out = tmp_path / "sens"
    assert main(["sensitivity", "--dataset", str(synthetic_voc), "--trained_model", str(tmp_path / "m.pth"),
                 "--criterion", "l1", "--rates", "0.5,0.9", "--layers", "1,14", "--limit_images", "3",
                 "--output_dir", str(out)]) == 0
    table = pd.read_csv(out / "sensitivity.csv")
    assert sorted(table["rate"].unique()) == [0.0, 0.5, 0.9] and sorted(table["layer"].unique()) == [1, 14]
    assert (out / "sensitivity.png").stat().st_size > 1000
    assert main(["sensitivity", "--dataset", str(synthetic_voc), "--trained_model", str(tmp_path / "m.pth"),
                 "--rates", "1.5", "--output_dir", str(out)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: --rates")


def test_compare_criteria_table(synthetic_voc):
    from hrank_ssd.data.voc import VOCDataset

    ds = VOCDataset(synthetic_voc, split="test", is_test=True)
    ds.ids = ds.ids[:2]
    model = build_model("vgg16-ssd", len(ds.class_names), width=0.125)
    calls = []
    table = compare_criteria(model, ds, [0.5] * 14, criteria=("l1", "random"),
                             finetune=lambda m, c: calls.append(c) or m)
    assert list(table["criterion"]) == ["l1", "random"] and calls == ["l1", "random"]
    assert {"map_pruned", "map_finetuned"} <= set(table.columns)


def test_criteria_and_quick_map_bars_only_with_progress(synthetic_voc, capsys):
    from hrank_ssd.data.voc import VOCDataset

    ds = VOCDataset(synthetic_voc, split="test", is_test=True)
    ds.ids = ds.ids[:1]
    model = build_model("vgg16-ssd", len(ds.class_names), width=0.125)
    compare_criteria(model, ds, [0.5] * 14, criteria=("l1", "random"), finetune=lambda m, c: m, progress=True)
    err = capsys.readouterr().err
    assert "criteria" in err and "4/4" in err and "eval" in err
    quick_map(model, ds, progress=True, desc="mAP unpruned")
    assert "mAP unpruned" in capsys.readouterr().err
    compare_criteria(model, ds, [0.5] * 14, criteria=("l1",), finetune=lambda m, c: m, progress=False)
    quick_map(model, ds)
    assert capsys.readouterr().err == ""
