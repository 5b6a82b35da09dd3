"""pytorch-ssd's post-processing, kept as a baseline: a per-class Python NMS loop as in its predictor.

The library's :func:`hrank_ssd.nets.predictor.postprocess` replaces it with one batched greedy NMS for every
class at once (``greedy_nms``); ``tests/test_bench.py`` checks both give the same detections. Not part of the library.
"""

from __future__ import annotations

from typing import Optional

import torch
from torchvision.ops import box_convert

from hrank_ssd.nets.priors import decode


def _iou_one(box: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    lt = torch.maximum(box[:2], boxes[:, :2])
    rb = torch.minimum(box[2:], boxes[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    area = lambda b: (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)  # noqa: E731
    return inter / (area(boxes) + area(box) - inter + 1e-5)  # pytorch-ssd's iou_of, its eps included


def hard_nms_loop(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, candidate_size: int = 200,
                  top_k: int = -1) -> torch.Tensor:
    """pytorch-ssd's ``box_utils.hard_nms`` for one class: sort, keep the best ``candidate_size``, then pick
    the best box and drop the rest overlapping it above ``iou_threshold`` (IoU with pytorch-ssd's 1e-5 added
    to the denominator), one Python step per kept box, stopping at ``top_k`` boxes when ``top_k > 0``."""
    order = scores.argsort(descending=True)[:candidate_size]
    picked = []
    while order.numel() > 0:
        current = order[0]
        picked.append(int(current))
        if 0 < top_k == len(picked) or order.numel() == 1:
            break
        rest = order[1:]
        order = rest[_iou_one(boxes[current], boxes[rest]) <= iou_threshold]
    return torch.as_tensor(picked, dtype=torch.long)


def reference_postprocess(confidences: torch.Tensor, locations: torch.Tensor, priors: torch.Tensor, cfg,
                          score_threshold: float = 0.01, iou_threshold: Optional[float] = None,
                          candidate_size: int = 200, top_k: int = -1):
    """The per-class loop of pytorch-ssd's ``Predictor.predict`` (the original project's post-processing): for every
    class, threshold its scores, then :func:`hard_nms_loop`. Same outputs as
    :func:`hrank_ssd.nets.predictor.postprocess` (boxes in [0, 1] xyxy, labels, scores), grouped by class."""
    iou_threshold = cfg.iou_threshold if iou_threshold is None else iou_threshold
    probs = torch.softmax(confidences.float(), dim=2)
    centers = decode(locations.float(), priors, cfg.center_variance, cfg.size_variance)
    boxes = box_convert(centers, "cxcywh", "xyxy")
    out = []
    for p, b in zip(probs, boxes):
        picked_boxes, picked_labels, picked_scores = [], [], []
        for c in range(1, p.size(1)):
            s = p[:, c]
            mask = s > score_threshold
            s, cb = s[mask], b[mask]
            if s.numel() == 0:
                continue
            keep = hard_nms_loop(cb, s, iou_threshold, candidate_size, top_k)
            picked_boxes.append(cb[keep])
            picked_scores.append(s[keep])
            picked_labels.append(torch.full((keep.numel(),), c, dtype=torch.long))
        if picked_boxes:
            out.append((torch.cat(picked_boxes), torch.cat(picked_labels), torch.cat(picked_scores)))
        else:
            out.append((torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), torch.zeros(0)))
    return out


def same_detections(a, b, atol: float = 1e-6) -> bool:
    """Whether two (boxes, labels, scores) results hold the same detections, in any order."""
    def canon(d):
        boxes, labels, scores = (t.detach().cpu() for t in d)
        order = sorted(range(labels.numel()), key=lambda i: (int(labels[i]), -float(scores[i]), boxes[i].tolist()))
        idx = torch.as_tensor(order, dtype=torch.long)
        return boxes[idx].reshape(-1, 4), labels[idx], scores[idx]
    (ba, la, sa), (bb, lb, sb) = canon(a), canon(b)
    return (la.shape == lb.shape and bool(torch.equal(la, lb)) and torch.allclose(sa, sb, atol=atol, rtol=0)
            and torch.allclose(ba, bb, atol=atol, rtol=0))
