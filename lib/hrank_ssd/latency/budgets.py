"""Widths of most HRank importance under MAC and/or latency budgets, and pruning to them (docs/pruning-budgets.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from hrank_ssd.errors import HRankError
from hrank_ssd.hrank.pruning import prune_to_widths, save_pruned
from hrank_ssd.hrank.ranks import load_ranks
from hrank_ssd.latency import knapsack
from hrank_ssd.latency.knapsack import STEPS, Budget, BudgetChoice, ChainCosts
from hrank_ssd.latency.table import LatencyTable, grid_counts
from hrank_ssd.measure import flops
from hrank_ssd.measure.flops import count_exact
from hrank_ssd.nets.models import layer_names
from hrank_ssd.nets.registry import get_net
from hrank_ssd.nets.ssd import SSD


def map_sizes(model: SSD, table=None) -> List[int]:
    """``min(out_h, out_w)`` of each prunable layer's maps (``table``: its :func:`count_exact`, if known)."""
    rows = (count_exact(model) if table is None else table).set_index("name")
    return [int(min(rows.loc[get_net(model.cfg.name).producer_key(i), ["out_h", "out_w"]]))
            for i in range(model.plan.num_prunable)]


def mac_costs(model: SSD, counts: Sequence[Sequence[int]], table=None) -> ChainCosts:
    """Exact MACs of ``model`` at the kept counts ``counts[i]`` as chain costs (pairwise, unary or constant)."""
    grids, rules = [np.asarray(c, dtype=np.int64) for c in counts], get_net(model.cfg.name).slice_rules()

    def term(row):
        i, o = rules.get(row.name, (None, None))[::-1]
        per = int(row.MACs) // (1 if o is None else int(row.out_channels)) // (1 if i is None else int(row.in_channels))
        return row.name, i, o, per * np.outer(*[[1] if k is None else grids[k] for k in (i, o)])

    rows = (count_exact(model) if table is None else table).itertuples(index=False)
    return ChainCosts.of_terms([g.size for g in grids], map(term, rows), 0, np.int64)


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
        """What the pruned model's sidecar records about the budget."""
        caps = {} if self.mac_cap is None else {"mac_cap": self.mac_cap, "macs": self.macs}
        return {"kind": self.kind, "unit": self.unit, "budget": self.budget, "predicted": self.predicted,
                "full": self.full, "importance": self.importance, "max_importance": self.max_importance,
                "steps": self.choice.steps, **caps}

    def rows(self) -> List[Dict[str, object]]:
        """Per prunable layer: name, filters, kept."""
        return [{"layer": n, "channels": c, "kept": k} for n, c, k in zip(self.names, self.channels, self.widths)]


class _Problem(NamedTuple):
    """A budget's knapsack: the grid, the gains on it, its cost and its exact MACs."""

    counts: List[List[int]]
    gains: List[np.ndarray]
    costs: ChainCosts
    macs: ChainCosts

    @classmethod
    def of(cls, model: SSD, grids, rank_dir, min_keep: float, costs: Optional[ChainCosts] = None) -> _Problem:
        if not 0 <= min_keep <= 1:
            raise HRankError(f"--min_keep {min_keep} must lie in [0, 1]: the least fraction of filters a layer keeps")
        keep = [(np.asarray(g) >= min_keep * c) | (np.asarray(g) == c) for g, c in zip(grids, model.plan.prunable)]
        counts, table = [[int(k) for k in np.asarray(g)[m]] for g, m in zip(grids, keep)], count_exact(model)
        ranks = load_ranks(rank_dir, model.cfg.name, model.plan.prunable)
        gains = [knapsack.kept_importance(s, c)
                 for s, c in zip(knapsack.normalised_ranks(ranks, map_sizes(model, table)), counts)]
        macs = mac_costs(model, counts, table)
        return cls(counts, gains, macs if costs is None else costs.select(keep), macs)

    def choose(self, budget: float, steps: int, unit: str, mac_cap: Optional[float] = None) -> BudgetChoice:
        """The widths of largest importance within ``budget`` (and, given, ``mac_cap`` MACs)."""
        args = (self.counts, self.gains, self.costs.unary, self.costs.pairwise, budget)
        if mac_cap is None:
            return knapsack.choose_counts(*args, steps, self.costs.constant, unit)
        return knapsack.choose_counts_capped(*args, self.macs, mac_cap, steps, self.costs.constant, unit).choice

    def cheapest(self) -> float:
        return knapsack.min_cost(knapsack.layer_terms(self.costs.unary, self.costs.pairwise), self.costs.constant)

    def result(self, model: SSD, kind: str, choice: BudgetChoice, predicted: float, full: float,
               mac_cap: Optional[float] = None) -> BudgetWidths:
        return BudgetWidths(kind, "MACs" if kind == "macs" else "ms", layer_names(model.cfg.name),
                            list(model.plan.prunable), list(choice.counts), choice.budget, float(predicted),
                            float(full), choice.importance, float(sum(float(g[-1]) for g in self.gains)), choice,
                            mac_cap, None if mac_cap is None else int(self.macs.total(choice.indices)))


