"""Sentences on a run's surprising numbers, written from its results files."""

from __future__ import annotations

import math
from typing import Dict, List, Optional

import pandas as pd

from hrank_ssd.course import forgetting, report_tables
from hrank_ssd.course.models import BY_KEY, ONE_BUDGET, PAPER
from hrank_ssd.course.report_tables import PUBLISHED_PREDICT_MS, rows_by_model, short_finetune, title
from hrank_ssd.nets.registry import get_net

# Each case is decided on the figure as the sentence prints it, so a shown 0.0500 drop is never "over 0.05".
NO_FASTER = 1.05  # a pruned model under this speed-up over its parent is "no faster"
LARGE_DROP = 0.05  # an mAP drop over this, against the parent, is large
OFF_BY = 10  # a prediction or a second timing more than this many percent from the measured one is worth a word


def _percent_off(ratio: float) -> int:
    return round(abs(ratio - 1) * 100)


def no_faster(key: str, parent: str, row: pd.Series, up: pd.Series) -> Optional[str]:
    speed, fewer = up["forward_median_ms"] / row["forward_median_ms"], up["GMACs"] / row["GMACs"]
    if round(speed, 2) >= NO_FASTER:
        return None
    text = (f"{title(key)} has {fewer:.2f}x fewer MACs than {title(parent)} but runs at {speed:.2f}x "
            "its speed here. Time does not fall with MACs: a CPU kernel computes channels in blocks of 16, so a "
            "layer that keeps 57 of 64 filters (VGG16's first convs at the paper rate) costs about what 64 do, and "
            "what pruning does not shrink (memory traffic, the unpruned heads, each layer's fixed cost) weighs "
            "more the narrower the network.")
    if key == PAPER:
        text += (f" The original project's own T4 timing shows the same: {PUBLISHED_PREDICT_MS[PAPER]:.1f} ms per "
                 f"image pruned against {PUBLISHED_PREDICT_MS[parent]:.1f} ms unpruned.")
    return text


def above_parent(key: str, parent: str, mine: float, theirs: float, synthetic: bool) -> Optional[str]:
    if round(mine, 4) <= round(theirs, 4):
        return None
    why = ("on the offline data a difference this small can change sign with the data seed "
           "(benchmarks/offline_seeds.md)" if synthetic else
           "pruning and finetuning can act as a regulariser; compare the published figures before trusting it")
    return f"{title(key)} scores {mine:.4f}, above {title(parent)} ({theirs:.4f}): {why}."


def large_drop(key: str, parent: str, mine: float, theirs: float, row: pd.Series, up: pd.Series,
               paper: Optional[pd.Series] = None) -> Optional[str]:
    if round(theirs - mine, 4) <= LARGE_DROP:
        return None
    why = f"it keeps {row['params'] / up['params']:.0%} of the parameters"
    epochs, fair = float(row.get("finetune_epochs", math.nan)), float(row.get("fair_epochs", math.nan))
    than, each = short_finetune(epochs, fair), "epoch" if epochs == 1 else "epochs"  # as the tables' notes decide
    if than is not None and math.isfinite(fair):
        why += (f" and was finetuned {epochs:g} {each}, where the paper-rate model had {than:g}: not a fair "
                "comparison, a shorter finetune")
    elif than is not None:
        why += (f" and was finetuned {epochs:g} {each}, where the original project finetuned its pruned VGG16-SSD "
                f"{than:g}: a short stand-in for such a finetune, not its result")
    first = float(row.get("first_stages_kept", math.nan))
    same_net = paper is not None and key != PAPER and parent == BY_KEY[PAPER].net
    paper_first = float(paper.get("first_stages_kept", math.nan)) if same_net else math.nan
    if round(first, 2) < round(paper_first, 2):  # False where either is NaN
        stages = " and ".join(stage for stage, _ in get_net(parent).stages[:2])
        why += (f"; it keeps {first:.0%} of the filters of {stages}, where the paper rate keeps {paper_first:.0%}: "
                "these layers see the image at its largest, so they hold much of the time (a latency budget cuts "
                "them first) and every later layer builds on what they find")
    return f"{title(key)} loses {theirs - mine:.4f} mAP against {title(parent)} ({mine:.4f} vs {theirs:.4f}): {why}."


def prediction(frontier: Dict[str, pd.Series]) -> Optional[str]:
    """The latency table's prediction against the forward measured by the frontier, where they differ."""
    off = {k: r["predicted_ms"] / r["forward_median_ms"] for k, r in frontier.items()
           if "predicted_ms" in r and math.isfinite(float(r["predicted_ms"]))}
    if not off or all(_percent_off(v) <= OFF_BY for v in off.values()):
        return None
    key = max(off, key=lambda k: abs(off[k] - 1))
    r = frontier[key]
    return (f"The latency table predicted {r['predicted_ms']:.2f} ms for {title(key)}, measured "
            f"{r['forward_median_ms']:.2f} ms ({off[key]:.2f}x): the table and the frontier timed the models at "
            "different moments, and a machine's speed moves between two moments. The budgets are shares of the "
            "unpruned model's predicted time, so the widths they choose hold while the absolute times do not.")


