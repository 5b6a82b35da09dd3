"""The report's own plots (the sensitivity, criteria and loss plots are their modules'): PNGs for report.md,
figures for the notebooks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hrank_ssd.course.report_tables import per_class_pivot
from hrank_ssd.io.files import atomic_savefig


def _plt():
    # matplotlib (slow to import) only where a figure is drawn; a headless report gets the Agg backend, a
    # notebook keeps the one it chose
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_plot(fig, path: Path) -> Path:
    """Write ``fig`` as a PNG (atomically) for the report."""
    return atomic_savefig(fig, path, dpi=100)


def plot_per_class(per_class: pd.DataFrame, path=None):
    """Grouped bars: AP per class, one bar per model. Returns the figure; saves it when ``path``."""
    plt = _plt()
    piv = per_class_pivot(per_class)
    piv = piv[piv["class"] != "mAP (mean)"]
    models = [c for c in piv.columns if c != "class"]
    x = np.arange(len(piv))
    width = 0.8 / max(1, len(models))
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(piv) + 2), 3.8))
    for k, m in enumerate(models):
        ax.bar(x + (k - (len(models) - 1) / 2) * width, piv[m], width, label=m)
    ax.set_xticks(x, piv["class"], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("AP (VOC07 11-point)")
    ax.set_ylim(0, 1)
    ax.set_title("Per-class AP")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    if path:
        save_plot(fig, Path(path))
    return fig


def plot_map_vs(comp: pd.DataFrame, x_col: str, x_label: str, path=None):
    """mAP against a cost column: our models as filled dots, the published mAP (theirs) as hollow ones."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for _, r in comp.iterrows():
        if pd.isna(r.get(x_col)):
            continue
        if pd.notna(r.get("mAP (ours)")):
            ax.scatter(r[x_col], r["mAP (ours)"], s=40)
            ax.annotate(r["model"], (r[x_col], r["mAP (ours)"]), fontsize=8, xytext=(4, 4),
                        textcoords="offset points")
        if pd.notna(r.get("mAP (theirs, published)")):
            ax.scatter(r[x_col], r["mAP (theirs, published)"], s=40, facecolors="none", edgecolors="grey")
    ax.scatter([], [], s=40, color="C0", label="ours (this run)")
    ax.scatter([], [], s=40, facecolors="none", edgecolors="grey", label="theirs (published, VOC2007 test)")
    ax.set_xlabel(x_label)
    ax.set_ylabel("mAP")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    if path:
        save_plot(fig, Path(path))
    return fig
