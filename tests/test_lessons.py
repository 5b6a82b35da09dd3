"""The course's added lessons: the SSD picture (00), rank stability (01), fine-grained against filter pruning and the
near-dead filters L1 keeps (02), where MACs come from (05), where a video frame's time goes (06). Exact numbers
wherever the math is known; no timing asserts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from hrank_ssd.nets.models import build_model
from hrank_ssd.nets.registry import get_net

CLASSES = ["BACKGROUND", "circle", "square", "triangle", "cross", "ring"]


@pytest.fixture(scope="module")
def small_vgg():
    torch.manual_seed(0)
    return build_model("vgg16-ssd", 6, width=0.125).eval()


# ---------------------------------------------------------------- 00: what an SSD is


def test_source_table_counts_every_prior_and_header_output(small_vgg):
    from hrank_ssd.course.ssd_picture import source_priors, source_table

    table = source_table(small_vgg)
    assert table["H"].tolist() == table["W"].tolist() == [38, 19, 10, 5, 3, 1]
    assert table["boxes_per_location"].tolist() == [4, 6, 6, 6, 4, 4]
    assert (table["priors"] == table["boxes_per_location"] * table["H"] * table["W"]).all()
    assert table["priors"].sum() == small_vgg.priors.shape[0] == 8732
    assert (table["class_scores"] == table["boxes_per_location"] * 6).all()
    assert (table["box_offsets"] == table["boxes_per_location"] * 4).all()
    with torch.no_grad():
        conf, loc = small_vgg(torch.zeros(1, 3, 300, 300))
    assert conf.shape == (1, 8732, 6) and loc.shape == (1, 8732, 4)  # per prior: 6 class scores, 4 offsets
    assert [len(p) for p in source_priors(small_vgg)] == table["priors"].tolist()


def test_plot_priors_draws_a_dot_per_cell_and_the_boxes_of_one_cell(small_vgg):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hrank_ssd.course.ssd_picture import cell_priors, plot_priors

    fig = plot_priors(small_vgg, np.zeros((200, 300, 3), np.uint8), sources=(1, 5), point=(0.3, 0.6))
    for ax, (size, boxes) in zip(fig.axes, [(38, 4), (3, 4)]):
        assert len(ax.collections[0].get_offsets()) == size * size  # one dot per cell
        assert len(ax.patches) == boxes  # the priors of one cell
        assert f"{size}x{size} cells x {boxes} boxes = {boxes * size * size} priors" in ax.get_title()
    plt.close(fig)
    cell = cell_priors(small_vgg, 5, (0.3, 0.6))  # the 3x3 map's cells are centred on 1/6, 1/2, 5/6
    assert cell.shape == (4, 4)
    assert torch.allclose(cell[:, :2], torch.tensor([1 / 6, 1 / 2]).expand(4, 2))


# ---------------------------------------------------------------- 01: rank stability


def test_spearman_and_kept_change_on_hand_made_ranks():
    from hrank_ssd.hrank.stability import kept_change, spearman

    a = np.arange(1.0, 7.0)
    assert spearman(a, a) == pytest.approx(1.0)
    assert spearman(a, 2 * a + 7) == pytest.approx(1.0)  # only the order counts
    assert spearman(a, a[::-1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)  # 1 - 6 * 4 / (5 * 24)
    assert np.isnan(spearman(a, np.ones(6)))  # a constant list has no order
    assert spearman([10, 20, 20, 30], [1, 2, 3, 4]) == pytest.approx(0.9 ** 0.5)  # tied values share their mean rank
    b = np.array([1.0, 2, 3, 7, 5, 0])  # keeps {2, 3, 4} of 3, a keeps {3, 4, 5}
    assert kept_change(a, b, 3) == 1 and kept_change(a, a, 3) == 0
    assert kept_change(np.zeros(6), np.zeros(6), 2) == 0  # ties break alike: nothing changes


def test_stability_rows_count_the_changed_kept_filters(small_vgg):
    from hrank_ssd.hrank.stability import merge_ranks, stability_rows

    channels = small_vgg.plan.prunable
    a = [np.arange(c, dtype=float) for c in channels]
    b = [r.copy() for r in a]
    b[0][[0, -1]] = b[0][[-1, 0]]  # layer 1: the best and the worst filter swap places
    rows = pd.DataFrame(stability_rows(a, b, [0.5] * 14, "vgg16-ssd", "hand-made"))
    c = channels[0]
    assert rows.loc[0, "kept"] == c // 2 and rows.loc[0, "changed"] == 1
    assert rows.loc[0, "changed_share"] == pytest.approx(1 / (c // 2))
    assert rows.loc[0, "spearman"] == pytest.approx(1 - 6 * 2 * (c - 1) ** 2 / (c * (c * c - 1)))
    assert (rows.loc[1:, "spearman"] == 1.0).all() and (rows.loc[1:, "changed"] == 0).all()
    assert len(rows) == 14 and set(rows["comparison"]) == {"hand-made"}
    merged = merge_ranks([([np.array([1.0, 2.0])], 1), ([np.array([4.0, 8.0])], 3)])
    assert merged[0].tolist() == [3.25, 6.5]


def test_rank_sets_are_the_ranks_of_consecutive_disjoint_images(small_vgg, synthetic_voc):
    from hrank_ssd.data.voc import TestTransform, VOCDataset
    from hrank_ssd.hrank.ranks import compute_ranks, image_batches
    from hrank_ssd.hrank.stability import merge_ranks, rank_sets, rank_stability

    ds = VOCDataset(synthetic_voc, split="trainval", transform=TestTransform(300, small_vgg.cfg.image_mean, 1.0),
                    class_names=CLASSES)
    first, second = rank_sets(small_vgg, ds, [2, 2], batch_size=2, progress=False)
    both = compute_ranks(small_vgg, image_batches(ds, 2, 2), progress=False)
    alone = compute_ranks(small_vgg, image_batches(ds, 2, 1), progress=False)
    assert all(np.array_equal(x, y) for x, y in zip(first, alone))
    assert all(np.allclose(x, y) for x, y in zip(merge_ranks([(first, 2), (second, 2)]), both))
    table = rank_stability(small_vgg, ds, images=2, few=1, compress_rate=[0.5] * 14, batch_size=2, progress=False)
    assert len(table) == 28 and list(dict.fromkeys(table["comparison"])) == [
        "disjoint sets (2 vs 2 images)", "few vs many (1 vs 2 images)"]
    assert (table["changed"] <= table["kept"]).all()


# ---------------------------------------------------------------- 02: fine-grained against filter pruning


def test_magnitude_mask_zeroes_exactly_the_smallest_weights():
    from hrank_ssd.measure.fine_grained import magnitude_mask

    w = torch.tensor([[3.0, -1.0, 0.5, -2.0]])
    assert magnitude_mask(w, 2).tolist() == [[True, False, False, True]]
    assert magnitude_mask(torch.tensor([1.0, -1.0, 1.0]), 1).tolist() == [False, True, True]  # ties: earlier first
    assert magnitude_mask(w, 0).all() and not magnitude_mask(w, 4).any()


def _weight_sparsity(model):
    """The share of the model's weights that are exactly zero."""
    from hrank_ssd.measure.fine_grained import weight_tensors

    weights = weight_tensors(model).values()
    return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)


