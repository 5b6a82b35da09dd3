"""How long each notebook takes on a Colab T4 with the full profile: an estimate, not a measurement.

No GPU is reachable from the machines this project is built on, so the figures are computed, not timed: the
work each notebook does on the full profile (images, passes, models' exact MACs, downloads) from the profile
and VOC2007's sizes, times the cost of one unit of work:

- GPU: FLOPs (2 per MAC; a training step costs 3 forward passes) at a stated share of the T4's FP32 peak;
- CPU: the per-image decode and transform time measured on the machine running this (Colab's T4 runtime has
  2 vCPUs: the data loader's 2 workers overlap with the GPU, so a step costs the larger of the two);
- HRank's ranks: the SVD FLOPs of every feature map (about 10 n^3 for an n x n map) at a stated rate;
- downloads at a stated bandwidth.

Every assumption is a named constant below; ``estimate_table`` returns the minutes per notebook with the
work behind them. ``benchmarks/colab_t4_estimate.py`` writes the table and the README's copy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd
import torch

from hrank_ssd.course.profiles import PROFILES, Profile
from hrank_ssd.data.voc import TestTransform, TrainAugmentation, VOCDataset, read_labels
from hrank_ssd.hrank.ranks import RankAccumulator
from hrank_ssd.measure.bench import count_macs
from hrank_ssd.nets.models import build_model
from hrank_ssd.nets.registry import get_config

T4_FP32_TFLOPS = 8.1  # NVIDIA T4 datasheet peak, FP32
INFER_EFFICIENCY = 0.25  # batch-1 predict: small kernels and launch overhead keep it far from peak
TRAIN_EFFICIENCY = 0.35  # batch 8 forward + backward
SVD_TFLOPS = 0.3  # batched small SVDs (torch.linalg.matrix_rank on CUDA) run far below the matmul peak
DOWNLOAD_MB_S = 25.0  # Colab to Drive / GCS / the VOC mirrors; often faster, sometimes much slower
VOC07_TRAINVAL, VOC07_TEST = 5011, 4952  # images
VOC_MB = {"2007-trainval": 439, "2007-test": 430}
CHECKPOINT_MB = {"vgg16-ssd": 105, "mb1-ssd": 38, "bundle": 190}
CLIP_FRAMES = 795


@dataclass
class Work:
    notebook: str
    what: str
    images: int = 0
    gmacs: float = 0.0  # per image, per forward
    passes: float = 1.0  # 3 for a training step
    train: bool = False  # data through the training augmentation (else the test transform)
    svd_gflop: float = 0.0  # per image
    download_mb: float = 0.0


def model_gmacs(compress_rate: Sequence[float], mb1_rate: Optional[Sequence[float]] = None) -> Dict[str, float]:
    """Exact MACs (G) of the full-size detectors (300x300, 21 classes): VGG16-SSD, pruned at ``compress_rate``,
    MobileNetV1-SSD and (with ``mb1_rate``) MobileNetV1-SSD pruned."""
    nets = {"vgg16-ssd": build_model("vgg16-ssd", 21), "vgg16-ssd-pruned": build_model("vgg16-ssd", 21,
                                                                                       compress_rate=compress_rate),
            "mb1-ssd": build_model("mb1-ssd", 21)}
    if mb1_rate is not None:
        nets["mb1-ssd-pruned"] = build_model("mb1-ssd", 21, compress_rate=mb1_rate)
    return {k: count_macs(m) / 1e9 for k, m in nets.items()}


def t4_forward_ms(gmacs):
    """Estimated, not measured: a batch-1 forward's ms on a T4 for a model of ``gmacs`` GMACs (2 FLOPs per MAC at
    ``INFER_EFFICIENCY`` of the FP32 peak). Takes and returns a number or an array (a plot's secondary axis)."""
    return np.asarray(gmacs, dtype=float) * 2.0 / (T4_FP32_TFLOPS * INFER_EFFICIENCY)


def t4_forward_gmacs(ms):
    """The inverse of :func:`t4_forward_ms`: the GMACs the estimate gives ``ms`` for."""
    return np.asarray(ms, dtype=float) * (T4_FP32_TFLOPS * INFER_EFFICIENCY) / 2.0


def rank_svd_gflop_per_image(net: str = "vgg16-ssd") -> float:
    """SVD FLOPs of every prunable feature map of one image (``net`` at 300x300): about 10 m n^2 each."""
    model = build_model(net, 21, compress_rate=None).eval()
    shapes = []
    acc = RankAccumulator(model, lambda maps: shapes.append(tuple(maps.shape)) or torch.zeros(maps.shape[:2]))
    try:
        with torch.no_grad():
            acc.add(torch.zeros(1, 3, model.image_size, model.image_size))
    finally:
        acc.close()
    return sum(c * 10 * max(h, w) * min(h, w) ** 2 for _, c, h, w in shapes) / 1e9


def workloads(p: Profile, gmacs: Dict[str, float], svd_gflop: float, mb1_svd_gflop: float = 0.0) -> List[Work]:
    """The work of each notebook on profile ``p``. The latency-pruned VGG16-SSDs are counted at the seed rate's
    MACs (at most that: an upper bound); measuring the latency table is not modelled (a GPU times it in minutes)."""
    vgg, pruned, mb1 = gmacs["vgg16-ssd"], gmacs["vgg16-ssd-pruned"], gmacs["mb1-ssd"]
    mb1p = gmacs.get("mb1-ssd-pruned", mb1)
    rank_images = p.rank_limit * p.rank_batch
    sens_evals = 1 + len(p.sensitivity_layers) * len(p.sensitivity_rates)
    ft = p.student_finetune_epochs or p.finetune_epochs
    work = [
        Work("00_setup", "VOC2007 trainval + test, both baselines", download_mb=VOC_MB["2007-trainval"]
             + VOC_MB["2007-test"] + CHECKPOINT_MB["vgg16-ssd"] + CHECKPOINT_MB["mb1-ssd"]),
        Work("01_rank_generation", f"your ranks: {rank_images} images", rank_images, vgg, svd_gflop=svd_gflop),
        Work("02_hrank_pruning", f"sensitivity: {sens_evals} evaluations x {p.sensitivity_images} images",
             sens_evals * p.sensitivity_images, vgg),
        Work("02_hrank_pruning", f"criteria: 3 pruned models x {VOC07_TEST} test images", 3 * VOC07_TEST, pruned),
        Work("03_finetune", "the published pruned model (bundle)", download_mb=CHECKPOINT_MB["bundle"]),
        Work("03_finetune", f"your finetune: {ft} epoch(s) of {VOC07_TRAINVAL} images", ft * VOC07_TRAINVAL, pruned,
             3.0, train=True),
        Work("03_finetune", f"validation loss + mAP after each epoch: {VOC07_TEST} images x 2", 2 * ft * VOC07_TEST,
             pruned),
        Work("03_finetune", f"distillation: {ft} more epoch(s) with the teacher's forward",
             ft * VOC07_TRAINVAL, pruned * 3 + vgg, train=True),
        Work("03_finetune", f"distillation: 2 evaluations + validation of {VOC07_TEST} images", 4 * VOC07_TEST, pruned),
        Work("04_eval_map_fps", f"mAP of 6 models on {VOC07_TEST} images", VOC07_TEST, vgg + 3 * pruned + mb1 + mb1p),
        Work("04_eval_map_fps", f"the 6 models timed: ({p.bench_warmup} + {p.bench_runs}) runs each",
             6 * (p.bench_warmup + p.bench_runs), (vgg + 3 * pruned + mb1 + mb1p) / 6),
        Work("04_eval_map_fps", f"benchmark: ({p.bench_warmup} + {p.bench_runs}) x 3 models, layer times",
             3 * (p.bench_warmup + p.bench_runs), (vgg + pruned + mb1) / 3),
        Work("05_flops_table", "counting MACs (CPU, seconds)"),
        Work("06_video_demo", f"street clip: {CLIP_FRAMES} frames", p.video_max_frames or CLIP_FRAMES, pruned,
             download_mb=3.6),
    ]
    work += _extra_work(p, rank_images, ft, pruned, mb1, mb1p, mb1_svd_gflop)
    return sorted(work, key=lambda w: w.notebook)  # stable: each notebook's work in the order above


def _extra_work(p: Profile, rank_images: int, ft: int, pruned: float, mb1: float, mb1p: float,
                mb1_svd_gflop: float) -> List[Work]:
    """The work of the comparison's models beyond the original three: MobileNetV1-SSD's ranks, three finetunes."""
    small = p.small_finetune_epochs
    return [
        Work("01_rank_generation", f"MobileNetV1-SSD ranks: {rank_images} images", rank_images, mb1,
             svd_gflop=mb1_svd_gflop),
        Work("03_finetune", f"latency-pruned VGG16-SSD at the seed MACs: {ft} epoch(s) of {VOC07_TRAINVAL} images",
             ft * VOC07_TRAINVAL, pruned, 3.0, train=True),
        Work("03_finetune", f"latency-pruned VGG16-SSD, small budget: {small} epoch(s)", small * VOC07_TRAINVAL,
             pruned, 3.0, train=True),
        Work("03_finetune", f"MobileNetV1-SSD pruned: {small} epoch(s)", small * VOC07_TRAINVAL, mb1p, 3.0,
             train=True),
        Work("03_finetune", f"validation of those three finetunes: {VOC07_TEST} images x 2 per epoch",
             2 * VOC07_TEST, ft * pruned + small * (pruned + mb1p)),
    ]


def cpu_ms_per_image(dataset_root, train: bool, images: int = 8) -> float:
    """Decode + transform time of one VOC image here (the data loader's share of each step), median."""
    cfg = get_config("vgg16-ssd")
    tf = (TrainAugmentation if train else TestTransform)(cfg.image_size, cfg.image_mean, cfg.image_std)
    root = Path(dataset_root)
    labels = root / "labels.txt"
    ds = VOCDataset(root, split="trainval", transform=tf, class_names=read_labels(labels) if labels.is_file() else None)
    times = []
    for i in range(min(images, len(ds))):
        t0 = time.perf_counter()
        ds[i]
        times.append((time.perf_counter() - t0) * 1e3)
    return float(sorted(times)[len(times) // 2])


def estimate_table(load_ms: Dict[bool, float], profile: Optional[Profile] = None, workers: int = 2) -> pd.DataFrame:
    """Minutes per notebook on a Colab T4 (full profile) and the work behind them."""
    p = profile or PROFILES["full"]
    rows = []
    for w in workloads(p, model_gmacs(p.compress_rate, p.mb1_compress_rate), rank_svd_gflop_per_image(),
                       rank_svd_gflop_per_image("mb1-ssd")):
        eff = TRAIN_EFFICIENCY if w.train else INFER_EFFICIENCY
        gpu_s = w.images * w.gmacs * 2 * w.passes / (T4_FP32_TFLOPS * eff * 1e3) if w.passes else 0.0
        gpu_s += w.images * w.svd_gflop / (SVD_TFLOPS * 1e3)
        cpu_s = w.images * load_ms[w.train] / 1e3 / workers
        net_s = w.download_mb / DOWNLOAD_MB_S
        rows.append({"notebook": w.notebook, "work": w.what, "GPU min": gpu_s / 60, "data min": cpu_s / 60,
                     "download min": net_s / 60, "estimate min": (max(gpu_s, cpu_s) + net_s) / 60})
    return pd.DataFrame(rows)


def per_notebook(table: pd.DataFrame) -> pd.DataFrame:
    return table.groupby("notebook", sort=False)["estimate min"].sum().round(1).reset_index()
