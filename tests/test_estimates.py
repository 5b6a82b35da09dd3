"""The Colab T4 estimate (benchmarks/colab_t4_estimate.py) computes its inputs: the SVD work of HRank's ranks and
the workloads; the full profile's short finetunes fit notebook 03's budget by it."""

from __future__ import annotations

from dataclasses import replace

import pytest
from conftest import load_benchmark

from hrank_ssd.course.profiles import PROFILES

estimates = load_benchmark("colab_t4_estimate")


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
    e = PROFILES["full"].student_finetune_epochs
    ft = work[f"your finetune: {e} epoch(s) of {estimates.VOC07_TRAINVAL} images"]
    assert (ft.images, ft.gmacs, ft.passes, ft.train, ft.makes) == (e * 5011, 18.0 * 3, 1.0, True, "student")
    val = work[f"your finetune: validation, {e} x {estimates.VOC07_TEST} images"]  # one pass per epoch: loss + mAP
    assert (val.images, val.gmacs, val.passes, val.train) == (e * 4952, 18.0, 1.0, False)
    sens = work["sensitivity: 19 evaluations x 500 images"]  # baseline + 6 layers x 3 rates
    assert sens.images == 19 * 500
    table = estimates.estimate_table({False: 0.0, True: 0.0}, PROFILES["full"])
    by_nb = estimates.per_notebook(table).set_index("notebook")["estimate min"]
    assert list(by_nb.index) == ["00_setup", "01_rank_generation", "02_hrank_pruning", "03_finetune",
                                 "04_eval_map_fps", "05_flops_table", "06_video_demo"]
    # with free data loading, the finetune row is its FLOPs at the training rate
    row = table[table["work"] == ft.what].iloc[0]
    flops = e * 5011 * estimates.model_gmacs(PROFILES["full"].compress_rate)["vgg16-ssd-pruned"] * 2 * 3
    assert row["estimate min"] == pytest.approx(flops / (estimates.T4_FP32_TFLOPS * estimates.TRAIN_EFFICIENCY
                                                         * 1e3) / 60, rel=1e-9)


def test_workloads_count_the_comparisons_extra_models():
    p = PROFILES["full"]
    gmacs = {"vgg16-ssd": 31.0, "vgg16-ssd-pruned": 18.0, "mb1-ssd": 1.5, "mb1-ssd-pruned": 0.9}
    work = {w.what: w for w in estimates.workloads(p, gmacs, svd_gflop=2.0, mb1_svd_gflop=0.5)}
    ranks = work["MobileNetV1-SSD ranks: 640 images"]
    assert (ranks.notebook, ranks.gmacs, ranks.svd_gflop) == ("01_rank_generation", 1.5, 0.5)
    small, e = p.small_finetune_epochs, p.student_finetune_epochs
    mb1 = work[f"MobileNetV1-SSD pruned: {small} epoch(s) of 5011 images"]
    assert (mb1.images, mb1.gmacs, mb1.train, mb1.makes) == (5011 * small, 0.9 * 3, True, "mb1-ssd-pruned")
    paper_macs = work[f"latency-pruned VGG16-SSD at the paper rate's MACs: {e} epoch(s) of 5011 images"]  # as the student's
    assert (paper_macs.images, paper_macs.gmacs) == (e * 5011, 18.0 * 3)
    assert work["mAP of 6 models on 4952 images"].gmacs == 31.0 + 3 * 18.0 + 1.5 + 0.9
    # the distillation lesson: one epoch plain (not the student's, which is longer) and one with the teacher
    kd = work["distillation lesson, with the teacher: 1 epoch(s) of 5011 images"]
    assert kd.gmacs == 18.0 * 3 + 31.0 and "distillation lesson, plain: 1 epoch(s) of 5011 images" in work
    order = [w.notebook for w in estimates.workloads(p, gmacs, 2.0)]
    assert order == sorted(order)  # grouped by notebook, in notebook order


def test_full_short_finetunes_are_the_most_that_fit_notebook_03s_t4_budget():
    """The full profile's short finetunes (yours, both latency-pruned models, the pruned MobileNetV1-SSD) are sized
    by the estimate: as many epochs as keep notebook 03 within T4_NOTEBOOK_MINUTES, one more would not."""
    p = PROFILES["full"]
    assert p.student_finetune_epochs == p.small_finetune_epochs

    def minutes(epochs):
        q = replace(p, student_finetune_epochs=epochs, small_finetune_epochs=epochs)
        table = estimates.estimate_table(estimates.ASSUMED_LOAD_MS, q)
        return estimates.per_notebook(table).set_index("notebook")["estimate min"]["03_finetune"]

    assert minutes(p.student_finetune_epochs) <= estimates.T4_NOTEBOOK_MINUTES < minutes(p.student_finetune_epochs + 1)
    # ...at pytorch-ssd's training rate scaled to the batch, far above the 120-epoch rate that barely moves weights
    assert p.finetune_lr_for(p.student_finetune_epochs) == pytest.approx(1e-3 * p.batch_size / 24, rel=1e-12)
    assert p.finetune_lr_for(p.finetune_epochs) == p.finetune_lr and p.mb1_finetune_lr == pytest.approx(1e-2 / 3)
