"""A detector's input and priors: size, normalisation, prior specs, box coding (pytorch-ssd's values)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Tuple


@dataclass(frozen=True)
class PriorSpec:
    """One detection scale: its reference feature-map size and stride at 300x300, box sizes, ratios."""

    feature_map_size: int
    shrinkage: int
    min_size: float
    max_size: float
    aspect_ratios: Tuple[int, ...]

    @property
    def boxes_per_location(self) -> int:
        return 2 + 2 * len(self.aspect_ratios)


@dataclass(frozen=True)
class NetConfig:
    name: str
    image_size: int
    image_mean: Tuple[float, float, float]
    image_std: float
    specs: Tuple[PriorSpec, ...]
    center_variance: float = 0.1
    size_variance: float = 0.2
    iou_threshold: float = 0.45  # NMS
    match_threshold: float = 0.5  # prior-to-ground-truth matching in training
    notes: List[str] = field(default_factory=list, compare=False)
