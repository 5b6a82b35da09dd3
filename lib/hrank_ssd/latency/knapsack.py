"""How many filters each layer keeps under a cost budget: an exact chain DP over a grid of counts per layer, on
costs rounded up to whole budget steps, never over budget (docs/pruning-budgets.md)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from hrank_ssd.errors import HRankError

KEEP_IMPORTANCE = 0.93  # the fastest widths at a MAC cap keep this share of the cap's most importance
STEPS = 400  # budget steps of the DP


class Budget(NamedTuple):
    """A budget as written: a ``fraction`` of the unpruned model's cost, or an absolute ``value``."""

    value: float
    fraction: bool

    def of(self, full: float) -> float:
        """The budget in the cost's unit, given the unpruned cost ``full``."""
        return self.value * full if self.fraction else self.value


class ChainCosts(NamedTuple):
    """``total(a) = constant + sum_i unary[i][a_i] + sum_{i>=1} pairwise[i][a_{i-1}, a_i]`` over grid indices."""

    unary: List[np.ndarray]
    pairwise: List[Optional[np.ndarray]]
    constant: float

    def total(self, index: Sequence[int]) -> float:
        t = self.constant + sum(u[a] for u, a in zip(self.unary, index))
        return t + sum(self.pairwise[i][index[i - 1], index[i]] for i in range(1, len(index)))

    @classmethod
    def of_terms(cls, sizes: Sequence[int], terms, constant: float = 0.0, dtype=float) -> ChainCosts:
        """Costs from ``(name, in_layer, out_layer, cost[in index, out index])`` terms on grids of ``sizes``; a
        side no layer cuts (None) has one row or column."""
        unary = [np.zeros(n, dtype) for n in sizes]
        pairwise = [None] + [np.zeros((a, b), dtype) for a, b in zip(sizes, sizes[1:])]
        for name, i, o, m in terms:
            if i is None and o is None:
                constant += m[0, 0]
            elif i is None or o is None:
                unary[o if i is None else i] += m[0, :] if i is None else m[:, 0]
            elif i == o:
                unary[i] += np.diag(m)
            elif abs(i - o) == 1:
                pairwise[max(i, o)] += m if i < o else m.T
            else:
                raise HRankError(f"{name} couples layers {i} and {o}, which are not adjacent: a chain knapsack "
                                 f"cannot price it")
        return cls(unary, pairwise, constant)

    def select(self, keep: Sequence[np.ndarray]) -> ChainCosts:
        """The costs on the grid counts where ``keep[i]`` (a boolean mask per layer) is true."""
        pairwise = [None] + [np.asarray(p)[np.ix_(keep[i - 1], keep[i])] for i, p in enumerate(self.pairwise) if i]
        return ChainCosts([np.asarray(u)[m] for u, m in zip(self.unary, keep)], pairwise, self.constant)


@dataclass
class BudgetChoice:
    """The chosen grid indices, counts, exact cost, summed importance, the budget and its steps."""

    indices: List[int]
    counts: List[int]
    cost: float
    importance: float
    budget: float
    steps: int


def normalised_ranks(ranks: Sequence[np.ndarray], max_rank: Sequence[float]) -> List[np.ndarray]:
    """Each layer's ranks over the largest rank its maps can have (``min(H, W)``): a fraction of full rank."""
    return [np.asarray(r, dtype=np.float64) / float(m) for r, m in zip(ranks, max_rank)]


def kept_importance(scores: np.ndarray, counts: Sequence[int]) -> np.ndarray:
    """Importance of keeping each count of filters: the sum of that many of the largest ``scores``."""
    return np.concatenate([[0.0], np.cumsum(np.sort(np.asarray(scores, dtype=np.float64))[::-1])])[list(counts)]


def layer_terms(unary, pairwise) -> List[np.ndarray]:
    """Per layer, the (previous grid, grid) cost of its terms: unary broadcast plus pairwise (layer 0: 1 row)."""
    terms = [np.asarray(unary[0], dtype=np.float64)[None, :]]
    for i in range(1, len(unary)):
        shape = (len(unary[i - 1]), len(unary[i]))
        pw = 0.0 if pairwise[i] is None else np.asarray(pairwise[i], dtype=np.float64)
        terms.append(np.broadcast_to(np.asarray(unary[i], dtype=np.float64) + pw, shape).copy())
    return terms


def round_costs(unary, pairwise, budget: float, steps: int = STEPS,
                rest: float = 0.0) -> Tuple[List[np.ndarray], int]:
    """Per layer, ``terms[i] - min(terms[i])`` rounded up to whole steps of what the budget leaves over the exact
    floor (``rest`` + the minima), and the steps it leaves: a choice that fits them fits the budget."""
    if steps < 1:
        raise HRankError(f"--budget_steps must be at least 1, got {steps}")
    terms = layer_terms(unary, pairwise)
    mins = [float(t.min()) for t in terms]
    floor = float(rest) + math.fsum(mins)
    step = (float(budget) - floor) / steps if budget > floor else 1.0
    return [np.ceil((t - m) / step).astype(np.int64) for t, m in zip(terms, mins)], steps if budget > floor else 0


