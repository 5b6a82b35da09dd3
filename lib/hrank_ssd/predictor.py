"""Image(s) in, detections out: resize, normalise, forward, decode, per-class NMS, top-k.

Post-processing is vectorised: per-class candidate selection with one ``topk`` and a single
torchvision ``batched_nms`` call, instead of a Python loop over classes.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torchvision.ops import batched_nms

from .data import to_input
from .priors import center_to_corner, decode

Detections = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # boxes (pixels, xyxy), labels, scores


def postprocess(confidences: torch.Tensor, locations: torch.Tensor, priors: torch.Tensor, cfg,
                score_threshold: float = 0.01, iou_threshold: Optional[float] = None,
                candidate_size: int = 200, top_k: int = -1) -> List[Detections]:
    """Raw head outputs of a batch -> per image (boxes in [0,1] xyxy, labels >= 1, scores).

    Per class, at most ``candidate_size`` highest-scoring priors above ``score_threshold`` enter
    NMS (pytorch-ssd's ``candidate_size``); ``top_k > 0`` keeps that many boxes per class after NMS.
    """
    iou_threshold = cfg.iou_threshold if iou_threshold is None else iou_threshold
    probs = torch.softmax(confidences.float(), dim=2)[:, :, 1:]
    boxes = center_to_corner(decode(locations.float(), priors, cfg.center_variance, cfg.size_variance))
    out = []
    k = min(candidate_size, probs.size(1))
    for p, b in zip(probs, boxes):
        scores, idx = p.topk(k, dim=0)  # (k, classes) best priors per class
        labels = torch.arange(1, p.size(1) + 1).expand_as(idx)
        keep = scores > score_threshold
        scores, idx, labels = scores[keep], idx[keep], labels[keep]
        cand = b[idx]
        kept = batched_nms(cand, scores, labels, iou_threshold)
        if top_k > 0 and kept.numel():
            kept = _top_k_per_class(kept, labels, top_k)
        out.append((cand[kept], labels[kept], scores[kept]))
    return out


def _top_k_per_class(kept: torch.Tensor, labels: torch.Tensor, top_k: int) -> torch.Tensor:
    """``kept`` is sorted by score; keep the first ``top_k`` of each class, order preserved."""
    lab = labels[kept]
    order = torch.argsort(lab, stable=True)
    sorted_lab = lab[order]
    first = torch.searchsorted(sorted_lab, sorted_lab, right=False)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel()) - first
    return kept[rank < top_k]


class Predictor:
    """``predict(image)`` -> (boxes in image pixels, labels, scores) for an HxWx3 RGB uint8 array."""

    def __init__(self, model, device="cpu", score_threshold: float = 0.01, iou_threshold: Optional[float] = None,
                 candidate_size: int = 200, channels_last: bool = False):
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.cfg = model.cfg
        self.score_threshold, self.iou_threshold, self.candidate_size = score_threshold, iou_threshold, candidate_size
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        size = self.model.image_size
        batch = torch.stack([to_input(im, size, self.cfg.image_mean, self.cfg.image_std) for im in images])
        return batch.to(self.device).contiguous(memory_format=self.memory_format)

    @torch.no_grad()
    def predict_batch(self, images: Sequence[np.ndarray], top_k: int = -1,
                      prob_threshold: Optional[float] = None) -> List[Detections]:
        conf, loc = self.model(self.preprocess(images))
        thr = self.score_threshold if prob_threshold is None else prob_threshold
        dets = postprocess(conf.cpu(), loc.cpu(), self.model.priors.cpu(), self.cfg, thr, self.iou_threshold,
                           self.candidate_size, top_k)
        out = []
        for (boxes, labels, scores), im in zip(dets, images):
            h, w = im.shape[:2]
            out.append((boxes * torch.tensor([w, h, w, h], dtype=boxes.dtype), labels, scores))
        return out

    def predict(self, image: np.ndarray, top_k: int = -1, prob_threshold: Optional[float] = None) -> Detections:
        return self.predict_batch([image], top_k, prob_threshold)[0]
