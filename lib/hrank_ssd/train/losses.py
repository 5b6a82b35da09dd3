"""SSD MultiBox loss (Liu et al., 2016) with an optional distillation term (Hinton et al., 2015), divided by the
positives' count, and the validation loss over a whole data set (independent of the batch size)."""

from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Tuple

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from hrank_ssd.data.voc import collate
from hrank_ssd.devices import evaluating
from hrank_ssd.measure.evaluation import score_results
from hrank_ssd.nets.models import SSD
from hrank_ssd.nets.predictor import Predictor


class LossParts(NamedTuple):
    regression: torch.Tensor
    classification: torch.Tensor
    distillation: torch.Tensor


def hard_negative_mask(background_loss: torch.Tensor, labels: torch.Tensor, neg_pos_ratio: float) -> torch.Tensor:
    """Mask (batch, priors) of positives and each image's ``ratio * num_pos`` highest-loss negatives (stable)."""
    pos = labels > 0
    num_neg = (pos.sum(dim=1, keepdim=True) * neg_pos_ratio).long()
    loss = background_loss.masked_fill(pos, float("-inf"))
    rank = torch.sort(loss, dim=1, descending=True, stable=True).indices.argsort(dim=1)  # each prior's place
    return pos | (rank < num_neg)


class MultiBoxLoss(nn.Module):
    """``loss(confidence (B, P, C), locations (B, P, 4), labels (B, P), gt_locations) -> LossParts``; ``num_pos``
    overrides the normaliser (DDP: global positives / world); ``distillation`` is zero without ``teacher_confidence``."""

    def __init__(self, neg_pos_ratio: float = 3.0, distill_T: float = 1.0):
        super().__init__()
        self.neg_pos_ratio = neg_pos_ratio
        self.distill_T = distill_T

    def forward(self, confidence: torch.Tensor, locations: torch.Tensor, labels: torch.Tensor,
                gt_locations: torch.Tensor, teacher_confidence: Optional[torch.Tensor] = None,
                num_pos: Optional[torch.Tensor | float] = None) -> LossParts:
        # autocast's float16/bfloat16 outputs in float32; float32 and float64 stay as they are
        confidence, locations = (t.float() if t.dtype in (torch.float16, torch.bfloat16) else t
                                 for t in (confidence, locations))
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


class _LossSums:
    """Loss parts summed over images (hard negatives mined per image), divided by all the positives."""

    def __init__(self):
        self.criterion, self.reg, self.cls, self.num_pos = MultiBoxLoss(), 0.0, 0.0, 0

    def add(self, conf, loc, labels, locations) -> None:
        parts = self.criterion(conf, loc, labels, locations, num_pos=1.0)
        self.reg, self.cls = self.reg + float(parts.regression), self.cls + float(parts.classification)
        self.num_pos += int((labels > 0).sum())

    def result(self) -> Dict[str, float]:
        n = max(self.num_pos, 1)
        return {"loss": (self.reg + self.cls) / n, "regression": self.reg / n, "classification": self.cls / n}


@torch.no_grad()
def validation_loss(model: SSD, dataset, batch_size: int = 32, device="cpu", amp: bool = False,
                    num_workers: int = 0) -> Dict[str, float]:
    """MultiBox loss over a dataset of ``(image, locations, labels)``, divided by all its positives."""
    device = torch.device(device)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate,
                                         num_workers=num_workers)
    sums = _LossSums()
    with evaluating(model):
        for images, locations, labels in loader:
            images = images.to(device, dtype=next(model.parameters()).dtype)  # float64 in the DDP test
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                conf, loc = model(images)
            sums.add(conf, loc, labels.to(device), locations.to(device))
    return sums.result()


@torch.no_grad()
def validation_loss_and_map(model: SSD, val_set, eval_set, eval_dir, device="cpu",
                            class_names=None) -> Tuple[Dict[str, float], pd.DataFrame]:
    """:func:`validation_loss` and ``evaluate_model``'s table from one forward per image (``make_datasets``' sets)."""
    device = torch.device(device)
    predictor = Predictor(model, device)
    sums, results = _LossSums(), []
    for i in range(len(eval_set)):
        image = eval_set.get_image(i)
        conf, loc = predictor.outputs([image])
        results.append(predictor.detections(conf, loc, [image])[0])
        _, locations, labels = val_set.item_with_image(i, image)  # the image decoded once
        sums.add(conf, loc, labels[None].to(device), locations[None].to(device))
    return sums.result(), score_results(results, eval_set, eval_dir, class_names)
