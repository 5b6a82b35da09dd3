"""The validation loss over a whole data set, independent of the batch size (on mAP epochs, the same forwards)."""

from __future__ import annotations

from typing import Dict, Tuple

import pandas as pd
import torch
from torch import nn

from hrank_ssd.data.voc import collate
from hrank_ssd.devices import evaluating
from hrank_ssd.errors import HRankError
from hrank_ssd.measure.evaluation import score_results
from hrank_ssd.nets.models import SSD
from hrank_ssd.nets.predictor import Predictor
from hrank_ssd.train.losses import MultiBoxLoss


def param_dtype(model: nn.Module) -> torch.dtype:
    """The batch follows the model's floating dtype (float32 normally; float64 in the DDP equivalence test)."""
    return next(model.parameters()).dtype


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
            images = images.to(device, dtype=param_dtype(model))
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                conf, loc = model(images)
            sums.add(conf, loc, labels.to(device), locations.to(device))
    return sums.result()


class _LossSums:
    """Loss parts summed over images (hard negatives mined per image), divided by all the positives."""

    def __init__(self):
        self.criterion, self.reg, self.cls, self.num_pos = MultiBoxLoss(), 0.0, 0.0, 0

    def add(self, conf, loc, labels, locations) -> None:
        parts = self.criterion.parts(conf, loc, labels, locations, num_pos=1.0)
        self.reg += float(parts.regression)
        self.cls += float(parts.classification)
        self.num_pos += int((labels > 0).sum())

    def result(self) -> Dict[str, float]:
        n = max(self.num_pos, 1)
        return {"loss": (self.reg + self.cls) / n, "regression": self.reg / n, "classification": self.cls / n}


@torch.no_grad()
def validation_loss_and_map(model: SSD, val_set, eval_set, eval_dir, device="cpu",
                            class_names=None) -> Tuple[Dict[str, float], pd.DataFrame]:
    """:func:`validation_loss` and ``evaluate_model``'s table from one forward per image of the same images."""
    if len(val_set) != len(eval_set):
        raise HRankError(f"{len(val_set)} validation items for {len(eval_set)} evaluation images: "
                         "build both from the same folder and split")
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