def full_size(frontier: Dict[str, pd.Series], bench: Dict[str, pd.Series]) -> Optional[str]:
    """The paper-rate model's speed-up at full size (``bench``) against the course's width (the frontier)."""
    if not all(k in d for d in (frontier, bench) for k in (PAPER, "vgg16-ssd")):
        return None
    big = bench["vgg16-ssd"]["forward_median_ms"] / bench[PAPER]["forward_median_ms"]
    small = frontier["vgg16-ssd"]["forward_median_ms"] / frontier[PAPER]["forward_median_ms"]
    if _percent_off(big / small) <= OFF_BY:
        return None
    return (f"At full size (300x300, 21 classes: the benchmark) the paper-rate model runs {big:.2f}x faster than "
            f"VGG16-SSD; at the course's width (the frontier) {small:.2f}x. The narrower the layers, the more of "
            "the time goes to what pruning does not remove.")


def one_budget(maps: Dict[str, pd.Series], frontier: Dict[str, pd.Series], synthetic: bool) -> Optional[str]:
    """The two models pruned within one MAC budget (:data:`models.ONE_BUDGET`), finetuned alike, within the margin."""
    a, b = ONE_BUDGET
    if not (a in maps and b in maps) or maps[a].get("finetune_epochs") != maps[b].get("finetune_epochs"):
        return None
    ma, mb = float(maps[a]["mAP"]), float(maps[b]["mAP"])
    if round(abs(ma - mb), 4) > LARGE_DROP:
        return None
    why = ("over data seeds of the offline task the two swap places (benchmarks/offline_seeds.md), so which one is "
           "ahead names the seed, not the method" if synthetic else
           "one run cannot rank two methods on a gap this size; repeat it with other seeds before trusting it")
    text = (f"{title(a)} and {title(b)} were pruned within one MAC budget (the paper rate's MACs) and finetuned "
            f"alike, and score {ma:.4f} and {mb:.4f}, {abs(ma - mb):.4f} apart: within the {LARGE_DROP} the course "
            f"takes as a clear difference; {why}.")
    if a in frontier and b in frontier:
        ra, rb = frontier[a], frontier[b]
        text += (f" What the latency-pruned model is built to win is time: {rb['forward_median_ms']:.2f} ms against "
                 f"{ra['forward_median_ms']:.2f} ms here, at {rb['GMACs']:.3f} GMACs against {ra['GMACs']:.3f} (the "
                 "fastest widths its knapsack found within the budget).")
    return text


def weaker_net(maps: Dict[str, pd.Series], frontier: Dict[str, pd.Series], res: Dict[str, object]) -> Optional[str]:
    """MobileNetV1-SSD much further below VGG16-SSD than in the published figures: its size and its training."""
    small, big, published = "mb1-ssd", "vgg16-ssd", report_tables.PUBLISHED_MAP
    if not (small in maps and big in maps):
        return None
    mine, theirs = float(maps[small]["mAP"]), float(maps[big]["mAP"])
    gap = published[big] - published[small]
    if round(theirs - mine, 4) <= round(gap + LARGE_DROP, 4):
        return None
    text = (f"{title(small)} scores {mine:.4f}, {theirs - mine:.4f} below {title(big)} ({theirs:.4f}), where the "
            f"published VOC figures are {published[small]:.4f} and {published[big]:.4f} ({gap:.4f} apart).")
    if small in frontier and big in frontier:
        width = (res.get("settings.json") or {}).get("mb1_width")
        text += (f" Here it does {frontier[big]['GMACs'] / frontier[small]['GMACs']:.1f}x fewer MACs than "
                 f"{title(big)}" + (f" (width {width:g})." if width else "."))
    logs = res.get("logs") or {}
    log, parent_log = logs.get(small), logs.get(big)
    seen = [round(float(m), 3) for m in log["mAP"].dropna()] if log is not None and "mAP" in log else []
    if len(seen) < 2:
        return text
    epochs = f" It was trained from scratch for {len(log)} epochs" + (
        f" ({title(big)}: {len(parent_log)})" if parent_log is not None else "")
    shown = ", ".join(f"{m:.3f}" for m in seen)
    if seen[-1] > seen[-2]:
        return text + (f"{epochs}, and its mAP was still rising at its last validation ({shown}): the course's "
                       "time budget stops it far from converged, so its mAP says how far it got, not what the "
                       "architecture can do.")
    return text + (f"{epochs}, and its mAP had stopped rising ({shown}): at this width it holds less of the "
                   f"task than {title(big)}.")


def explanations(res: Dict[str, object]) -> List[str]:
    """Every sentence that applies to the run whose results files ``res`` holds (``results.load_results``)."""
    frontier, bench, maps = (rows_by_model(res.get(name)) for name in ("frontier.csv", "bench.csv", "map.csv"))
    synthetic = bool((res.get("settings.json") or {}).get("synthetic"))
    out, measured = [], {**maps, **frontier}  # notebook 04 has the mAPs, the frontier comes in 08
    for key in [k for k in measured if k in BY_KEY and forgetting.parent(k) in measured]:  # pruned, parent measured
        parent = forgetting.parent(key)
        if key in frontier and parent in frontier:
            out.append(no_faster(key, parent, frontier[key], frontier[parent]))
        if key in maps and parent in maps:
            mine, theirs = float(maps[key]["mAP"]), float(maps[parent]["mAP"])
            row, up = (frontier.get(k, maps[k]) for k in (key, parent))
            out.append(above_parent(key, parent, mine, theirs, synthetic))
            out.append(large_drop(key, parent, mine, theirs, row, up, frontier.get(PAPER)))
    out += [one_budget(maps, frontier, synthetic), weaker_net(maps, frontier, res), prediction(frontier),
            full_size(frontier, bench)]
    return [s for s in out if s]
