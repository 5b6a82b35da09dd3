"""What the library knows about one detector, its input and priors (``NetConfig``) among it: a net file fills it in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence, Tuple

from hrank_ssd.errors import HRankError


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


Rule = Tuple[Optional[int], Optional[int]]  # (prunable layer selecting dim 0, the one selecting dim 1), 0-based


@dataclass(frozen=True)
class NetSpec:
    """One detector; prunable layer ``i`` (``rank_conv{i+1}.npy`` on disk) is the ``i``-th backbone conv."""

    name: str  # the --net value
    config: NetConfig  # input size, normalisation, priors
    channels: Tuple[int, ...]  # output channels of every backbone conv, the prunable ones first
    extras: Tuple[Tuple[int, int], ...]  # (1x1, 3x3) output channels of each extra block
    layer_names: Tuple[str, ...]  # the prunable layers, in order
    build: Callable  # (num_classes, plan, image_size) -> SSD
    producer_key: Callable[[int], str]  # state-dict prefix of backbone conv i
    activation_key: Callable[[int], str]  # module whose output is prunable layer i's map after ReLU
    slice_rules: Callable[[], Dict[str, Rule]]  # module prefix -> layers whose kept filters slice dims 0 and 1
    layer_of_module: Callable[[str], Optional[int]]  # prunable layer owning a base_net module; None past them
    stages: Tuple[Tuple[str, int], ...]  # consecutive prunable layers grouped for sliders: (name, count)
    module_label: Callable[[str], Optional[str]] = lambda name: None  # readable name of a module (FLOPs tables)
    default_compress_rate: Optional[Tuple[float, ...]] = None  # the published pruning, if any
    unpruned_parts: str = "extras, headers"  # what pruning leaves whole, as tables name it

    @property
    def num_prunable(self) -> int:
        return len(self.layer_names)

    def stage_rates(self, rates_by_stage: Dict[str, float]) -> list:
        """Per-layer rates from one rate per stage (missing stages are not pruned; an unknown one is an error)."""
        unknown = sorted(set(rates_by_stage) - {stage for stage, _ in self.stages})
        if unknown:
            raise HRankError(f"{self.name} has no stage {', '.join(unknown)}: its stages are "
                             f"{', '.join(stage for stage, _ in self.stages)}")
        return [rates_by_stage.get(stage, 0.0) for stage, count in self.stages for _ in range(count)]


def header_rules(sources: Dict[int, int]) -> Dict[str, Rule]:
    """Headers read a source map's channels: their input dim follows the prunable layer that makes it."""
    return {f"{kind}_headers.{header}": (None, layer)
            for layer, header in sources.items() for kind in ("classification", "regression")}


def chain_rules(prefixes: Sequence[str], num_prunable: int) -> Dict[str, Rule]:
    """A plain chain of convs: conv k's filters are layer k (if prunable), its inputs layer k-1's filters."""
    return {prefix: (k if k < num_prunable else None, k - 1 if 0 < k <= num_prunable else None)
            for k, prefix in enumerate(prefixes)}
