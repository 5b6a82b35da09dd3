"""HRank's claim measured (a filter's average rank barely depends on the images), and why L1 loses to it offline:
near-dead filters (rank near 0, dropped by HRank) keep large weights (no gradient, no weight decay under Adam)."""

from __future__ import annotations

import itertools
from typing import Dict, List, Sequence, Tuple

import numpy as np
import pandas as pd
from torch.utils.data import Subset

from hrank_ssd.devices import model_on
from hrank_ssd.errors import HRankError
from hrank_ssd.hrank.pruning import l1_scores, select_filters
from hrank_ssd.hrank.ranks import compute_ranks, image_batches
from hrank_ssd.nets.compress import layer_rates
from hrank_ssd.nets.models import layer_names
from hrank_ssd.nets.ssd import SSD, kept_channels

DEAD_RANK = 1.0  # an average rank below 1: the filter's maps are all zero on most images ("near-dead")


def spearman(a, b) -> float:
    """Spearman's rank correlation of two equally long lists (ties averaged); NaN when either is constant."""
    ra, rb = (pd.Series(np.asarray(x, dtype=np.float64).ravel()).rank(method="average").to_numpy() for x in (a, b))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def kept_change(a, b, keep: int) -> int:
    """How many of the ``keep`` filters kept by scores ``a`` are not kept by scores ``b`` (same tie rule as pruning)."""
    return keep - len(set(select_filters(np.asarray(a), keep)) & set(select_filters(np.asarray(b), keep)))


def stability_rows(a: Sequence[np.ndarray], b: Sequence[np.ndarray], compress_rate: Sequence[float], net: str,
                   comparison: str = "") -> List[Dict]:
    """Per layer: Spearman correlation of ranks ``a`` and ``b`` and how many kept filters would change."""
    rates = layer_rates(compress_rate, len(a))
    rows = []
    for i, (name, ra, rb, rate) in enumerate(zip(layer_names(net), a, b, rates), start=1):
        keep = kept_channels(len(ra), rate)
        changed = kept_change(ra, rb, keep)
        rows.append({"comparison": comparison, "layer": i, "name": name, "filters": len(ra), "kept": keep,
                     "spearman": spearman(ra, rb), "changed": changed, "changed_share": changed / keep})
    return rows


def rank_sets(model: SSD, dataset, sizes: Sequence[int], batch_size: int = 8, device="cpu",
              progress: bool = True) -> List[List[np.ndarray]]:
    """Average ranks per layer over consecutive, disjoint sets of ``sizes[0]``, ``sizes[1]``... images."""
    model, ends = model_on(model, device), list(itertools.accumulate(sizes, initial=0))  # the caller's: not moved
    batches = [-(-size // batch_size) for size in sizes]
    return [compute_ranks(model, image_batches(Subset(dataset, range(a, b)), batch_size, n), device, n, progress)
            for a, b, n in zip(ends, ends[1:], batches)]


def merge_ranks(parts: Sequence[Tuple[Sequence[np.ndarray], int]]) -> List[np.ndarray]:
    """The average ranks of a union of image sets, from each set's averages and image count."""
    total = sum(n for _, n in parts)
    return [sum(np.asarray(r[i], dtype=np.float64) * n for r, n in parts) / total for i in range(len(parts[0][0]))]


def rank_stability(model: SSD, dataset, images: int, few: int, compress_rate: Sequence[float], batch_size: int = 8,
                   device="cpu", progress: bool = True) -> pd.DataFrame:
    """:func:`stability_rows` of "disjoint" (two sets of ``images`` images, A and B) and "few vs many" (B's first
    ``few`` images against A); the sets shrink to what ``dataset`` holds."""
    images = min(images, len(dataset) // 2)
    few = max(1, min(few, images - 1)) if images > 1 else 1
    if images < 1:
        raise HRankError(f"rank stability needs at least 2 images, the data set has {len(dataset)}")
    sizes = [images, few] + ([images - few] if images > few else [])
    sets = rank_sets(model, dataset, sizes, batch_size, device, progress)
    a, b, net = sets[0], merge_ranks(list(zip(sets[1:], sizes[1:]))), model.cfg.name
    rows = stability_rows(a, b, compress_rate, net, f"disjoint sets ({images} vs {images} images)")
    rows += stability_rows(sets[1], a, compress_rate, net, f"few vs many ({few} vs {images} images)")
    return pd.DataFrame(rows)


def plot_rank_stability(table: pd.DataFrame):
    """Per layer and comparison: Spearman's correlation (left) and the share of kept filters that change (right)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 3.6))
    order = list(dict.fromkeys(table["name"])), list(dict.fromkeys(table["comparison"]))
    for ax, col, title in zip(axes, ("spearman", "changed_share"),
                              ("Spearman correlation of the ranks", "share of kept filters that change")):
        wide = table.pivot(index="name", columns="comparison", values=col).loc[order[0], order[1]]
        wide.plot.bar(ax=ax, width=0.8, rot=60, fontsize=8, title=title, xlabel="", legend=False)
        ax.grid(axis="y", alpha=0.3)
    low = table["spearman"].min()  # NaN (a constant layer) is skipped
    axes[0].set_ylim(min(0.0, float(low)) if low == low else 0.0, 1.05)
    axes[1].set_ylim(0, max(0.2, float(table["changed_share"].max()) * 1.2))
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def dead_filter_table(model: SSD, compress_rate: Sequence[float], ranks: Sequence[np.ndarray]) -> pd.DataFrame:
    """Per prunable layer: ``near_dead`` filters (average rank below DEAD_RANK), how many L1 and HRank keep at
    ``compress_rate``, and ``dead_l1_ratio``, their mean L1 norm over the others' (NaN without near-dead ones)."""
    net = model.cfg.name
    l1 = l1_scores(model)
    rows = []
    for i, (name, r, w, rate) in enumerate(zip(layer_names(net), ranks, l1, layer_rates(compress_rate, len(l1))),
                                           start=1):
        r = np.asarray(r, dtype=np.float64)
        keep = kept_channels(len(r), rate)
        dead = r < DEAD_RANK
        by_l1, by_hrank = select_filters(w, keep), select_filters(r, keep)
        ratio = float(w[dead].mean() / w[~dead].mean()) if dead.any() and (~dead).any() else float("nan")
        rows.append({"layer": i, "name": name, "filters": len(r), "kept": keep, "near_dead": int(dead.sum()),
                     "l1_keeps_dead": int(dead[by_l1].sum()), "l1_dead_share": float(dead[by_l1].mean()),
                     "hrank_keeps_dead": int(dead[by_hrank].sum()), "dead_l1_ratio": ratio})
    return pd.DataFrame(rows)


def plot_dead_filters(table: pd.DataFrame):
    """Per layer: the filters each criterion keeps, split into working and near-dead ones (L1 left, HRank right)."""
    import matplotlib.pyplot as plt

    x = np.arange(len(table))
    fig, ax = plt.subplots(figsize=(11, 3.6))
    for offset, col, label in ((-0.2, "l1_keeps_dead", "L1"), (0.2, "hrank_keeps_dead", "HRank")):
        alive = table["kept"] - table[col]
        ax.bar(x + offset, alive, 0.38, label=f"{label}: working filters kept", alpha=0.8)
        ax.bar(x + offset, table[col], 0.38, bottom=alive, label=f"{label}: near-dead filters kept", hatch="//")
    ax.set_xticks(x, table["name"], rotation=60, fontsize=8)
    ax.set_ylabel("kept filters")
    ax.set_title("Filters kept at the compress rate: how many never fire (average rank < 1)")
    ax.legend(fontsize=8, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig
