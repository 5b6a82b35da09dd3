"""The course's profiles: every size, rate and switch a course run uses, by name.

- ``offline``: synthetic VOC-format data and small models trained here, no network (local default).
- ``full``: real VOC and the original project's weights and ranks via ``weights_manifest.json``.
- ``tiny``: the offline pipeline shrunk to seconds, for CI.
- ``full-rehearsal``: ``full`` at CPU sizes, run by ``tools/rehearse.py`` against a local stand-in of the outside world.

The comparison has six models (:data:`hrank_ssd.course.results.MODEL_KEYS`): VGG16-SSD, pruned at the original
project's rate, pruned for this machine's clock at two latency budgets (``latency_*``, ``min_keep``),
MobileNetV1-SSD and MobileNetV1-SSD pruned at ``mb1_compress_rate``.

On ``full`` the original project's finetuned pruned model stands in for its 120 GPU epochs (their epochs and
learning rate are read from :mod:`hrank_ssd.course.published`); the course's own finetunes there (the student's
rate, the latency-pruned models, the pruned MobileNetV1-SSD) are short: ``student_finetune_epochs`` and
``small_finetune_epochs``, chosen so that notebook 03 fits :data:`hrank_ssd.course.estimates.T4_NOTEBOOK_MINUTES`
on a T4 by the estimate, at ``short_finetune_lr`` (:func:`scaled_lr`). The report marks every model finetuned much
shorter than the published epochs as a short stand-in.

``Course.settings()`` is the profile as ``results/settings.json`` stores it (the compress rate as text).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, Optional, Tuple

from hrank_ssd.course.published import published_finetune
from hrank_ssd.errors import HRankError
from hrank_ssd.latency.knapsack import KEEP_IMPORTANCE
from hrank_ssd.nets.compress import PRUNED_RATE

# pytorch-ssd's training rates (its README's VOC commands, SGD at batch 24: VGG16-SSD at its default lr 1e-3,
# MobileNetV1-SSD at --lr 0.01); the full profile's short finetunes start at these, scaled linearly to its batch
# (:func:`scaled_lr`): a chosen rate, not one measured on VOC here.
PYTORCH_SSD_BATCH = 24
PYTORCH_SSD_LR = {"vgg16-ssd": 1e-3, "mb1-ssd": 1e-2}
THEIRS = published_finetune()  # the original project's finetune: num_epochs, lr, batch_size...


def scaled_lr(net: str, batch_size: int) -> float:
    """pytorch-ssd's training rate for ``net`` scaled linearly from its batch 24 to ``batch_size``."""
    return PYTORCH_SSD_LR[net] * batch_size / PYTORCH_SSD_BATCH


