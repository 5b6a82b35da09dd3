"""MACs as a function of the prunable layers' kept counts, exactly: the cost model of ``prune --mac_budget``.

Pruning changes channel counts, never spatial sizes, so one :func:`~hrank_ssd.measure.flops.count_exact`
table of the unpruned model fixes every counted module's shape but its channels. The net's slice rules
(``NetSpec.slice_rules``: module prefix -> (layer whose kept filters cut its output, layer whose kept
filters cut its input)) then say which kept counts each module's MACs scale with:

* a conv cut on both sides by layers ``i-1`` and ``i``: ``out_h*out_w*kh*kw * k_(i-1) * k_i``, a *pairwise*
  cost of layer ``i``;
* a conv or BatchNorm cut on one side by layer ``i`` (its BatchNorm, fc7 or a header reading it, a
  depthwise conv, whose ``in_c / groups`` stays 1 as its groups follow its channels): linear in ``k_i``,
  a *unary* cost;
* everything else: a constant, ``rest``.

Summed at any choice of counts this is ``count_exact`` of the model pruned to those counts, to the MAC
(``tests/test_budget.py`` checks it).
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional, Sequence

import numpy as np
from torch import nn

from hrank_ssd.errors import HRankError
from hrank_ssd.measure.flops import build_for_counting, count_exact
from hrank_ssd.nets.models import default_plan, producer_key
from hrank_ssd.nets.registry import get_net


class LayerCosts(NamedTuple):
    """Costs on a count grid: ``unary[i][a]``, ``pairwise[i][p][a]`` (``pairwise[0]`` None) and the constant ``rest``."""

    unary: List[np.ndarray]
    pairwise: List[Optional[np.ndarray]]
    rest: int

    def total(self, indices: Sequence[int]) -> int:
        """The cost of one choice of grid indices (one per layer)."""
        out = int(self.rest)
        for i, a in enumerate(indices):
            out += int(self.unary[i][a])
            if self.pairwise[i] is not None:
                out += int(self.pairwise[i][indices[i - 1], a])
        return out


def count_grid(channels: int, points: int = 16, multiple: int = 8) -> List[int]:
    """About ``points`` evenly spaced kept counts in (0, channels], and ``channels`` itself.

    Layers wide enough to still give ``points / 2`` distinct values are snapped to multiples of ``multiple``
    (fast kernels like channel counts that are multiples of 8); narrow ones keep the plain spacing.
    """
    grid = {max(1, round(channels * j / points)) for j in range(1, points + 1)}
    if multiple and multiple > 1 and channels >= multiple * points // 2:
        grid = {max(multiple, multiple * round(k / multiple)) for k in grid}
    grid.add(int(channels))
    return sorted(k for k in grid if k <= channels)


def map_sizes(model: nn.Module, table=None) -> List[int]:
    """``min(out_h, out_w)`` of each prunable layer's output map: the largest rank its maps can have."""
    table = count_exact(model) if table is None else table
    net = model.cfg.name
    rows = table.set_index("name")
    return [int(min(rows.loc[producer_key(net, i), "out_h"], rows.loc[producer_key(net, i), "out_w"]))
            for i in range(model.plan.num_prunable)]


def _sides(row, rule):
    """(MACs per unit of output and input channel, output side, input side): a side is a layer or a constant."""
    out_l, in_l = rule
    if row.type == "Conv2d":
        kh, kw = (int(v) for v in row.kernel.split("x"))
        per = int(row.out_h) * int(row.out_w) * kh * kw
        if row.groups == 1:
            return per, (out_l, int(row.out_channels)), (in_l, int(row.in_channels))
        if row.groups == row.in_channels == row.out_channels and in_l is None:  # depthwise: in_c / groups is 1
            return per, (out_l, int(row.out_channels)), (None, 1)
        if out_l is None and in_l is None:
            return per, (None, int(row.out_channels)), (None, int(row.in_channels) // int(row.groups))
        raise HRankError(f"{row.name} is a grouped conv ({row.groups} groups) that pruning cuts: only depthwise "
                         f"convs can follow a pruned layer")
    if row.type == "BatchNorm2d":
        return int(row.out_h) * int(row.out_w), (out_l, int(row.out_channels)), (None, 1)
    if out_l is not None or in_l is not None:
        raise HRankError(f"{row.name} ({row.type}) is cut by pruning, but only convs and BatchNorms can be counted")
    return int(row.MACs), (None, 1), (None, 1)


def _add(costs: LayerCosts, counts, per: int, out_side, in_side) -> int:
    """Add one module's MACs to ``costs``; returns what goes to ``rest``."""
    (out_l, out_c), (in_l, in_c) = out_side, in_side
    if out_l is None and in_l is None:
        return per * out_c * in_c
    if in_l is None:
        costs.unary[out_l] += per * in_c * counts[out_l]
    elif out_l is None:
        costs.unary[in_l] += per * out_c * counts[in_l]
    elif in_l == out_l - 1:
        costs.pairwise[out_l] += per * np.outer(counts[in_l], counts[out_l])
    else:
        raise HRankError(f"a module is cut by layers {in_l} and {out_l}: only neighbouring layers make a chain")
    return 0


def model_mac_costs(model: nn.Module, counts: Sequence[Sequence[int]], table=None) -> LayerCosts:
    """:func:`mac_costs` of a built model (any widths, a pruned one too); ``counts[i]`` ranges over 1..its filters."""
    net = model.cfg.name
    channels = model.plan.prunable
    if len(counts) != len(channels):
        raise HRankError(f"{len(counts)} count grids for {len(channels)} prunable layers of {net}")
    grids = [np.asarray(c, dtype=np.int64) for c in counts]
    for i, (g, c) in enumerate(zip(grids, channels)):
        if g.size == 0 or g.min() < 1 or g.max() > c:
            raise HRankError(f"the counts of prunable layer {i} must lie in [1, {c}], got {g.tolist()}")
    table = count_exact(model) if table is None else table
    rules = get_net(net).slice_rules()
    costs = LayerCosts([np.zeros(g.size, dtype=np.int64) for g in grids],
                       [None] + [np.zeros((a.size, b.size), dtype=np.int64) for a, b in zip(grids, grids[1:])], 0)
    rest = 0
    for row in table.itertuples(index=False):
        rest += _add(costs, grids, *_sides(row, rules.get(row.name, (None, None))))
    costs = costs._replace(rest=int(rest))
    full = [int(np.searchsorted(g, c)) if c in g else None for g, c in zip(grids, channels)]
    if None not in full and costs.total(full) != int(table["MACs"].sum()):
        raise HRankError(f"the slice rules of {net} do not account for its MACs: check NetSpec.slice_rules")
    return costs


def mac_costs(net: str, counts: Sequence[Sequence[int]], num_classes: int = 21, image_size: Optional[int] = None,
              width: float = 1.0) -> LayerCosts:
    """Exact MACs of ``net`` (``width`` scaling every layer first) as unary, pairwise and constant costs on the
    count grids ``counts`` (one ascending list per prunable layer): ``(unary, pairwise, rest)``."""
    model = build_for_counting(net, num_classes, image_size=image_size, plan=default_plan(net, width))
    return model_mac_costs(model, counts)
