"""Physical pruning: equivalence with the masked original, exact filter choice, the paper rate's shapes, files."""

import json

import numpy as np
import pytest
import torch

from hrank_ssd.cli import main
from hrank_ssd.errors import HRankError
from hrank_ssd.hrank.pruning import (
    apply_kept,
    criterion_scores,
    describe_surgery,
    kept_agreement,
    kept_indices,
    kept_indices_for_widths,
    masked_copy,
    prune_model,
    prune_to_widths,
    round_keep,
    save_pruned,
    select_filters,
)
from hrank_ssd.hrank.ranks import save_ranks
from hrank_ssd.nets.compress import parse_compress_rate
from hrank_ssd.nets.models import build_model, layer_names, load_model, read_sidecar, save_model
from hrank_ssd.nets.vgg16_ssd import CONV_INDEXES as VGG_CONV_INDEXES

PAPER_RATE = "[0.1]*7+[0.5]*9"


def randomize_batchnorm(model):
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return model


def random_ranks(model, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.random(c).astype(np.float32) for c in model.plan.prunable]


@pytest.mark.parametrize("net", ["vgg16-ssd", "mb1-ssd"])
@pytest.mark.parametrize("criterion", ["hrank", "l1", "random"])
def test_pruned_equals_masked_original(net, criterion, tmp_path):
    torch.manual_seed(0)
    model = randomize_batchnorm(build_model(net, 6, width=0.125)).eval()
    save_ranks(random_ranks(model), tmp_path)
    pruned, kept = prune_model(model, [0.3] * 4 + [0.6] * 10, criterion, rank_dir=tmp_path, seed=3)
    masked = masked_copy(model, kept)
    x = torch.randn(2, 3, 300, 300)
    with torch.no_grad():
        (c1, l1), (c2, l2) = pruned(x), masked(x)
    assert (c1 - c2).abs().max() < 1e-5 and (l1 - l2).abs().max() < 1e-5
    # and pruning really changed the function (the test can fail if masking did nothing)
    with torch.no_grad():
        assert (model(x)[0] - c1).abs().max() > 1e-3


def test_kept_filters_are_exactly_the_top_ranked(tmp_path):
    model = build_model("vgg16-ssd", 6, width=0.125)
    ranks = random_ranks(model, seed=5)
    save_ranks(ranks, tmp_path)
    kept = kept_indices(model, [0.5] * 14, "hrank", rank_dir=tmp_path)
    for name, r, c in zip(layer_names("vgg16-ssd"), ranks, model.plan.prunable):
        keep = int(c * 0.5)
        expected = sorted(np.argsort(-r)[:keep].tolist())  # ranks are distinct, so no ties here
        assert kept[name] == expected
    pruned = apply_kept(model, kept)
    w = model.state_dict()["base_net.0.weight"]
    assert torch.equal(pruned.state_dict()["base_net.0.weight"], w[kept["conv1_1"]])


def test_a_given_select_chooses_the_kept_filters(tmp_path):
    model = build_model("vgg16-ssd", 6, width=0.125)
    save_ranks(random_ranks(model, seed=5), tmp_path)
    first = kept_indices(model, [0.5] * 14, "hrank", rank_dir=tmp_path, select=lambda scores, keep: list(range(keep)))
    assert first == {n: list(range(int(c * 0.5))) for n, c in zip(layer_names("vgg16-ssd"), model.plan.prunable)}
    assert first != kept_indices(model, [0.5] * 14, "hrank", rank_dir=tmp_path)  # the ranks choose others


def test_kept_agreement_counts_the_filters_both_rank_files_keep(tmp_path):
    model = build_model("vgg16-ssd", 6, width=0.125)
    ranks = random_ranks(model, seed=2)
    save_ranks(ranks, tmp_path / "a")
    swapped = [r.copy() for r in ranks]
    r0 = swapped[0]  # conv1_1: swap the weakest kept filter with the strongest dropped one
    order = np.argsort(-r0)
    keep = int(r0.size * 0.5)
    r0[order[keep - 1]], r0[order[keep]] = r0[order[keep]], r0[order[keep - 1]]
    save_ranks(swapped, tmp_path / "b")
    rows = kept_agreement(model, [0.5] * 14, tmp_path / "a", tmp_path / "b")
    assert [r["layer"] for r in rows] == layer_names("vgg16-ssd")
    assert [r["filters"] for r in rows] == list(model.plan.prunable)
    assert (rows[0]["kept"], rows[0]["kept_by_both"]) == (keep, keep - 1)
    assert rows[0]["agreement"] == (keep - 1) / keep
    assert all(r["kept_by_both"] == r["kept"] and r["agreement"] == 1.0 for r in rows[1:])


