"""Kept widths under a MAC or a latency budget: HRank importance on a grid of counts, costs on it, the chain DP.

``python -m hrank_ssd prune --mac_budget 0.5`` and ``--latency_budget 0.6 --latency_table t.json`` call
:func:`widths_for_mac_budget` / :func:`widths_for_latency_budget`, then prune to the widths they return
(:func:`hrank_ssd.hrank.pruning.prune_to_widths`). The importance of keeping ``k`` filters of a layer is
the sum of its ``k`` largest ranks divided by ``min(H, W)`` of its maps (:mod:`hrank_ssd.hrank.budget` says
why); the costs are exact MACs (:mod:`mac_costs`) or a measured latency table (:mod:`latency_table`).
``--latency_budget`` with ``--mac_budget`` meets both (:func:`widths_for_latency_budget` with ``mac_cap``, a
Lagrangian price on MACs inside the latency DP); :func:`fastest_widths_at_mac_cap` keeps as much importance as a
MAC cap allows and, of those widths, the fastest (pruning for the clock at another pruning's MACs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from hrank_ssd.errors import HRankError
from hrank_ssd.hrank.budget import (
    KEEP_IMPORTANCE,
    Budget,
    BudgetChoice,
    choose_counts,
    choose_counts_capped,
    kept_importance,
    layer_terms,
    min_cost,
    normalised_ranks,
)
from hrank_ssd.hrank.pruning import prune_to_widths, save_pruned
from hrank_ssd.hrank.ranks import load_ranks, save_ranks
from hrank_ssd.measure.flops import count_exact
from hrank_ssd.measure.latency_measure import time_as_measured
from hrank_ssd.measure.latency_table import LatencyTable
from hrank_ssd.measure.mac_costs import LayerCosts, count_grid, map_sizes, model_mac_costs
from hrank_ssd.nets.models import layer_names
from hrank_ssd.nets.ssd import SSD

STEPS = 400  # budget steps of the DP; each layer's cost is rounded up by less than budget / STEPS
GRID_POINTS = 16  # candidate counts per layer for --mac_budget (count_grid)


@dataclass
class BudgetWidths:
    """The widths chosen under a budget, with what the cost model predicts for them."""

    kind: str  # "macs" or "latency"
    unit: str  # "MACs" or "ms"
    names: List[str]
    channels: List[int]
    widths: List[int]
    budget: float  # in ``unit``
    predicted: float  # the cost model's figure for ``widths``
    full: float  # the cost model's figure for the unpruned model
    importance: float  # summed normalised ranks of the kept filters
    max_importance: float  # the same, keeping every filter
    choice: BudgetChoice
    mac_cap: Optional[float] = None  # a latency budget's second constraint, in MACs
    macs: Optional[int] = None  # the widths' exact MACs, where a MAC cap was checked

    def sidecar(self) -> Dict[str, object]:
        """What the pruned model's JSON sidecar records about the budget."""
        caps = {} if self.mac_cap is None else {"mac_cap": self.mac_cap, "macs": self.macs}
        return {"kind": self.kind, "unit": self.unit, "budget": self.budget, "predicted": self.predicted,
                "full": self.full, "importance": self.importance, "max_importance": self.max_importance,
                "steps": self.choice.steps, **caps}

    def rows(self) -> List[Dict[str, object]]:
        """Per prunable layer: name, filters, kept."""
        return [{"layer": n, "channels": c, "kept": k} for n, c, k in zip(self.names, self.channels, self.widths)]


def hrank_gains(model: SSD, rank_dir, counts: Sequence[Sequence[int]], sizes: Sequence[int]) -> List[np.ndarray]:
    """Per layer and grid count, the importance of keeping that many filters: the largest normalised ranks."""
    if not rank_dir:
        raise HRankError("a budget chooses widths from HRank ranks: pass --rank_dir (make ranks with "
                         "`python -m hrank_ssd rank`)")
    ranks = load_ranks(rank_dir, model.cfg.name, model.plan.prunable)
    return [kept_importance(s, c) for s, c in zip(normalised_ranks(ranks, sizes), counts)]


def _result(model: SSD, kind: str, unit: str, choice: BudgetChoice, predicted: float, full: float,
            gains: Sequence[np.ndarray], mac_cap: Optional[float] = None, macs: Optional[int] = None) -> BudgetWidths:
    return BudgetWidths(kind=kind, unit=unit, names=layer_names(model.cfg.name), channels=list(model.plan.prunable),
                        widths=list(choice.counts), budget=choice.budget, predicted=float(predicted),
                        full=float(full), importance=choice.importance,
                        max_importance=float(sum(float(g[-1]) for g in gains)), choice=choice, mac_cap=mac_cap,
                        macs=macs)


def allowed(grid: Sequence[int], channels: int, min_keep: float) -> np.ndarray:
    """Which counts of ``grid`` keep at least ``min_keep`` of the layer's ``channels`` (the full count always)."""
    if not 0 <= min_keep <= 1:
        raise HRankError(f"--min_keep {min_keep} must lie in [0, 1]: the least fraction of filters a layer keeps")
    grid = np.asarray(grid)
    return (grid >= min_keep * channels) | (grid == channels)


