"""SSD MultiBox loss (Liu et al., 2016): smooth L1 on matched priors + cross entropy with 3:1 hard negatives, and
an optional distillation term (Hinton et al., 2015) on the same priors; all divided by the positives' count."""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn


class LossParts(NamedTuple):
    regression: torch.Tensor
    classification: torch.Tensor
    distillation: torch.Tensor


def hard_negative_mask(background_loss: torch.Tensor, labels: torch.Tensor, neg_pos_ratio: float) -> torch.Tensor:
    """Mask (batch, priors) of positives and each image's ``ratio * num_pos`` highest-loss negatives (stable)."""
    pos = labels > 0
    num_neg = (pos.sum(dim=1, keepdim=True) * neg_pos_ratio).long()
    loss = background_loss.masked_fill(pos, float("-inf"))
    order = torch.sort(loss, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.size(1), device=order.device).expand_as(order))
    return pos | (rank < num_neg)


def _full_precision(t: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 (autocast) outputs in float32; float32 and float64 stay as they are."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


class MultiBoxLoss(nn.Module):
    """``loss(confidence (B, P, C), locations (B, P, 4), labels (B, P), gt_locations) -> (regression,
    classification)``; :meth:`parts`' ``num_pos`` overrides the normaliser (DDP: global positives / world)."""

    def __init__(self, neg_pos_ratio: float = 3.0, distill_T: float = 1.0):
        super().__init__()
        self.neg_pos_ratio = neg_pos_ratio
        self.distill_T = distill_T

    def forward(self, confidence: torch.Tensor, locations: torch.Tensor, labels: torch.Tensor,
                gt_locations: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        parts = self.parts(confidence, locations, labels, gt_locations)
        return parts.regression, parts.classification

    def parts(self, confidence: torch.Tensor, locations: torch.Tensor, labels: torch.Tensor,
              gt_locations: torch.Tensor, teacher_confidence: Optional[torch.Tensor] = None,
              num_pos: Optional[torch.Tensor | float] = None) -> LossParts:
        """All terms; ``distillation`` is zero without ``teacher_confidence``."""
        confidence, locations = _full_precision(confidence), _full_precision(locations)  # AMP gives float16
        num_classes = confidence.size(2)
        with torch.no_grad():
            background_loss = -F.log_softmax(confidence, dim=2)[..., 0]
            mask = hard_negative_mask(background_loss, labels, self.neg_pos_ratio)
        pos = labels > 0
        if num_pos is None:
            num_pos = pos.sum()
        denom = torch.as_tensor(num_pos, dtype=confidence.dtype, device=confidence.device).clamp(min=1.0)
        cls = F.cross_entropy(confidence[mask].reshape(-1, num_classes), labels[mask], reduction="sum")
        reg = F.smooth_l1_loss(locations[pos].reshape(-1, 4), gt_locations[pos].reshape(-1, 4).to(locations.dtype),
                               reduction="sum")
        if teacher_confidence is None:
            kd = confidence.new_zeros(())
        else:
            kd = self.distillation(confidence[mask], teacher_confidence[mask].to(confidence.dtype))
        return LossParts(reg / denom, cls / denom, kd / denom)

    def distillation(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """Summed ``T^2 * KL(softmax(teacher/T) || softmax(student/T))`` over the given priors."""
        T = self.distill_T
        log_p = F.log_softmax(student / T, dim=-1)
        log_q = F.log_softmax(teacher.detach() / T, dim=-1)
        return (log_q.exp() * (log_q - log_p)).sum() * T * T
