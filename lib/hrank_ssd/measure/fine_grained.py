"""Fine-grained magnitude pruning against HRank's filter pruning at the same sparsity: more accurate, no faster."""

from __future__ import annotations

import copy
from typing import Dict, Tuple

import numpy as np
import pandas as pd
import torch
from torch import nn

from hrank_ssd.devices import model_on
from hrank_ssd.measure.bench import benchmark_models
from hrank_ssd.measure.sensitivity import quick_map
from hrank_ssd.progress import tqdm


def weight_tensors(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The model's weight tensors (convolution and linear kernels: every parameter with 2 or more dimensions)."""
    return {k: v for k, v in model.state_dict().items() if v.dim() >= 2 and v.is_floating_point()}


def magnitude_mask(weight: torch.Tensor, zeros: int) -> torch.Tensor:
    """A bool mask of ``weight``'s shape, False on exactly its ``zeros`` smallest-magnitude weights (ties: earlier)."""
    order = torch.argsort(weight.detach().abs().flatten(), stable=True)
    mask = torch.ones(weight.numel(), dtype=torch.bool, device=weight.device)
    mask[order[:zeros]] = False
    return mask.reshape(weight.shape)


def fine_grained_like(model: nn.Module, pruned: nn.Module) -> Tuple[nn.Module, Dict[str, int]]:
    """(copy of ``model``, zeroed per tensor): each tensor loses as many smallest weights as ``pruned`` lacks."""
    full, small = weight_tensors(model), weight_tensors(pruned)
    zeros = {k: full[k].numel() - small[k].numel() for k in full}
    fine = copy.deepcopy(model)
    with torch.no_grad():
        for key, param in fine.named_parameters():
            if zeros.get(key):
                param.mul_(magnitude_mask(param, zeros[key]).to(param.dtype))
    return fine, {k: z for k, z in zeros.items() if z}


def weight_count(model: nn.Module) -> int:
    """How many weights the model holds (:func:`weight_tensors`, zeros included)."""
    return sum(w.numel() for w in weight_tensors(model).values())


def compare_fine_grained(model: nn.Module, pruned: nn.Module, dataset, device="cpu", warmup: int = 5,
                         runs: int = 20, progress: bool = True) -> pd.DataFrame:
    """``model``, ``pruned`` and :func:`fine_grained_like`: sparsity, GMACs, mAP, forward ms and speed-up."""
    fine, zeroed = fine_grained_like(model, pruned)
    full = weight_count(model)
    taken = {"unpruned": 0, "fine-grained (magnitude)": sum(zeroed.values()),
             "filters (HRank)": full - weight_count(pruned)}  # equal for both by construction
    models = {name: model_on(m, device) for name, m in zip(taken, (model, fine, pruned))}  # the caller's stay
    rows = []
    for name, m in tqdm(models.items(), desc="fine vs filter", unit="model", disable=not progress):
        nonzero = sum(int((w != 0).sum()) for w in weight_tensors(m).values())
        rows.append({"model": name, "sparsity": 1 - nonzero / full, "pruned_weights": taken[name],
                     "nonzero_weights": nonzero, "mAP": quick_map(m, dataset, device)})
    timed = benchmark_models(models, device, warmup=warmup, runs=runs, predict=False, progress=progress)
    table = pd.DataFrame(rows)
    table.insert(4, "GMACs", timed["GMACs"])
    return table.assign(forward_median_ms=timed["forward_median_ms"], speedup=timed["forward_speedup"])


def plot_fine_grained(table: pd.DataFrame):
    """mAP (left) and forward latency (right) of the unpruned, fine-grained and filter-pruned models."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    colours = ["grey", "tab:orange", "tab:blue"][:len(table)]
    for ax, col, label in zip(axes, ("mAP", "forward_median_ms"), ("mAP (no finetuning)", "forward ms (median)")):
        bars = ax.barh(table["model"], table[col], color=colours)
        ax.bar_label(bars, fmt="%.3f" if col == "mAP" else "%.1f", fontsize=8)
        ax.set_xlabel(label)
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    sparsity = float(np.round(table["sparsity"].iloc[-1], 3))
    fig.suptitle(f"The same sparsity ({sparsity:.1%} of the weights): only removing filters makes it faster")
    fig.tight_layout()
    return fig
