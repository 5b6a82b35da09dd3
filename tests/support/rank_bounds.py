"""How far two correct rank computations may differ: the bounds a correct SVD allows each map's rank, and how two
rank lists agree within them. ``tests/test_ranks.py`` uses them to check
:func:`hrank_ssd.hrank.ranks.batched_ranks` against the original per-map loop. Not part of the library."""

from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np
import torch

# A singular value within this factor of ``matrix_rank``'s tolerance is "borderline": see rank_bounds.
BORDERLINE_FACTOR = 2.0


def rank_bounds(maps: torch.Tensor, factor: float = BORDERLINE_FACTOR) -> Tuple[torch.Tensor, torch.Tensor]:
    """The lowest and highest rank a correct SVD can give each (H, W) map of a (B, C, H, W) tensor.

    ``matrix_rank`` counts the singular values above ``tol = max(H, W) * eps * s_max``. Every SVD
    (batched or one map at a time, AVX2 or AVX-512 kernels, CPU or CUDA) computes each singular value
    only to within about ``max(H, W) * eps * s_max`` (LAPACK's backward-stable bound), i.e. about ``tol``
    itself, so a value near ``tol`` may land on either side. ``lo`` counts the values above
    ``factor * tol`` and ``hi`` those above ``tol / factor``: any two correct computations give ranks in
    ``[lo, hi]``, and the same rank wherever ``lo == hi`` (no borderline value). Returns float tensors (B, C).
    """
    flat = maps.detach().float().reshape(-1, *maps.shape[-2:])
    s = torch.linalg.svdvals(flat)  # descending
    tol = max(flat.shape[-2:]) * torch.finfo(flat.dtype).eps * s[:, :1]
    lo = (s > factor * tol).sum(1).float()
    hi = (s > tol / factor).sum(1).float()
    return lo.reshape(maps.shape[:2]), hi.reshape(maps.shape[:2])


def rank_agreement(ranks: Sequence[np.ndarray], other: Sequence[np.ndarray], lo: Sequence[np.ndarray],
                   hi: Sequence[np.ndarray]) -> Dict[str, int]:
    """How two rank lists (one array per layer, e.g. averaged over images) agree, given the average
    :func:`rank_bounds` of the same maps: ``channels``; ``equal``; ``borderline`` (channels whose maps
    hold a borderline singular value); ``unexplained``: channels that differ although no value is
    borderline, or lie outside ``[lo, hi]``. Two correct computations have ``unexplained == 0``."""
    counts = {"channels": 0, "equal": 0, "borderline": 0, "unexplained": 0}
    for a, b, low, high in zip(ranks, other, lo, hi):
        a, b, low, high = (np.asarray(x, dtype=np.float64) for x in (a, b, low, high))
        slack = 1e-4 * np.maximum(1.0, high)  # averages of integers, written as float32
        border = high > low
        inside = (a >= low - slack) & (a <= high + slack) & (b >= low - slack) & (b <= high + slack)
        same = np.abs(a - b) <= slack
        counts["channels"] += a.size
        counts["equal"] += int(same.sum())
        counts["borderline"] += int(border.sum())
        counts["unexplained"] += int((~inside | (~same & ~border)).sum())
    return counts
