"""A loss curve that redraws inside the notebook while ``train()`` runs (Colab, Jupyter, papermill)."""

from __future__ import annotations

from typing import Dict, List

import pandas as pd

from hrank_ssd.train.trainer import Hooks


class LiveLossCurve(Hooks):
    """``hooks=`` of :func:`~hrank_ssd.train.trainer.train`: the losses redrawn every ``every`` steps in IPython."""

    def __init__(self, every: int = 10, title: str = "finetuning"):
        self.every, self.title = max(1, int(every)), title
        self.points: Dict[str, List[float]] = {"step": [], "loss": [], "regression": [], "classification": []}
        self._handle = None
        self._fig = None

    def after_step(self, epoch: int, step: int, state: dict) -> None:
        self.points["step"].append(epoch * state.get("steps", step) + step)
        for key in ("loss", "regression", "classification"):
            self.points[key].append(float(state.get(key, float("nan"))))
        if step % self.every == 0 or step == state.get("steps"):
            self.draw()

    def draw(self) -> None:
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:
            return
        if get_ipython() is None or not self.points["step"]:
            return
        import matplotlib.pyplot as plt

        if self._fig is None:
            self._fig, _ = plt.subplots(figsize=(8, 3.5))
            plt.close(self._fig)  # drawn through the display handle only, not again at the cell's end
        ax = self._fig.axes[0]
        ax.clear()
        df = pd.DataFrame(self.points).set_index("step")
        window = max(1, len(df) // 20)
        for key, colour in (("loss", "black"), ("regression", "tab:blue"), ("classification", "tab:orange")):
            ax.plot(df.index, df[key], color=colour, alpha=0.25, lw=0.8)
            ax.plot(df.index, df[key].rolling(window, min_periods=1).mean(), color=colour, label=key)
        ax.set(xlabel="optimizer step", ylabel="training loss",
               title=f"{self.title}: step {int(df.index[-1])}, loss {df['loss'].iloc[-1]:.3f}")
        ax.legend(loc="upper right")
        if self._handle is None:
            self._handle = display(self._fig, display_id=True)
        else:
            self._handle.update(self._fig)
