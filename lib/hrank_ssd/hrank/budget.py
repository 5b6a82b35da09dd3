"""Choose every prunable layer's kept filter count under a cost budget (MACs, milliseconds): a chain knapsack.

HRank says *which* filters of a layer to keep (the highest-ranked); this module says *how many*. For every
prunable layer ``i`` a candidate grid ``counts[i]`` (ascending, the last = all filters) is given, with

* ``gains[i][a]``: the importance of keeping ``counts[i][a]`` filters, the sum of the layer's largest
  *normalised* ranks (:func:`normalised_ranks`, :func:`kept_importance`);
* ``unary[i][a]``: the cost that depends on layer ``i``'s count alone (its BatchNorm, the heads reading it);
* ``pairwise[i][p][a]``: the cost that depends on layer ``i-1``'s count (grid index ``p``) and layer
  ``i``'s (index ``a``), e.g. conv ``i`` whose input is layer ``i-1``'s output (``pairwise[0]`` is None).

Costs couple neighbours only, so the problem is a chain and :func:`choose_counts` solves it exactly over
the grid by dynamic programming over (layer, grid index of the layer, budget used), the budget cut into
``steps`` equal steps. Every cost term is rounded *up* to whole steps, so the chosen counts never exceed
the budget; the price is that a choice whose true cost fits by less than the rounding slack (at most one
step per layer) may be missed. :func:`choose_counts_capped` adds a second cost with a cap (e.g. MACs beside
a latency budget) as a price inside the same DP. See docs/pruning-budgets.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, NamedTuple, Optional, Sequence

import numpy as np

from hrank_ssd.errors import HRankError

# Pruning for the clock at a MAC cap keeps this fraction of the most importance the cap allows, and is the fastest
# such: importance is flat near its top while time is not (docs/pruning-budgets.md,
# benchmarks/latency_map_seeds_keep.md).
KEEP_IMPORTANCE = 0.93


class Budget(NamedTuple):
    """A budget as the user wrote it: a ``fraction`` of the unpruned model's cost, or an absolute ``value``."""

    value: float
    fraction: bool

    def of(self, full: float) -> float:
        """The budget in the cost's own unit, given the unpruned model's cost ``full``."""
        return self.value * full if self.fraction else self.value


@dataclass
class BudgetChoice:
    """What :func:`choose_counts` picked: grid indices, counts, predicted cost (exact, unrounded), importance."""

    indices: List[int]
    counts: List[int]
    cost: float
    importance: float
    budget: float
    steps: int


def normalised_ranks(ranks: Sequence[np.ndarray], max_rank: Sequence[float]) -> List[np.ndarray]:
    """Each layer's HRank ranks divided by the largest rank its maps can have, ``min(H, W)`` of the map.

    A map's matrix rank is at most ``min(H, W)``, and that bound changes 16-fold along VGG16-SSD (300 at
    conv1, 19 at fc6): summed raw ranks would keep early filters at any price. Divided by the bound, a
    score is the filter's *fraction of full rank*, in [0, 1] in every layer. Dividing by each layer's mean
    rank would also make layers comparable, but it would erase HRank's own signal between layers: a
    layer whose maps are mostly of low rank (little information, by HRank's argument) would weigh the same
    per filter as one whose maps are of full rank. The bound keeps that signal and needs no statistics.
    """
    if len(ranks) != len(max_rank):
        raise HRankError(f"{len(ranks)} rank arrays but {len(max_rank)} map sizes: one per prunable layer")
    return [np.asarray(r, dtype=np.float64) / float(m) for r, m in zip(ranks, max_rank)]


def kept_importance(scores: np.ndarray, counts: Sequence[int]) -> np.ndarray:
    """Importance of keeping each count of filters: the sum of that many of the largest ``scores``."""
    top = np.concatenate([[0.0], np.cumsum(np.sort(np.asarray(scores, dtype=np.float64))[::-1])])
    if min(counts) < 1 or max(counts) > len(scores):
        raise HRankError(f"kept counts must lie in [1, {len(scores)}], got {list(counts)}")
    return top[np.asarray(counts, dtype=int)]


class Rounded(NamedTuple):
    """The costs as the DP sees them: per layer, whole steps of ``terms[i][p, a] - floor[i]``."""

    units: List[np.ndarray]  # (grid of layer i-1 or 1, grid of layer i) non-negative ints
    capacity: int  # steps the budget leaves once every layer's cheapest term is paid
    floor: float  # rest + the sum of every layer's cheapest term (exact, not rounded)
    step: float


def layer_terms(unary, pairwise) -> List[np.ndarray]:
    """Per layer, the (previous grid, grid) cost of its terms: unary broadcast plus pairwise (layer 0: 1 row)."""
    terms = []
    for i, u in enumerate(unary):
        u = np.asarray(u, dtype=np.float64)
        pw = pairwise[i]
        if i == 0 or pw is None:
            terms.append(u[None, :] if i == 0 else np.broadcast_to(u, (len(unary[i - 1]), len(u))).copy())
        else:
            pw = np.asarray(pw, dtype=np.float64)
            if pw.shape != (len(unary[i - 1]), len(u)):
                raise HRankError(f"pairwise costs of layer {i} have shape {pw.shape}, expected "
                                 f"{(len(unary[i - 1]), len(u))} (previous grid, this grid)")
            terms.append(u[None, :] + pw)
    return terms


