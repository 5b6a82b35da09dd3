"""Which layers can lose filters? Per-layer sensitivity scans, compress-rate suggestions, criteria comparison."""

from __future__ import annotations

import functools
import tempfile
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from hrank_ssd.errors import HRankError
from hrank_ssd.hrank.pruning import prune_model
from hrank_ssd.measure import flops
from hrank_ssd.measure.evaluation import evaluate_model, mean_ap
from hrank_ssd.nets.compress import format_compress_rate
from hrank_ssd.nets.models import layer_names
from hrank_ssd.nets.registry import num_prunable
from hrank_ssd.nets.ssd import SSD, plan_with_rates
from hrank_ssd.progress import tqdm

DEFAULT_RATES = tuple(round(0.1 * k, 1) for k in range(1, 10))


def quick_map(model: SSD, dataset, device="cpu", progress: bool = False, desc: str = "mAP") -> float:
    """mAP of ``model`` on ``dataset`` (det files go to a throw-away folder)."""
    with tempfile.TemporaryDirectory() as tmp:
        table, _ = evaluate_model(model, dataset, tmp, device=device, progress=progress, desc=desc)
    return mean_ap(table)


def every_layer_and_rate(layers, rates, prune_one, evaluate) -> List[dict]:
    """The scan :func:`layer_sensitivity` runs unless given another: each layer pruned alone at each rate."""
    return [{"layer": i, "rate": r, "map": evaluate(prune_one(i, r))} for i in layers for r in rates]


def layer_sensitivity(model: SSD, dataset, criterion: str = "hrank", rank_dir=None,
                      rates: Sequence[float] = DEFAULT_RATES, layers: Optional[Sequence[int]] = None,
                      device="cpu", progress: bool = True, scan: Callable = every_layer_and_rate) -> pd.DataFrame:
    """Rows (layer, name, rate, map): mAP after pruning one layer at each rate (no finetuning; 0.0: unpruned), from
    ``scan(layers, rates, prune_one, evaluate)``, which returns one row (layer, rate, map) per layer and rate."""
    n = num_prunable(model.cfg.name)
    layers = list(layers or range(1, n + 1))
    if any(not 1 <= i <= n for i in layers):
        raise HRankError(f"layers must be in 1..{n}, got {layers}")
    names, want = layer_names(model.cfg.name), {(i, float(r)) for i in layers for r in rates}
    bar = tqdm(total=len(want), desc="sensitivity", unit="eval", disable=not progress)

    def prune_one(layer: int, rate: float) -> SSD:
        rates_i = [0.0] * n
        rates_i[layer - 1] = rate
        return prune_model(model, rates_i, criterion, rank_dir)[0]

    def evaluate(pruned: SSD) -> float:
        bar.update(1)
        return quick_map(pruned, dataset, device)

    with bar:
        rows = pd.DataFrame(list(scan(layers, list(rates), prune_one, evaluate)))
    got = list(zip(rows["layer"], rows["rate"].astype(float))) if {"layer", "rate", "map"} <= set(rows) else []
    if len(got) != len(want) or set(got) != want:
        raise HRankError(f"the scan's rows are not one (layer, rate, map) per scanned layer and rate "
                         f"({len(want)} rows)")
    rows = rows[["layer", "rate", "map"]].astype({"layer": int, "rate": float, "map": float})
    rows = pd.concat([rows, pd.DataFrame({"layer": layers, "rate": 0.0, "map": quick_map(model, dataset, device)})])
    rows.insert(1, "name", [names[i - 1] for i in rows["layer"]])
    return rows.sort_values(["layer", "rate"]).reset_index(drop=True)


