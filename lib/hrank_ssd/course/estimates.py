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
work behind them (each piece of work tagged with what it ``makes``: a model, ranks, a data set), and
:func:`full_t4_minutes` the same for the full profile with assumed data-loading times, once per process (the
notebooks' "what this recomputes" cells, :mod:`hrank_ssd.course.upstream`). The full profile's short finetunes
are sized to fit notebook 03 in :data:`T4_NOTEBOOK_MINUTES` by this estimate. ``benchmarks/colab_t4_estimate.py``
writes the table and the README's copy.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd
import torch

from hrank_ssd.course.profiles import PROFILES, Profile
from hrank_ssd.data.augment import TrainAugmentation
from hrank_ssd.data.voc import TestTransform, VOCDataset, read_labels
from hrank_ssd.hrank.ranks import RankAccumulator
from hrank_ssd.measure.flops import macs
from hrank_ssd.nets.models import build_model
from hrank_ssd.nets.registry import get_config

T4_FP32_TFLOPS = 8.1  # NVIDIA T4 datasheet peak, FP32
INFER_EFFICIENCY = 0.25  # batch-1 predict: small kernels and launch overhead keep it far from peak
TRAIN_EFFICIENCY = 0.35  # batch 8 forward + backward
SVD_TFLOPS = 0.3  # batched small SVDs (torch.linalg.matrix_rank on CUDA) run far below the matmul peak
DOWNLOAD_MB_S = 25.0  # Colab to Drive / GCS / the VOC mirrors; often faster, sometimes much slower
# decode + transform ms per image on Colab's CPU (test transform, training augmentation): assumed for the
# notebooks' estimates; benchmarks/colab_t4_estimate.py measures them on a VOC sample instead
ASSUMED_LOAD_MS = {False: 2.0, True: 5.0}
T4_NOTEBOOK_MINUTES = 60.0  # the time one notebook may take on a T4 (estimated): it sizes full's short finetunes
VOC07_TRAINVAL, VOC07_TEST = 5011, 4952  # images
VOC_MB = {"2007-trainval": 439, "2007-test": 430}
CHECKPOINT_MB = {"vgg16-ssd": 105, "mb1-ssd": 38, "bundle": 190, "ranks": 1}
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
    makes: str = ""  # what it makes (a model key, "ranks", "voc-test"...): upstream.py prices a missing one


def model_gmacs(compress_rate: Sequence[float], mb1_rate: Optional[Sequence[float]] = None) -> Dict[str, float]:
    """Exact MACs (G) of the full-size detectors (300x300, 21 classes): VGG16-SSD, pruned at ``compress_rate``,
    MobileNetV1-SSD and (with ``mb1_rate``) MobileNetV1-SSD pruned."""
    nets = {"vgg16-ssd": build_model("vgg16-ssd", 21), "vgg16-ssd-pruned": build_model("vgg16-ssd", 21,
                                                                                       compress_rate=compress_rate),
            "mb1-ssd": build_model("mb1-ssd", 21)}
    if mb1_rate is not None:
        nets["mb1-ssd-pruned"] = build_model("mb1-ssd", 21, compress_rate=mb1_rate)
    return {k: macs(m) / 1e9 for k, m in nets.items()}


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


def finetune_work(notebook: str, what: str, epochs: int, gmacs: float, makes: str, teacher: float = 0.0) -> List[Work]:
    """A finetune of ``epochs`` epochs of VOC2007 trainval (3 passes a step, ``teacher``: a distillation teacher's
    forward on top) and its validation, one forward pass over VOC2007 test per epoch (loss and, when due, mAP
    from the same forwards)."""
    return [Work(notebook, f"{what}: {epochs} epoch(s) of {VOC07_TRAINVAL} images", epochs * VOC07_TRAINVAL,
                 gmacs * 3 + teacher, 1.0, train=True, makes=makes),
            Work(notebook, f"{what}: validation, {epochs} x {VOC07_TEST} images", epochs * VOC07_TEST, gmacs,
                 makes=makes)]


def voc_work(notebook: str, sets=("trainval", "test")) -> List[Work]:
    """VOC2007 downloaded onto a new VM's disk: every Colab notebook runs on one (Drive keeps only artifacts)."""
    return [Work(notebook, f"VOC2007 {s} onto this VM's disk", download_mb=VOC_MB[f"2007-{s}"], makes=f"voc-{s}")
            for s in sets]


def workloads(p: Profile, gmacs: Dict[str, float], svd_gflop: float, mb1_svd_gflop: float = 0.0) -> List[Work]:
    """The work of each notebook on profile ``p`` on a new VM. The latency-pruned VGG16-SSDs are counted at the
    paper rate's MACs (at most that: an upper bound); measuring the latency table is not modelled."""
    vgg, pruned, mb1 = gmacs["vgg16-ssd"], gmacs["vgg16-ssd-pruned"], gmacs["mb1-ssd"]
    rank_images = p.rank_limit * p.rank_batch
    sens_evals = 1 + len(p.sensitivity_layers) * len(p.sensitivity_rates)
    work = [
        *voc_work("00_setup"),
        Work("00_setup", "both baselines", download_mb=CHECKPOINT_MB["vgg16-ssd"] + CHECKPOINT_MB["mb1-ssd"],
             makes="baselines"),
        *voc_work("01_rank_generation"),
        Work("01_rank_generation", f"your ranks: {rank_images} images", rank_images, vgg, svd_gflop=svd_gflop,
             makes="ranks"),
        Work("01_rank_generation", f"MobileNetV1-SSD ranks: {rank_images} images", rank_images, mb1,
             svd_gflop=mb1_svd_gflop, makes="ranks-mb1-ssd"),
        *voc_work("02_hrank_pruning"),
        Work("02_hrank_pruning", "the published rank files", download_mb=CHECKPOINT_MB["ranks"],
             makes="published-ranks"),
        Work("02_hrank_pruning", f"sensitivity: {sens_evals} evaluations x {p.sensitivity_images} images",
             sens_evals * p.sensitivity_images, vgg, makes="sensitivity"),
        Work("02_hrank_pruning", f"criteria: 3 pruned models x {VOC07_TEST} test images", 3 * VOC07_TEST, pruned,
             makes="criteria"),
        *voc_work("03_finetune"),
        *_finetunes(p, gmacs),
        *voc_work("04_eval_map_fps", ("test",)),
        *_evaluation(p, gmacs),
        Work("05_flops_table", "counting MACs (CPU, seconds)"),
        Work("06_video_demo", f"street clip: {CLIP_FRAMES} frames", p.video_max_frames or CLIP_FRAMES, pruned,
             download_mb=3.6, makes="video"),
    ]
    return sorted(work, key=lambda w: w.notebook)  # stable: each notebook's work in the order above


def _finetunes(p: Profile, gmacs: Dict[str, float]) -> List[Work]:
    """Notebook 03: the student's finetune, the comparison's three other finetunes, the distillation lesson."""
    vgg, pruned, mb1p = gmacs["vgg16-ssd"], gmacs["vgg16-ssd-pruned"], gmacs.get("mb1-ssd-pruned", gmacs["mb1-ssd"])
    published = p.use_published_pruned and not p.synthetic
    ft = (p.student_finetune_epochs or p.finetune_epochs) if published else p.finetune_epochs
    kd = p.criteria_finetune_epochs or 1
    work = [Work("03_finetune", "the published pruned model (bundle)", download_mb=CHECKPOINT_MB["bundle"],
                 makes="vgg16-ssd-pruned")] if published else []
    work += finetune_work("03_finetune", "your finetune", ft, pruned, "student" if published else "vgg16-ssd-pruned")
    work += finetune_work("03_finetune", "latency-pruned VGG16-SSD at the paper rate's MACs", ft, pruned,
                          "vgg16-ssd-lat-paper-macs")
    work += finetune_work("03_finetune", "latency-pruned VGG16-SSD, small budget", p.small_finetune_epochs, pruned,
                          "vgg16-ssd-lat-small")
    work += finetune_work("03_finetune", "MobileNetV1-SSD pruned", p.small_finetune_epochs, mb1p, "mb1-ssd-pruned")
    if kd != ft:  # the plain finetune of the distillation lesson is the student's own when as long
        work += finetune_work("03_finetune", "distillation lesson, plain", kd, pruned, "distillation")
    work += finetune_work("03_finetune", "distillation lesson, with the teacher", kd, pruned, "distillation", vgg)
    return work + [Work("03_finetune", f"distillation lesson: mAP of both on {VOC07_TEST} images", 2 * VOC07_TEST,
                        pruned, makes="distillation")]


def _evaluation(p: Profile, gmacs: Dict[str, float]) -> List[Work]:
    vgg, pruned, mb1 = gmacs["vgg16-ssd"], gmacs["vgg16-ssd-pruned"], gmacs["mb1-ssd"]
    six = vgg + 3 * pruned + mb1 + gmacs.get("mb1-ssd-pruned", mb1)
    return [Work("04_eval_map_fps", f"mAP of 6 models on {VOC07_TEST} images", VOC07_TEST, six, makes="evaluate"),
            Work("04_eval_map_fps", f"the 6 models timed: ({p.bench_warmup} + {p.bench_runs}) runs each",
                 6 * (p.bench_warmup + p.bench_runs), six / 6),
            Work("04_eval_map_fps", f"benchmark: ({p.bench_warmup} + {p.bench_runs}) x 3 models, layer times",
                 3 * (p.bench_warmup + p.bench_runs), (vgg + pruned + mb1) / 3)]


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


def estimate_table(load_ms: Dict[bool, float], profile: Optional[Profile] = None, workers: int = 2,
                   makes: bool = False) -> pd.DataFrame:
    """Minutes per notebook on a Colab T4 (full profile) and the work behind them (``makes``: with the column
    saying what each piece of work makes)."""
    p = profile or PROFILES["full"]
    rows = []
    for w in workloads(p, _gmacs(p.compress_rate, p.mb1_compress_rate), _svd_gflop("vgg16-ssd"),
                       _svd_gflop("mb1-ssd")):
        eff = TRAIN_EFFICIENCY if w.train else INFER_EFFICIENCY
        gpu_s = w.images * w.gmacs * 2 * w.passes / (T4_FP32_TFLOPS * eff * 1e3) if w.passes else 0.0
        gpu_s += w.images * w.svd_gflop / (SVD_TFLOPS * 1e3)
        cpu_s = w.images * load_ms[w.train] / 1e3 / workers
        net_s = w.download_mb / DOWNLOAD_MB_S
        rows.append({"notebook": w.notebook, "work": w.what, "GPU min": gpu_s / 60, "data min": cpu_s / 60,
                     "download min": net_s / 60, "estimate min": (max(gpu_s, cpu_s) + net_s) / 60,
                     **({"makes": w.makes} if makes else {})})
    return pd.DataFrame(rows)


@functools.cache
def _gmacs(compress_rate, mb1_rate) -> Dict[str, float]:
    return model_gmacs(compress_rate, mb1_rate)


@functools.cache
def _svd_gflop(net: str) -> float:
    return rank_svd_gflop_per_image(net)


@functools.cache
def full_t4_minutes(profile: Optional[Profile] = None) -> pd.DataFrame:
    """:func:`estimate_table` of ``profile`` (default full) with :data:`ASSUMED_LOAD_MS`, with ``makes``: computed
    once per process (it builds the full-size detectors)."""
    return estimate_table(ASSUMED_LOAD_MS, profile or PROFILES["full"], makes=True)


def minutes_of(table: pd.DataFrame, makes: str, notebook: Optional[str] = None) -> float:
    """The estimated minutes of the work that makes ``makes`` (in ``notebook`` only, when given; else in the first
    notebook that makes it: VOC is fetched by several)."""
    rows = table[table["makes"] == makes]
    if len(rows):
        rows = rows[rows["notebook"] == (notebook or rows["notebook"].iloc[0])]
    return float(rows["estimate min"].sum())


def per_notebook(table: pd.DataFrame) -> pd.DataFrame:
    return table.groupby("notebook", sort=False)["estimate min"].sum().round(1).reset_index()
