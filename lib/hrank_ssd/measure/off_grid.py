"""What a kept count off the block costs, read from a latency table's own cells.

CPU kernels work in blocks of channels (16 with AVX-512, 8 with AVX2). A table's grid holds counts on the block
and off it (``grid_counts``: evenly spaced counts and their block neighbours), so each unit's cells show what an
off-block count costs against its count rounded up to the block: :func:`surcharge` per unit and side (the
``surcharge`` rule of ``LatencyTable.off_grid_rule``), :func:`off_block_costs` over a whole table.
"""

from __future__ import annotations

import math
from typing import Dict, Iterator, Sequence, Tuple

import numpy as np


def off_block_cells(grid: Sequence[int], rows: Sequence[Sequence[float]],
                    block: int) -> Iterator[Tuple[Sequence[float], int, int, int]]:
    """(row, k, lo, hi) of every cell whose count ``k`` is off the block while ``hi``, ``k`` rounded up to the
    block, is on the grid (``lo``: ``k`` rounded down, on the grid or not)."""
    for row in rows:
        for k in grid:
            hi = -(-k // block) * block
            if k % block and hi in grid:
                yield row, k, k // block * block, hi


def surcharge(grid: Sequence[int], rows: Sequence[Sequence[float]], block: int) -> float:
    """Median over the off-block cells of (their ms / ms at their count rounded up) - 1: what an off-block count
    pays beyond its rounded-up count (0.0 where the grid has no such cell with a time above zero)."""
    pairs = [(row[grid.index(k)], row[grid.index(hi)]) for row, k, _, hi in off_block_cells(grid, rows, block)]
    ratios = [ms / up - 1 for ms, up in pairs if up > 0]  # a cell too fast for the clock says nothing
    return float(np.median(ratios)) if ratios else 0.0


def off_block_costs(table) -> Dict[str, float]:
    """The block rule's evidence in a table's own cells: every cell whose filter count ``k`` is not a multiple of
    ``block`` while both its block neighbours ``lo < k < hi`` are on the grid. ``rounded_up_%`` is the median of
    its time against ``hi``'s (0: it costs its rounded-up count, the ``block`` rule of
    :meth:`LatencyTable.off_grid_rule`); ``linear_%`` the median error of linear interpolation between ``lo``
    and ``hi`` (what the ``linear`` rule would do there)."""
    block, up, linear = table.block, [], []
    for unit in table.units if block else ():
        grid = unit.out_counts
        for row, k, lo, hi in off_block_cells(grid, unit.ms, block):
            if lo in grid:
                ms, t_lo, t_hi = row[grid.index(k)], row[grid.index(lo)], row[grid.index(hi)]
                up.append(ms / t_hi - 1)
                linear.append((t_lo + (t_hi - t_lo) * (k - lo) / block) / ms - 1)
    if not up:
        return {"cells": 0, "rounded_up_%": math.nan, "linear_%": math.nan}
    return {"cells": len(up), "rounded_up_%": 100 * float(np.median(up)), "linear_%": 100 * float(np.median(linear))}


__all__ = ["off_block_cells", "off_block_costs", "surcharge"]
