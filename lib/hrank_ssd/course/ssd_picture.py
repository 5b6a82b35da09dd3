"""What an SSD is, as a table and a picture: the source feature maps, their priors, what the headers predict.

SSD (Liu et al. 2016) looks at an image through several *source* feature maps of falling resolution (VGG16-SSD:
38x38 from conv4_3, 19x19 from fc7, then 10x10, 5x5, 3x3 and 1x1 from the extras). At every cell of a source map
sit a few *priors* (default boxes) of fixed sizes and shapes, centred on the cell; a large map has many small
priors (small objects), a small map a few large ones. For every prior two 3x3 conv *headers* predict
``num_classes`` class scores (background included: 21 on VOC) and 4 box offsets (how to move and stretch the
prior into the object's box, :func:`hrank_ssd.nets.priors.decode`). The priors are in ``model.priors``
(``(cx, cy, w, h)`` relative to the image), in order: per source, rows then columns, then the boxes of a cell.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np
import pandas as pd
import torch

from hrank_ssd.errors import HRankError
from hrank_ssd.nets.ssd import SSD


def source_table(model: SSD) -> pd.DataFrame:
    """One row per source map: its size (``H`` = ``W``), ``channels`` (what the headers read), ``stride`` in
    input pixels, ``boxes_per_location``, ``priors`` (boxes x H x W), the smallest prior's side in pixels, and
    the headers' outputs per cell: ``class_scores`` (boxes x classes) and ``box_offsets`` (boxes x 4)."""
    sizes = model.feature_map_sizes(model.image_size)
    reference = model.image_size == model.cfg.image_size
    rows = []
    for k, (size, spec) in enumerate(zip(sizes, model.cfg.specs), start=1):
        boxes = spec.boxes_per_location
        stride = spec.shrinkage if reference and size == spec.feature_map_size else round(model.image_size / size, 1)
        rows.append({"source": k, "H": size, "W": size, "channels": model.classification_headers[k - 1].in_channels,
                     "stride": stride, "boxes_per_location": boxes,
                     "priors": boxes * size * size,
                     "min_box_px": round(spec.min_size * model.image_size / model.cfg.image_size, 1),
                     "class_scores": model.classification_headers[k - 1].out_channels,
                     "box_offsets": model.regression_headers[k - 1].out_channels})
    return pd.DataFrame(rows)


def source_priors(model: SSD) -> List[torch.Tensor]:
    """``model.priors`` split by source map: one ``(boxes x H x W, 4)`` tensor per source, in header order."""
    counts = source_table(model)["priors"].tolist()
    if sum(counts) != model.priors.shape[0]:
        raise HRankError(f"{model.cfg.name}: {sum(counts)} priors expected from the source maps, the model has "
                         f"{model.priors.shape[0]}")
    return list(torch.split(model.priors.detach().cpu(), counts))


def cell_priors(model: SSD, source: int, point: Tuple[float, float]) -> torch.Tensor:
    """The priors (``boxes_per_location`` rows) of the cell of source map ``source`` (1-based) whose centre is
    nearest to ``point`` (x, y relative to the image, e.g. an object's centre)."""
    priors = source_priors(model)[source - 1]
    boxes = model.cfg.specs[source - 1].boxes_per_location
    centres = priors[::boxes, :2]
    cell = int(((centres - torch.tensor(point, dtype=centres.dtype)) ** 2).sum(1).argmin())
    return priors[cell * boxes:(cell + 1) * boxes]


def plot_priors(model: SSD, image: np.ndarray, sources: Sequence[int] = (1, 5), point=(0.5, 0.5)):
    """One panel per source map (1-based): ``image`` as the network sees it (squeezed to a square), a dot at the
    centre of every cell (H x W dots, each standing for ``boxes_per_location`` priors) and, at the cell nearest to
    ``point``, its priors drawn as boxes. Returns the figure."""
    import matplotlib.patches as patches
    import matplotlib.pyplot as plt

    table = source_table(model).set_index("source")
    fig, axes = plt.subplots(1, len(sources), figsize=(4.6 * len(sources), 4.8), squeeze=False)
    for ax, source in zip(axes[0], sources):
        row = table.loc[source]
        priors = source_priors(model)[source - 1]
        boxes, size, count = int(row["boxes_per_location"]), int(row["H"]), int(row["priors"])
        ax.imshow(image, extent=(0, 1, 1, 0))
        centres = priors[::boxes, :2].numpy()
        ax.scatter(centres[:, 0], centres[:, 1], s=max(1.0, 300 / size), c="white", edgecolors="black",
                   linewidths=0.3)
        for k, (cx, cy, w, h) in enumerate(cell_priors(model, source, point).tolist()):
            ax.add_patch(patches.Rectangle((cx - w / 2, cy - h / 2), w, h, fill=False, lw=2,
                                           color=plt.cm.autumn(k / max(1, boxes - 1))))
        ax.set_xlim(0, 1)
        ax.set_ylim(1, 0)
        ax.set_title(f"source {source}: {size}x{size} cells x {boxes} boxes = {count} priors",
                     fontsize=9)
        ax.axis("off")
    fig.suptitle(f"{model.cfg.name}: {model.priors.shape[0]} priors in all, each with {model.num_classes} class "
                 f"scores and 4 box offsets")
    fig.tight_layout()
    return fig


__all__ = ["cell_priors", "plot_priors", "source_priors", "source_table"]