def test_ties_drop_the_lower_index_first():
    assert select_filters(np.array([1.0, 1.0, 1.0, 0.0]), 2) == [1, 2]


def test_shapes_for_the_published_compress_rate():
    model = build_model("vgg16-ssd", 21)
    kept = kept_indices(model, parse_compress_rate(PAPER_RATE), "l1")
    pruned = apply_kept(model, kept)
    shapes = [list(pruned.base_net[i].weight.shape) for i in VGG_CONV_INDEXES]
    assert shapes == [[57, 3, 3, 3], [57, 57, 3, 3], [115, 57, 3, 3], [115, 115, 3, 3], [230, 115, 3, 3],
                      [230, 230, 3, 3], [230, 230, 3, 3], [256, 230, 3, 3]] + [[256, 256, 3, 3]] * 5 + [
                      [512, 256, 3, 3], [1024, 512, 1, 1]]
    sd = pruned.state_dict()
    assert sd["source_layer_add_ons.0.running_mean"].shape == (256,)
    assert sd["classification_headers.0.weight"].shape[1] == 256
    assert sd["regression_headers.0.weight"].shape[1] == 256


def test_round_to():
    assert round_keep(57, 64, 8) == 64 and round_keep(115, 128, 8) == 120 and round_keep(5, 8, None) == 5
    model = build_model("vgg16-ssd", 21)
    kept = kept_indices(model, parse_compress_rate(PAPER_RATE), "random", round_to=8)
    assert all(len(v) % 8 == 0 for v in kept.values())


def test_bad_rank_folders(tmp_path):
    model = build_model("vgg16-ssd", 6, width=0.125)
    with pytest.raises(HRankError, match="rank folder not found"):
        kept_indices(model, [0.5] * 14, "hrank", rank_dir=tmp_path / "nope")
    save_ranks(random_ranks(build_model("vgg16-ssd", 6, width=0.25)), tmp_path)
    with pytest.raises(HRankError, match="belong to another model"):
        kept_indices(model, [0.5] * 14, "hrank", rank_dir=tmp_path)
    save_ranks(random_ranks(model), tmp_path)
    (tmp_path / "rank_conv3.npy").unlink()
    with pytest.raises(HRankError, match="rank_conv3.npy is missing"):
        kept_indices(model, [0.5] * 14, "hrank", rank_dir=tmp_path)


def test_prune_cli_writes_loadable_model_and_json(tmp_path, capsys):
    model = build_model("vgg16-ssd", 6, width=0.125)
    base = tmp_path / "base.pth"
    save_model(model, base)
    save_ranks(random_ranks(model), tmp_path / "ranks")
    out = tmp_path / "pruned.pth"
    assert main(["prune", "--base_net", str(base), "--rank_dir", str(tmp_path / "ranks"),
                 "--compress_rate", PAPER_RATE, "--output", str(out)]) == 0
    meta = json.loads((tmp_path / "pruned.pth.json").read_text())
    assert meta["criterion"] == "hrank" and len(meta["kept_indices"]["conv1_1"]) == 7
    loaded = load_model(out)  # shapes inferred, no compress rate needed
    assert loaded.plan.prunable[0] == 7 and loaded.image_size == 300
    assert main(["prune", "--base_net", str(base), "--compress_rate", "[0.1]*3", "--criterion", "l1",
                 "--output", str(tmp_path / "x.pth")]) == 2
    assert "gives 3 rates" in capsys.readouterr().err


def test_l1_criterion_ranks_filters_by_the_sum_of_absolute_weights():
    from hrank_ssd.hrank.pruning import l1_scores
    from hrank_ssd.nets.models import layer_names
    from hrank_ssd.nets.registry import get_net

    model = build_model("vgg16-ssd", 3, width=0.125)
    weight = dict(model.named_parameters())[get_net("vgg16-ssd").producer_key(0) + ".weight"]  # conv1_1
    with torch.no_grad():
        weight[0] = -1.0  # the largest L1 norm, and the smallest plain sum
    scores = l1_scores(model)
    np.testing.assert_allclose(scores[0], weight.detach().abs().flatten(1).sum(1).double().numpy(), rtol=1e-12)
    kept = kept_indices(model, [0.5] * 14, "l1")[layer_names("vgg16-ssd")[0]]
    assert 0 in kept and len(kept) == weight.shape[0] // 2


