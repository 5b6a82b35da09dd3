"""Image(s) in, detections out: resize, normalise, forward, decode, per-class NMS (pytorch-ssd's), top-k."""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torchvision.ops import box_convert

from hrank_ssd.data.voc import to_input
from hrank_ssd.devices import evaluating, model_on
from hrank_ssd.nets.priors import decode

Detections = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # boxes (pixels, xyxy), labels, scores


def pairwise_iou(boxes: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """(..., n, 4) xyxy boxes -> (..., n, n) IoU, in pytorch-ssd's ``iou_of`` operation order (and eps)."""
    lt = torch.maximum(boxes[..., :, None, :2], boxes[..., None, :, :2])
    rb = torch.minimum(boxes[..., :, None, 2:], boxes[..., None, :, 2:])
    overlap = (rb - lt).clamp(min=0).prod(-1)
    area = (boxes[..., 2:] - boxes[..., :2]).clamp(min=0).prod(-1)
    return overlap / (area[..., :, None] + area[..., None, :] - overlap + eps)


def greedy_nms(boxes: torch.Tensor, valid: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS of score-sorted ``boxes`` (C, k, 4) per class, solved as a fixed point (at most k rounds)."""
    k = boxes.size(-2)
    earlier = torch.ones(k, k, dtype=torch.bool, device=boxes.device).triu(1)
    suppresses = ((pairwise_iou(boxes) > iou_threshold) & earlier & valid[..., :, None]).float()
    keep = valid
    for _ in range(k + 1):
        hit = torch.matmul(keep.float().unsqueeze(-2), suppresses).squeeze(-2) > 0
        new = valid & ~hit
        if torch.equal(new, keep):
            break
        keep = new
    return keep


def postprocess(confidences: torch.Tensor, locations: torch.Tensor, priors: torch.Tensor, cfg,
                score_threshold: float = 0.01, iou_threshold: Optional[float] = None,
                candidate_size: int = 200, top_k: int = -1) -> List[Detections]:
    """Raw head outputs of a batch -> per image (boxes in [0,1] xyxy, labels >= 1, scores), best first."""
    iou_threshold = cfg.iou_threshold if iou_threshold is None else iou_threshold
    probs = torch.softmax(confidences.float(), dim=2)[:, :, 1:]
    centers = decode(locations.float(), priors, cfg.center_variance, cfg.size_variance)
    boxes = box_convert(centers, "cxcywh", "xyxy")
    out = []
    k = min(candidate_size, probs.size(1))
    for p, b in zip(probs, boxes):
        scores, idx = p.topk(k, dim=0)  # (k, classes) best priors per class, sorted
        cand = b[idx]  # (k, classes, 4)
        keep = greedy_nms(cand.transpose(0, 1), (scores > score_threshold).t(), iou_threshold)
        if top_k > 0:
            keep &= keep.cumsum(1) <= top_k
        keep = keep.t()
        labels = torch.arange(1, p.size(1) + 1, device=p.device).expand_as(idx)
        kept_scores = scores[keep]
        order = kept_scores.argsort(descending=True, stable=True)
        out.append((cand[keep][order], labels[keep][order], kept_scores[order]))
    return out


class Predictor:
    """``predict(image)`` -> (boxes in image pixels, labels, scores) for an HxWx3 RGB uint8 array, on ``device``."""

    def __init__(self, model, device="cpu", score_threshold: float = 0.01, iou_threshold: Optional[float] = None,
                 candidate_size: int = 200, channels_last: bool = False):
        self.device = torch.device(device)
        self.model = model_on(model, self.device)
        self.cfg = model.cfg
        self.score_threshold, self.iou_threshold, self.candidate_size = score_threshold, iou_threshold, candidate_size
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        size = self.model.image_size
        batch = torch.stack([to_input(im, size, self.cfg.image_mean, self.cfg.image_std) for im in images])
        return batch.to(self.device).contiguous(memory_format=self.memory_format)

    @torch.no_grad()
    def outputs(self, images: Sequence[np.ndarray]) -> Tuple[torch.Tensor, torch.Tensor]:
        """The model's raw ``(confidences, locations)`` for a batch of images."""
        with evaluating(self.model):
            return self.model(self.preprocess(images))

    def detections(self, conf: torch.Tensor, loc: torch.Tensor, images: Sequence[np.ndarray], top_k: int = -1,
                   prob_threshold: Optional[float] = None) -> List[Detections]:
        """:meth:`outputs` of ``images`` -> their detections, boxes in each image's pixels."""
        thr = self.score_threshold if prob_threshold is None else prob_threshold
        dets = postprocess(conf.cpu(), loc.cpu(), self.model.priors.cpu(), self.cfg, thr, self.iou_threshold,
                           self.candidate_size, top_k)
        out = []
        for (boxes, labels, scores), im in zip(dets, images):
            h, w = im.shape[:2]
            out.append((boxes * torch.tensor([w, h, w, h], dtype=boxes.dtype, device=boxes.device), labels, scores))
        return out

    def predict_batch(self, images: Sequence[np.ndarray], top_k: int = -1,
                      prob_threshold: Optional[float] = None) -> List[Detections]:
        return self.detections(*self.outputs(images), images, top_k, prob_threshold)

    def predict(self, image: np.ndarray, top_k: int = -1, prob_threshold: Optional[float] = None) -> Detections:
        return self.predict_batch([image], top_k, prob_threshold)[0]
