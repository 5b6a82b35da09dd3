"""SSD training augmentation (numpy / cv2), random by numpy's global RNG (seeding numpy repeats it)."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch
from torchvision.ops import box_iou

from hrank_ssd.data.voc import TestTransform, to_input

CROP_MODES = (None, 0.1, 0.3, 0.5, 0.7, 0.9, -1.0)  # minimum IoU of a crop with some box; None: keep; -1: any


def photometric_distort(image: np.ndarray) -> np.ndarray:
    """Random brightness, contrast, saturation and hue (each with probability 1/2); float32 0..255."""
    rng = np.random
    img = image.astype(np.float32)
    if rng.randint(2):
        img += rng.uniform(-32, 32)
    contrast_first = rng.randint(2)
    if contrast_first and rng.randint(2):
        img *= rng.uniform(0.5, 1.5)
    img = np.clip(img, 0, 255)
    do_sat, do_hue = rng.randint(2), rng.randint(2)
    if do_sat or do_hue:
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)  # float: H in [0, 360), S in [0, 1], V in [0, 255]
        if do_sat:
            hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.5, 1.5), 0, 1)
        if do_hue:
            hsv[..., 0] = (hsv[..., 0] + rng.uniform(-18, 18)) % 360
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if not contrast_first and rng.randint(2):
        img *= rng.uniform(0.5, 1.5)
    return np.clip(img, 0, 255)


def expand(image: np.ndarray, boxes: np.ndarray, mean: Sequence[float], max_ratio: float = 4.0):
    """Zoom out: place the image at a random spot of a mean-filled canvas up to ``max_ratio`` times larger."""
    h, w, c = image.shape
    ratio = np.random.uniform(1, max_ratio)
    left, top = int(np.random.uniform(0, w * ratio - w)), int(np.random.uniform(0, h * ratio - h))
    canvas = np.empty((int(h * ratio), int(w * ratio), c), dtype=image.dtype)
    canvas[...] = np.asarray(mean, dtype=image.dtype)
    canvas[top:top + h, left:left + w] = image
    return canvas, boxes + np.array([left, top, left, top], dtype=boxes.dtype)


def random_crop(image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, trials: int = 50, rounds: int = 20):
    """SSD random IoU crop: a patch with IoU >= a random minimum with some box; keeps boxes centred inside."""
    h, w = image.shape[:2]
    if len(boxes) == 0:
        return image, boxes, labels
    for _ in range(rounds):
        mode = CROP_MODES[np.random.randint(len(CROP_MODES))]
        if mode is None:
            return image, boxes, labels
        for _ in range(trials):
            cw, ch = np.random.uniform(0.3 * w, w), np.random.uniform(0.3 * h, h)
            if not 0.5 <= ch / cw <= 2:
                continue
            left, top = np.random.uniform(0, w - cw), np.random.uniform(0, h - ch)
            rect = np.array([int(left), int(top), int(left + cw), int(top + ch)], dtype=np.float32)
            overlap = box_iou(torch.from_numpy(boxes), torch.from_numpy(rect[None])).max()  # the best box's IoU
            if rect[2] <= rect[0] or rect[3] <= rect[1] or overlap < mode:
                continue
            centers = (boxes[:, :2] + boxes[:, 2:]) / 2
            inside = ((centers > rect[:2]) & (centers < rect[2:])).all(1)
            if inside.any():
                kept = np.concatenate([np.maximum(boxes[inside, :2], rect[:2]),
                                       np.minimum(boxes[inside, 2:], rect[2:])], 1) - np.tile(rect[:2], 2)
                return image[int(rect[1]):int(rect[3]), int(rect[0]):int(rect[2])], kept, labels[inside]
    return image, boxes, labels


def hflip(image: np.ndarray, boxes: np.ndarray):
    boxes = boxes.copy()
    boxes[:, 0::2] = image.shape[1] - boxes[:, 2::-2]
    return image[:, ::-1], boxes


class TrainAugmentation(TestTransform):
    """Photometric distortion, expand, IoU crop, flip, resize, normalise: ``(image uint8 HWC RGB, boxes Nx4
    pixels, labels) -> (CHW float tensor, boxes in [0, 1], labels)``."""

    geometric = True

    def __call__(self, image: np.ndarray, boxes, labels):
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        img = photometric_distort(image)
        if self.geometric:
            if np.random.randint(2):
                img, boxes = expand(img, boxes, self.mean)
            img, boxes, labels = random_crop(img, boxes, labels)
        if np.random.randint(2):
            img, boxes = hflip(img, boxes)
        h, w = img.shape[:2]
        boxes = np.clip(boxes / np.array([w, h, w, h], dtype=np.float32), 0, 1).astype(np.float32)
        return to_input(np.ascontiguousarray(img), self.size, self.mean, self.std).contiguous(), boxes, labels


class LightAugmentation(TrainAugmentation):
    """Photometric distortion and flip only: faster to learn from for small models on easy data."""

    geometric = False