@dataclass(frozen=True)
class Profile:
    """One profile's settings (frozen: derive a variant with :func:`get_profile`'s overrides)."""

    name: str
    synthetic: bool = True
    needs_gpu: bool = False  # the setup cell warns when this profile runs without one (hours on a CPU)
    # every training step shrinks with it, and a run's latency table can choose wider (slower to train) latency
    # models: 917 s twice at 540 on 2 cores
    num_train: int = 500
    num_test: int = 150
    image_size: int = 300
    vgg_width: float = 0.125
    mb1_width: float = 0.25
    batch_size: int = 8  # on 2 CPU cores batch 8 runs an epoch faster than 16 and takes twice the steps
    # near convergence (with 9 the 4 finetune epochs lifted the pruned model above it); 16 took make course to
    # 15.3 min on a slower day of the dev VM: each epoch costs 17-22 s on 2 cores channels-last (validation included)
    train_epochs: int = 15
    lr: float = 2e-3
    optimizer: str = "adam"  # small models from scratch learn much faster with Adam than SGD
    augment: str = "light"  # photometric + flip: the synthetic shapes need no crop/expand to generalise
    init: str = "lsuv"  # unit activations from the start (models.init_from_scratch)
    # Train channels-last (TrainConfig.channels_last): on 2 CPU cores a width-0.125 VGG16-SSD step ran 1.45-2.3x
    # faster than NCHW in the two runs of benchmarks/train_layout.py so far, MobileNetV1-SSD 1.2-1.3x (the page
    # keeps the latest). Off in full: not measured on a GPU.
    channels_last: bool = True
    mb1_epochs: int = 10
    mb1_lr: float = 2e-3
    rank_limit: int = 2
    rank_batch: int = 16
    compress_rate: Tuple[float, ...] = tuple(PRUNED_RATE)  # per prunable layer (the original's [0.1]*7+[0.5]*9)
    finetune_epochs: int = 4
    finetune_lr: float = 2e-4
    sensitivity_rates: Tuple[float, ...] = (0.3, 0.6, 0.9)
    sensitivity_layers: Tuple[int, ...] = (1, 4, 7, 10, 13, 14)
    sensitivity_images: int = 60
    criteria_finetune_epochs: int = 1
    resume_images: int = 32  # notebook 03's resume lesson: two short epochs on this many training images
    quick_map_images: int = 40  # notebook 02's "try this rate": mAP without finetuning on this many test images
    # Rank stability (notebook 01): ranks of two disjoint sets of this many training images, and of only
    # stability_few images against the other set. Offline: 2 x 16 images of the width-0.125 VGG16-SSD, a few seconds.
    stability_images: int = 16
    stability_few: int = 2
    # The latency table of this machine (measure_latency_table at vgg_width, image_size): the grid of kept counts
    # per layer and the timed calls per cell. Offline (width 0.125): 951 cells, measured in 12-15 s on the 2-core dev
    # VM (42 s with a 2-thread benchmark running beside it), against ~2 min for the extra finetunes.
    latency_grid: int = 6
    latency_runs: int = 5
    latency_warmup: int = 2
    min_keep: float = 0.25  # a latency budget never leaves a layer under a quarter of its filters
    # ...but the latency model at the paper rate's MACs keeps half of every layer: its mAP is compared with the paper
    # rate's, and at 0.25 the knapsack starved conv1_2 and lost 0.016 offline mAP against 0.002 at 0.5
    # (benchmarks/latency_rules.md).
    paper_macs_min_keep: float = 0.5
    # Within the paper rate's MACs, the fastest widths that keep this share of the most HRank importance those MACs
    # allow (latency.budgets.fastest_widths_at_mac_cap): importance is flat near its top while speed is not
    # (benchmarks/latency_rules.md, docs/pruning-budgets.md).
    paper_macs_keep: float = KEEP_IMPORTANCE
    # The smaller latency-pruned VGG16-SSD: this fraction of the unpruned forward. Offline the cheapest widths
    # min_keep allows were predicted at 0.44-0.49 of it on the dev VMs, so 0.55 is a small budget that can be met (one
    # that cannot is raised to the cheapest widths plus a tenth of the way to the unpruned, and the report says so).
    latency_budget: float = 0.55
    # The latency-pruned VGG16-SSD at the paper rate's MACs finetunes exactly as the paper-rate model
    # (finetune_epochs, finetune_lr): their mAPs are compared. The two other pruned models (the smaller latency
    # budget, MobileNetV1-SSD) get small_finetune_epochs: offline one epoch each. On 2 cores an epoch of a pruned
    # width-0.125 VGG16-SSD took about 20-30 s NCHW (12-20 s channels-last) and one of the width-0.25
    # MobileNetV1-SSD 11-16 s, so the three extra finetunes add about 2 min and make course stays within its 15.
    small_finetune_epochs: int = 1
    # MobileNetV1-SSD has no published pruning: a uniform rate, the one whose full-size detector keeps about the
    # share of MACs the paper rate leaves VGG16-SSD (exact counts: 57% at 0.3 against 58%; 0.25 keeps 64%, 0.35
    # 51%), so both nets' pruned models sit at a comparable MAC cut.
    mb1_compress_rate: Tuple[float, ...] = (0.3,) * 14
    # The pruned width-0.25 MobileNetV1-SSD recovers slowly: one epoch at finetune_lr (2e-4) left it at mAP 0.23 (from
    # 0.67 unpruned), one at its training rate 2e-3 at 0.42 in the same 13 s (2 epochs at 1e-3: 0.43, 3: 0.46).
    # None: finetune_lr.
    mb1_finetune_lr: Optional[float] = 2e-3
    # The rate of a VGG16-SSD finetune shorter than finetune_epochs (the student's on full, the latency-pruned
    # models, the distillation lesson); None: finetune_lr.
    short_finetune_lr: Optional[float] = None
    bench_warmup: int = 5
    bench_runs: int = 12  # interleaved rounds of the course's benchmark (20 took the course past 15 min)
    video_max_frames: Optional[int] = 60
    use_published_pruned: bool = False  # full: the original project's finetuned pruned weights (120 GPU epochs)
    student_finetune_epochs: Optional[int] = None  # notebook 03's own run when the published model stands in
    seed: int = 0
    notes: Dict[str, str] = field(default_factory=dict, compare=False)

    def finetune_lr_for(self, epochs: int) -> float:
        """The learning rate of a VGG16-SSD finetune of ``epochs`` epochs: ``short_finetune_lr`` (when set) for
        one shorter than ``finetune_epochs``, else ``finetune_lr``."""
        if self.short_finetune_lr is not None and epochs < self.finetune_epochs:
            return self.short_finetune_lr
        return self.finetune_lr


