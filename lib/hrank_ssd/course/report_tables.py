"""The report's tables, from a run's results files; the original project's published figures labelled as theirs."""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import pandas as pd

from hrank_ssd.course.models import BY_KEY, MODEL_KEYS, MODEL_TITLES, rate_name
from hrank_ssd.course.published import published_ap, published_finetune, published_map, published_predict_ms
from hrank_ssd.measure.evaluation import mean_ap
from hrank_ssd.measure.published_flops import DEFAULT_ROWS, published_for
from hrank_ssd.nets.compress import layer_rates, parse_compress_rate
from hrank_ssd.nets.registry import num_prunable

# flops.csv's rows (flops_table's default rows) -> model keys
FLOPS_LABELS = {label: net + ("-pruned" if rate else "") for label, net, rate in DEFAULT_ROWS}

PUBLISHED_MAP = published_map()
PUBLISHED_PREDICT_MS = published_predict_ms()
PUBLISHED_LABEL = "published by the original HRank-SSD project (theirs, VOC2007 test)"
SHORT_FINETUNE = 0.25  # a finetune under this share of the published epochs is marked as a short stand-in

COMP_COLUMNS = ["model", "mAP (ours)", "mAP (theirs, published)", "eval predict ms/img", "predict ms (theirs, T4)",
                "bench forward ms", "forward FPS", "bench predict ms", "predict FPS", "params (trained)",
                "params (full size)", "GMACs (full size)"]
# the report's floats are .4f unless these say otherwise
COMP_FORMATS = {"GMACs (full size)": ".3f", "predict FPS": ".2f", "forward FPS": ".2f", **dict.fromkeys(
    ("eval predict ms/img", "predict ms (theirs, T4)", "bench predict ms", "bench forward ms"), ".1f")}
FRONTIER_FORMATS = dict.fromkeys(("forward ms", "predicted ms", "speed-up vs unpruned", "speed-up vs VGG16-SSD"), ".2f")
YOURS = "yours-"  # the student's model (notebooks 02-03) in the tables: yours-<rate_name>, e.g. yours-0.3x14


def your_key(rates: Sequence[float]) -> str:
    """The tables' key of the student's model at ``rates`` (``yours-0.3x14``)."""
    return YOURS + rate_name(rates)


def title(key: str) -> str:
    """A model key as the report shows it (the course's models by name, the student's as ``yours (<rate>)``)."""
    if key.startswith(YOURS):
        runs = [part.split("x") for part in key[len(YOURS):].split("_")]  # rate_name's parts: <rate>x<count>
        return "yours (" + "+".join(f"[{r[0]}]*{r[1]}" if len(r) == 2 else f"[{r[0]}]" for r in runs) + ")"
    return MODEL_TITLES.get(key, key)


def label(key: str) -> str:
    """A model key as the plots label it (the student's: its title)."""
    return BY_KEY[key].label if key in BY_KEY else title(key)


def flops_by_key(flops: Optional[pd.DataFrame]) -> Dict[str, dict]:
    rows = [] if flops is None else flops.to_dict("records")
    return {FLOPS_LABELS[r["model"]]: r for r in rows if r["model"] in FLOPS_LABELS}


def machine_line(machine: Optional[dict]) -> str:
    """Where the latencies were measured (they move with the machine), from ``results/machine.json``."""
    if not machine:
        return "Latencies: the machine was not recorded (`results/machine.json` is written by `Course.bench()`)."
    return ("Latencies measured on {device_name} (device `{device}`, CPU {cpu}, {threads} threads), torch {torch}, "
            "{date}.".format(**machine))


def rows_by_model(frame: Optional[pd.DataFrame]) -> Dict[str, pd.Series]:
    return {} if frame is None else {r["model"]: r for _, r in frame.iterrows()}


def _comparison_row(key: str, m: Optional[pd.Series], b: Optional[pd.Series], f: Optional[dict]) -> dict:
    row = {"model": title(key)}
    if m is not None:
        row["mAP (ours)"] = float(m["mAP"])
        if pd.notna(m.get("avg_predict_s")):
            row["eval predict ms/img"] = 1000.0 * float(m["avg_predict_s"])
        if pd.notna(m.get("params")):
            row["params (trained)"] = int(m["params"])
    if key in PUBLISHED_MAP:
        row["mAP (theirs, published)"], row["predict ms (theirs, T4)"] = PUBLISHED_MAP[key], PUBLISHED_PREDICT_MS[key]
    for kind in ("forward", "predict"):
        if b is not None and f"{kind}_median_ms" in b:
            row[f"bench {kind} ms"] = float(b[f"{kind}_median_ms"])
            row[f"{kind} FPS"] = 1000.0 / float(b[f"{kind}_median_ms"])
    if f is not None:
        row["params (full size)"], row["GMACs (full size)"] = int(f["params"]), float(f["MACs"]) / 1e9
    elif b is not None:  # yours: bench built it at full size
        row["params (full size)"], row["GMACs (full size)"] = int(b["params"]), float(b["GMACs"])
    return row


