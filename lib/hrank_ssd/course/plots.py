"""The report's own plots; our models (:func:`plot_frontier`) and the published figures (:func:`plot_published`)
never share an axis."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hrank_ssd.course.report_tables import per_class_pivot
from hrank_ssd.io.files import atomic_savefig, pyplot


def save_plot(fig, path: Path) -> Path:
    """Write ``fig`` as a PNG (atomically) for the report."""
    return atomic_savefig(fig, path, dpi=100)


def plot_per_class(per_class: pd.DataFrame):
    """Grouped bars: AP per class, one bar per model."""
    plt = pyplot()  # Agg for a headless report; a notebook keeps its own backend
    piv = per_class_pivot(per_class)
    piv = piv[piv["class"] != "mAP (mean)"]
    models = [c for c in piv.columns if c != "class"]
    x = np.arange(len(piv))
    width = 0.8 / max(1, len(models))
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(piv) + 2), 3.8))
    for k, m in enumerate(models):
        ax.bar(x + (k - (len(models) - 1) / 2) * width, piv[m], width, label=m)
    ax.set_xticks(x, piv["class"], rotation=45, ha="right", fontsize=8)
    ax.set(ylabel="AP (VOC07 11-point)", ylim=(0, 1), title="Per-class AP")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def _frontier_panel(ax, table: pd.DataFrame, x_col: str, flag: str, x_label: str) -> None:
    """One cost axis: every model, the Pareto frontier's points ringed and joined by the best mAP at each cost."""
    on = table[flag].astype(bool)
    ax.scatter(table.loc[~on, x_col], table.loc[~on, "mAP"], s=40, color="grey", label="dominated")
    ax.scatter(table.loc[on, x_col], table.loc[on, "mAP"], s=60, color="C3", edgecolors="black",
               label="Pareto frontier (no model is cheaper and better)")
    front = table[on].sort_values(x_col)
    ax.step(front[x_col], front["mAP"], where="post", color="C3", lw=1)
    for _, r in table.iterrows():
        ax.annotate(r.get("label", r["model"]), (r[x_col], r["mAP"]), fontsize=7, xytext=(4, 4),
                    textcoords="offset points")
    ax.set_xlabel(x_label)
    ax.grid(alpha=0.3)


def plot_frontier(table: pd.DataFrame, machine: str):
    """Our models' mAP against forward latency measured on ``machine`` and against exact GMACs, frontier marked."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    _frontier_panel(axes[0], table, "forward ms", "frontier (latency)", "forward latency, ms (measured here, batch 1)")
    _frontier_panel(axes[1], table, "GMACs", "frontier (MACs)", "GMACs (exact, the models as trained)")
    axes[0].set_ylabel("mAP (ours: this run's test set)")
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle(f"Ours: mAP against latency and MACs, measured on {machine}", fontsize=10)
    fig.tight_layout()
    return fig


def plot_published(points: pd.DataFrame):
    """Theirs: the original project's published mAP against the full-size detectors' exact GMACs."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    ax.scatter(points["GMACs (full size)"], points["mAP (theirs, published)"], s=50, facecolors="none",
               edgecolors="C1", label="theirs (published, VOC2007 test)")
    for _, r in points.iterrows():
        ax.annotate(r["model"], (r["GMACs (full size)"], r["mAP (theirs, published)"]), fontsize=7, xytext=(4, 4),
                    textcoords="offset points")
    ax.set(xlabel="GMACs of the full-size detector (exact: 300x300, 21 classes)",
           ylabel="mAP (theirs: VOC2007 test)")
    ax.set_title("Theirs: the original HRank-SSD project's published figures", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig
