"""The validation loss: the MultiBox loss of a model over a whole data set, independent of the batch size."""

from __future__ import annotations

from typing import Dict

import torch
from torch import nn

from hrank_ssd.data.voc import collate
from hrank_ssd.nets.models import SSD
from hrank_ssd.train.losses import MultiBoxLoss


def param_dtype(model: nn.Module) -> torch.dtype:
    """The batch follows the model's floating dtype (float32 normally; float64 in the DDP equivalence test)."""
    return next(model.parameters()).dtype


@torch.no_grad()
def validation_loss(model: SSD, dataset, batch_size: int = 32, device="cpu", amp: bool = False,
                    num_workers: int = 0) -> Dict[str, float]:
    """MultiBox loss over a dataset yielding ``(image, locations, labels)`` (TestTransform + MatchPrior).

    Summed over every image, then divided by the total number of positives, so the value does not
    depend on the batch size or on how many processes computed it.
    """
    device = torch.device(device)
    model.eval()
    criterion = MultiBoxLoss()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate,
                                         num_workers=num_workers)
    reg_sum = cls_sum = 0.0
    num_pos = 0
    for images, locations, labels in loader:
        images, labels = images.to(device, dtype=param_dtype(model)), labels.to(device)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            conf, loc = model(images)
        parts = criterion.parts(conf, loc, labels, locations.to(device), num_pos=1.0)
        reg_sum += float(parts.regression)
        cls_sum += float(parts.classification)
        num_pos += int((labels > 0).sum())
    n = max(num_pos, 1)
    return {"loss": (reg_sum + cls_sum) / n, "regression": reg_sum / n, "classification": cls_sum / n}


__all__ = ["param_dtype", "validation_loss"]
