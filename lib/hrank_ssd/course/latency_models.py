"""The latency-pruned VGG16-SSDs (the fastest widths within the paper rate's MACs; widths under ``latency_budget``)
and the latency table they are chosen on: this machine's, or once chosen the one their sidecars name."""

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
    """The table that chose the latency-pruned widths, else this machine's; its file ``course.table_file``."""
    if course.table is None:
        chosen = chosen_table_path(course)
        course.table = _chosen_table(chosen) if chosen else None
        course.table_file = chosen if course.table is not None else latency_table_path(course)
        if course.table is None:
            course.table = _own_table(course, course.table_file)
        course.table.save(course.result("latency_table.json"))
    return course.table


def _chosen_table(path: Path) -> Optional[LatencyTable]:
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
    return table


def _own_table(course, path: Path) -> LatencyTable:
    if path.is_file():
        try:
            return LatencyTable.load(path)
        except HRankError as e:  # another machine's, or damaged: this machine measures its own
            print(f"measuring the latency table again: {e}", file=sys.stderr)
    p = course.profile
    with course.timed("latency table"):
        table = measure_latency_table("vgg16-ssd", device=course.device, width=p.vgg_width, image_size=p.image_size,
                                      grid=p.latency_grid, runs=p.latency_runs, warmup=p.latency_warmup,
                                      num_classes=len(course.class_names()), progress=course.progress)
    table.save(path)
    return table


def min_keep(course, key: str) -> float:
    """The least fraction of every layer's filters the latency-pruned model ``key`` keeps."""
    return course.profile.paper_macs_min_keep if key == PAPER_MACS else course.profile.min_keep


def latency_widths(course, key: str, base: SSD) -> Tuple[budgets.BudgetWidths, str]:
    """The kept counts of a latency-pruned model of ``base`` and a note naming the fallback needed (empty: none)."""
    if key not in (PAPER_MACS, SMALL):
        raise HRankError(f"{key} is not a latency-pruned model: use {PAPER_MACS} or {SMALL}")
    p, table, ranks, keep = course.profile, latency_table(course), course.rank_dir(), min_keep(course, key)
    if key == PAPER_MACS:
        mac_budget = Budget(macs(load_model(course.prune())), False)  # the paper rate's MACs
        try:
            return budgets.fastest_widths_at_mac_cap(base, table, mac_budget.value, ranks, min_keep=keep,
                                                     keep=p.paper_macs_keep), ""
        except HRankError as e:
            note = (f"fallback: {e}; chose the widths of largest HRank importance within the paper rate's MACs "
                    f"instead (MAC knapsack). {REMEASURE}")
    else:
        cheapest, full = budgets.latency_range(base, table, ranks, keep)
        budget, note, mac_budget = p.latency_budget * full, "", Budget(p.latency_budget, True)
        if budget < cheapest + 0.05 * (full - cheapest):
            budget = cheapest + 0.1 * (full - cheapest)
            note = (f"latency_budget {p.latency_budget:g} of the unpruned {full:.4g} ms is below the cheapest widths "
                    f"min_keep {keep:g} allows ({cheapest:.4g} ms): budget {budget:.4g} ms instead, a tenth "
                    "of the way from those to the unpruned forward")
        try:
            return budgets.widths_for_latency_budget(base, table, Budget(budget, False), ranks, min_keep=keep), note
        except HRankError as e:
            note = (f"fallback: {e}; chose the widths of largest HRank importance within {p.latency_budget:g} of "
                    f"the unpruned MACs instead (MAC knapsack). {REMEASURE}")
    print(note, file=sys.stderr)
    return budgets.widths_for_mac_budget(base, mac_budget, ranks, min_keep=keep), note


def latency_pruned(course, key: str) -> Path:
    """A latency-pruned VGG16-SSD before finetuning (``models/<key>-init.pth``, the budget in its sidecar)."""
    out = course.path(f"{key}-init")
    if not out.is_file():
        base = load_model(course.baseline("vgg16-ssd"))
        chosen, note = latency_widths(course, key, base)
        budgets.prune_to_budget(base, chosen, course.rank_dir(), out, min_keep(course, key),
                                latency_table=course.table_file.name, note=note)
    return out


def _rows(course, base: SSD, models: dict) -> list:
    """One row per ``name: kept counts``: predicted ms and MACs, also as fractions of the unpruned model's."""
    table, full_macs = latency_table(course), macs(base)
    full_ms, rows = table.predict(table.full_widths()), []
    for name, kept in models.items():
        count = macs(base, kept)
        rows.append({"pruning": name, "predicted ms": table.predict(kept),
                     "of unpruned ms": table.predict(kept) / full_ms, "MMACs": count / 1e6,
                     "of unpruned MACs": count / full_macs,
                     **dict(zip(layer_names("vgg16-ssd"), (int(k) for k in kept)))})
    return rows


def budget_table(course, fraction: float) -> pd.DataFrame:
    """Kept filters, predicted ms and MACs of the unpruned model, the paper rate and a latency budget ``fraction``."""
    p, base = course.profile, load_model(course.baseline("vgg16-ssd"))
    name, too_small = f"latency budget {fraction:g}", []
    models = {"unpruned": base.plan.prunable,
              f"paper rate {format_compress_rate(p.compress_rate)}": load_model(course.prune()).plan.prunable}
    try:
        models[name] = budgets.widths_for_latency_budget(base, latency_table(course), Budget(fraction, True),
                                                         course.rank_dir(), min_keep=p.min_keep).widths
    except HRankError:  # below the cheapest widths min_keep allows
        cheapest, full = budgets.latency_range(base, latency_table(course), course.rank_dir(), p.min_keep)
        too_small = [{"pruning": name, "note": f"no widths keeping min_keep {p.min_keep:g} fit: the least budget "
                                               f"that can be met is about {cheapest / full:.2f}"}]
    return pd.DataFrame(_rows(course, base, models) + too_small)


def latency_models(course) -> pd.DataFrame:
    """Both latency-pruned VGG16-SSDs beside the unpruned and paper-rate models: ``results/latency_models.csv``."""
    base = load_model(course.baseline("vgg16-ssd"))
    models = {"vgg16-ssd": base.plan.prunable, "vgg16-ssd-pruned": load_model(course.prune()).plan.prunable}
    rate = format_compress_rate(course.profile.compress_rate)
    chosen_by = [{"chosen by": "-"}, {"chosen by": f"compress rate {rate}"}]
    for key in (PAPER_MACS, SMALL):
        path = latency_pruned(course, key)
        budget = read_sidecar(path).get("budget") or {}
        models[key] = load_model(path).plan.prunable
        chosen_by.append({"chosen by": f"{budget.get('kind')} knapsack", "budget": budget.get("budget"),
                          "budget unit": budget.get("unit"), "note": budget.get("note") or ""})
    rows = [dict(row, **by) for row, by in zip(_rows(course, base, models), chosen_by)]
    return course.save_csv("latency_models.csv", pd.DataFrame(rows))
