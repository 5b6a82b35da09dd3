"""The report's own plots; our models and the published figures never share an axis."""

from __future__ import annotations

import pandas as pd

from hrank_ssd.course.report_tables import per_class_pivot
from hrank_ssd.io.files import pyplot


def _grouped_bars(table: pd.DataFrame, per_group: float, height: float, legend: int, **axes):
    """One group of bars per row of ``table`` (its index on the x axis), one bar per column; the figure and axes."""
    fig, ax = pyplot().subplots(figsize=(max(6, per_group * len(table) + 2), height))  # Agg for a headless report
    table.plot.bar(ax=ax, width=0.8)
    ax.set_xticks(range(len(table)), table.index, rotation=45, ha="right", fontsize=8)
    ax.set(**axes)
    ax.legend(fontsize=legend)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig, ax


def plot_per_class(per_class: pd.DataFrame):
    """Grouped bars: AP per class, one bar per model."""
    piv = per_class_pivot(per_class).set_index("class").drop("mAP (mean)")
    return _grouped_bars(piv, 0.6, 3.8, 8, ylabel="AP (VOC07 11-point)", ylim=(0, 1), title="Per-class AP")[0]


def plot_ap_change(change: pd.DataFrame):
    """Grouped bars: per class, each pruned model's AP minus its unpruned parent's (:func:`forgetting.ap_change`)."""
    fig, ax = _grouped_bars(change, 0.5, 3.6, 7, ylabel="AP change vs unpruned parent",
                            title="What pruning forgets, per class")
    ax.axhline(0, color="grey", lw=0.8)
    return fig


def plot_gallery(images, gallery: pd.DataFrame, parent: str, pruned: str):
    """Each row of :func:`forgetting.forgotten` on its image: the object, the parent's hit, the pruned model's."""
    from matplotlib.patches import Rectangle

    fig, axes = pyplot().subplots(1, len(gallery), figsize=(3.3 * len(gallery), 3.8), squeeze=False)
    for ax, image, (_, r) in zip(axes[0], images, gallery.iterrows()):
        ax.imshow(image)
        ax.axis("off")
        boxes = [(r["object"], "green", "-", r["class"]), (r["box"], "C0", "--", f"{r['score']:.2f}")]
        boxes += [(box, "C3", ":", f"{name} {score:.2f}") for name, score, box in r["pruned"]]
        for box, color, style, text in boxes:  # each label above its box, the parent's score under it
            x1, y1, x2, y2 = (float(v) for v in box)
            below = color == "C0"
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linestyle=style, lw=2))
            ax.text(x1, y2 if below else y1, text, color="white", fontsize=7, va="top" if below else "bottom",
                    bbox={"facecolor": color, "pad": 1, "lw": 0})
        ax.set_title(f"{r['image_id']}: a {r['class']}", fontsize=8)
    fig.suptitle(f"Found by {parent}, missed by {pruned}", fontsize=9)
    fig.legend(handles=[Rectangle((0, 0), 1, 1, fill=False, edgecolor=c, linestyle=s, label=t) for c, s, t in
                        (("green", "-", "the object"), ("C0", "--", parent), ("C3", ":", pruned))],
               loc="lower center", ncol=3, fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def _annotate(ax, labels, xs, ys) -> None:
    for label, x, y in zip(labels, xs, ys):
        ax.annotate(label, (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points")


def _frontier_panel(ax, table: pd.DataFrame, x_col: str, flag: str, x_label: str) -> None:
    """One cost axis: every model, the Pareto frontier's points ringed and joined by the best mAP at each cost."""
    on = table[flag].astype(bool)
    ax.scatter(table.loc[~on, x_col], table.loc[~on, "mAP"], s=40, color="grey", label="dominated")
    ax.scatter(table.loc[on, x_col], table.loc[on, "mAP"], s=60, color="C3", edgecolors="black",
               label="Pareto frontier (no model is cheaper and better)")
    front = table[on].sort_values(x_col)
    ax.step(front[x_col], front["mAP"], where="post", color="C3", lw=1)
    _annotate(ax, table["label"] if "label" in table else table["model"], table[x_col], table["mAP"])
    ax.set_xlabel(x_label)
    ax.grid(alpha=0.3)


def plot_frontier(table: pd.DataFrame, machine: str):
    """Our models' mAP against forward latency measured on ``machine`` and against exact GMACs, frontier marked."""
    fig, axes = pyplot().subplots(1, 2, figsize=(11, 4.2), sharey=True)
    _frontier_panel(axes[0], table, "forward ms", "frontier (latency)", "forward latency, ms (measured here, batch 1)")
    _frontier_panel(axes[1], table, "GMACs", "frontier (MACs)", "GMACs (exact, the models as trained)")
    axes[0].set_ylabel("mAP (ours: this run's test set)")
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle(f"Ours: mAP against latency and MACs, measured on {machine}", fontsize=10)
    fig.tight_layout()
    return fig


def plot_published(points: pd.DataFrame):
    """Theirs: the original project's published mAP against the full-size detectors' exact GMACs."""
    fig, ax = pyplot().subplots(figsize=(5.5, 4.2))
    x, y = points["GMACs (full size)"], points["mAP (theirs, published)"]
    ax.scatter(x, y, s=50, facecolors="none", edgecolors="C1", label="theirs (published, VOC2007 test)")
    _annotate(ax, points["model"], x, y)
    ax.set(xlabel="GMACs of the full-size detector (exact: 300x300, 21 classes)", ylabel="mAP (theirs: VOC2007 test)")
    ax.set_title("Theirs: the original HRank-SSD project's published figures", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig
