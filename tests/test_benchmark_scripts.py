"""The ``benchmarks/`` scripts end like the CLI: bad input is one line on stderr and exit status 2, no traceback."""

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import load_benchmark

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _bad_inputs(tmp: Path):
    a_file = tmp / "a_file"
    a_file.write_text("not a folder")
    return {
        "offline_seeds.py": ["--seeds", "0", "--work", str(a_file / "work"), "--runs", str(tmp / "runs"),
                             "--out", str(tmp / "seeds")],
        "latency_frontier.py": ["--table", str(tmp / "missing" / "table.json"), "--out", str(tmp / "lf.md")],
        "train_layout.py": ["--out", str(a_file / "layout.md")],  # a file where its folder should be
    }


@pytest.mark.parametrize("script", ["offline_seeds.py", "latency_frontier.py", "train_layout.py"])
def test_bad_input_is_one_line_and_status_2(script, tmp_path):
    args = _bad_inputs(tmp_path)[script]
    out = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True,
                         timeout=300)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr and lines[-1].startswith("error: "), out.stderr[-2000:]
    assert not (tmp_path / "a_file" / "work").exists() and (tmp_path / "a_file").read_text() == "not a folder"


def test_train_layout_quick_run_times_both_layouts(tmp_path):
    """A smoke run: one case, real train() steps in both layouts; the page's ratio is its two columns' ratio."""
    import pandas as pd

    out = tmp_path / "layout.md"
    assert load_benchmark("train_layout").main(["--quick", "--threads", "1", "--out", str(out)]) == 0
    table = pd.read_csv(out.with_suffix(".csv"))
    assert len(table) == 1 and table["steps timed"].item() == 3  # 4 steps: 3 intervals, the first step untimed
    assert table["speed-up"].item() == table["NCHW ms/step"].item() / table["channels-last ms/step"].item()
    assert "| VGG16-SSD, course width (baseline training) | 2 | 3 |" in out.read_text()


def test_mutmut_report_counts_and_explains_survivors():
    check = load_benchmark("mutmut_check")
    results = check.parse_results(
        "    hrank_ssd.nets.compress.x_layer_rates__mutmut_1: killed\n"
        "    hrank_ssd.measure.evaluation.x_compute_ap__mutmut_25: survived\n"
        "    hrank_ssd.measure.evaluation.x_predict_dataset__mutmut_26: survived\n"
        "    hrank_ssd.hrank.ranks.xǁRankAccumulatorǁ_hook__mutmut_3: timeout\n"
        "    hrank_ssd.hrank.pruning.x_round_keep__mutmut_4: survived\n"
        "    hrank_ssd.hrank.ranks.x_has_ranks__mutmut_2: no tests\n"
        "Stopping early\n")
    assert len(results) == 6 and results["hrank_ssd.hrank.ranks.x_has_ranks__mutmut_2"] == "no tests"
    assert check.function_of("hrank_ssd.hrank.ranks.xǁRankAccumulatorǁ_hook__mutmut_3") == "RankAccumulator._hook"
    assert check.module_of("hrank_ssd.hrank.ranks.x_has_ranks__mutmut_2") == "ranks"
    diffs = {
        "hrank_ssd.measure.evaluation.x_compute_ap__mutmut_25":
            "--- a\n+++ b\n-                         for t in np.arange(0.0, 1.1, 0.1)))\n"
            "+                         for t in np.arange(0.0, 2.1, 0.1)))\n",
        "hrank_ssd.measure.evaluation.x_predict_dataset__mutmut_26":
            "-    for i in tqdm(range(n), desc=desc):\n+    for i in tqdm(range(n), desc=None):\n",
        "hrank_ssd.hrank.pruning.x_round_keep__mutmut_4": "-    if round_to <= 1:\n+    if round_to <= 2:\n",
        "hrank_ssd.hrank.ranks.x_has_ranks__mutmut_2": "+    return all(None)\n",
    }
    text, unexplained = check.report({"results": results, "diffs": diffs}, None, 60.0, None, "3.8.1")
    assert unexplained == 2  # round_keep's mutant and the function no test calls
    assert "| evaluation | 2 | 0 (0) | 2 | 0 |" in text and "| ranks | 2 | 1 (1) | 0 | 1 |" in text
    assert "| compress | 1 | 1 (0) | 0 | 0 |" in text and "## Survivors (4, 2 unexplained)" in text
    assert "equivalent: recall never exceeds 1" in text and "progress bar" in text
    assert text.count("**unexplained**") == 2
    # a dropped argument is only explained for array constructors, not in general
    assert check.explain("match_detections", "scores = np.asarray(scores, )") == check.NUMPY_WHY
    assert check.explain("score_results", "table = evaluate_detections(dataset, eval_dir, class_names, iou_threshold, )") == ""


def test_offline_seed_checks_follow_their_definitions():
    seeds = load_benchmark("offline_seeds")
    good = {"vgg16-ssd": 0.75, "vgg16-ssd-pruned": 0.72, seeds.BEFORE: 0.55, "mb1-ssd": 0.6}
    assert seeds.checks(good) == dict.fromkeys(seeds.CHECKS, True)
    saturated = dict(good, **{"vgg16-ssd": 0.95})  # out of range; 0.72 recovers 17 of the 40 points lost: not half
    assert seeds.checks(saturated) == dict(zip(seeds.CHECKS, (False, True, False, True)))
    harmless = dict(good, **{seeds.BEFORE: 0.71})  # pruning costs 0.04 < 0.05 before finetuning
    assert seeds.checks(harmless)["pruning costs mAP"] is False
    above = dict(good, **{"vgg16-ssd-pruned": 0.76})  # the pruned model above its parent: the order breaks
    assert seeds.checks(above)["VGG > pruned > MB1"] is False


