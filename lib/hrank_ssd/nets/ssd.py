"""The SSD module every net builds and its *channel plan*: what widths, rates and pruned checkpoints become."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import torch
from torch import nn

from hrank_ssd.errors import HRankError
from hrank_ssd.nets.priors import generate_priors
from hrank_ssd.nets.spec import NetConfig


@dataclass
class ChannelPlan:
    """Output channels of the backbone convs and of the extras ((1x1, 3x3) per block)."""

    base: List[int]
    extras: List[Tuple[int, int]]
    num_prunable: int  # the first ``num_prunable`` backbone convs are HRank's prunable layers

    @property
    def prunable(self) -> List[int]:
        return self.base[:self.num_prunable]


def kept_channels(channels: int, rate: float) -> int:
    """Filters a layer keeps at ``rate``: ``int(c * (1 - rate))`` as in HRank, never fewer than 1."""
    return max(1, int(channels * (1 - rate)))


def plan_with_rates(plan: ChannelPlan, rates: Sequence[float]) -> ChannelPlan:
    """``plan`` with prunable layer i shrunk to ``kept_channels(c, rates[i])``."""
    base = [kept_channels(c, rate) for c, rate in zip(plan.base, rates)] + list(plan.base[len(rates):])
    return ChannelPlan(base, list(plan.extras), plan.num_prunable)


class SSD(nn.Module):
    """Backbone + extras + per-scale headers. ``forward`` returns raw (confidences, locations)."""

    def __init__(self, cfg: NetConfig, num_classes: int, base_net: nn.Sequential,
                 source_layer_indexes: Sequence[int], source_layer_add_ons: Dict[int, nn.Module],
                 extras: nn.ModuleList, classification_headers: nn.ModuleList,
                 regression_headers: nn.ModuleList, plan: ChannelPlan, image_size: int):
        super().__init__()
        self.cfg, self.num_classes, self.plan, self.image_size = cfg, num_classes, plan, image_size
        self.base_net = base_net
        self.source_layer_indexes = list(source_layer_indexes)
        # header -> the add-on (its index) on that header's source map
        self.header_add_ons = {self.source_layer_indexes.index(i): k for k, i in enumerate(source_layer_add_ons)}
        self.source_layer_add_ons = nn.ModuleList(source_layer_add_ons.values())
        self.extras = extras
        self.classification_headers = classification_headers
        self.regression_headers = regression_headers
        sizes = self.feature_map_sizes(image_size)
        if min(sizes) < 1:
            raise HRankError(f"--image_size {image_size} is too small for {cfg.name}: its last feature "
                             f"maps would be {sizes}; use at least {cfg.image_size}")
        self.register_buffer("priors", generate_priors(cfg, sizes, image_size), persistent=False)

    def sources(self, x: torch.Tensor) -> List[torch.Tensor]:
        """The feature maps the headers see, in header order."""
        feats, start = [], 0
        for header, end in enumerate(self.source_layer_indexes):
            for i in range(start, end):
                x = self.base_net[i](x)
            add_on = self.header_add_ons.get(header)
            feats.append(self.source_layer_add_ons[add_on](x) if add_on is not None else x)
            start = end
        for block in self.extras:
            x = block(x)
            feats.append(x)
        return feats

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        confs, locs = [], []
        n = x.size(0)
        for feat, cls, reg in zip(self.sources(x), self.classification_headers, self.regression_headers):
            confs.append(cls(feat).permute(0, 2, 3, 1).reshape(n, -1, self.num_classes))
            locs.append(reg(feat).permute(0, 2, 3, 1).reshape(n, -1, 4))
        return torch.cat(confs, 1), torch.cat(locs, 1)

    def feature_map_sizes(self, image_size: int) -> List[int]:
        """Spatial size of each source feature map, computed from the layers' own arithmetic."""
        sizes, size, bounds = [], image_size, [0] + self.source_layer_indexes
        for part in [self.base_net[a:b] for a, b in zip(bounds, bounds[1:])] + list(self.extras):
            size = _out_size(part, size)
            sizes.append(size)
        return sizes


def _out_size(module: nn.Module, size: int) -> int:
    """The spatial size after ``module``'s convs and max pools, in order (0 once nothing is left)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d)):
            k, s, p, d = (v if isinstance(v, int) else v[0] for v in (m.kernel_size, m.stride, m.padding, m.dilation))
            span = size + 2 * p - d * (k - 1) - 1
            size = 0 if span < 0 else (math.ceil(span / s) if getattr(m, "ceil_mode", False) else span // s) + 1
    return size


def extra_blocks(in_channels: int, widths: Sequence[Tuple[int, int]],
                 stride_padding: Sequence[Tuple[int, int]]) -> nn.ModuleList:
    """pytorch-ssd's extras: per block a 1x1 conv, ReLU, a 3x3 conv with the block's (stride, padding), ReLU."""
    blocks = []
    for (mid, out), (stride, pad) in zip(widths, stride_padding):
        blocks.append(nn.Sequential(nn.Conv2d(in_channels, mid, 1), nn.ReLU(),
                                    nn.Conv2d(mid, out, 3, stride=stride, padding=pad), nn.ReLU()))
        in_channels = out
    return nn.ModuleList(blocks)


def headers(source_channels: Sequence[int], cfg: NetConfig, num_classes: int):
    """The classification and regression headers: a 3x3 conv per source map, boxes-per-location outputs each."""
    boxes = [s.boxes_per_location for s in cfg.specs]
    cls = nn.ModuleList(nn.Conv2d(c, b * num_classes, 3, padding=1) for c, b in zip(source_channels, boxes))
    reg = nn.ModuleList(nn.Conv2d(c, b * 4, 3, padding=1) for c, b in zip(source_channels, boxes))
    return cls, reg
