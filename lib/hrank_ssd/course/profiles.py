"""The course's profiles: every size, rate and switch a course run uses, by name.

- ``offline``: synthetic VOC-format data and small models trained here, no network (local default).
- ``full``: real VOC and the original project's weights and ranks via ``weights_manifest.json``.
- ``tiny``: the offline pipeline shrunk to seconds, for CI.
- ``full-rehearsal``: ``full`` at CPU sizes, run by ``rehearse`` against a local stand-in of the outside world.

``Course.settings()`` is the profile as ``results/settings.json`` stores it (the compress rate as text).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, Optional, Tuple

from hrank_ssd.errors import HRankError
from hrank_ssd.nets.compress import PRUNED_RATE


@dataclass(frozen=True)
class Profile:
    """One profile's settings (frozen: derive a variant with :func:`get_profile`'s overrides)."""

    name: str
    synthetic: bool = True
    num_train: int = 600
    num_test: int = 150
    image_size: int = 300
    vgg_width: float = 0.125
    mb1_width: float = 0.25
    batch_size: int = 8  # on 2 CPU cores batch 8 runs an epoch faster than 16 and takes twice the steps
    train_epochs: int = 16  # to convergence: with 9 the 4 finetune epochs lifted the pruned model above it
    lr: float = 2e-3
    optimizer: str = "adam"  # small models from scratch learn much faster with Adam than SGD
    augment: str = "light"  # photometric + flip: the synthetic shapes need no crop/expand to generalise
    init: str = "lsuv"  # unit activations from the start (models.init_from_scratch)
    mb1_epochs: int = 10
    mb1_lr: float = 2e-3
    rank_limit: int = 2
    rank_batch: int = 16
    compress_rate: Tuple[float, ...] = tuple(PRUNED_RATE)  # per prunable layer (the seed's [0.1]*7+[0.5]*9)
    finetune_epochs: int = 4
    finetune_lr: float = 2e-4
    sensitivity_rates: Tuple[float, ...] = (0.3, 0.6, 0.9)
    sensitivity_layers: Tuple[int, ...] = (1, 4, 7, 10, 13, 14)
    sensitivity_images: int = 60
    criteria_finetune_epochs: int = 1
    bench_warmup: int = 5
    bench_runs: int = 20
    video_max_frames: Optional[int] = 60
    use_published_pruned: bool = False  # full: the original project's finetuned pruned weights (120 GPU epochs)
    student_finetune_epochs: Optional[int] = None  # notebook 03's own run when the published model stands in
    seed: int = 0
    notes: Dict[str, str] = field(default_factory=dict, compare=False)


PROFILES: Dict[str, Profile] = {
    "offline": Profile("offline"),
    "tiny": Profile("tiny", num_train=8, num_test=4, batch_size=4, train_epochs=1, mb1_epochs=1, rank_limit=1,
                    rank_batch=4, finetune_epochs=1, sensitivity_rates=(0.5,), sensitivity_layers=(1, 14),
                    sensitivity_images=4, criteria_finetune_epochs=0, bench_warmup=1, bench_runs=2,
                    video_max_frames=4),
    "full": Profile("full", synthetic=False, vgg_width=1.0, mb1_width=1.0, batch_size=8, lr=1e-5, optimizer="sgd",
                    augment="ssd", init="default",
                    finetune_epochs=120, finetune_lr=1e-5, rank_limit=5, rank_batch=128, sensitivity_images=500,
                    criteria_finetune_epochs=0, bench_warmup=10, bench_runs=50, video_max_frames=None,
                    use_published_pruned=True, student_finetune_epochs=1),
}
# The full profile's code path at CPU sizes, for ``rehearse`` (the stand-in world's few VOC images): only the
# images per step and the benchmark's runs differ from full.
PROFILES["full-rehearsal"] = replace(PROFILES["full"], name="full-rehearsal", rank_limit=1, rank_batch=4,
                                     sensitivity_images=4, bench_warmup=1, bench_runs=3, video_max_frames=8)


def get_profile(name: str, **overrides) -> Profile:
    """The profile ``name`` with ``overrides`` (field=value) applied, e.g. ``get_profile("offline", seed=1)``."""
    if name not in PROFILES:
        raise HRankError(f"unknown profile {name!r}: choose one of {', '.join(PROFILES)}")
    return replace(PROFILES[name], **overrides)
