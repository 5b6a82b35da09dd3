"""The course's six compared models in one table, :data:`MODELS`: everything that lists models reads it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from hrank_ssd.nets.compress import format_compress_rate


@dataclass(frozen=True)
class CompareModel:
    """One compared model: ``made`` ``trained``, ``rate`` or ``latency`` (from the profile field ``setting``),
    finetuned for the profile field ``epochs``."""

    key: str
    title: str  # the report's
    label: str  # the plots'
    net: str  # what it is, or is pruned from
    made: str
    setting: Optional[str] = None
    epochs: Optional[str] = None


PAPER = "vgg16-ssd-pruned"  # pruned at the paper rate: the model the original project published and timed
PAPER_MACS, SMALL, MB1_PRUNED = "vgg16-ssd-lat-paper-macs", "vgg16-ssd-lat-small", "mb1-ssd-pruned"
ONE_BUDGET = (PAPER, PAPER_MACS)  # pruned within one MAC budget, finetuned alike: a gap under the margin is a tie
MODELS = (
    CompareModel("vgg16-ssd", "VGG16-SSD", "VGG", "vgg16-ssd", "trained"),
    CompareModel(PAPER, "VGG16-SSD pruned (HRank)", "VGG paper rate", "vgg16-ssd", "rate",
                 "compress_rate", "finetune_epochs"),
    CompareModel(PAPER_MACS, "VGG16-SSD latency-pruned (paper rate's MACs)", "VGG latency @ paper MACs",
                 "vgg16-ssd", "latency", "paper_macs_keep", "finetune_epochs"),
    CompareModel(SMALL, "VGG16-SSD latency-pruned (small budget)", "VGG latency small", "vgg16-ssd", "latency",
                 "latency_budget", "small_finetune_epochs"),
    CompareModel("mb1-ssd", "MobileNetV1-SSD", "MB1", "mb1-ssd", "trained"),
    CompareModel(MB1_PRUNED, "MobileNetV1-SSD pruned (HRank)", "MB1 pruned", "mb1-ssd", "rate",
                 "mb1_compress_rate", "small_finetune_epochs"),
)
BY_KEY = {m.key: m for m in MODELS}
MODEL_KEYS = tuple(BY_KEY)
MODEL_TITLES = {m.key: m.title for m in MODELS}
FINETUNED = tuple(m.key for m in MODELS if m.epochs)


def own_epochs(profile) -> int:
    """The course's own paper-rate finetune: ``student_finetune_epochs`` where the published model stands in."""
    if profile.published:
        return profile.student_finetune_epochs or profile.finetune_epochs
    return profile.finetune_epochs


def fair_epochs(profile) -> float:
    """The paper-rate model's finetune, the offline yardstick; NaN on VOC, where the published one is."""
    return float(profile.finetune_epochs) if profile.synthetic else float("nan")


def finetune_epochs(profile, key: str, substituted: bool = False) -> int:
    """The finetune epochs of the compared model ``key`` (0: not finetuned; ``substituted``: the student's own)."""
    field = BY_KEY[key].epochs
    if field is None:
        return 0
    if key == PAPER and profile.published and not substituted:
        return profile.finetune_epochs
    return own_epochs(profile) if field == "finetune_epochs" else getattr(profile, field)


def rate_name(rates: Sequence[float]) -> str:
    """A per-layer compress rate as a file name part: ``[0.1]*7+[0.5]*7`` -> ``0.1x7_0.5x7``."""
    return format_compress_rate(list(rates)).replace("[", "").replace("]", "").replace("*", "x").replace("+", "_")