def test_ties_keep_the_higher_index_whatever_the_length():
    """A stable sort on any length (numpy's default quicksort is not stable past 16 elements)."""
    scores = np.zeros(40)
    scores[[3, 30]] = 1.0
    assert select_filters(scores, 5) == [3, 30, 37, 38, 39]
    assert select_filters(np.array([2.0, 1.0, 1.0]), 1) == [0] and select_filters(np.array([0.5]), 1) == [0]


def test_round_keep_rounds_up_to_any_multiple_above_one():
    assert round_keep(5, 16, 2) == 6 and round_keep(7, 16, 4) == 8 and round_keep(15, 16, 8) == 16
    assert round_keep(5, 6, 4) == 6  # never past the layer's filters
    assert round_keep(5, 16, 1) == 5 and round_keep(5, 16, 0) == 5


def test_the_random_criterion_follows_its_seed():
    model = build_model("vgg16-ssd", 6, width=0.125)
    a = kept_indices(model, [0.5] * 14, "random", seed=7)
    assert a == kept_indices(model, [0.5] * 14, "random", seed=7)
    assert a != kept_indices(model, [0.5] * 14, "random", seed=8)
    assert a != kept_indices(model, [0.5] * 14, "random")  # the default seed, 0
    assert prune_model(model, [0.5] * 14, "random", seed=7)[1] == a
    assert prune_to_widths(model, [len(a[n]) for n in layer_names("vgg16-ssd")], "random", seed=7)[1] == a
    seed0 = kept_indices(model, [0.5] * 14, "random", seed=0)  # every entry point defaults to seed 0
    assert kept_indices(model, [0.5] * 14, "random") == seed0
    widths = [len(seed0[n]) for n in layer_names("vgg16-ssd")]
    assert prune_model(model, [0.5] * 14, "random")[1] == seed0
    assert prune_to_widths(model, widths, "random")[1] == seed0
    assert kept_indices_for_widths(model, widths, "random") == seed0
    default_scores = criterion_scores(model, "random")
    assert all(np.array_equal(a, b) for a, b in zip(default_scores, criterion_scores(model, "random", seed=0)))


def test_the_default_criterion_is_hrank(tmp_path):
    model = build_model("vgg16-ssd", 6, width=0.125)
    ranks = random_ranks(model, seed=4)
    save_ranks(ranks, tmp_path)
    assert kept_indices(model, [0.5] * 14, rank_dir=tmp_path) == kept_indices(model, [0.5] * 14, "hrank", tmp_path)
    assert prune_model(model, [0.5] * 14, rank_dir=tmp_path)[1] == kept_indices(model, [0.5] * 14, "hrank", tmp_path)
    widths = [3] * 14
    assert prune_to_widths(model, widths, rank_dir=tmp_path)[1]["conv1_1"] == sorted(np.argsort(-ranks[0])[:3].tolist())
    assert kept_indices_for_widths(model, widths, rank_dir=tmp_path) == prune_to_widths(model, widths, "hrank",
                                                                                          tmp_path)[1]
    assert np.array_equal(criterion_scores(model, rank_dir=tmp_path)[0], ranks[0])
    with pytest.raises(HRankError) as e:
        kept_indices(model, [0.5] * 14)
    assert str(e.value) == ("--criterion hrank needs --rank_dir (make ranks with `python -m hrank_ssd rank`), "
                            "or use --criterion l1")
    with pytest.raises(HRankError) as e:
        kept_indices(model, [0.5] * 14, "taylor")
    assert str(e.value) == "unknown --criterion 'taylor': choose one of hrank, l1, random"


def test_round_to_reaches_the_rebuilt_model():
    model = build_model("vgg16-ssd", 6, width=0.25)  # conv1_1: 16 filters
    pruned, kept = prune_model(model, [0.6] * 14, "l1", round_to=4)
    assert len(kept["conv1_1"]) == 8 and pruned.plan.prunable[0] == 8  # 16 * 0.4 = 6.4 -> 6 -> 8


