"""The Colab T4 estimate's inputs are computed, not typed: the SVD work of HRank's ranks and the workloads."""

from __future__ import annotations

import pytest

from hrank_ssd.course import estimates
from hrank_ssd.course.profiles import PROFILES


def test_rank_svd_work_follows_vgg16_ssd_feature_maps():
    # the 14 prunable layers of VGG16-SSD at 300x300: channels and square map side (conv1_1 ... conv5_3, fc6)
    layers = [(64, 300)] * 2 + [(128, 150)] * 2 + [(256, 75)] * 3 + [(512, 38)] * 3 + [(512, 19)] * 3 + [(1024, 19)]
    assert estimates.rank_svd_gflop_per_image() == pytest.approx(sum(c * 10 * n ** 3 for c, n in layers) / 1e9,
                                                                  rel=1e-12)


def test_workloads_follow_the_full_profile():
    gmacs = {"vgg16-ssd": 31.0, "vgg16-ssd-pruned": 18.0, "mb1-ssd": 1.5}
    work = {w.what: w for w in estimates.workloads(PROFILES["full"], gmacs, svd_gflop=2.0)}
    ranks = work["your ranks: 640 images"]  # rank_limit 5 x rank_batch 128, as the original's limitbatch5
    assert (ranks.images, ranks.gmacs, ranks.svd_gflop) == (640, 31.0, 2.0)
    ft = work[f"your finetune: 1 epoch(s) of {estimates.VOC07_TRAINVAL} images"]
    assert (ft.images, ft.gmacs, ft.passes, ft.train) == (5011, 18.0, 3.0, True)
    sens = work["sensitivity: 19 evaluations x 500 images"]  # baseline + 6 layers x 3 rates
    assert sens.images == 19 * 500
    table = estimates.estimate_table({False: 0.0, True: 0.0}, PROFILES["full"])
    by_nb = estimates.per_notebook(table).set_index("notebook")["estimate min"]
    assert list(by_nb.index) == ["00_setup", "01_rank_generation", "02_hrank_pruning", "03_finetune",
                                 "04_eval_map_fps", "05_flops_table", "06_video_demo"]
    # with free data loading, the finetune row is its FLOPs at the training rate
    row = table[table["work"] == ft.what].iloc[0]
    flops = 5011 * estimates.model_gmacs(PROFILES["full"].compress_rate)["vgg16-ssd-pruned"] * 2 * 3
    assert row["estimate min"] == pytest.approx(flops / (estimates.T4_FP32_TFLOPS * estimates.TRAIN_EFFICIENCY
                                                         * 1e3) / 60, rel=1e-9)


def test_t4_time_is_a_stated_flops_model_and_its_inverse():
    gmacs = estimates.T4_FP32_TFLOPS * estimates.INFER_EFFICIENCY / 2  # 2 FLOPs per MAC: exactly 1 ms
    assert float(estimates.t4_forward_ms(gmacs)) == pytest.approx(1.0, rel=1e-12)
    assert estimates.t4_forward_gmacs(estimates.t4_forward_ms([1.5, 31.4])).tolist() == pytest.approx([1.5, 31.4])


def test_workloads_count_the_comparisons_extra_models():
    p = PROFILES["full"]
    gmacs = {"vgg16-ssd": 31.0, "vgg16-ssd-pruned": 18.0, "mb1-ssd": 1.5, "mb1-ssd-pruned": 0.9}
    work = {w.what: w for w in estimates.workloads(p, gmacs, svd_gflop=2.0, mb1_svd_gflop=0.5)}
    ranks = work["MobileNetV1-SSD ranks: 640 images"]
    assert (ranks.notebook, ranks.gmacs, ranks.svd_gflop) == ("01_rank_generation", 1.5, 0.5)
    mb1 = work[f"MobileNetV1-SSD pruned: {p.small_finetune_epochs} epoch(s)"]
    assert (mb1.images, mb1.gmacs, mb1.passes, mb1.train) == (5011 * p.small_finetune_epochs, 0.9, 3.0, True)
    seed_macs = work["latency-pruned VGG16-SSD at the seed MACs: 1 epoch(s) of 5011 images"]  # as the student's
    assert (seed_macs.images, seed_macs.gmacs) == (5011, 18.0)
    assert work["mAP of 6 models on 4952 images"].gmacs == 31.0 + 3 * 18.0 + 1.5 + 0.9
    order = [w.notebook for w in estimates.workloads(p, gmacs, 2.0)]
    assert order == sorted(order)  # grouped by notebook, in notebook order