def round_costs(unary, pairwise, budget: float, steps: int = 400, rest: float = 0.0) -> Rounded:
    """Cut what the budget leaves above the cheapest possible terms into ``steps`` steps; round every term up.

    Each layer's cheapest term is subtracted first (and added to ``floor``, exactly), so the rounding only
    applies to what a choice costs above the minimum, and negative terms are fine. The true cost of any
    choice is at most ``floor + step * (its units)``: fitting in ``capacity`` means fitting the budget.
    """
    if steps < 1:
        raise HRankError(f"the budget needs at least 1 step, got {steps}")
    terms = layer_terms(unary, pairwise)
    mins = [float(t.min()) for t in terms]
    floor = float(rest) + math.fsum(mins)
    room = float(budget) - floor  # < 0: no choice fits, choose_counts says so
    step = room / steps if room > 0 else 1.0
    capacity = steps if room > 0 else 0
    units = [np.ceil((t - m) / step).astype(np.int64) for t, m in zip(terms, mins)]
    return Rounded(units, capacity, floor, step)


def chain_cost(terms: Sequence[np.ndarray], indices: Sequence[int], rest: float = 0.0) -> float:
    """The exact cost of one choice of grid indices."""
    return float(rest) + math.fsum(float(t[0 if i == 0 else indices[i - 1], a]) for i, (t, a) in enumerate(zip(terms, indices)))


def min_cost(terms: Sequence[np.ndarray], rest: float = 0.0) -> float:
    """The cheapest choice's exact cost (no budget): a min-plus pass along the chain."""
    best = terms[0][0].copy()
    for t in terms[1:]:
        best = (best[:, None] + t).min(axis=0)
    return float(rest) + float(best.min())


def _dp(units: Sequence[np.ndarray], values: Sequence[np.ndarray], capacity: int):
    """Best value per (grid index, steps used) layer by layer, and the argmax previous index of each.

    ``values[i][p, a]`` is what layer ``i`` at grid index ``a`` adds after layer ``i-1`` at ``p`` (layer 0: 1 row).
    """
    best = np.full((units[0].shape[1], capacity + 1), -np.inf)
    for a, w in enumerate(units[0][0]):
        if w <= capacity:
            best[a, w] = values[0][0, a]
    parents = [None]
    for u, val in zip(units[1:], values[1:]):
        new = np.full((u.shape[1], capacity + 1), -np.inf)
        parent = np.zeros(new.shape, dtype=np.int64)
        for a in range(u.shape[1]):
            for p in range(u.shape[0]):
                w = int(u[p, a])
                if w > capacity:
                    continue
                cand = best[p, :capacity + 1 - w] + val[p, a]
                better = cand > new[a, w:]
                new[a, w:][better] = cand[better]
                parent[a, w:][better] = p
        best = new
        parents.append(parent)
    return best, parents


def _backtrack(best: np.ndarray, parents, units) -> List[int]:
    top = best.max()
    a, v = min(zip(*np.nonzero(best == top)), key=lambda av: (av[1], av[0]))  # ties: the cheapest, then fewest
    indices = [int(a)]
    for i in range(len(units) - 1, 0, -1):
        p = int(parents[i][a, v])
        v, a = v - int(units[i][p, a]), p
        indices.append(a)
    return indices[::-1]


def _check_grids(counts, gains, unary, pairwise) -> List[np.ndarray]:
    if not (len(counts) == len(gains) == len(unary) == len(pairwise)) or not counts:
        raise HRankError("counts, gains, unary and pairwise costs need one entry per prunable layer "
                         "(pairwise[0] None)")
    for i, (c, g, u) in enumerate(zip(counts, gains, unary)):
        if not (len(c) == len(g) == len(u)) or list(c) != sorted(c):
            raise HRankError(f"layer {i}: the count grid must be ascending, with one gain and one cost per count")
    return [np.asarray(g, dtype=np.float64) for g in gains]


class _Prepared(NamedTuple):
    """A budget's chain, checked and rounded once: :meth:`choose` runs the DP for any price of a second cost."""

    counts: Sequence[Sequence[int]]
    gains: List[np.ndarray]
    terms: List[np.ndarray]
    rounded: Rounded
    rest: float
    budget: float
    steps: int
    unit: str

    def choose(self, penalty: Optional[Sequence[np.ndarray]] = None) -> BudgetChoice:
        values = [g[None, :] - (0.0 if penalty is None else penalty[i]) for i, g in enumerate(self.gains)]
        values = [np.broadcast_to(v, t.shape) for v, t in zip(values, self.terms)]
        best, parents = _dp(self.rounded.units, values, self.rounded.capacity)
        if not np.isfinite(best).any():
            raise HRankError(f"the budget {self.budget:.6g}{self.unit} exceeds the smallest cost "
                             f"{min_cost(self.terms, self.rest):.6g}{self.unit} by less than the rounding of "
                             f"{self.steps} budget steps: raise the budget or the steps")
        indices = _backtrack(best, parents, self.rounded.units)
        return BudgetChoice(indices=indices, counts=[int(c[a]) for c, a in zip(self.counts, indices)],
                            cost=chain_cost(self.terms, indices, self.rest),
                            importance=math.fsum(float(g[a]) for g, a in zip(self.gains, indices)),
                            budget=float(self.budget), steps=self.steps)