def plot_sensitivity(table: pd.DataFrame, title: str = "Per-layer sensitivity (no finetuning)"):
    """One subplot per layer: mAP against its pruning rate (the figure; save it with files.atomic_savefig)."""
    import matplotlib.pyplot as plt

    layers = sorted(table["layer"].unique())
    cols = min(7, len(layers))
    rows = -(-len(layers) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.2 * rows), sharey=True, squeeze=False)
    base = table[table["rate"] == 0.0]["map"].max()
    for ax, layer in zip(axes.flat, layers):
        part = table[table["layer"] == layer]
        ax.plot(part["rate"], part["map"], "o-", ms=3)
        ax.axhline(base, color="grey", lw=0.8, ls="--")
        ax.set_title(f"{layer}: {part['name'].iloc[0]}", fontsize=9)
        ax.set_xlabel("rate", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(layers):]:
        ax.axis("off")
    axes[0, 0].set_ylabel("mAP")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def suggest_compress_rate(table: pd.DataFrame, model: SSD, target_mac_reduction: float,
                          candidate_rates: Sequence[float] = DEFAULT_RATES) -> Dict:
    """Per-layer rates cutting at least ``target_mac_reduction`` (0.5 = half) of the MACs: each layer takes its
    largest scanned rate within a mAP drop ``tol``, the smallest ``tol`` that reaches the target (unscanned: 0)."""
    if not 0 < target_mac_reduction < 1:
        raise HRankError("--target_mac_reduction must be between 0 and 1, e.g. 0.5 for half the MACs")
    n = num_prunable(model.cfg.name)
    base = table[table["rate"] == 0.0]["map"].max()
    full = flops.macs(model)

    @functools.cache  # many tolerances give the same rates
    def plan_macs(rates: tuple) -> int:
        return flops.macs(model, plan_with_rates(model.plan, rates).prunable)

    drops = np.unique(np.clip(base - table["map"].to_numpy(), 0, None))
    for tol in list(drops) + [np.inf]:
        rates = [0.0] * n
        for layer, part in table.groupby("layer"):
            ok = part[(base - part["map"] <= tol) & part["rate"].isin(candidate_rates)]
            rates[int(layer) - 1] = float(ok["rate"].max()) if len(ok) else 0.0
        macs = plan_macs(tuple(rates))
        if 1 - macs / full >= target_mac_reduction:
            return {"compress_rate": format_compress_rate(rates), "rates": rates, "mac_reduction": 1 - macs / full,
                    "tolerated_drop": float(tol), "macs": macs, "full_macs": full}
    raise HRankError(f"even the largest scanned rates cannot remove {target_mac_reduction:.0%} of the MACs; "
                     f"scan more layers or higher rates")


def compare_criteria(model: SSD, val_dataset, compress_rate: Sequence[float], rank_dir=None,
                     criteria: Sequence[str] = ("hrank", "l1", "random"), finetune=None, device="cpu",
                     seed: int = 0, progress: bool = True) -> pd.DataFrame:
    """mAP right after pruning with each criterion, and after the same ``finetune(pruned, criterion) -> model``."""
    rows: List[dict] = []
    evals = len(criteria) * (1 if finetune is None else 2)
    with tqdm(total=evals, desc="criteria", unit="eval", disable=not progress) as bar:
        for criterion in criteria:
            bar.set_postfix_str(f"{criterion} pruned")
            pruned, _ = prune_model(model, compress_rate, criterion, rank_dir, seed=seed)
            row = {"criterion": criterion, "map_pruned": quick_map(pruned, val_dataset, device)}
            bar.update()
            if finetune is not None:
                bar.set_postfix_str(f"{criterion} finetuned")
                row["map_finetuned"] = quick_map(finetune(pruned, criterion), val_dataset, device)
                bar.update()
            rows.append(row)
    return pd.DataFrame(rows)


def plot_criteria(table: pd.DataFrame, baseline: Optional[float] = None):
    """Bars of mAP per criterion, right after pruning and after finetuning, with the unpruned model's line."""
    import matplotlib.pyplot as plt

    cols = [c for c in ("map_pruned", "map_finetuned") if c in table]
    x = np.arange(len(table))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for k, col in enumerate(cols):
        bars = ax.bar(x + (k - (len(cols) - 1) / 2) * 0.38, table[col], 0.36,
                      label={"map_pruned": "right after pruning", "map_finetuned": "after finetuning"}[col])
        ax.bar_label(bars, fmt="%.3f", fontsize=8)
    if baseline is not None:
        ax.axhline(baseline, color="grey", ls="--", lw=1, label="unpruned")
    ax.set_xticks(x, table["criterion"])
    ax.set_ylabel("mAP")
    ax.set_title("Pruning criteria at the same compress rate")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
