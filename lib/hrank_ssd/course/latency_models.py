"""The comparison's latency-pruned VGG16-SSDs (``vgg16-ssd-lat-paper-macs``: the fastest widths within the paper
rate's MACs; ``vgg16-ssd-lat-small``: widths under ``latency_budget``) and the latency table they are chosen on:
this machine's, ``latency/vgg16-ssd-<key>.json``, or once chosen the one their sidecars name."""

from __future__ import annotations

import hashlib
import json
import sys
import warnings
from pathlib import Path
from typing import Optional, Tuple

import pandas as pd
import torch

from hrank_ssd.course.models import PAPER_MACS, SMALL
from hrank_ssd.errors import HRankError
from hrank_ssd.latency import budgets
from hrank_ssd.latency.knapsack import Budget
from hrank_ssd.latency.measure import measure_latency_table
from hrank_ssd.latency.table import LatencyTable, current_machine
from hrank_ssd.measure.flops import macs
from hrank_ssd.nets.compress import format_compress_rate
from hrank_ssd.nets.models import layer_names, load_model, read_sidecar
from hrank_ssd.nets.ssd import SSD

REMEASURE = "Re-measure the table on a quiet machine."


def latency_table_path(course) -> Path:
    """Where this machine's table for the profile lives: ``work/<profile>/latency/vgg16-ssd-<key>.json``."""
    p, device = course.profile, torch.device(course.device)
    facts = {"machine": current_machine(device), "device": device.type, "width": p.vgg_width,
             "threads": torch.get_num_threads() if device.type == "cpu" else None, "image_size": p.image_size,
             "grid": p.latency_grid, "runs": p.latency_runs, "warmup": p.latency_warmup}
    key = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:12]
    return course.work / "latency" / f"vgg16-ssd-{key}.json"


def chosen_table_path(course) -> Optional[Path]:
    """The table the latency-pruned models' widths were chosen on, when it is in the work folder (else None)."""
    for key in (PAPER_MACS, SMALL):
        init = course.path(f"{key}-init")
        name = (read_sidecar(init).get("budget") or {}).get("latency_table") if init.is_file() else None
        if name and (course.work / "latency" / name).is_file():
            return course.work / "latency" / name
    return None


def latency_table(course) -> LatencyTable:
    """The table that chose the latency-pruned widths, else this machine's (measured once); also ``results/latency_table.json``."""
    if course.table is None:
        table = _chosen_table(course)
        course.table = table if table is not None else _own_table(course)
        course.table.save(course.result("latency_table.json"))
    return course.table


def latency_table_file(course) -> Path:
    """The file :func:`latency_table` read or measured."""
    latency_table(course)
    return course.table_file


def _chosen_table(course) -> Optional[LatencyTable]:
    path = chosen_table_path(course)
    if path is None:
        return None
    with warnings.catch_warnings(record=True) as elsewhere:
        warnings.simplefilter("always")
        try:
            table = LatencyTable.load(path, expect_machine=False)
        except HRankError as e:
            print(f"the latency table the latency-pruned models were chosen on is unreadable ({e}): using this "
                  "machine's", file=sys.stderr)
            return None
    if elsewhere:
        print(f"using {path.name}, the latency table the latency-pruned models' widths were chosen on: it was "
              "measured on another machine, so its predicted ms are that machine's", file=sys.stderr)
    course.table_file = path
    return table


def _own_table(course) -> LatencyTable:
    p, path, table = course.profile, latency_table_path(course), None
    if path.is_file():
        try:
            table = LatencyTable.load(path)
        except HRankError as e:  # another machine's, or damaged: this machine measures its own
            print(f"measuring the latency table again: {e}", file=sys.stderr)
    if table is None:
        with course.timed("latency table"):
            table = measure_latency_table("vgg16-ssd", device=course.device, width=p.vgg_width,
                                          image_size=p.image_size, grid=p.latency_grid, runs=p.latency_runs,
                                          warmup=p.latency_warmup, num_classes=len(course.class_names()),
                                          progress=course.progress)
        table.save(path)
    course.table_file = path
    return table


def paper_rate_mac_cap(course) -> int:
    """Exact MACs of the baseline pruned at the profile's compress rate (the paper rate's model)."""
    return macs(load_model(course.prune()))


def min_keep(course, key: str) -> float:
    """The least fraction of every layer's filters the latency-pruned model ``key`` keeps."""
    return course.profile.paper_macs_min_keep if key == PAPER_MACS else course.profile.min_keep


def latency_widths(course, key: str, base: Optional[SSD] = None) -> Tuple[budgets.BudgetWidths, str]:
    """The kept counts of a latency-pruned model and a note naming the fallback needed (empty: none)."""
    base = base or load_model(course.baseline("vgg16-ssd"))
    if key == PAPER_MACS:
        cap, keep = paper_rate_mac_cap(course), min_keep(course, PAPER_MACS)
        try:
            return budgets.fastest_widths_at_mac_cap(base, latency_table(course), cap, course.rank_dir(),
                                                     min_keep=keep, keep=course.profile.paper_macs_keep), ""
        except HRankError as e:
            note = (f"fallback: {e}; chose the widths of largest HRank importance within the paper rate's MACs "
                    f"instead (MAC knapsack). {REMEASURE}")
        print(note, file=sys.stderr)
        return budgets.widths_for_mac_budget(base, Budget(cap, False), course.rank_dir(), min_keep=keep), note
    if key == SMALL:
        return _small_budget_widths(course, base)
    raise HRankError(f"{key} is not a latency-pruned model: use {PAPER_MACS} or {SMALL}")


