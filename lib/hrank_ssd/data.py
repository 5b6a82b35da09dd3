"""VOC-format datasets, label files and the SSD train/test transforms."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch


def to_input(image: np.ndarray, image_size: int, mean: Sequence[float], std: float) -> torch.Tensor:
    """HxWx3 RGB uint8 image -> normalised CHW float tensor, as pytorch-ssd's PredictionTransform."""
    x = cv2.resize(image, (image_size, image_size)).astype(np.float32)
    x = (x - np.asarray(mean, dtype=np.float32)) / np.float32(std)
    return torch.from_numpy(x).permute(2, 0, 1)
