"""What an SSD is, as a table and a picture: the source maps, their priors and what the headers predict."""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np
import pandas as pd
import torch

from hrank_ssd.nets.ssd import SSD


def source_table(model: SSD) -> pd.DataFrame:
    """One row per source map: size, channels, stride, boxes per cell, priors, smallest prior, header outputs."""
    image, reference = model.image_size, model.cfg.image_size
    heads = zip(model.feature_map_sizes(image), model.cfg.specs, model.classification_headers, model.regression_headers)
    return pd.DataFrame([
        {"source": k, "H": size, "W": size, "channels": cls.in_channels,
         "stride": spec.shrinkage if image == reference and size == spec.feature_map_size else round(image / size, 1),
         "boxes_per_location": spec.boxes_per_location, "priors": spec.boxes_per_location * size * size,
         "min_box_px": round(spec.min_size * image / reference, 1), "class_scores": cls.out_channels,
         "box_offsets": reg.out_channels} for k, (size, spec, cls, reg) in enumerate(heads, start=1)])


def source_priors(model: SSD) -> List[torch.Tensor]:
    """``model.priors`` split by source map: one ``(boxes x H x W, 4)`` tensor per source, in header order."""
    return list(torch.split(model.priors.detach().cpu(), source_table(model)["priors"].tolist()))


def cell_priors(model: SSD, source: int, point: Tuple[float, float]) -> torch.Tensor:
    """The priors of the cell of source ``source`` (1-based) whose centre is nearest to ``point`` (x, y relative)."""
    priors = source_priors(model)[source - 1]
    boxes = model.cfg.specs[source - 1].boxes_per_location
    centres = priors[::boxes, :2]
    cell = int(((centres - torch.tensor(point, dtype=centres.dtype)) ** 2).sum(1).argmin())
    return priors[cell * boxes:(cell + 1) * boxes]


def plot_priors(model: SSD, image: np.ndarray, sources: Sequence[int] = (1, 5), point=(0.5, 0.5)):
    """One panel per source map: ``image``, a dot per cell and the priors of the cell nearest to ``point``."""
    import matplotlib.patches as patches
    import matplotlib.pyplot as plt

    table, split = source_table(model).set_index("source"), source_priors(model)
    fig, axes = plt.subplots(1, len(sources), figsize=(4.6 * len(sources), 4.8), squeeze=False)
    for ax, source in zip(axes[0], sources):
        boxes, size, count = (int(table.loc[source, c]) for c in ("boxes_per_location", "H", "priors"))
        centres = split[source - 1][::boxes, :2].numpy()
        ax.imshow(image, extent=(0, 1, 1, 0))
        ax.scatter(centres[:, 0], centres[:, 1], s=max(1.0, 300 / size), c="white", edgecolors="black",
                   linewidths=0.3)
        for k, (cx, cy, w, h) in enumerate(cell_priors(model, source, point).tolist()):
            ax.add_patch(patches.Rectangle((cx - w / 2, cy - h / 2), w, h, fill=False, lw=2,
                                           color=plt.cm.autumn(k / max(1, boxes - 1))))
        ax.set(xlim=(0, 1), ylim=(1, 0))
        ax.set_title(f"source {source}: {size}x{size} cells x {boxes} boxes = {count} priors", fontsize=9)
        ax.axis("off")
    fig.suptitle(f"{model.cfg.name}: {model.priors.shape[0]} priors in all, each with {model.num_classes} class "
                 f"scores and 4 box offsets")
    fig.tight_layout()
    return fig
