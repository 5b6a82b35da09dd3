"""Per-net constants: input size, normalisation, prior specs and box-coding variances.

The values are those of pytorch-ssd (``vision/ssd/config``), so the published checkpoints
see exactly the input they were trained on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Tuple

NETS = ("vgg16-ssd", "mb1-ssd")


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


VGG16_SSD = NetConfig(
    name="vgg16-ssd",
    image_size=300,
    image_mean=(123.0, 117.0, 104.0),
    image_std=1.0,
    specs=(
        PriorSpec(38, 8, 30, 60, (2,)),
        PriorSpec(19, 16, 60, 111, (2, 3)),
        PriorSpec(10, 32, 111, 162, (2, 3)),
        PriorSpec(5, 64, 162, 213, (2, 3)),
        PriorSpec(3, 100, 213, 264, (2,)),
        PriorSpec(1, 300, 264, 315, (2,)),
    ),
)

MB1_SSD = NetConfig(
    name="mb1-ssd",
    image_size=300,
    image_mean=(127.0, 127.0, 127.0),
    image_std=128.0,
    specs=(
        PriorSpec(19, 16, 60, 105, (2, 3)),
        PriorSpec(10, 32, 105, 150, (2, 3)),
        PriorSpec(5, 64, 150, 195, (2, 3)),
        PriorSpec(3, 100, 195, 240, (2, 3)),
        PriorSpec(2, 150, 240, 285, (2, 3)),
        PriorSpec(1, 300, 285, 330, (2, 3)),
    ),
)

CONFIGS = {c.name: c for c in (VGG16_SSD, MB1_SSD)}


def get_config(net: str) -> NetConfig:
    try:
        return CONFIGS[net]
    except KeyError:
        raise ValueError(f"unknown --net {net!r}: choose one of {', '.join(NETS)}") from None
