"""Estimated minutes per notebook on a Colab T4 with the full profile: an ESTIMATE, not a measurement.

No GPU is reachable here, so the figures are computed, not timed: each notebook's work on the full profile
(images, passes, exact MACs, downloads) times a stated cost per unit (GPU FLOPs at a share of the T4's FP32 peak,
a training step 3 forwards; rank SVDs at a stated rate; downloads at a stated bandwidth; per-image decoding
measured here, overlapped by 2 loader workers). The full profile's short finetunes fit notebook 03 in
``T4_NOTEBOOK_MINUTES`` by it (tests/test_estimates.py).

    python benchmarks/colab_t4_estimate.py [--dataset VOC_ROOT | --assumed_load]

Writes ``benchmarks/colab_t4_estimate.md`` (with its command and machine).
"""

from __future__ import annotations

import argparse
import functools
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pandas as pd
import torch

from hrank_ssd.cli.main import guarded
from hrank_ssd.course.folders import repo_root
from hrank_ssd.course.profiles import PROFILES, Profile
from hrank_ssd.data.augment import TrainAugmentation
from hrank_ssd.data.voc import TestTransform, VOCDataset, read_labels
from hrank_ssd.hrank.ranks import RankAccumulator
from hrank_ssd.measure.flops import macs
from hrank_ssd.measure.tables import markdown_table
from hrank_ssd.nets.models import build_model
from hrank_ssd.nets.registry import get_config

HERE = Path(__file__).resolve().parent
SHARED_VOC = repo_root().parent / "shared" / "data" / "voc2012_sample" / "VOC2012"

T4_FP32_TFLOPS = 8.1  # NVIDIA T4 datasheet peak, FP32
INFER_EFFICIENCY = 0.25  # batch-1 predict: small kernels and launch overhead keep it far from peak
TRAIN_EFFICIENCY = 0.35  # batch 8 forward + backward
SVD_TFLOPS = 0.3  # batched small SVDs (torch.linalg.matrix_rank on CUDA) run far below the matmul peak
DOWNLOAD_MB_S = 25.0  # Colab to Drive / GCS / the VOC mirrors; often faster, sometimes much slower
# decode + transform ms per image on Colab's CPU (test transform, training augmentation): assumed for the
# notebooks' estimates; benchmarks/colab_t4_estimate.py measures them on a VOC sample instead
ASSUMED_LOAD_MS = {False: 2.0, True: 5.0}
T4_NOTEBOOK_MINUTES = 60.0  # the time one notebook may take on a T4 (estimated): full's short finetunes fit it
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
    makes: str = ""  # what it makes (a model key, "ranks", "voc-test"...)


def model_gmacs(compress_rate: Sequence[float], mb1_rate: Optional[Sequence[float]] = None) -> Dict[str, float]:
    """Exact MACs (G) of the full-size detectors (300x300, 21 classes): VGG16-SSD, pruned at ``compress_rate``,
    MobileNetV1-SSD and (with ``mb1_rate``) MobileNetV1-SSD pruned."""
    nets = {"vgg16-ssd": build_model("vgg16-ssd", 21), "vgg16-ssd-pruned": build_model("vgg16-ssd", 21,
                                                                                       compress_rate=compress_rate),
            "mb1-ssd": build_model("mb1-ssd", 21)}
    if mb1_rate is not None:
        nets["mb1-ssd-pruned"] = build_model("mb1-ssd", 21, compress_rate=mb1_rate)
    return {k: macs(m) / 1e9 for k, m in nets.items()}


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


def per_notebook(table: pd.DataFrame) -> pd.DataFrame:
    return table.groupby("notebook", sort=False)["estimate min"].sum().round(1).reset_index()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default=None, help="a VOC folder of real JPEGs to time decoding on "
                                                   "(default: ../shared's VOC2012 sample, else a synthetic set)")
    p.add_argument("--assumed_load", action="store_true",
                   help="decode times: ASSUMED_LOAD_MS (what the notebooks' cells use), not measured here "
                        "(a busy machine measures its load, not the decoding)")
    args = p.parse_args(argv)
    root = Path(args.dataset) if args.dataset else SHARED_VOC
    if args.assumed_load:
        load_ms, where = dict(ASSUMED_LOAD_MS), "assumed (ASSUMED_LOAD_MS)"
    else:
        if not root.is_dir():
            from hrank_ssd.data.synthetic import make_synthetic_voc

            root = make_synthetic_voc(HERE / ".t4-synthetic", 16, 0, image_size=500, seed=0)
        load_ms = {train: cpu_ms_per_image(root, train, images=32) for train in (False, True)}
        where = f"as measured on {root.name} here"
    table = estimate_table(load_ms)
    summary = per_notebook(table)
    text = (f"Estimated, not measured (no GPU here): minutes per notebook on a Colab T4 with `PROFILE = \"full\"`, "
            f"from `benchmarks/colab_t4_estimate.py`. GPU work at {INFER_EFFICIENCY:.0%} (predict) and "
            f"{TRAIN_EFFICIENCY:.0%} (training) of the T4's {T4_FP32_TFLOPS} FP32 TFLOPS, rank "
            f"SVDs at {SVD_TFLOPS} TFLOPS, downloads at {DOWNLOAD_MB_S:.0f} MB/s, decoding "
            f"{load_ms[False]:.1f} ms (test) / {load_ms[True]:.1f} ms (training augmentation) per image {where}, on "
            f"2 loader workers. Expect the real times within about a factor of 2.\n\n"
            + markdown_table(summary, floatfmt=".1f") + "\n")
    detail = markdown_table(table, floatfmt=".2f")
    command = "python benchmarks/colab_t4_estimate.py " + " ".join(sys.argv[1:] if argv is None else argv)
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    (HERE / "colab_t4_estimate.md").write_text("# Time on a Colab T4 (estimate, not a measurement)\n\n"
                                               f"Generated by `{command.strip()}` on {machine} (only measured decode times "
                                               "come from it; the GPU work is computed).\n\n" + text
                                               + "\nThe work behind each figure:\n\n" + detail + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
