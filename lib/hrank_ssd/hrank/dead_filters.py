"""Why L1 loses to HRank on the offline models: filters that never fire (rank near 0, dropped by HRank) but keep
large weights (no gradient, no weight decay under Adam), which L1 keeps."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from hrank_ssd.errors import HRankError
from hrank_ssd.hrank.pruning import l1_scores, select_filters
from hrank_ssd.nets.compress import layer_rates
from hrank_ssd.nets.models import layer_names
from hrank_ssd.nets.ssd import SSD, kept_channels

DEAD_RANK = 1.0  # an average rank below 1: the filter's maps are all zero on most images ("near-dead")


def dead_filter_table(model: SSD, compress_rate: Sequence[float], ranks: Sequence[np.ndarray],
                      dead_rank: float = DEAD_RANK) -> pd.DataFrame:
    """Per prunable layer: ``near_dead`` filters (average rank below ``dead_rank``), how many L1 and HRank keep at
    ``compress_rate``, and ``dead_l1_ratio``, their mean L1 norm over the others' (NaN without near-dead ones)."""
    net = model.cfg.name
    l1 = l1_scores(model)
    if len(ranks) != len(l1) or any(len(r) != len(w) for r, w in zip(ranks, l1)):
        raise HRankError("the ranks do not match the model's prunable layers: use the ranks of this model")
    rows = []
    for i, (name, r, w, rate) in enumerate(zip(layer_names(net), ranks, l1, layer_rates(compress_rate, len(l1))),
                                           start=1):
        r = np.asarray(r, dtype=np.float64)
        keep = kept_channels(len(r), rate)
        dead = r < dead_rank
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