PROFILES: Dict[str, Profile] = {
    "offline": Profile("offline"),
    "tiny": Profile("tiny", num_train=8, num_test=4, batch_size=4, train_epochs=1, mb1_epochs=1, rank_limit=1,
                    rank_batch=4, finetune_epochs=1, sensitivity_rates=(0.5,), sensitivity_layers=(1, 14),
                    sensitivity_images=4, quick_map_images=4, resume_images=8, criteria_finetune_epochs=0, bench_warmup=1,
                    bench_runs=2, video_max_frames=4, latency_grid=2, latency_runs=1, latency_warmup=0,
                    stability_images=2, stability_few=1),
    # The original project's finetune (epochs, rate, batch) stands behind the published pruned model; the course's own
    # finetunes are short: 3 epochs each fit notebook 03 in T4_NOTEBOOK_MINUTES by the estimate, 4 do not
    # (tests/test_estimates.py checks both).
    "full": Profile("full", synthetic=False, needs_gpu=True, vgg_width=1.0, mb1_width=1.0,
                    batch_size=int(THEIRS["batch_size"]), lr=float(THEIRS["lr"]), optimizer="sgd", augment="ssd",
                    init="default", channels_last=False, finetune_epochs=int(THEIRS["num_epochs"]),
                    finetune_lr=float(THEIRS["lr"]), rank_limit=5, rank_batch=128, sensitivity_images=500,
                    quick_map_images=100, resume_images=64, criteria_finetune_epochs=0, bench_warmup=10, bench_runs=50,
                    video_max_frames=None, use_published_pruned=True, student_finetune_epochs=3,
                    small_finetune_epochs=3, short_finetune_lr=scaled_lr("vgg16-ssd", int(THEIRS["batch_size"])),
                    mb1_finetune_lr=scaled_lr("mb1-ssd", int(THEIRS["batch_size"])), latency_grid=4,
                    latency_runs=5, latency_warmup=2, stability_images=32, stability_few=4),
}
# The full profile's code path at CPU sizes, for ``tools/rehearse.py`` (the stand-in world's few VOC images): only the
# images per step, the short finetunes' epochs (one each: the same path), the benchmark's runs and the latency
# table's grid and runs differ from full.
PROFILES["full-rehearsal"] = replace(PROFILES["full"], name="full-rehearsal", needs_gpu=False, student_finetune_epochs=1,
                                     small_finetune_epochs=1, rank_limit=1, rank_batch=4,
                                     sensitivity_images=4, quick_map_images=4, resume_images=8, bench_warmup=1, bench_runs=3,
                                     video_max_frames=8, latency_grid=2, latency_runs=1, latency_warmup=0,
                                     stability_images=2, stability_few=1)


def get_profile(name: str, **overrides) -> Profile:
    """The profile ``name`` with ``overrides`` (field=value) applied, e.g. ``get_profile("offline", seed=1)``."""
    if name not in PROFILES:
        raise HRankError(f"unknown profile {name!r}: choose one of {', '.join(PROFILES)}")
    return replace(PROFILES[name], **overrides)


def gpu_warning(profile: Profile, device: str) -> Optional[str]:
    """One line for a profile that needs a GPU running on ``device`` without one (None otherwise)."""
    if not profile.needs_gpu or str(device).startswith("cuda"):
        return None
    return (f"WARNING: profile {profile.name} on {device} without a GPU will take hours; use a GPU runtime "
            "(Colab: Runtime > Change runtime type > GPU), or PROFILE = \"offline\" for the quick synthetic run")