def _removed_share(model, pruned):
    """The share of ``model``'s weights that the (physically smaller) ``pruned`` no longer has."""
    from hrank_ssd.measure.fine_grained import weight_count

    return 1 - weight_count(pruned) / weight_count(model)


def test_fine_grained_reaches_filter_pruning_sparsity_tensor_by_tensor(small_vgg):
    from hrank_ssd.hrank.pruning import prune_model
    from hrank_ssd.measure import fine_grained as fg

    pruned, _ = prune_model(small_vgg, [0.1] * 7 + [0.5] * 7, "l1")
    fine, zeros = fg.fine_grained_like(small_vgg, pruned)
    full, small, sparse = fg.weight_tensors(small_vgg), fg.weight_tensors(pruned), fg.weight_tensors(fine)
    assert all(int((w == 0).sum()) == 0 for w in full.values())  # random weights: no zero to start with
    for key, w in sparse.items():
        assert w.shape == full[key].shape  # fine-grained keeps every shape
        removed = full[key].numel() - small[key].numel()
        assert int((w == 0).sum()) == removed == zeros.get(key, 0)
        if 0 < removed < w.numel():  # the zeroed weights were the smallest
            assert full[key][w != 0].abs().min() >= full[key][w == 0].abs().max()
    assert _weight_sparsity(fine) == pytest.approx(_removed_share(small_vgg, pruned), rel=1e-12)
    assert 0 < _removed_share(small_vgg, pruned) < 1 and _weight_sparsity(small_vgg) == 0