def _small_budget_widths(course, base: SSD) -> Tuple[budgets.BudgetWidths, str]:
    p, table, ranks = course.profile, latency_table(course), course.rank_dir()
    cheapest, full = budgets.latency_range(base, table, ranks, p.min_keep)
    budget, note = p.latency_budget * full, ""
    if budget < cheapest + 0.05 * (full - cheapest):
        budget = cheapest + 0.1 * (full - cheapest)
        note = (f"latency_budget {p.latency_budget:g} of the unpruned {full:.4g} ms is below the cheapest widths "
                f"min_keep {p.min_keep:g} allows ({cheapest:.4g} ms): budget {budget:.4g} ms instead, a tenth "
                "of the way from those to the unpruned forward")
    try:
        return budgets.widths_for_latency_budget(base, table, Budget(budget, False), ranks,
                                                 min_keep=p.min_keep), note
    except HRankError as e:
        note = (f"fallback: {e}; chose the widths of largest HRank importance within {p.latency_budget:g} of "
                f"the unpruned MACs instead (MAC knapsack). {REMEASURE}")
    print(note, file=sys.stderr)
    return budgets.widths_for_mac_budget(base, Budget(p.latency_budget, True), ranks, min_keep=p.min_keep), note


def latency_pruned(course, key: str) -> Path:
    """A latency-pruned VGG16-SSD before finetuning (``models/<key>-init.pth``, the budget in its sidecar)."""
    out = course.path(f"{key}-init")
    if not out.is_file():
        base = load_model(course.baseline("vgg16-ssd"))
        chosen, note = latency_widths(course, key, base)
        budgets.prune_to_budget(base, chosen, course.rank_dir(), out, min_keep(course, key),
                                latency_table=latency_table_file(course).name, note=note)
    return out


def _budget_row(course, name: str, widths, base: SSD, full_macs: int) -> dict:
    table, count = latency_table(course), macs(base, widths)
    return {"pruning": name, "predicted ms": table.predict(widths), "of unpruned ms": table.predict(widths)
            / table.predict(table.full_widths()), "MMACs": count / 1e6, "of unpruned MACs": count / full_macs,
            **dict(zip(layer_names("vgg16-ssd"), (int(k) for k in widths)))}


def budget_table(course, fraction: Optional[float] = None) -> pd.DataFrame:
    """Kept filters, predicted ms and MACs of the unpruned model, the paper rate and a latency budget ``fraction``."""
    p, base = course.profile, load_model(course.baseline("vgg16-ssd"))
    fraction = p.latency_budget if fraction is None else float(fraction)
    full_macs, paper = macs(base), load_model(course.prune()).plan.prunable
    rows = [_budget_row(course, "unpruned", base.plan.prunable, base, full_macs),
            _budget_row(course, f"paper rate {format_compress_rate(p.compress_rate)}", paper, base, full_macs)]
    name = f"latency budget {fraction:g}"
    try:
        chosen = budgets.widths_for_latency_budget(base, latency_table(course), Budget(fraction, True),
                                                   course.rank_dir(), min_keep=p.min_keep)
        rows.append(_budget_row(course, name, chosen.widths, base, full_macs))
    except HRankError:  # below the cheapest widths min_keep allows
        cheapest, full = budgets.latency_range(base, latency_table(course), course.rank_dir(), p.min_keep)
        rows.append({"pruning": name, "note": f"no widths keeping min_keep {p.min_keep:g} fit: the least budget "
                                              f"that can be met is about {cheapest / full:.2f}"})
    return pd.DataFrame(rows)


def latency_models(course) -> pd.DataFrame:
    """Both latency-pruned VGG16-SSDs beside the unpruned and paper-rate models: ``results/latency_models.csv``."""
    base = load_model(course.baseline("vgg16-ssd"))
    full_macs = macs(base)
    rate = f"compress rate {format_compress_rate(course.profile.compress_rate)}"
    rows = [dict(_budget_row(course, "vgg16-ssd", base.plan.prunable, base, full_macs), **{"chosen by": "-"}),
            dict(_budget_row(course, "vgg16-ssd-pruned", load_model(course.prune()).plan.prunable, base,
                             full_macs), **{"chosen by": rate})]
    for key in (PAPER_MACS, SMALL):
        path = latency_pruned(course, key)
        budget = read_sidecar(path).get("budget") or {}
        rows.append(dict(_budget_row(course, key, load_model(path).plan.prunable, base, full_macs),
                         **{"chosen by": f"{budget.get('kind')} knapsack", "budget": budget.get("budget"),
                            "budget unit": budget.get("unit"), "note": budget.get("note") or ""}))
    return course.save_csv("latency_models.csv", pd.DataFrame(rows))