def test_widths_in_order_and_their_errors():
    model = build_model("vgg16-ssd", 6, width=0.125)
    channels = model.plan.prunable
    ones = [1] * 14
    assert prune_to_widths(model, ones, "l1")[0].plan.prunable == ones  # keeping a single filter is allowed
    full = prune_to_widths(model, channels, "l1")[0]
    assert full.plan.prunable == list(channels)
    cases = [
        (ones[:3], "3 widths for 14 prunable layers; give one kept count per layer"),
        ([0] + ones[1:], f"layer conv1_1 has {channels[0]} filters: it can keep 1 to {channels[0]}, not 0"),
        ([channels[0] + 1] + ones[1:],
         f"layer conv1_1 has {channels[0]} filters: it can keep 1 to {channels[0]}, not {channels[0] + 1}"),
    ]
    for widths, message in cases:
        with pytest.raises(HRankError) as e:
            kept_indices_for_widths(model, widths, "l1")
        assert str(e.value) == message


def test_kept_index_lists_are_checked_before_surgery():
    model = build_model("vgg16-ssd", 6, width=0.125)
    good = kept_indices(model, [0.5] * 14, "l1")
    c = model.plan.prunable[0]
    with pytest.raises(HRankError) as e:
        apply_kept(model, {k: v for k, v in good.items() if k != "conv2_1"})
    assert str(e.value) == "kept indices miss layers ['conv2_1']; pass one index list per prunable layer"
    for bad in ([], [0, 0], [-1, 2], [0, c], list(range(9)) + [c]):
        with pytest.raises(HRankError) as e:
            apply_kept(model, {**good, "conv1_1": bad})
        assert str(e.value) == (f"kept indices of conv1_1 must be distinct filters in [0, {c}); "
                                f"got {bad[:8]}...")
    assert apply_kept(model, {**good, "conv1_1": [c - 1]}).plan.prunable[0] == 1


def test_the_rebuilt_model_keeps_image_size_device_mode_and_every_tensor():
    model = build_model("mb1-ssd", 6, width=0.25, image_size=240).train()
    kept = kept_indices(model, [0.5] * 14, "l1")
    pruned = apply_kept(model, kept)
    assert pruned.image_size == 240 and pruned.training
    assert next(pruned.parameters()).device == next(model.parameters()).device
    assert apply_kept(model.eval(), kept).training is False
    before, after = model.state_dict(), pruned.state_dict()
    assert sorted(before) == sorted(after)
    assert all(after[k].dim() == before[k].dim() for k in before)
    rows = describe_surgery(model, pruned)
    assert rows and all(r["before"] != r["after"] and list(after[r["parameter"]].shape) == r["after"] for r in rows)
    assert {r["parameter"] for r in rows} == {k for k in before if before[k].shape != after[k].shape}


def test_save_pruned_sidecar_round_trip(tmp_path):
    model = build_model("vgg16-ssd", 6, width=0.125)
    names = layer_names("vgg16-ssd")
    pruned, kept = prune_model(model, [0.5] * 16, "l1")
    save_pruned(pruned, tmp_path / "rate.pth", [0.5] * 16, "l1", kept)
    meta = read_sidecar(tmp_path / "rate.pth")
    assert meta["compress_rate"] == [0.5] * 14 and meta["widths"] is None and meta["criterion"] == "l1"
    assert meta["kept_indices"] == kept and meta["budget"] is None and "made_by" not in meta
    save_pruned(pruned, tmp_path / "yours.pth", [0.5] * 16, "l1", kept, made_by=["top_filters: yours"])
    assert read_sidecar(tmp_path / "yours.pth")["made_by"] == ["top_filters: yours"]
    widths = [2] * 14
    pruned, kept = prune_to_widths(model, widths, "l1")
    save_pruned(pruned, tmp_path / "w.pth", None, "l1", kept, budget={"kind": "macs", "value": 0.5})
    meta = read_sidecar(tmp_path / "w.pth")
    assert meta["compress_rate"] is None and meta["widths"] == dict(zip(names, widths))
    assert meta["budget"] == {"kind": "macs", "value": 0.5}
    assert load_model(tmp_path / "w.pth").plan.prunable == widths