def test_compare_fine_grained_rows(small_vgg, synthetic_voc):
    from hrank_ssd.data.voc import VOCDataset
    from hrank_ssd.hrank.pruning import prune_model
    from hrank_ssd.measure.fine_grained import compare_fine_grained

    ds = VOCDataset(synthetic_voc, split="test", is_test=True, class_names=CLASSES)
    ds.ids = ds.ids[:3]
    pruned, _ = prune_model(small_vgg, [0.5] * 14, "l1")
    table = compare_fine_grained(small_vgg, pruned, ds, warmup=0, runs=1, progress=False).set_index("model")
    assert list(table.index) == ["unpruned", "fine-grained (magnitude)", "filters (HRank)"]
    share = _removed_share(small_vgg, pruned)
    assert table["sparsity"].tolist() == pytest.approx([0.0, share, share])
    assert table.loc["fine-grained (magnitude)", "nonzero_weights"] == table.loc["filters (HRank)", "nonzero_weights"]
    assert table.loc["fine-grained (magnitude)", "pruned_weights"] == table.loc["filters (HRank)", "pruned_weights"] > 0
    assert table.loc["fine-grained (magnitude)", "GMACs"] == table.loc["unpruned", "GMACs"]  # dense: same work
    assert table.loc["filters (HRank)", "GMACs"] < table.loc["unpruned", "GMACs"]
    assert table["mAP"].between(0, 1).all() and (table["forward_median_ms"] > 0).all()
    assert table.loc["unpruned", "speedup"] == 1.0


def test_dead_filter_table_counts_hand_made_dead_filters():
    from hrank_ssd.hrank.stability import dead_filter_table

    model = build_model("vgg16-ssd", 6, width=0.125)
    channels = model.plan.prunable
    ranks = [np.full(c, 10.0) for c in channels]
    ranks[0][[0, 1, 2]] = [0.0, 0.0, 0.5]  # layer 1: three near-dead filters ...
    ranks[1][:6] = 0.2  # layer 2: six of eight near-dead
    conv = get_net("vgg16-ssd").producer_key
    with torch.no_grad():
        model.get_submodule(conv(0)).weight[[0, 1, 2]] *= 100  # ... with the largest weights
        model.get_submodule(conv(1)).weight[6:] *= 1e-3  # the two live ones the smallest
    table = dead_filter_table(model, [0.5] * 14, ranks).set_index("layer")
    assert channels[:2] == [8, 8] and table.loc[1, "kept"] == table.loc[2, "kept"] == 4
    assert table.loc[1, ["near_dead", "l1_keeps_dead", "hrank_keeps_dead"]].tolist() == [3, 3, 0]
    assert table.loc[2, ["near_dead", "l1_keeps_dead", "hrank_keeps_dead"]].tolist() == [6, 4, 2]
    assert table.loc[1, "l1_dead_share"] == 0.75 and table.loc[2, "l1_dead_share"] == 1.0
    assert table.loc[1, "dead_l1_ratio"] > 50
    assert (table.loc[3:, ["near_dead", "l1_keeps_dead", "hrank_keeps_dead"]] == 0).all().all()
    assert table.loc[3:, "dead_l1_ratio"].isna().all()


# ---------------------------------------------------------------- 05: where MACs come from


