"""Stop a training run mid-epoch, resume it, and compare it step by step with the same run left alone."""

from __future__ import annotations

import dataclasses
import math
import shutil
import sys
from pathlib import Path
from typing import Optional, Tuple

import pandas as pd

from hrank_ssd.train.config import TrainConfig
from hrank_ssd.train.trainer import Hooks, train


class Disconnect(Exception):
    """Raised by :class:`StepLosses` at the stop: stands for a runtime that went away."""


class StepLosses(Hooks):
    """Records (epoch, step, loss) after every optimizer step; raises :class:`Disconnect` at ``stop``."""

    def __init__(self, stop: Optional[Tuple[int, int]] = None):
        self.stop, self.rows = stop, []

    def after_step(self, epoch: int, step: int, state: dict) -> None:
        self.rows.append({"epoch": epoch, "step": step, "loss": float(state["loss"])})
        if (epoch, step) == self.stop:
            raise Disconnect(f"stopped at epoch {epoch} step {step}")


def resume_tolerance(device) -> float:
    """How far a resumed run's losses (relative) and weights (absolute) may differ: 0 on CPU, 1e-3 on CUDA."""
    return 0.0 if str(device).startswith("cpu") else 1e-3


def steps_per_epoch(cfg: TrainConfig, images: int) -> int:
    return math.ceil(images / cfg.batch_size)


def stopped_and_resumed(cfg: TrainConfig, folder, stop_epoch: int, stop_step: int) -> pd.DataFrame:
    """Losses per step of ``cfg`` trained straight and stopped at (``stop_epoch``, ``stop_step``) then resumed."""
    losses = {"straight": StepLosses(), "stopped": StepLosses((stop_epoch, stop_step)), "resumed": StepLosses()}
    runs = {name: dataclasses.replace(cfg, checkpoint_folder=str(Path(folder) / name), resume=None,
                                      checkpoint_every_steps=1) for name in ("straight", "stopped")}
    for run in runs.values():
        shutil.rmtree(run.checkpoint_folder, ignore_errors=True)
    straight = train(runs["straight"], losses["straight"]).model
    try:
        train(runs["stopped"], losses["stopped"])
    except Disconnect as stopped:  # beside the trainer's own messages, in order
        print(f"{stopped} (a simulated disconnect): resuming from the newest checkpoint", file=sys.stderr, flush=True)
    resumed = train(dataclasses.replace(runs["stopped"], resume="auto"), losses["resumed"]).model
    if (losses["resumed"].rows[0]["epoch"], losses["resumed"].rows[0]["step"]) <= (stop_epoch, stop_step):
        raise ValueError(f"stop at a step before epoch {stop_epoch}'s last: a mid-epoch checkpoint is written "
                         "only there (the run resumed from the epoch's start)")
    frames = [pd.DataFrame(run.rows).set_index(["epoch", "step"])["loss"].rename(name) for name, run in losses.items()]
    table = pd.concat(frames, axis=1).reindex(frames[0].index).reset_index()  # every step of the straight run
    a, b = straight.state_dict(), resumed.state_dict()
    table.attrs.update(weight_diff=max(float((a[k].float() - b[k].float()).abs().max()) for k in a),
                       stop=(stop_epoch, stop_step))
    return table


def plot_resume(table: pd.DataFrame):
    """The straight run's loss per step as a line, the stopped and the resumed run's as markers on it."""
    import matplotlib.pyplot as plt

    x = range(1, len(table) + 1)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot(x, table["straight"], color="grey", lw=2, label="straight through")
    ax.plot(x, table["stopped"], "o", color="tab:red", ms=5, label="stopped run")
    ax.plot(x, table["resumed"], "s", color="tab:green", ms=5, mfc="none", label="resumed from the checkpoint")
    stop = int(table["stopped"].notna().sum())
    ax.axvline(stop + 0.5, color="tab:red", ls="--", lw=1)
    ax.set(xlabel="optimizer step", ylabel="training loss",
           title=f"stopped after step {stop}, resumed: largest weight difference {table.attrs.get('weight_diff', 0):.1g}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