def chain_cost(terms: Sequence[np.ndarray], indices: Sequence[int], rest: float = 0.0) -> float:
    """The exact cost of one choice of grid indices."""
    return float(rest) + math.fsum(float(t[0 if i == 0 else indices[i - 1], a])
                                   for i, (t, a) in enumerate(zip(terms, indices)))


def min_cost(terms: Sequence[np.ndarray], rest: float = 0.0) -> float:
    """The cheapest choice's exact cost: a min-plus pass along the chain."""
    best = terms[0][0].copy()
    for t in terms[1:]:
        best = (best[:, None] + t).min(axis=0)
    return float(rest) + float(best.min())


def _dp(units: Sequence[np.ndarray], values: Sequence[np.ndarray], capacity: int):
    """Best value per (grid index, steps used), layer by layer, and each entry's best previous index."""
    best, parents = np.full((1, capacity + 1), -np.inf), []
    best[0, 0] = 0.0  # before the first layer (one row of terms): nothing kept, no step used
    for u, val in zip(units, values):
        new = np.full((u.shape[1], capacity + 1), -np.inf)
        parent = np.zeros(new.shape, dtype=np.int64)
        for a, p in np.argwhere(u <= capacity)[:, ::-1]:
            w = int(u[p, a])
            cand = best[p, :capacity + 1 - w] + val[p, a]
            better = cand > new[a, w:]
            new[a, w:][better] = cand[better]
            parent[a, w:][better] = p
        best = new
        parents.append(parent)
    return best, parents


def _backtrack(best: np.ndarray, parents, units) -> List[int]:
    top = best.max()
    a, v = min(zip(*np.nonzero(best == top)), key=lambda av: (av[1], av[0]))  # ties: the cheapest
    indices = [int(a)]
    for i in range(len(units) - 1, 0, -1):
        p = int(parents[i][a, v])
        v, a = v - int(units[i][p, a]), p
        indices.append(a)
    return indices[::-1]


def choose_counts(counts, gains, unary, pairwise, budget: float, steps: int = STEPS, rest: float = 0.0,
                  unit: str = "", penalty: Optional[Sequence[np.ndarray]] = None) -> BudgetChoice:
    """The counts of largest summed importance (less ``penalty``, shaped as :func:`layer_terms`'s) whose cost fits
    ``budget``; a budget below the cheapest choice is an :class:`HRankError`."""
    terms, gains = layer_terms(unary, pairwise), [np.asarray(g, dtype=np.float64) for g in gains]
    cheapest = min_cost(terms, rest)
    if cheapest > budget:
        raise HRankError(f"the budget {budget:.6g}{unit} is below the smallest possible cost {cheapest:.6g}{unit} "
                         f"(every layer at its fewest filters): raise the budget")
    units, capacity = round_costs(unary, pairwise, budget, steps, rest)
    values = [np.broadcast_to(g[None, :] - (0.0 if penalty is None else penalty[i]), t.shape)
              for i, (g, t) in enumerate(zip(gains, terms))]
    best, parents = _dp(units, values, capacity)
    if not np.isfinite(best).any():
        raise HRankError(f"the budget {budget:.6g}{unit} exceeds the smallest cost {cheapest:.6g}{unit} by less "
                         f"than the rounding of {steps} budget steps: raise the budget or the steps")
    ix = _backtrack(best, parents, units)
    return BudgetChoice(ix, [int(c[a]) for c, a in zip(counts, ix)], chain_cost(terms, ix, rest),
                        math.fsum(float(g[a]) for g, a in zip(gains, ix)), float(budget), steps)


class CappedChoice(NamedTuple):
    """:func:`choose_counts_capped`'s answer: the choice, its second cost, the price that made it fit."""

    choice: BudgetChoice
    second: float
    weight: float


def choose_counts_capped(counts, gains, unary, pairwise, budget: float, second: ChainCosts, cap: float,
                         steps: int = STEPS, rest: float = 0.0, unit: str = "") -> CappedChoice:
    """:func:`choose_counts` with MACs (``second``) at most ``cap``, priced into the importance at the smallest
    (bisected in 40 rounds) price whose choice fits."""
    terms = layer_terms(second.unary, second.pairwise)

    def attempt(weight: float) -> CappedChoice:
        penalty = None if weight == 0 else [weight * t for t in terms]
        choice = choose_counts(counts, gains, unary, pairwise, budget, steps, rest, unit, penalty)
        return CappedChoice(choice, chain_cost(terms, choice.indices, second.constant), weight)

    best = attempt(0.0)
    if best.second <= cap:
        return best
    spread = max(float(t.max() - t.min()) for t in terms) or 1.0
    top = attempt(math.fsum(float(np.max(g)) for g in gains) / spread)  # as heavy as all the gains
    for _ in range(64):
        if top.second <= cap:
            break
        top = attempt(top.weight * 2)
    if top.second > cap:
        raise HRankError(f"no choice within the budget {budget:.6g}{unit} keeps the MACs within {cap:.6g} (the "
                         f"least found: {top.second:.6g}): raise the cap or the budget")
    lo, hi, best = 0.0, top.weight, top
    for _ in range(40):
        got = attempt((lo + hi) / 2)
        if got.second <= cap:
            hi, best = got.weight, max(best, got, key=lambda c: (c.choice.importance, -c.second))
        else:
            lo = got.weight
    return best