def test_offline_seeds_page_names_its_date_and_the_readme_block_does_not():
    import pandas as pd

    seeds = load_benchmark("offline_seeds")
    maps = {"vgg16-ssd": 0.75, "vgg16-ssd-pruned": 0.72, seeds.BEFORE: 0.55, "mb1-ssd": 0.6}
    row = {**dict.fromkeys(seeds.MODEL_KEYS, 0.5), **maps, "seed": 0, "order": "a > b", **seeds.checks(maps),
           "machine": "Some CPU (AVX2), 2 threads, torch 2.14.1, 2026-12-07"}
    table = pd.DataFrame([row])
    assert "measured on Some CPU (AVX2), 2 threads, torch 2.14.1, 2026-12-07 by" in seeds.render(table)
    assert "measured on Some CPU (AVX2), 2 threads, torch 2.14.1 by" in seeds.render(table, dated=False)


def test_offline_seeds_page_names_the_pairs_that_swap_places():
    import pandas as pd

    seeds = load_benchmark("offline_seeds")
    first = {**dict(zip(seeds.MODEL_KEYS, (0.8, 0.7, 0.69, 0.5, 0.3, 0.2))), seeds.BEFORE: 0.4}
    first.update(seeds.checks(first), seed=0, machine="Some CPU (AVX2), 1 thread, torch 2.14.1, 2026-12-07")
    table = pd.DataFrame([first, first])
    assert seeds.swaps(table) == []
    assert "The six models' order by mAP is the same in every seed.\n" in seeds.render(table)
    second = dict(first, **{"vgg16-ssd-pruned": 0.66})  # the paper-rate model falls below the latency-pruned one
    table = pd.DataFrame([first, second])
    [(a, b, gap, tie)] = seeds.swaps(table)
    assert (a, b, tie) == ("vgg16-ssd-pruned", "vgg16-ssd-lat-paper-macs", True) and gap == pytest.approx(0.03)
    assert ("The six models' order by mAP is the same in every seed (VGG16-SSD pruned (HRank) and VGG16-SSD "
            "latency-pruned (paper rate's MACs), pruned within one MAC budget, take one place: at most 0.0300 apart, "
            "within the 0.05 mAP the course takes as a clear difference, a tie).\n") in seeds.render(table)
    apart = dict(first, **{"vgg16-ssd-pruned": 0.6299})  # past the margin: one budget, yet not a tie
    assert [t for *_, t in seeds.swaps(pd.DataFrame([first, apart]))] == [False]
    assert ("same in every seed but for these, which swap places: VGG16-SSD pruned (HRank) and VGG16-SSD "
            "latency-pruned (paper rate's MACs) (at most 0.0601 apart).\n") in seeds.render(pd.DataFrame([first, apart]))
    other = dict(second, **{"vgg16-ssd-lat-small": 0.25})  # two models of different cost swap: never a tie
    assert [(a, t) for a, _, _, t in seeds.swaps(pd.DataFrame([first, other]))] == [
        ("vgg16-ssd-pruned", True), ("vgg16-ssd-lat-small", False)]
    assert ("a clear difference, a tie) but for these, which swap places: VGG16-SSD latency-pruned (small budget) "
            "and MobileNetV1-SSD (at most 0.2000 apart).\n") in seeds.render(pd.DataFrame([first, other]))
    tied = dict(first, **{"vgg16-ssd-pruned": 0.69})  # a tie in one seed, an order in the other: not held
    assert [(a, b) for a, b, *_ in seeds.swaps(pd.DataFrame([first, tied]))] == [
        ("vgg16-ssd-pruned", "vgg16-ssd-lat-paper-macs")]


def test_inference_options_page_pairs_each_pruned_variant_with_the_unpruned_model_in_its_format():
    """A pruned variant is timed against the unpruned model in the same format; round_to=8 has no unpruned twin,
    so the format's plain unpruned model stands in."""
    import pandas as pd

    bio = load_benchmark("bench_inference_options")
    table = pd.DataFrame({"model": ["vgg16-ssd", "vgg16-ssd channels_last", "vgg16-ssd-pruned",
                                    "vgg16-ssd-pruned channels_last", "vgg16-ssd-pruned round_to=8 channels_last",
                                    "mb1-ssd"],
                          "forward_median_ms": [400.0, 300.0, 200.0, 100.0, 80.0, 50.0],
                          "predict_median_ms": [500.0, 400.0, 250.0, 200.0, 160.0, 60.0]})
    assert bio.speedups(table) == [
        {"pruned variant": "vgg16-ssd-pruned", "vs": "vgg16-ssd", "forward_speedup": 2.0, "predict_speedup": 2.0,
         "vs_plain_unpruned_forward": 2.0},
        {"pruned variant": "vgg16-ssd-pruned channels_last", "vs": "vgg16-ssd channels_last", "forward_speedup": 3.0,
         "predict_speedup": 2.0, "vs_plain_unpruned_forward": 4.0},
        {"pruned variant": "vgg16-ssd-pruned round_to=8 channels_last", "vs": "vgg16-ssd channels_last",
         "forward_speedup": 3.75, "predict_speedup": 2.5, "vs_plain_unpruned_forward": 5.0}]