def test_mac_anatomy_factors_every_conv():
    from hrank_ssd.measure.flops import build_for_counting, count_exact, mac_anatomy

    rows = count_exact(build_for_counting("vgg16-ssd", 21))
    table = mac_anatomy(rows)
    assert len(table) == (rows["type"] == "Conv2d").sum()
    assert (table["MACs"] == table["kernel_inputs"] * table["out_channels"] * table["positions"]).all()
    assert (table["MACs_per_weight"] == table["positions"]).all()
    conv1_2 = table.iloc[1]
    assert conv1_2["label"] == "conv1_2" and conv1_2["MACs"] == 3 * 3 * 64 * 64 * 300 * 300
    assert conv1_2["MACs_per_weight"] == 90_000
    assert table["MAC_share"].sum() == pytest.approx(table["MACs"].sum() / rows["MACs"].sum())
    assert table["cumulative_MAC_share"].iloc[-1] == pytest.approx(table["MAC_share"].sum())


# ---------------------------------------------------------------- 06: where a frame's time goes


def test_frame_stage_times_names_what_the_fps_overlay_counts(small_vgg, synthetic_voc, tmp_path):
    from hrank_ssd.course.video import make_synthetic_video
    from hrank_ssd.course.video_timing import IN_OVERLAY, STAGES, frame_stage_times, overlay_and_loop_fps
    from hrank_ssd.nets.predictor import Predictor

    clip = make_synthetic_video(tmp_path / "clip.mp4", synthetic_voc, seconds=1, fps=5)  # 5 frames
    table = frame_stage_times(Predictor(small_vgg), CLASSES, clip, frames=10, warmup=1)
    assert table["stage"].tolist() == list(STAGES)
    assert table.loc[table["in_fps_overlay"], "stage"].tolist() == list(IN_OVERLAY)
    assert (table["frames"] == 4).all()  # 5 frames, the first one a warm-up
    assert (table["median_ms"] >= 0).all() and table["share"].sum() == pytest.approx(1.0)
    fps = overlay_and_loop_fps(table)
    assert fps["overlay_fps"] >= fps["loop_fps"] > 0


# ---------------------------------------------------------------- the Course steps


def test_course_lessons_write_their_results_files(tiny_course):
    from hrank_ssd.course.results import RESULTS

    course, model = tiny_course
    stability = course.rank_stability()
    assert len(stability) == 28 and stability["comparison"].nunique() == 2
    dead = course.dead_filters()
    assert len(dead) == 14 and (dead["kept"] == [max(1, int(c * (1 - r))) for c, r in
                                                 zip(model.plan.prunable, course.profile.compress_rate)]).all()
    fine = course.fine_grained().set_index("model")
    assert fine.loc["fine-grained (magnitude)", "sparsity"] == pytest.approx(fine.loc["filters (HRank)", "sparsity"])
    for name in ("rank_stability.csv", "dead_filters.csv", "fine_grained.csv"):
        assert (course.results / name).is_file() and name in RESULTS
    pd.testing.assert_frame_equal(pd.read_csv(course.results / "dead_filters.csv"), dead, check_dtype=False)


def test_compare_fine_grained_with_weights_already_zero(small_vgg, synthetic_voc):
    """Trained weights can hold exact zeros (the rehearsal's published VGG16-SSD has one): both prunings still take
    the same number of weights, while their non-zero counts may differ by at most the zeros already there."""
    import copy

    import torch

    from hrank_ssd.data.voc import VOCDataset
    from hrank_ssd.hrank.pruning import prune_model
    from hrank_ssd.measure.fine_grained import compare_fine_grained

    model = copy.deepcopy(small_vgg)
    with torch.no_grad():
        model.base_net[0].weight[0, 0, 0, :] = 0.0  # three exact zeros in a kept filter of conv1_1
    ds = VOCDataset(synthetic_voc, split="test", is_test=True, class_names=CLASSES)
    ds.ids = ds.ids[:2]
    pruned, _ = prune_model(model, [0.5] * 14, "l1")
    table = compare_fine_grained(model, pruned, ds, warmup=0, runs=1, progress=False).set_index("model")
    assert table.loc["fine-grained (magnitude)", "pruned_weights"] == table.loc["filters (HRank)", "pruned_weights"]
    gap = abs(int(table.loc["fine-grained (magnitude)", "nonzero_weights"] - table.loc["filters (HRank)", "nonzero_weights"]))
    assert gap <= 3