def widths_for_mac_budget(model: SSD, budget: Budget, rank_dir, steps: int = STEPS, points: int = GRID_POINTS,
                          min_keep: float = 0.0) -> BudgetWidths:
    """The widths of largest HRank importance whose exact MACs fit ``budget`` (a fraction of ``model``'s MACs,
    or MACs). Candidates: :func:`mac_costs.count_grid` per layer (about ``points`` counts, multiples of 8),
    those keeping at least ``min_keep`` of the layer's filters."""
    table = count_exact(model)
    counts = [[int(k) for k in np.asarray(g)[allowed(g, c, min_keep)]]
              for g, c in ((count_grid(c, points), c) for c in model.plan.prunable)]
    costs = model_mac_costs(model, counts, table)
    full = int(table["MACs"].sum())
    gains = hrank_gains(model, rank_dir, counts, map_sizes(model, table))
    choice = choose_counts(counts, gains, costs.unary, costs.pairwise, budget.of(full), steps, costs.rest,
                           unit=" MACs")
    return _result(model, "macs", "MACs", choice, costs.total(choice.indices), full, gains)


def check_table(model: SSD, table: LatencyTable) -> None:
    """A one-line error unless ``table`` was measured for this model's net, widths and input size."""
    net, channels = model.cfg.name, list(model.plan.prunable)
    if table.net != net:
        raise HRankError(f"the latency table is for {table.net}, the model is {net}: measure a table for {net}")
    full = [int(g[-1]) for g in table.counts]
    if len(full) != len(channels):
        raise HRankError(f"the latency table has {len(full)} prunable layers, {net} has {len(channels)}: "
                         f"measure the table again")
    for i, (a, b) in enumerate(zip(full, channels)):
        if a != b:
            raise HRankError(f"the latency table's widths differ from the model's (layer {i + 1}: {a} filters in "
                             f"the table, {b} in the model): measure the table at this model's width")
    if int(table.image_size) != int(model.image_size):
        raise HRankError(f"the latency table was measured at {table.image_size}px, the model takes "
                         f"{model.image_size}px: measure it at --image_size {model.image_size}")


class _LatencyProblem(NamedTuple):
    """A latency budget's knapsack: the grid of counts, their gains, latency and MAC costs (no budget yet)."""

    counts: List[List[int]]
    gains: List[np.ndarray]
    unary: List[np.ndarray]
    pairwise: List[Optional[np.ndarray]]
    constant_ms: float
    macs: LayerCosts  # exact MACs on the same grid

    def choose(self, budget_ms: float, steps: int, mac_cap: Optional[float] = None) -> BudgetChoice:
        """The widths of largest importance within ``budget_ms`` (and, given, ``mac_cap`` MACs)."""
        if mac_cap is None:
            return choose_counts(self.counts, self.gains, self.unary, self.pairwise, budget_ms, steps,
                                 self.constant_ms, unit=" ms")
        return choose_counts_capped(self.counts, self.gains, self.unary, self.pairwise, budget_ms, self.macs.unary,
                                    self.macs.pairwise, mac_cap, steps, self.constant_ms, self.macs.rest, unit=" ms",
                                    cap_name="the MACs").choice

    def cheapest_ms(self) -> float:
        return min_cost(layer_terms(self.unary, self.pairwise), self.constant_ms)


def _latency_problem(model: SSD, table: LatencyTable, rank_dir, min_keep: float, macs=None) -> _LatencyProblem:
    check_table(model, table)
    macs = count_exact(model) if macs is None else macs
    costs = table.costs()
    keep = [allowed(g, c, min_keep) for g, c in zip(table.counts, model.plan.prunable)]
    counts = [[int(k) for k in np.asarray(g)[m]] for g, m in zip(table.counts, keep)]
    unary = [np.asarray(u)[m] for u, m in zip(costs.unary, keep)]
    pairwise = [None] + [np.asarray(pw)[np.ix_(keep[i - 1], keep[i])] for i, pw in enumerate(costs.pairwise) if i]
    gains = hrank_gains(model, rank_dir, counts, map_sizes(model, macs))
    return _LatencyProblem(counts, gains, unary, pairwise, float(costs.constant_ms),
                           model_mac_costs(model, counts, macs))


def widths_for_latency_budget(model: SSD, table: LatencyTable, budget: Budget, rank_dir, steps: int = STEPS,
                              min_keep: float = 0.0, mac_cap: Optional[float] = None) -> BudgetWidths:
    """The widths of largest HRank importance whose predicted forward time fits ``budget`` (a fraction of the
    table's ``full_ms``, or ms), on the table's grid of counts (those keeping at least ``min_keep``), and,
    given ``mac_cap``, whose exact MACs stay within it too (:func:`hrank.budget.choose_counts_capped`)."""
    problem = _latency_problem(model, table, rank_dir, min_keep)
    choice = problem.choose(budget.of(table.full_ms), steps, mac_cap)
    return _result(model, "latency", "ms", choice, table.predict(choice.counts), table.full_ms, problem.gains,
                   mac_cap, None if mac_cap is None else problem.macs.total(choice.indices))


def latency_range(model: SSD, table: LatencyTable, rank_dir, min_keep: float = 0.0) -> Tuple[float, float]:
    """(the cheapest, the unpruned) forward ms the table predicts on its grid, every layer keeping at least
    ``min_keep``: the latency budgets that can be met lie between the two."""
    return _latency_problem(model, table, rank_dir, min_keep).cheapest_ms(), float(table.full_ms)


def exact_macs(model: SSD, widths: Sequence[int], macs=None) -> int:
    """Exact MACs of ``model`` pruned to ``widths`` (kept filters per prunable layer) without building the pruned
    model: :func:`mac_costs.model_mac_costs` at one count per layer (``macs``: ``count_exact(model)``, if known)."""
    return model_mac_costs(model, [[int(k)] for k in widths], macs).total([0] * len(widths))


def fastest_widths_at_mac_cap(model: SSD, table: LatencyTable, mac_cap: float, rank_dir, tol: float = 1e-3,
                              steps: int = STEPS, min_keep: float = 0.0, keep: float = KEEP_IMPORTANCE) -> BudgetWidths:
    """As much HRank importance as ``mac_cap`` MACs can keep on the table's grid, and of those widths the fastest.

    Pruning for the clock at another pruning's MACs (e.g. the seed rate's): first the widths of largest
    importance within the cap at the unpruned latency, then the latency budget is bisected down (bracket under
    ``tol * full_ms``) to the smallest whose widths, under both constraints, still keep ``keep`` of that
    importance. Importance is flat near its top while time is not, so ``keep`` trades a little of one for much
    of the other (docs/pruning-budgets.md). Both constraints are inside the DP: the MAC cap always holds. The
    result's ``budget`` is the latency budget found, ``macs`` its exact MACs. A cap no widths meet is a one-line
    :class:`HRankError`.
    """
    if not 0 < tol < 1:
        raise HRankError(f"tol must lie in (0, 1), got {tol}")
    if not 0 < keep <= 1:
        raise HRankError(f"keep {keep:g} must lie in (0, 1]: the fraction of the cap's most importance to keep")
    problem = _latency_problem(model, table, rank_dir, min_keep)

    def attempt(budget_ms: float) -> Optional[BudgetChoice]:
        try:
            return problem.choose(budget_ms, steps, mac_cap)
        except HRankError:
            return None

    hi = float(table.full_ms)
    best = attempt(hi)
    if best is None:
        raise HRankError(f"no widths on the table's grid keep within {mac_cap:.6g} MACs and the unpruned model's "
                         f"predicted {hi:.4g} ms (min_keep {min_keep:g}): raise the cap or lower --min_keep (or, if "
                         f"fewer filters cost more time in the table, measure it again on a quiet machine)")
    target, lo = best.importance * keep, problem.cheapest_ms()
    for _ in range(100):  # a bracket halves each time: 100 halvings end any float bisection
        if hi - lo <= tol * abs(table.full_ms):
            break
        mid = (lo + hi) / 2
        choice = attempt(mid)
        if choice is not None and choice.importance >= target:
            hi, best = mid, choice
        else:
            lo = mid
    return _result(model, "latency", "ms", best, table.predict(best.counts), table.full_ms, problem.gains, mac_cap,
                   problem.macs.total(best.indices))


def random_hrank_like_ranks(model: SSD, folder, seed: int = 0) -> Path:
    """Ranks for trying budgets without data: per filter uniform in [0.3, 1] of its map's largest rank, min(H, W),
    saved in ``folder`` (the benchmarks' stand-in for a real rank folder)."""
    rng = np.random.default_rng(seed)
    save_ranks([rng.uniform(0.3, 1.0, c) * s for c, s in zip(model.plan.prunable, map_sizes(model))], folder)
    return Path(folder)


def prune_to_budget(model: SSD, chosen: BudgetWidths, rank_dir, output, min_keep: float = 0.0,
                    **record) -> SSD:
    """Prune ``model`` to ``chosen.widths`` (its HRank-highest filters per layer) and save it at ``output`` with
    its sidecar: the kept filters, the widths and the budget met (:meth:`BudgetWidths.sidecar`, ``min_keep``
    and any ``record`` entries, e.g. the latency table used). Returns the pruned model."""
    pruned, kept = prune_to_widths(model, chosen.widths, "hrank", rank_dir)
    save_pruned(pruned, output, None, "hrank", kept, widths=chosen.widths,
                budget=dict(chosen.sidecar(), min_keep=min_keep, **record))
    return pruned


def measured_ms(model: SSD, table: LatencyTable, warmup: int = 5, runs: int = 20) -> Dict[str, float]:
    """``model``'s forward timed as the table was measured (device, threads, batch, layout)."""
    return time_as_measured(table, {"model": model}, runs, warmup)["model"]
