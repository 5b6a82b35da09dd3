"""The profiles: ``offline`` (synthetic), ``full`` (VOC), ``tiny`` (tests), ``full-rehearsal`` (``full``, CPU sizes)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, Optional, Tuple

from hrank_ssd.course.published import published_finetune
from hrank_ssd.errors import HRankError
from hrank_ssd.latency.knapsack import KEEP_IMPORTANCE
from hrank_ssd.nets.compress import PRUNED_RATE

THEIRS = published_finetune()  # the original project's finetune: num_epochs, lr, batch_size...
THEIR_BATCH = int(THEIRS["batch_size"])
# pytorch-ssd's README rates (SGD at batch 24) scaled linearly to the full profile's batch: a choice, not a measurement
SCALED_LR = {"vgg16-ssd": 1e-3 * THEIR_BATCH / 24, "mb1-ssd": 1e-2 * THEIR_BATCH / 24}


@dataclass(frozen=True)
class Profile:
    """One profile's settings (frozen: derive a variant with :func:`get_profile`'s overrides)."""

    name: str
    synthetic: bool = True
    needs_gpu: bool = False  # the setup cell warns when this profile runs without one (hours on a CPU)
    num_train: int = 320
    num_test: int = 150
    image_size: int = 300
    vgg_width: float = 0.125
    mb1_width: float = 0.25
    batch_size: int = 4  # twice the steps of batch 8 for the same CPU time: the small models learn faster
    train_epochs: int = 16
    # at 2e-3 the loss stays on its starting plateau for 4 to 6 epochs, as many as the data seed decides, and the
    # seeds' baselines end far apart
    lr: float = 1e-3
    optimizer: str = "adam"  # small models from scratch learn much faster with Adam than SGD
    augment: str = "light"  # photometric + flip: the synthetic shapes need no crop/expand to generalise
    init: str = "lsuv"  # unit activations from the start (models.init_from_scratch)
    channels_last: bool = True  # faster CPU training (benchmarks/train_layout.py)
    mb1_epochs: int = 6
    mb1_lr: float = 6e-3
    rank_limit: int = 2
    rank_batch: int = 16
    compress_rate: Tuple[float, ...] = tuple(PRUNED_RATE)  # per prunable layer (the original's [0.1]*7+[0.5]*9)
    finetune_epochs: int = 2
    # two epochs at this rate take a pruned model most of the way back; at a tenth of it, how far they get depends
    # on the data seed
    finetune_lr: float = 3e-4
    sensitivity_rates: Tuple[float, ...] = (0.3, 0.6, 0.9)
    sensitivity_layers: Tuple[int, ...] = (1, 4, 7, 10, 13, 14)
    sensitivity_images: int = 40
    criteria_finetune_epochs: int = 0  # > 0: notebook 02 also compares the criteria after this finetune
    resume_images: int = 32  # notebook 03's resume lesson: two short epochs on this many training images
    quick_map_images: int = 40  # notebook 02's "try this rate": mAP without finetuning on this many test images
    stability_images: int = 16  # notebook 01: ranks of two disjoint sets of this many images, and of stability_few
    stability_few: int = 2
    latency_grid: int = 6  # this machine's latency table: grid of kept counts per layer, timed calls per cell
    latency_runs: int = 5
    latency_warmup: int = 2
    min_keep: float = 0.25  # a latency budget never leaves a layer under a quarter of its filters
    paper_macs_min_keep: float = 0.5  # at the paper rate's MACs: half of every layer (benchmarks/latency_rules.md)
    paper_macs_keep: float = KEEP_IMPORTANCE  # share of the most HRank importance the paper rate's MACs allow
    latency_budget: float = 0.55  # the small latency-pruned model: this fraction of the unpruned forward
    small_finetune_epochs: int = 2  # the small latency budget's and MobileNetV1-SSD's finetunes (course.models)
    # notebook 02's target for the student's rate: at least this share of the MACs cut, at most this quick-mAP drop
    # before finetuning (the paper rate cuts too few MACs; which rates meet it depends on the run's model)
    target_mac_cut: float = 0.5
    target_map_drop: float = 0.25
    # MobileNetV1-SSD has no published pruning: the uniform rate whose full-size detector keeps about the share of
    # MACs the paper rate leaves VGG16-SSD (57% against 58%, exact counts)
    mb1_compress_rate: Tuple[float, ...] = (0.3,) * 14
    mb1_finetune_lr: Optional[float] = 1.5e-4  # the pruned MobileNetV1-SSD's; None: finetune_lr
    short_finetune_lr: Optional[float] = None  # VGG16-SSD finetunes under finetune_epochs; None: finetune_lr
    bench_warmup: int = 5
    bench_runs: int = 12  # interleaved rounds of the course's benchmark
    video_max_frames: Optional[int] = 60
    use_published_pruned: bool = False  # full: the original project's finetuned pruned weights
    student_finetune_epochs: Optional[int] = None  # notebook 03's own run when the published model stands in
    seed: int = 0

    @property
    def published(self) -> bool:
        """Whether the original project's finetuned pruned model is the compared paper-rate model (VOC only)."""
        return self.use_published_pruned and not self.synthetic

    def finetune_lr_for(self, epochs: int) -> float:
        """A VGG16-SSD finetune's rate: ``short_finetune_lr`` (if set) below ``finetune_epochs``."""
        if self.short_finetune_lr is not None and epochs < self.finetune_epochs:
            return self.short_finetune_lr
        return self.finetune_lr


# a few images and timed calls per step: the tests' profile and the full profile's rehearsal
_SMALL = dict(rank_limit=1, rank_batch=4, sensitivity_images=4, quick_map_images=4, resume_images=8,
              bench_warmup=1, latency_grid=2, latency_runs=1, latency_warmup=0, stability_images=2,
              stability_few=1)
PROFILES: Dict[str, Profile] = {
    "offline": Profile("offline"),
    # tiny's models are barely trained: its target is MACs alone
    "tiny": Profile("tiny", num_train=8, num_test=4, batch_size=4, train_epochs=1, mb1_epochs=1,
                    finetune_epochs=1, small_finetune_epochs=1, sensitivity_rates=(0.5,), sensitivity_layers=(1, 14),
                    bench_runs=2, video_max_frames=4, target_map_drop=1.0, **_SMALL),
    # the original project's finetune (epochs, rate, batch) stands behind the published pruned model; the
    # course's own finetunes are short (student_finetune_epochs), to keep notebook 03 short on a Colab GPU
    "full": Profile("full", synthetic=False, needs_gpu=True, vgg_width=1.0, mb1_width=1.0,
                    batch_size=THEIR_BATCH, lr=float(THEIRS["lr"]), optimizer="sgd", augment="ssd",
                    init="default", channels_last=False, finetune_epochs=int(THEIRS["num_epochs"]),
                    finetune_lr=float(THEIRS["lr"]), rank_limit=5, rank_batch=128, sensitivity_images=500,
                    quick_map_images=100, resume_images=64, bench_warmup=10, bench_runs=50, video_max_frames=None,
                    use_published_pruned=True, student_finetune_epochs=3, small_finetune_epochs=3,
                    short_finetune_lr=SCALED_LR["vgg16-ssd"], mb1_finetune_lr=SCALED_LR["mb1-ssd"],
                    latency_grid=4, stability_images=32, stability_few=4),
}
PROFILES["full-rehearsal"] = replace(PROFILES["full"], name="full-rehearsal", needs_gpu=False,
                                     student_finetune_epochs=1, small_finetune_epochs=1, bench_runs=3,
                                     video_max_frames=8, **_SMALL)


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