def comparison_table(res: Dict[str, object]) -> pd.DataFrame:
    """One row per full-size model the files name (and the student's): our and their mAP, times, params, MACs."""
    mp, bench = rows_by_model(res.get("map.csv")), rows_by_model(res.get("bench.csv"))
    flops = flops_by_key(res.get("flops.csv"))
    keys = [k for k in (*PUBLISHED_MAP, *(k for k in mp if str(k).startswith(YOURS)))
            if k in mp or k in bench or k in flops]
    df = pd.DataFrame([_comparison_row(k, mp.get(k), bench.get(k), flops.get(k)) for k in keys])
    return df[[c for c in COMP_COLUMNS if c in df.columns]] if len(df) else df


def pareto_mask(cost: Sequence[float], quality: Sequence[float]) -> List[bool]:
    """Which points no other point beats (costs no more, scores no less, better in one); a NaN point never."""
    points = [(float(c), float(q)) for c, q in zip(cost, quality)]
    valid = [(c, q) for c, q in points if not (math.isnan(c) or math.isnan(q))]
    return [p in valid and not any(c <= p[0] and q >= p[1] and (c, q) != p for c, q in valid) for p in points]


def frontier_table(res: Dict[str, object]) -> pd.DataFrame:
    """``map.csv``'s mAP beside ``frontier.csv``: speed-ups, Pareto flags, a plot ``label`` (empty without either)."""
    mp, fr = res.get("map.csv"), res.get("frontier.csv")
    if mp is None or fr is None:
        return pd.DataFrame()
    df = fr.merge(mp[["model", "mAP"]], on="model", how="inner")
    ms = dict(zip(df["model"], df["forward_median_ms"]))
    out = pd.DataFrame({
        "model": df["model"].map(title), "mAP": df["mAP"], "forward ms": df["forward_median_ms"],
        "predicted ms": df["predicted_ms"], "GMACs": df["GMACs"], "params": df["params"],
        "speed-up vs unpruned": [ms.get(net, math.nan) / t for net, t in zip(df["net"], df["forward_median_ms"])],
        "speed-up vs VGG16-SSD": ms.get("vgg16-ssd", math.nan) / df["forward_median_ms"],
        "finetune epochs": df["finetune_epochs"],
        "label": [label(k) for k in df["model"]]})
    out["frontier (latency)"] = pareto_mask(out["forward ms"], out["mAP"])
    out["frontier (MACs)"] = pareto_mask(out["GMACs"], out["mAP"])
    fair = df["fair_epochs"] if "fair_epochs" in df else [math.nan] * len(df)
    notes = [finetune_note(e, f) for e, f in zip(out["finetune epochs"], fair)]
    if any(notes):
        out["note"] = notes
    return out


def short_finetune(epochs, fair=math.nan) -> Optional[float]:
    """The epochs ``epochs`` falls short of: ``fair`` (offline), else :data:`SHORT_FINETUNE` of the published."""
    epochs, fair = float(epochs), float(fair)
    if not epochs > 0:  # not finetuned, or not recorded
        return None
    if math.isfinite(fair):
        return fair if epochs < fair else None
    theirs = float(published_finetune()["num_epochs"])
    return theirs if epochs < SHORT_FINETUNE * theirs else None


def finetune_note(epochs, fair=math.nan) -> str:
    """A note for a model finetuned short of :func:`short_finetune`'s yardstick (empty otherwise)."""
    than = short_finetune(epochs, fair)
    if than is None:
        return ""
    if math.isfinite(float(fair)):
        return f"finetuned {float(epochs):g} of the paper-rate model's {than:g} epochs: not a fair comparison"
    return f"short stand-in: finetuned {float(epochs):g} of the published {than:g} epochs"


def frontier_display(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`frontier_table` as the report prints it: the frontier flags as ``yes`` or blank."""
    flags = {c: table[c].map({True: "yes", False: ""}) for c in ("frontier (latency)", "frontier (MACs)")}
    return table.drop(columns=["label"]).assign(**flags)


def published_points(flops: Optional[pd.DataFrame]) -> pd.DataFrame:
    """Their published mAP against the exact GMACs of the same full-size detectors (empty without ``flops.csv``)."""
    fl = flops_by_key(flops)
    return pd.DataFrame([{"model": title(k), "mAP (theirs, published)": m, "GMACs (full size)": fl[k]["MACs"] / 1e9}
                         for k, m in PUBLISHED_MAP.items() if k in fl])


def latency_table_line(table: Optional[dict]) -> str:
    """What the latency-pruned widths were chosen on, from ``results/latency_table.json``."""
    if not table:
        return ("The latency table was not recorded (`results/latency_table.json` is written by "
                "`Course.latency_table()`).")
    machine = table.get("machine") or {}
    return (f"Chosen on this machine's latency table (`results/latency_table.json`): {table.get('net')} at width "
            f"{table.get('width')}, {table.get('image_size')}px, measured on {machine.get('device_name', '?')} "
            f"(`{table.get('device')}`, {table.get('threads')} threads, {machine.get('capability', '?')}) in "
            f"{float(table.get('measure_s') or 0):.1f} s ({table.get('runs')} timed calls per cell after "
            f"{table.get('warmup')} warm-up); its unpruned forward: {float(table.get('full_ms') or 0):.2f} ms. "
            "Every layer keeps at least `paper_macs_min_keep` (the model at the paper rate's MACs) or `min_keep` (the "
            "smaller budget) of its filters (settings).")


def machine_title(machine: Optional[dict]) -> str:
    """Where the latencies were measured, for a plot's title: the CPU (or GPU) and the thread count."""
    if not machine:
        return "machine not recorded"
    gpu = f" (GPU; CPU {machine['cpu']})" if machine["device"].startswith("cuda") else ""
    return f"{machine['device_name']}{gpu}, {machine['threads']} threads"


def per_class_pivot(per_class: pd.DataFrame) -> pd.DataFrame:
    """class x model AP table (models in course order), with the mean (mAP) as the last row."""
    models = [k for k in MODEL_KEYS if k in set(per_class["model"])]
    models += [k for k in dict.fromkeys(per_class["model"]) if k not in models]
    piv = per_class.pivot_table(index="class", columns="model", values="ap", sort=False)[models]
    return _with_mean(piv.rename(columns=title))


def per_model_summary(per_class: pd.DataFrame) -> pd.DataFrame:
    """One row per model: classes with objects, objects, detections, mean recall and precision over them, mAP."""
    rows = []
    for key, t in per_class.groupby("model", sort=False):
        scored = t[t["gts"] > 0]
        rows.append({"model": title(key), "classes": len(scored), "objects": int(t["gts"].sum()),
                     "detections": int(t["dets"].sum()), "mean recall": scored["recall"].mean(),
                     "mean precision": scored["precision"].mean(), "mAP": mean_ap(t)})
    return pd.DataFrame(rows)


def _with_mean(table: pd.DataFrame) -> pd.DataFrame:
    out = pd.concat([table, table.mean(numeric_only=True).to_frame("mAP (mean)").T])
    out.index.name = "class"
    return out.reset_index()


def published_ap_table(per_class: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """Their per-class AP per model, ours beside it where this run evaluated the same classes; the mean last."""
    theirs = published_ap()
    table = pd.DataFrame(index=theirs.index)
    ours = per_class.pivot_table(index="class", columns="model", values="ap", sort=False) \
        if per_class is not None and len(per_class) else pd.DataFrame()
    same = set(theirs.index) <= set(ours.index)
    for key in theirs.columns:
        if same and key in ours.columns:
            table[f"{title(key)} (ours)"] = ours[key].reindex(theirs.index)
        table[f"{title(key)} (theirs)"] = theirs[key]
    return _with_mean(table)


def published_table(flops: pd.DataFrame) -> pd.DataFrame:
    """``flops.csv``'s counts by the original project's rules beside their published figures (NaN: none)."""
    table = flops[["model", "published_params", "published_flops"]].copy()
    pubs = [published_for(net, layer_rates(parse_compress_rate(rate), num_prunable(net)))
            for net, rate in zip(flops["net"], flops["compress_rate"])]
    table["theirs: params (published)"] = [p["params"] if p else float("nan") for p in pubs]
    table["theirs: flops (published)"] = [p["flops"] if p else float("nan") for p in pubs]
    return table


def training_summary(logs: Dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per training log: epochs, the last epoch's losses and mAP, the total time."""
    return pd.DataFrame([{"model": title(key), "epochs": len(log),
                          **{f"last {c}": float(log[c].iloc[-1]) for c in ("train_loss", "val_loss", "mAP")
                             if c in log},
                          **({"time s": float(log["time_s"].sum())} if "time_s" in log else {})}
                         for key, log in logs.items()])


def baseline_map(mp: Optional[pd.DataFrame]) -> Optional[float]:
    """The baseline VGG16-SSD's mAP in ``map.csv`` (None when absent)."""
    row = rows_by_model(mp).get("vgg16-ssd")
    return None if row is None else float(row["mAP"])
