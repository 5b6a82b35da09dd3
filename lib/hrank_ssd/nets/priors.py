"""SSD prior boxes and box coding, center form ``(cx, cy, w, h)`` relative to the image."""

from __future__ import annotations

import itertools
import math
from typing import Sequence

import torch
from torchvision.ops import box_convert, box_iou

from hrank_ssd.nets.spec import NetConfig


def generate_priors(cfg: NetConfig, feature_map_sizes: Sequence[int] | None = None,
                    image_size: int | None = None) -> torch.Tensor:
    """Priors for ``cfg`` at the feature-map sizes (default: the config's); pytorch-ssd's at the reference sizes."""
    image_size = image_size or cfg.image_size
    sizes = list(feature_map_sizes) if feature_map_sizes is not None else [s.feature_map_size for s in cfg.specs]
    ratio = image_size / cfg.image_size
    priors = []
    for spec, fm in zip(cfg.specs, sizes):
        reference = fm == spec.feature_map_size and image_size == cfg.image_size
        scale = cfg.image_size / spec.shrinkage if reference else fm
        small = spec.min_size * ratio / image_size
        big = math.sqrt(spec.min_size * spec.max_size) * ratio / image_size
        for j, i in itertools.product(range(fm), repeat=2):
            cx, cy = (i + 0.5) / scale, (j + 0.5) / scale
            priors.append([cx, cy, small, small])
            priors.append([cx, cy, big, big])
            for r in spec.aspect_ratios:
                r = math.sqrt(r)
                priors.append([cx, cy, small * r, small / r])
                priors.append([cx, cy, small / r, small * r])
    return torch.tensor(priors, dtype=torch.float32).clamp_(0.0, 1.0)


def decode(locations: torch.Tensor, priors: torch.Tensor, center_variance: float,
           size_variance: float) -> torch.Tensor:
    """Regression outputs -> center-form boxes (any leading batch dims)."""
    return torch.cat([
        locations[..., :2] * center_variance * priors[..., 2:] + priors[..., :2],
        torch.exp(locations[..., 2:] * size_variance) * priors[..., 2:],
    ], dim=-1)


def encode(center_boxes: torch.Tensor, priors: torch.Tensor, center_variance: float,
           size_variance: float) -> torch.Tensor:
    """Center-form boxes -> regression targets; the exact inverse of :func:`decode`."""
    return torch.cat([
        (center_boxes[..., :2] - priors[..., :2]) / priors[..., 2:] / center_variance,
        torch.log(center_boxes[..., 2:] / priors[..., 2:]) / size_variance,
    ], dim=-1)


class MatchPrior:
    """Target transform: corner boxes in [0, 1] and labels -> per-prior regression targets and labels. SSD matching:
    each prior takes its best box, each box its best prior; below the config's ``match_threshold``: label 0."""

    def __init__(self, priors: torch.Tensor, cfg: NetConfig):
        self.center_priors = priors
        self.corner_priors = box_convert(priors, "cxcywh", "xyxy")
        self.cfg = cfg

    def __call__(self, gt_boxes, gt_labels):
        gt_boxes = torch.as_tensor(gt_boxes, dtype=torch.float32).reshape(-1, 4)
        gt_labels = torch.as_tensor(gt_labels, dtype=torch.long).reshape(-1)
        n = self.center_priors.size(0)
        if gt_boxes.numel() == 0:
            return self.center_priors.new_zeros((n, 4)), torch.zeros(n, dtype=torch.long)
        ious = box_iou(self.corner_priors, gt_boxes)  # (priors, targets)
        best_target_iou, best_target = ious.max(1)
        best_prior = ious.argmax(0)
        best_target[best_prior] = torch.arange(gt_boxes.size(0))
        best_target_iou[best_prior] = 2.0
        labels = gt_labels[best_target].clone()
        labels[best_target_iou < self.cfg.match_threshold] = 0
        locations = encode(box_convert(gt_boxes[best_target], "xyxy", "cxcywh"), self.center_priors,
                           self.cfg.center_variance, self.cfg.size_variance)
        return locations, labels
