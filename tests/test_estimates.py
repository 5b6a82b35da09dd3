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
