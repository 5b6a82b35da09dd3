"""Questions read from a plot, answered from this run's numbers (:func:`hrank_ssd.course.checking.ask`)."""

from __future__ import annotations

from typing import Iterable, Set

import pandas as pd

from hrank_ssd.course.checking import ask
from hrank_ssd.course.models import BY_KEY


def _name(value) -> str:
    return str(value).strip().lower()


def _same_name(got, want) -> bool:
    return isinstance(got, str) and _name(got) == _name(want)


def _lowest(name: str, fn, values: pd.Series, why, opposite: str, default: str) -> bool:
    """The name (index) of ``values``' lowest; ``why(lowest, highest)``; ``opposite``: the hint for the highest."""
    low, high = values.idxmin(), values.idxmax()

    def hint(got):
        if _same_name(got, high):
            return opposite
        if isinstance(got, str) and _name(got) not in set(values.index.map(_name)):
            return f"answer with one of the plot's names: {', '.join(values.index)}"

    return ask(name, fn, low, _same_name, why(low, high), hint, default)


def check_least_stable(fn, stability: pd.DataFrame) -> bool:
    """Notebook 01: the layer whose ranks agree least between the two disjoint image sets (lowest Spearman)."""
    part = stability[stability["comparison"] == stability["comparison"].iloc[0]].dropna(subset=["spearman"])
    rows = part.set_index("name")
    return _lowest(
        "least_stable_layer", fn, rows["spearman"],
        lambda worst, best: (f"{worst} orders its filters least alike on the two image sets (Spearman "
                             f"{rows.loc[worst, 'spearman']:.2f}; {best}: {rows.loc[best, 'spearman']:.2f}); "
                             f"{int(rows.loc[worst, 'changed'])} of its {int(rows.loc[worst, 'kept'])} kept filters "
                             "change. A low correlation matters only near the cut: filters far from it stay kept or "
                             "dropped."),
        "that layer agrees the MOST: look for the lowest bar, the smallest correlation",
        "read the Spearman correlation of each layer in the plot: which is lowest?")


def check_most_sensitive(fn, sens: pd.DataFrame) -> bool:
    """Notebook 02: the layer whose pruning at the largest scanned rate costs the most quick mAP."""
    top, base = sens["rate"].max(), float(sens.loc[sens["rate"] == 0, "map"].mean())
    maps = sens[sens["rate"] == top].set_index("name")["map"]
    return _lowest(
        "most_sensitive_layer", fn, maps,
        lambda worst, best: (f"at rate {top:g}, pruning {worst} alone leaves a quick mAP of {maps[worst]:.3f} "
                             f"(unpruned {base:.3f}); {best} keeps {maps[best]:.3f}. Spare the steep layers and prune "
                             "the flat ones: that is what a per-layer compress rate is for."),
        "that layer loses the LEAST: find the curve that ends lowest on the right",
        f"look at the right end of the curves (rate {top:g}): which one ends lowest? Name it as the legend does")


def check_best_criterion(fn, crit: pd.DataFrame) -> bool:
    """Notebook 02: the criterion with the highest mAP right after pruning (before finetuning)."""
    by = crit.set_index("criterion")["map_pruned"]
    return _lowest(
        "best_criterion", fn, -by,
        lambda best, worst: ("right after pruning: " + ", ".join(f"{c} {m:.3f}" for c, m in by.items()) + f". {best} "
                             "keeps the filters that matter most to this network's outputs; finetuning can close part "
                             "of the gap (the table's second column), but the criterion decides where it starts."),
        "that criterion keeps the LEAST mAP: compare the bars before finetuning",
        "compare the mAP right after pruning (before finetuning), criterion by criterion")


def check_faster_pruning(fn, fine: pd.DataFrame) -> bool:
    """Notebook 02: which of the two pruned models (same sparsity) runs faster: "fine-grained" or "filters"."""
    by = fine.set_index("model")
    fine_row, filt = by.loc["fine-grained (magnitude)"], by.loc["filters (HRank)"]
    want = "filters" if filt["speedup"] > fine_row["speedup"] else "fine-grained"
    why = (f"filter pruning runs at {filt['speedup']:.2f}x the unpruned speed, fine-grained at "
           f"{fine_row['speedup']:.2f}x: both removed {int(filt['pruned_weights'])} weights, but the fine-grained "
           f"model still does all {fine_row['GMACs']:.3f} GMACs (a dense kernel multiplies zeros too), the "
           f"filter-pruned one {filt['GMACs']:.3f}.")
    return ask("faster_pruning", fn, want,
               lambda got, wanted: isinstance(got, str) and _name(got).replace(" ", "-").startswith(wanted[:4]),
               why, lambda got: None, 'answer "fine-grained" or "filters", from the speed bars of the plot')


def _models(value, others=()) -> Set[str]:
    """Model keys out of keys, titles or plot labels (one string or several); ``others``: names kept as they are."""
    names = [value] if isinstance(value, str) else list(value) if isinstance(value, Iterable) else []
    aliases = {_name(a): m.key for m in BY_KEY.values() for a in (m.key, m.title, m.label)}
    aliases.update({_name(o): o for o in others})  # yours: "yours (<rate>)"
    return {aliases.get(_name(n), f"?{n}") for n in names}


def check_frontier(fn, table: pd.DataFrame) -> bool:
    """Notebook 04: the models on the latency frontier (keys, titles or the plot's labels)."""
    others = set(table["model"]) - {m.title for m in BY_KEY.values()}  # yours
    on = _models(table.loc[table["frontier (latency)"], "model"], others)
    why = ("on the latency frontier: " + ", ".join(sorted(on)) + ". Every other model is beaten on both axes by one "
           "of them: as fast or faster and as accurate or better.")

    def hint(got):
        got = _models(got, others)
        unknown = sorted(n[1:] for n in got if n.startswith("?"))
        if unknown:
            return f"not a model of the plot: {', '.join(unknown)} (use keys such as 'vgg16-ssd', or the labels)"
        if got - on:
            return f"{len(got - on)} of yours is beaten on both axes by another model: check each against the rest"
        return f"{len(on - got)} frontier model(s) missing: a model no other beats on both axes belongs too"

    return ask("latency_frontier_models", fn, on, lambda got, want: _models(got, others) == want, why, hint,
               "list the models (keys or the plot's labels) that no other model beats on both latency and mAP")