def widths_for_mac_budget(model: SSD, budget: Budget, rank_dir, steps: int = STEPS,
                          min_keep: float = 0.0) -> BudgetWidths:
    """Widths whose exact MACs fit ``budget`` (a fraction of ``model``'s), each keeping ``min_keep`` or more."""
    grids = [grid_counts(c) for c in model.plan.prunable]  # the table's grid at its default points and block
    problem = _Problem.of(model, grids, rank_dir, min_keep)
    full = flops.macs(model)
    choice = problem.choose(budget.of(full), steps, " MACs")
    return problem.result(model, "macs", choice, int(problem.macs.total(choice.indices)), full)


def _latency_problem(model: SSD, table: LatencyTable, rank_dir, min_keep: float) -> _Problem:
    """The knapsack on ``table``'s grid; a table of another net, width or input size is a one-line error."""
    net, full = model.cfg.name, [int(g[-1]) for g in table.counts]
    if (table.net, full, int(table.image_size)) != (net, list(model.plan.prunable), int(model.image_size)):
        raise HRankError(f"the latency table is for {table.net} keeping {full} at {table.image_size}px, the model "
                         f"is {net} with {list(model.plan.prunable)} at {model.image_size}px: measure a table for "
                         f"this model (python -m hrank_ssd latency-table)")
    return _Problem.of(model, table.counts, rank_dir, min_keep, table.costs())


def widths_for_latency_budget(model: SSD, table: LatencyTable, budget: Budget, rank_dir, steps: int = STEPS,
                              min_keep: float = 0.0, mac_cap: Optional[float] = None) -> BudgetWidths:
    """Widths whose predicted forward fits ``budget`` (of the table's ``full_ms``) and MACs ``mac_cap``, if given."""
    problem = _latency_problem(model, table, rank_dir, min_keep)
    choice = problem.choose(budget.of(table.full_ms), steps, " ms", mac_cap)
    return problem.result(model, "latency", choice, table.predict(choice.counts), table.full_ms, mac_cap)


def latency_range(model: SSD, table: LatencyTable, rank_dir, min_keep: float = 0.0) -> Tuple[float, float]:
    """(the cheapest, the unpruned) forward ms the table predicts, every layer keeping ``min_keep``."""
    return _latency_problem(model, table, rank_dir, min_keep).cheapest(), float(table.full_ms)


def fastest_widths_at_mac_cap(model: SSD, table: LatencyTable, mac_cap: float, rank_dir, steps: int = STEPS,
                              min_keep: float = 0.0, keep: float = knapsack.KEEP_IMPORTANCE) -> BudgetWidths:
    """The smallest latency budget (bisected to 0.1% of ``full_ms``) whose widths within ``mac_cap`` keep
    ``keep`` of the importance the cap allows at the unpruned latency."""
    problem = _latency_problem(model, table, rank_dir, min_keep)

    def attempt(budget_ms: float) -> Optional[BudgetChoice]:
        try:
            return problem.choose(budget_ms, steps, " ms", mac_cap)
        except HRankError:
            return None

    hi, best = float(table.full_ms), attempt(float(table.full_ms))
    if best is None:
        raise HRankError(f"no widths on the table's grid keep within {mac_cap:.6g} MACs and the unpruned model's "
                         f"predicted {hi:.4g} ms (min_keep {min_keep:g}): raise the cap or lower --min_keep (or, if "
                         f"fewer filters cost more time in the table, measure it again on a quiet machine)")
    target, lo = best.importance * keep, problem.cheapest()
    while hi - lo > 1e-3 * abs(table.full_ms):
        choice = attempt((lo + hi) / 2)
        if choice is not None and choice.importance >= target:
            hi, best = (lo + hi) / 2, choice
        else:
            lo = (lo + hi) / 2
    return problem.result(model, "latency", best, table.predict(best.counts), table.full_ms, mac_cap)


def prune_to_budget(model: SSD, chosen: BudgetWidths, rank_dir, output, min_keep: float = 0.0, **record) -> SSD:
    """Prune ``model`` to ``chosen.widths`` and save it at ``output``, the widths and budget in its sidecar."""
    pruned, kept = prune_to_widths(model, chosen.widths, "hrank", rank_dir)
    save_pruned(pruned, output, None, "hrank", kept, budget=dict(chosen.sidecar(), min_keep=min_keep, **record))
    return pruned
