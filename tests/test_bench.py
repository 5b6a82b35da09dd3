"""The benchmark harness: timing fields, the bench CLI's JSON, the post-processing baseline."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch
from conftest import load_benchmark
from support import reference_nms  # pytorch-ssd's per-class NMS, the baseline

from hrank_ssd.cli import main
from hrank_ssd.measure import bench, flops, layer_times, tables
from hrank_ssd.nets.compress import PRUNED_RATE
from hrank_ssd.nets.models import build_model
from hrank_ssd.nets.predictor import postprocess


def test_timing_fields_are_sane():
    calls = []
    t = bench.timings_interleaved({"fn": lambda: calls.append(1)}, warmup=3, runs=7)["fn"]
    assert len(calls) == 10
    assert {"median_ms", "p90_ms", "mean_ms", "min_ms", "max_ms", "std_ms", "warmup", "runs"} <= set(t)
    assert t["runs"] == 7 and t["warmup"] == 3
    assert 0 <= t["min_ms"] <= t["median_ms"] <= t["p90_ms"] <= t["max_ms"]
    assert t["min_ms"] <= t["mean_ms"] <= t["max_ms"]


def test_summarize_exact_numbers():
    s = bench.summarize([0.001 * k for k in range(1, 11)])  # 1..10 ms
    assert s["median_ms"] == pytest.approx(5.5)
    assert s["p90_ms"] == pytest.approx(9.0)
    assert s["min_ms"] == pytest.approx(1.0) and s["max_ms"] == pytest.approx(10.0)


def test_interleaved_order_is_round_robin():
    order = []
    bench.timings_interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, warmup=1, runs=2)
    assert order == ["a", "b"] * 3


def test_interleaved_bar_only_with_progress(capsys):
    bench.timings_interleaved({"a": lambda: None}, warmup=1, runs=2, progress=True, desc="bench forward")
    assert "bench forward" in capsys.readouterr().err
    bench.timings_interleaved({"a": lambda: None}, warmup=1, runs=2)
    assert capsys.readouterr().err == ""


def test_num_threads_restores():
    before = torch.get_num_threads()
    with bench.num_threads(1) as n:
        assert n == 1 == torch.get_num_threads()
    assert torch.get_num_threads() == before


def test_bench_cli_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = main(["bench", "--nets", "vgg16-ssd,vgg16-ssd-pruned,mb1-ssd", "--width", "0.05", "--num_classes", "3",
               "--warmup", "1", "--runs", "2", "--threads", "1", "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    for key in ("device", "device_name", "torch", "threads", "date", "batch_size", "warmup", "runs", "results"):
        assert key in data
    assert data["threads"] == 1 and data["runs"] == 2
    assert [r["model"] for r in data["results"]] == ["vgg16-ssd", "vgg16-ssd-pruned", "mb1-ssd"]
    for r in data["results"]:
        assert list(r) == ["model", "params", "GMACs", "forward_median_ms", "forward_p90_ms", "forward_fps",
                           "predict_median_ms", "predict_p90_ms", "predict_fps", "forward_speedup", "mac_ratio"]
        assert r["forward_median_ms"] > 0 and r["predict_fps"] > 0
    # the flags reached the models: each row counts the model --width/--num_classes/--compress_rate describe
    from hrank_ssd.measure.flops import count_exact
    from hrank_ssd.nets.compress import PRUNED_RATE

    built = {"vgg16-ssd": build_model("vgg16-ssd", 3, width=0.05),
             "vgg16-ssd-pruned": build_model("vgg16-ssd", 3, width=0.05, compress_rate=PRUNED_RATE),
             "mb1-ssd": build_model("mb1-ssd", 3, width=0.05)}
    full = data["results"][0]
    for r in data["results"]:
        m = built[r["model"]]
        assert r["params"] == sum(p.numel() for p in m.parameters())
        assert r["GMACs"] == pytest.approx(int(count_exact(m)["MACs"].sum()) / 1e9, rel=1e-12)
        # speed-up and MAC ratio are against the first model, from the numbers in the same row set
        assert r["forward_speedup"] == pytest.approx(full["forward_median_ms"] / r["forward_median_ms"], rel=1e-9)
        assert r["mac_ratio"] == pytest.approx(full["GMACs"] / r["GMACs"], rel=1e-9)
    assert data["results"][1]["mac_ratio"] > 1.5  # [0.1]*7+[0.5]*9 removes about 40% of VGG's MACs
    assert "| vgg16-ssd-pruned |" in capsys.readouterr().out


def test_bench_cli_errors(capsys):
    assert main(["bench", "--nets", "resnet", "--runs", "1"]) == 2
    assert "unknown net" in capsys.readouterr().err
    assert main(["bench", "--nets", "mb1-ssd", "--amp", "--device", "cpu", "--width", "0.05"]) == 2
    assert main(["bench", "--nets", "mb1-ssd", "--weights", "nonsense"]) == 2


def test_markdown_table():
    import pandas as pd

    text = tables.markdown_table(pd.DataFrame({"a": ["x", "y"], "b": [1.234, 2.0], "n": [1000, 2]}))
    assert text.splitlines() == ["| a | b | n |", "|---|---:|---:|", "| x | 1.23 | 1,000 |", "| y | 2.00 | 2 |"]


def _random_outputs(seed, num_classes=5, priors=300, peaked=False):
    g = torch.Generator().manual_seed(seed)
    conf = torch.randn(2, priors, num_classes, generator=g) * (3 if peaked else 1)
    loc = torch.randn(2, priors, 4, generator=g) * 0.5
    return conf, loc


@pytest.mark.parametrize("seed,peaked", [(0, False), (1, True), (2, False)])
def test_reference_loop_equals_vectorised(seed, peaked):
    from hrank_ssd.nets.priors import generate_priors
    from hrank_ssd.nets.registry import get_net

    cfg = get_net("vgg16-ssd").config
    priors = generate_priors(cfg)
    conf, loc = _random_outputs(seed, priors=priors.size(0), peaked=peaked)
    for thr in (0.01, 0.3):
        ref = reference_nms.reference_postprocess(conf, loc, priors, cfg, thr)
        vec = postprocess(conf, loc, priors, cfg, thr)
        assert len(ref) == len(vec) == 2
        for a, b in zip(ref, vec):
            assert a[1].numel() > 0
            assert reference_nms.same_detections(a, b)


def test_nms_keeps_what_pytorch_ssd_keeps_at_the_threshold():
    """Plain IoU 0.4502 > 0.45: torchvision's nms drops the second box; pytorch-ssd's 1e-5 in the IoU
    denominator brings it to 0.4499 <= 0.45, so it stays, and so it does here."""
    from torchvision.ops import nms

    from hrank_ssd.nets.predictor import greedy_nms, pairwise_iou

    x = 0.1 - 0.4502 * 0.02 / 1.4502 / 0.1
    boxes = torch.tensor([[0, 0, 0.1, 0.1], [x, 0, 0.1 + x, 0.1]])
    scores = torch.tensor([0.9, 0.8])
    iou = pairwise_iou(boxes)
    assert iou[0, 1] == iou[1, 0] and 0.4498 < iou[0, 1] < 0.45
    assert nms(boxes, scores, 0.45).tolist() == [0]
    assert reference_nms.hard_nms_loop(boxes, scores, 0.45).tolist() == [0, 1]
    assert greedy_nms(boxes[None], torch.tensor([[True, True]]), 0.45).tolist() == [[True, True]]


@pytest.mark.parametrize("seed", range(4))
def test_greedy_nms_equals_the_loop_on_crowded_boxes(seed):
    """Many boxes jittered around a few centres: long suppression chains and IoUs near the threshold."""
    from hrank_ssd.nets.predictor import greedy_nms

    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(3, 2, generator=g)[torch.randint(0, 3, (150,), generator=g)]
    centres = centres + 0.03 * torch.randn(150, 2, generator=g)
    sizes = 0.1 + 0.05 * torch.rand(150, 2, generator=g)
    boxes = torch.cat([centres - sizes / 2, centres + sizes / 2], 1)
    scores = torch.rand(150, generator=g)
    for thr in (0.3, 0.45, 0.7):
        for top_k in (-1, 3):
            ref = reference_nms.hard_nms_loop(boxes, scores, thr, candidate_size=120, top_k=top_k)
            order = scores.argsort(descending=True)[:120]
            keep = greedy_nms(boxes[order][None], torch.ones(1, 120, dtype=torch.bool), thr)[0]
            if top_k > 0:
                keep &= keep.cumsum(0) <= top_k
            assert order[keep].tolist() == ref.tolist()
            assert 1 < len(ref) < 120


def test_postprocess_top_k_equals_the_loop():
    from hrank_ssd.nets.priors import generate_priors
    from hrank_ssd.nets.registry import get_net

    cfg = get_net("vgg16-ssd").config
    priors = generate_priors(cfg)
    conf, loc = _random_outputs(5, priors=priors.size(0), peaked=True)
    for ref, vec in zip(reference_nms.reference_postprocess(conf, loc, priors, cfg, 0.01, top_k=2),
                        postprocess(conf, loc, priors, cfg, 0.01, top_k=2)):
        assert 0 < vec[1].numel() <= 2 * 4 and reference_nms.same_detections(ref, vec)
        assert vec[2].tolist() == sorted(vec[2].tolist(), reverse=True)


def test_hard_nms_loop_exact():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10.5]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    assert reference_nms.hard_nms_loop(boxes, scores, 0.5).tolist() == [3, 2]
    assert reference_nms.hard_nms_loop(boxes, scores, 0.5, candidate_size=1).tolist() == [3]


def test_same_detections_detects_difference():
    d = (torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([1]), torch.tensor([0.5]))
    assert reference_nms.same_detections(d, d)
    assert not reference_nms.same_detections(d, (d[0], torch.tensor([2]), d[2]))
    assert not reference_nms.same_detections(d, (d[0] + 0.1, d[1], d[2]))


def test_vgg_pruning_groups_follow_the_compress_rate():
    group = layer_times.pruning_groups([0.0] * 2 + [0.3] + [0.5] * 20)
    assert [group(f"base_net.{i}") for i in (0, 4, 5, 7, 31, 32, 33)] == [
        "conv1_1..conv1_2 (rate 0)", "conv1_1..conv1_2 (rate 0)", "conv2_1 (rate 0.3)",
        "conv2_2..fc6 (rate 0.5)", "conv2_2..fc6 (rate 0.5)", "conv2_2..fc6 (rate 0.5)",
        "fc7, BN add-on, extras, headers (unpruned)"]
    assert group("classification_headers.0") == group("source_layer_add_ons.0") == group("base_net.33")


def test_group_speedups_and_mac_ceiling_exact():
    layers = pd.DataFrame({"name": ["a1", "a2", "b1"], "full_ms": [6.0, 4.0, 8.0], "pruned_ms": [5.0, 5.0, 2.0],
                           "full_MMACs": [100.0, 0.0, 400.0], "pruned_MMACs": [50.0, 0.0, 100.0]})
    groups = layer_times.group_speedups(layers, lambda n: n[0])
    assert groups["time ratio full/pruned"].tolist() == [1.0, 4.0]
    assert groups["MAC ratio full/pruned"].tolist() == [2.0, 4.0]
    assert groups["share of pruned time"].tolist() == [10 / 12, 2 / 12]
    c = layer_times.mac_ceiling(groups)
    # group a: 10 ms / 2 = 5 ms, group b: 8 ms / 4 = 2 ms -> 18 ms / 7 ms
    assert c == {"full_ms": 18.0, "pruned_ms": 12.0, "mac_proportional_ms": 7.0, "measured_speedup": 1.5,
                 "mac_proportional_speedup": 18 / 7}


def test_layer_times_and_macs_of_a_wrapped_model():
    channels_last = load_benchmark("inference_options").ChannelsLast

    full = build_model("vgg16-ssd", 21, width=0.125).eval()
    pruned = build_model("vgg16-ssd", 21, width=0.125, compress_rate=PRUNED_RATE).eval()
    layers = layer_times.layer_times_and_macs({"full": channels_last(full), "pruned": pruned}, runs=1, warmup=0)
    assert layers["name"].iloc[0] == "base_net.0"  # the wrapper's "model." prefix is gone
    for key, model in (("full", full), ("pruned", pruned)):
        assert layers[f"{key}_MMACs"].sum() * 1e6 == pytest.approx(flops.macs(model), rel=1e-9)
    assert (layers.loc[layers["type"] == "ReLU", "full_MMACs"] == 0).all()


def test_conv_speedups_exact():
    layers = pd.DataFrame({"name": ["c1", "r1", "c2"], "type": ["Conv2d", "ReLU", "Conv2d"],
                           "full_ms": [6.0, 1.0, 3.0], "pruned_ms": [3.0, 1.0, 3.0],
                           "full_MMACs": [8.0, 0.0, 5.0], "pruned_MMACs": [2.0, 0.0, 0.0]})
    conv = layer_times.conv_speedups(layers)
    assert conv["name"].tolist() == ["c1", "c2"]
    assert conv["full/pruned time"].tolist() == [2.0, 1.0]
    assert conv["full/pruned MACs"].iloc[0] == 4.0 and math.isnan(conv["full/pruned MACs"].iloc[1])
