"""What a run reports: ``log.csv`` / ``log.json``, ``curves.png`` and the epoch summary per epoch, and to the
:class:`Hooks` after each step (a notebook's live loss curve)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List

import pandas as pd

from hrank_ssd.io.files import atomic_savefig, atomic_write_text, pyplot

LOG_COLUMNS = ["epoch", "train_loss", "train_regression_loss", "train_classification_loss",
               "train_distillation_loss", "val_loss", "val_regression_loss", "val_classification_loss",
               "mAP", "lr", "time_s"]
LOSS_STYLES = (("train_loss", "-"), ("val_loss", "-"), ("train_regression_loss", ":"),
               ("train_classification_loss", ":"), ("val_regression_loss", "--"), ("val_classification_loss", "--"))


def write_logs(history: List[dict], folder) -> None:
    """``log.csv`` and ``log.json`` (a list of per-epoch dicts), written atomically."""
    folder = Path(folder)
    frame = pd.DataFrame(history, columns=LOG_COLUMNS)
    atomic_write_text(folder / "log.csv", frame.to_csv(index=False))
    rows = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
            for r in history]
    atomic_write_text(folder / "log.json", json.dumps(rows, indent=1))


def plot_curves(log_csv, out_png) -> Path:
    """Loss curves (train/val, regression/classification) and mAP per epoch from ``log.csv``."""
    log = pd.read_csv(log_csv)
    fig, (ax1, ax2) = pyplot().subplots(1, 2, figsize=(10, 4))
    for col, style in LOSS_STYLES:
        if col in log and log[col].notna().any():
            ax1.plot(log["epoch"], log[col], style, marker="o", ms=3, label=col)
    ax1.set(xlabel="epoch", ylabel="loss")
    ax1.legend(fontsize=7)
    ax1.grid(alpha=0.3)
    m = log[log["mAP"].notna()] if "mAP" in log else log.iloc[:0]
    if len(m):
        ax2.plot(m["epoch"], m["mAP"], marker="o")
    else:
        ax2.text(0.5, 0.5, "no mAP yet", ha="center", va="center", transform=ax2.transAxes)
    ax2.set(xlabel="epoch", ylabel="mAP (VOC07 11-point)")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    return atomic_savefig(fig, out_png, dpi=80)


def epoch_summary(row: dict) -> str:
    """The line printed after each epoch: train loss (regression, classification), val loss, mAP when measured, LR."""
    map_text = f" mAP {row['mAP']:.4f}" if math.isfinite(row.get("mAP", math.nan)) else ""
    return (f"epoch {row['epoch']}: train loss {row['train_loss']:.4f} (reg {row['train_regression_loss']:.4f}, "
            f"cls {row['train_classification_loss']:.4f}), val loss {row['val_loss']:.4f}{map_text}, "
            f"lr {row['lr']:.3g}")


class Hooks:
    """Test/notebook hooks: ``after_step(epoch, step, state)`` runs after each optimizer step (a no-op here)."""

    def after_step(self, epoch: int, step: int, state: dict) -> None:
        pass


class LiveLossCurve(Hooks):
    """``hooks=`` of :func:`~hrank_ssd.train.trainer.train`: the losses redrawn every ``every`` steps in IPython."""

    def __init__(self, every: int = 10, title: str = "finetuning"):
        self.every, self.title, self._handle, self._fig = every, title, None, None
        self.points: Dict[str, List[float]] = {"step": [], "loss": [], "regression": [], "classification": []}

    def after_step(self, epoch: int, step: int, state: dict) -> None:
        self.points["step"].append(epoch * state["steps"] + step)
        for key in ("loss", "regression", "classification"):
            self.points[key].append(float(state[key]))
        if step % self.every == 0 or step == state["steps"]:
            self.draw()

    def draw(self) -> None:
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:
            return
        if get_ipython() is None:
            return
        if self._fig is None:
            self._fig, _ = pyplot().subplots(figsize=(8, 3.5))
            pyplot().close(self._fig)  # drawn through the display handle only, not again at the cell's end
        ax = self._fig.axes[0]
        ax.clear()
        df = pd.DataFrame(self.points).set_index("step")
        for key, colour in (("loss", "black"), ("regression", "tab:blue"), ("classification", "tab:orange")):
            ax.plot(df.index, df[key], color=colour, alpha=0.25, lw=0.8)
            ax.plot(df.index, df[key].rolling(max(1, len(df) // 20), min_periods=1).mean(), color=colour, label=key)
        ax.set(xlabel="optimizer step", ylabel="training loss",
               title=f"{self.title}: step {int(df.index[-1])}, loss {df['loss'].iloc[-1]:.3f}")
        ax.legend(loc="upper right")
        if self._handle is None:
            self._handle = display(self._fig, display_id=True)
        else:
            self._handle.update(self._fig)
