"""Where a detector's MACs come from: a conv does ``k*k*(c_in/groups)*c_out*H*W`` (each weight ``H*W`` times)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def mac_anatomy(rows: pd.DataFrame) -> pd.DataFrame:
    """The convs of a :func:`~hrank_ssd.measure.flops.count_exact` table with the factors of their MACs
    (``kernel_inputs``, ``out_channels``, ``positions``), weights, and shares of the model's MACs and params."""
    total_macs, total_params = rows["MACs"].sum(), rows["params"].sum()
    conv = rows[rows["type"] == "Conv2d"].copy()
    kernel = conv["kernel"].str.split("x", expand=True).astype(int)
    conv["kernel_inputs"] = kernel[0] * kernel[1] * (conv["in_channels"] // conv["groups"])
    conv["positions"] = conv["out_h"] * conv["out_w"]
    conv["weights"] = conv["kernel_inputs"] * conv["out_channels"]
    conv["MACs_per_weight"] = conv["MACs"] // conv["weights"]
    conv["MAC_share"] = conv["MACs"] / total_macs
    conv["param_share"] = conv["params"] / total_params
    conv["cumulative_MAC_share"] = conv["MAC_share"].cumsum()
    cols = ["name", "label", "part", "kernel", "kernel_inputs", "out_channels", "out_h", "out_w", "positions",
            "weights", "MACs", "MACs_per_weight", "MAC_share", "param_share", "cumulative_MAC_share"]
    return conv[cols].reset_index(drop=True)


def plot_mac_anatomy(table: pd.DataFrame, title: str = "Where the MACs and the parameters are"):
    """Per conv, in execution order: its MAC and parameter shares (bars) and its output H x W (log, right axis)."""
    import matplotlib.pyplot as plt

    x = np.arange(len(table))
    fig, ax = plt.subplots(figsize=(13, 3.8))
    ax.bar(x - 0.2, table["MAC_share"], 0.4, label="share of the MACs")
    ax.bar(x + 0.2, table["param_share"], 0.4, label="share of the parameters")
    ax.set_xticks(x, table["label"], rotation=75, fontsize=7)
    ax.set_ylabel("share of the model")
    twin = ax.twinx()
    twin.plot(x, table["positions"], "k.-", lw=0.8, label="H x W (right axis)")
    twin.set_yscale("log")
    twin.set_ylabel("output positions H x W")
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="upper right")
    ax.set_title(title)
    fig.tight_layout()
    return fig