def _prepare(counts, gains, unary, pairwise, budget: float, steps: int, rest: float, unit: str) -> _Prepared:
    gains = _check_grids(counts, gains, unary, pairwise)
    terms = layer_terms(unary, pairwise)
    cheapest = min_cost(terms, rest)
    if cheapest > budget:
        raise HRankError(f"the budget {budget:.6g}{unit} is below the smallest possible cost {cheapest:.6g}{unit} "
                         f"(every layer at its fewest filters): raise the budget")
    return _Prepared(counts, gains, terms, round_costs(unary, pairwise, budget, steps, rest), rest, budget, steps, unit)


def choose_counts(counts: Sequence[Sequence[int]], gains: Sequence[Sequence[float]], unary, pairwise,
                  budget: float, steps: int = 400, rest: float = 0.0, unit: str = "",
                  penalty: Optional[Sequence[np.ndarray]] = None) -> BudgetChoice:
    """The counts (one per layer, from its grid) of largest summed importance whose cost fits ``budget``.

    Exact over the grid for the costs rounded up as :func:`round_costs` rounds them (so the true cost never
    exceeds the budget). ``rest`` is the cost no layer's count changes. Time O(sum_i G_(i-1) G_i steps),
    memory O(sum_i G_i steps) for G_i candidates of layer i. A budget below the cheapest choice is a
    one-line :class:`HRankError` (``unit`` names the cost's unit in it). ``penalty`` (per layer, terms shaped as
    :func:`layer_terms` makes them) is subtracted from the importance while choosing: :func:`choose_counts_capped`
    prices a second cost with it. The choice's ``importance`` is the plain sum of gains.
    """
    return _prepare(counts, gains, unary, pairwise, budget, steps, rest, unit).choose(penalty)


class CappedChoice(NamedTuple):
    """:func:`choose_counts_capped`'s answer: the choice, its second cost, and the price ``weight`` that made it fit."""

    choice: BudgetChoice
    second: float
    weight: float


def choose_counts_capped(counts, gains, unary, pairwise, budget: float, second_unary, second_pairwise,
                         cap: float, steps: int = 400, rest: float = 0.0, second_rest: float = 0.0,
                         unit: str = "", rounds: int = 40, cap_name: str = "the second cost") -> CappedChoice:
    """:func:`choose_counts` under ``budget`` with a second cost (same chain shape, e.g. MACs) at most ``cap``.

    A Lagrangian relaxation: the second cost, times a price ``w >= 0``, is subtracted from the importance, and
    ``w`` is bisected (``rounds`` times, below a price found by doubling) for the smallest price whose choice
    fits ``cap``; of the fitting choices met, the most important is returned. Every choice made this way is
    optimal among the choices whose rounded first cost fits and whose second cost is at most its own (if one
    kept more importance with less of the second cost, it would score more): the answer is exact for its own
    second cost, which may fall short of ``cap`` where the grid leaves a gap. ``w = 0`` is :func:`choose_counts`
    itself. The chain is checked and rounded once; only the DP runs per price. A cap below every choice the
    budget allows is a one-line :class:`HRankError`.
    """
    prepared = _prepare(counts, gains, unary, pairwise, budget, steps, rest, unit)
    second_terms = layer_terms(second_unary, second_pairwise)

    def attempt(weight: float) -> CappedChoice:
        choice = prepared.choose(None if weight == 0 else [weight * t for t in second_terms])
        return CappedChoice(choice, chain_cost(second_terms, choice.indices, second_rest), weight)

    free = attempt(0.0)
    if free.second <= cap:
        return free
    spread = max(float(t.max() - t.min()) for t in second_terms) or 1.0
    top = attempt(math.fsum(float(g.max()) for g in prepared.gains) / spread)  # as heavy as all the gains
    for _ in range(64):  # doubling: a price high enough to see every difference of the second cost
        if top.second <= cap:
            break
        top = attempt(top.weight * 2)
    if top.second > cap:
        raise HRankError(f"no choice within the budget {budget:.6g}{unit} keeps {cap_name} within {cap:.6g} (the "
                         f"least found: {top.second:.6g}): raise the cap or the budget")
    lo, hi, best = 0.0, top.weight, top
    for _ in range(rounds):
        mid = (lo + hi) / 2
        got = attempt(mid)
        if got.second <= cap:
            hi = mid
            best = max(best, got, key=lambda c: (c.choice.importance, -c.second))
        else:
            lo = mid
    return best
