"""The course report: every results file of a run turned into tables, plots, report.md and report.html.

``write_report(run_dir)`` reads ``run_dir/results/`` (written by :class:`hrank_ssd.course.steps.Course`):
``map.csv``, ``per_class_ap.csv``, ``bench.csv``, ``flops.csv``, ``sensitivity.csv``, ``criteria.csv``,
``log_<model>.csv``, ``timings.json``, ``settings.json``, ``video.json``. Every number printed is read or
computed from those files; the only typed numbers are the original project's published figures, quoted
in :data:`PUBLISHED_MAP` (and :data:`hrank_ssd.measure.flops.PUBLISHED`) and always labelled as theirs.
A missing file does not stop the report: its section says which step or command writes it.

``update_readme(readme, run_dir)`` replaces the block between ``<!-- results:start -->`` and
``<!-- results:end -->`` with :func:`readme_results_block` and leaves the rest of the file untouched.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from hrank_ssd.course.steps import MODEL_KEYS, MODEL_TITLES
from hrank_ssd.errors import HRankError
from hrank_ssd.nets.compress import PRUNED_RATE

# Labels used by flops.flops_table's default rows -> model keys.
FLOPS_LABELS = {"VGG16-SSD": "vgg16-ssd", "VGG16-SSD pruned": "vgg16-ssd-pruned", "MobileNetV1-SSD": "mb1-ssd"}

# The original HRank-SSD project's published mAP on VOC2007 test (quoted, never computed here).
PUBLISHED_MAP = {"vgg16-ssd": 0.7731, "vgg16-ssd-pruned": 0.6953, "mb1-ssd": 0.6759}
PUBLISHED_LABEL = "published by the original HRank-SSD project (theirs, VOC2007 test)"

README_START = "<!-- results:start -->"
README_END = "<!-- results:end -->"

# results file -> (Course step, notebook, `course --no_notebooks --steps` name) that writes it
PRODUCERS = {
    "map.csv": ("Course.evaluate()", "04_eval_map_fps.ipynb", "evaluate"),
    "per_class_ap.csv": ("Course.evaluate()", "04_eval_map_fps.ipynb", "evaluate"),
    "bench.csv": ("Course.bench()", "04_eval_map_fps.ipynb", "bench"),
    "flops.csv": ("Course.flops()", "05_flops_table.ipynb", "flops"),
    "sensitivity.csv": ("Course.sensitivity()", "02_hrank_pruning.ipynb", "sensitivity"),
    "criteria.csv": ("Course.criteria()", "02_hrank_pruning.ipynb", "criteria"),
    "distillation.csv": ("Course.distillation()", "03_finetune.ipynb", "distillation"),
    "log_*.csv": ("Course.baseline() / Course.finetuned()", "00_setup.ipynb and 03_finetune.ipynb", "train"),
    "timings.json": ("any Course step", "any notebook", "all"),
    "video.json": ("the video demo", "06_video_demo.ipynb", "video"),
    "machine.json": ("Course.bench()", "04_eval_map_fps.ipynb", "bench"),
}


# ---------------------------------------------------------------- formatting


def markdown_table(df: pd.DataFrame, floatfmt: str = ".4f", formats: Optional[Dict[str, str]] = None) -> str:
    """A GitHub-flavoured markdown table (the benchmarks' formatter, with the report's 4-digit default)."""
    from hrank_ssd.measure.bench import markdown_table as table

    return table(df, floatfmt, formats=formats)


def missing_note(name: str) -> str:
    """One line naming what writes a missing results file."""
    step, notebook, steps = PRODUCERS.get(name, ("a Course step", "the course notebooks", "all"))
    return (f"_Not available: `results/{name}` is missing. It is written by `{step}` (notebook `{notebook}`), "
            f"or run `python -m hrank_ssd course --no_notebooks --steps {steps}` "
            f"(whole course: `python -m hrank_ssd course --profile offline --runs runs`)._")


# ---------------------------------------------------------------- loading


def read_csv(results: Path, name: str) -> Optional[pd.DataFrame]:
    """``results/name`` as a frame, None when absent, a one-line error when unreadable."""
    path = results / name
    if not path.is_file():
        return None
    try:
        df = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as e:
        raise HRankError(f"{path} is not a readable CSV ({str(e).splitlines()[0]}): re-run the step that "
                         f"writes it or delete the file") from None
    return df


def read_json(results: Path, name: str):
    """``results/name`` parsed, None when absent, a one-line error when unreadable."""
    path = results / name
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise HRankError(f"{path} is not valid JSON ({e}): re-run the step that writes it or delete it") from None


def load_results(run_dir) -> Dict[str, object]:
    """Every known results file of ``run_dir/results`` (absent ones are None; logs as {model: frame})."""
    run_dir = Path(run_dir)
    results = run_dir / "results"
    if not run_dir.is_dir():
        raise HRankError(f"run folder {run_dir} not found: pass a runs/<timestamp> folder made by "
                         f"`python -m hrank_ssd course`")
    out: Dict[str, object] = {name: read_csv(results, name) for name in
                              ("map.csv", "per_class_ap.csv", "bench.csv", "flops.csv", "sensitivity.csv",
                               "criteria.csv", "distillation.csv", "bench_trained.csv")}
    for name in ("timings.json", "settings.json", "video.json", "machine.json", "substitutes.json"):
        out[name] = read_json(results, name)
    logs = {p.stem[len("log_"):]: p for p in results.glob("log_*.csv")}
    order = [k for k in MODEL_KEYS if k in logs] + sorted(k for k in logs if k not in MODEL_KEYS)
    out["logs"] = {k: read_csv(results, logs[k].name) for k in order}
    return out


def _title(key: str) -> str:
    return MODEL_TITLES.get(key, key)


def _flops_by_key(flops: Optional[pd.DataFrame]) -> Dict[str, dict]:
    if flops is None:
        return {}
    out = {}
    for row in flops.to_dict("records"):
        key = FLOPS_LABELS.get(str(row.get("model")))
        if key is None:  # a custom row: pruned when its rate is not all zero
            pruned = any(float(x) > 0 for x in re.findall(r"[\d.]+", str(row.get("compress_rate", ""))))
            key = f"{row.get('net')}-pruned" if pruned else str(row.get("net"))
        out.setdefault(key, row)
    return out


def machine_line(machine: Optional[dict]) -> str:
    """Where the latencies were measured (they move with the machine), from ``results/machine.json``."""
    if not machine:
        return "Latencies: the machine was not recorded (`results/machine.json` is written by `Course.bench()`)."
    return (f"Latencies measured on {machine.get('device_name', '?')} (device `{machine.get('device', '?')}`, CPU "
            f"{machine.get('cpu', '?')}, {machine.get('threads', '?')} threads), torch {machine.get('torch', '?')}, "
            f"{machine.get('date', '?')}.")


def comparison_table(res: Dict[str, object]) -> pd.DataFrame:
    """One row per model: our mAP, their published mAP, predict time, FPS, params and MACs (from the files)."""
    mp, bench, flops = res.get("map.csv"), res.get("bench.csv"), _flops_by_key(res.get("flops.csv"))
    keys = list(MODEL_KEYS)
    for frame in (mp, bench):
        if frame is not None and "model" in frame:
            keys += [k for k in frame["model"] if k not in keys]
    rows = []
    for key in keys:
        row = {"model": _title(key)}
        present = False
        if mp is not None and key in set(mp["model"]):
            m = mp[mp["model"] == key].iloc[0]
            row["mAP (ours)"] = float(m["mAP"])
            if "avg_predict_s" in m and pd.notna(m["avg_predict_s"]):
                row["eval predict ms/img"] = 1000.0 * float(m["avg_predict_s"])
            if "params" in m and pd.notna(m["params"]):
                row["params (trained)"] = int(m["params"])
            present = True
        if key in PUBLISHED_MAP:
            row["mAP (theirs, published)"] = PUBLISHED_MAP[key]
        if bench is not None and key in set(bench["model"]):
            b = bench[bench["model"] == key].iloc[0]
            if "forward_median_ms" in b:
                row["bench forward ms"] = float(b["forward_median_ms"])
                row["forward FPS"] = 1000.0 / float(b["forward_median_ms"])
            if "predict_median_ms" in b:
                row["bench predict ms"] = float(b["predict_median_ms"])
                row["predict FPS"] = 1000.0 / float(b["predict_median_ms"])
            present = True
        if key in flops:
            row["params (full size)"] = int(flops[key]["params"])
            row["GMACs (full size)"] = float(flops[key]["MACs"]) / 1e9
            present = True
        if present:
            rows.append(row)
    df = pd.DataFrame(rows)
    order = ["model", "mAP (ours)", "mAP (theirs, published)", "eval predict ms/img", "bench forward ms",
             "forward FPS", "bench predict ms", "predict FPS", "params (trained)", "params (full size)",
             "GMACs (full size)"]
    return df[[c for c in order if c in df.columns]] if len(df) else df


COMP_FORMATS = {"mAP (ours)": ".4f", "mAP (theirs, published)": ".4f", "GMACs (full size)": ".3f",
                "eval predict ms/img": ".1f", "bench predict ms": ".1f", "bench forward ms": ".1f",
                "predict FPS": ".2f", "forward FPS": ".2f"}


def per_class_pivot(per_class: pd.DataFrame) -> pd.DataFrame:
    """class x model AP table (models in course order), with the mean (mAP) as the last row."""
    models = [k for k in MODEL_KEYS if k in set(per_class["model"])]
    models += [k for k in dict.fromkeys(per_class["model"]) if k not in models]
    piv = per_class.pivot_table(index="class", columns="model", values="ap", sort=False)[models]
    piv = piv.rename(columns=_title)
    mean = piv.mean(numeric_only=True).to_frame().T
    mean.index = ["mAP (mean)"]
    out = pd.concat([piv, mean])
    out.index.name = "class"
    return out.reset_index()


# ---------------------------------------------------------------- plots


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    from hrank_ssd.io.files import atomic_savefig

    return atomic_savefig(fig, path, dpi=100)


def plot_per_class(per_class: pd.DataFrame, path=None):
    """Grouped bars: AP per class, one bar per model. Returns the figure; saves it when ``path``."""
    plt = _plt()
    piv = per_class_pivot(per_class)
    piv = piv[piv["class"] != "mAP (mean)"]
    models = [c for c in piv.columns if c != "class"]
    x = np.arange(len(piv))
    width = 0.8 / max(1, len(models))
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(piv) + 2), 3.8))
    for k, m in enumerate(models):
        ax.bar(x + (k - (len(models) - 1) / 2) * width, piv[m], width, label=m)
    ax.set_xticks(x, piv["class"], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("AP (VOC07 11-point)")
    ax.set_ylim(0, 1)
    ax.set_title("Per-class AP")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    if path:
        _save(fig, Path(path))
    return fig


def plot_map_vs(comp: pd.DataFrame, x_col: str, x_label: str, path=None):
    """mAP against a cost column: our models as filled dots, the published mAP (theirs) as hollow ones."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for _, r in comp.iterrows():
        if pd.isna(r.get(x_col)):
            continue
        if pd.notna(r.get("mAP (ours)")):
            ax.scatter(r[x_col], r["mAP (ours)"], s=40)
            ax.annotate(r["model"], (r[x_col], r["mAP (ours)"]), fontsize=8, xytext=(4, 4),
                        textcoords="offset points")
        if pd.notna(r.get("mAP (theirs, published)")):
            ax.scatter(r[x_col], r["mAP (theirs, published)"], s=40, facecolors="none", edgecolors="grey")
    ax.scatter([], [], s=40, color="C0", label="ours (this run)")
    ax.scatter([], [], s=40, facecolors="none", edgecolors="grey", label="theirs (published, VOC2007 test)")
    ax.set_xlabel(x_label)
    ax.set_ylabel("mAP")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    if path:
        _save(fig, Path(path))
    return fig


# ---------------------------------------------------------------- report


def _section_files(res, names: Sequence[str]) -> Optional[str]:
    missing = [n for n in names if res.get(n) is None]
    return "\n\n".join(missing_note(n) for n in missing) if missing else None


def _figure(lines: List[str], made: List[Path], run_dir: Path, path: Path, alt: str,
            caption: Optional[str] = None) -> None:
    """Record a saved plot and link it: a blank line (or a bold caption), then the image."""
    made.append(path)
    lines += ["", f"**{caption}**", ""] if caption else [""]
    lines.append(f"![{alt}]({path.relative_to(run_dir).as_posix()})")


def build_report(run_dir) -> Tuple[str, List[Path]]:
    """The report's markdown text and the PNG plots it links (written under ``run_dir/plots``)."""
    from hrank_ssd.measure.flops import MAC_NOTE

    run_dir = Path(run_dir)
    res = load_results(run_dir)
    plots = run_dir / "plots"
    made: List[Path] = []
    L: List[str] = []
    settings = res.get("settings.json") or {}
    L.append("# HRank-SSD course report")
    L.append("")
    L.append(f"Run folder: `{run_dir.name}`" + (f", profile **{settings['name']}**" if settings.get("name") else "")
             + ". Every number below is read from `results/` of this run, except the figures marked "
               "*theirs*, which are quoted from the original HRank-SSD project (VOC2007 test).")
    if settings.get("synthetic"):
        L.append("")
        L.append("> This run used the synthetic offline dataset and small models trained here "
                 f"(VGG width {settings.get('vgg_width')}, MobileNetV1 width {settings.get('mb1_width')}): "
                 "our mAP is measured on synthetic shapes and is **not comparable** to the published VOC numbers. "
                 "Params, MACs and the benchmark are for the full-size detectors (300x300, 21 classes).")
    if settings.get("name") == "full-rehearsal":
        L += ["", "> A rehearsal of the full profile (`python -m hrank_ssd rehearse`): the downloads came from a local "
                  "stand-in with seeded random weights and a few VOC images, so its mAP measures nothing; it proves "
                  "the path. Latencies, params and MACs are real."]
    for key, why in (res.get("substitutes.json") or {}).items():  # a published model that could not be had
        L += ["", f"> **{_title(key)}: not the published model.** {why}. Retry later (Drive's quota resets "
                  "within 24 hours), or download it by hand: `python -m hrank_ssd download --list`."]

    # 1. comparison
    L += ["", "## 1. VGG16-SSD vs HRank-pruned VGG16-SSD vs MobileNetV1-SSD", ""]
    comp = comparison_table(res)
    note = _section_files(res, ("map.csv", "bench.csv", "flops.csv"))
    if len(comp):
        L.append(markdown_table(comp, formats=COMP_FORMATS))
        L.append("")
        L.append("*mAP (ours)*: this run's test set; *mAP (theirs, published)*: "
                 f"{PUBLISHED_LABEL}, pruned with `{PRUNED_RATE}`. *eval predict ms/img*: average "
                 "predict time (resize, forward, decode, NMS) of the trained model during evaluation; *bench*: median "
                 "latency of the full-size detectors, batch 1 (`results/bench.csv`): *forward* is the network "
                 "alone, *predict* adds pre- and post-processing (with random weights NMS sees its worst case, "
                 "so compare models by *forward*). *params (trained)*: the model evaluated in this run; "
                 "*full size*: the detector at 300x300 with 21 classes (`results/flops.csv`).")
        L.append("")
        L.append(machine_line(res.get("machine.json")))
    if note:
        L += ["", note]
    if len(comp) and "mAP (ours)" in comp:
        if "GMACs (full size)" in comp:
            plot_map_vs(comp, "GMACs (full size)", "GMACs (full-size detector, 300x300)", plots / "map_vs_macs.png")
            _figure(L, made, run_dir, plots / "map_vs_macs.png", "mAP vs MACs")
        lat = "bench forward ms" if "bench forward ms" in comp else (
            "eval predict ms/img" if "eval predict ms/img" in comp else None)
        if lat:
            plot_map_vs(comp, lat, f"{lat} (lower is faster)", plots / "map_vs_latency.png")
            _figure(L, made, run_dir, plots / "map_vs_latency.png", "mAP vs latency")

    # 2. per-class AP
    L += ["", "## 2. Per-class AP", ""]
    pc = res.get("per_class_ap.csv")
    if pc is None:
        L.append(missing_note("per_class_ap.csv"))
    else:
        L.append(markdown_table(per_class_pivot(pc)))
        plot_per_class(pc, plots / "per_class_ap.png")
        _figure(L, made, run_dir, plots / "per_class_ap.png", "per-class AP")
        cols = [c for c in ("class", "gts", "dets", "recall", "precision", "ap") if c in pc]
        for key in dict.fromkeys(pc["model"]):
            L += ["", f"### {_title(key)}: ground truths, detections, recall, precision", ""]
            L.append(markdown_table(pc[pc["model"] == key][cols]))

    # 3. speed
    L += ["", "## 3. Latency and FPS", ""]
    bench = res.get("bench.csv")
    if bench is None:
        L.append(missing_note("bench.csv"))
    else:
        show = bench.assign(model=bench["model"].map(_title))
        L.append(markdown_table(show, formats={"GMACs": ".3f", "forward_speedup": ".2f", "mac_ratio": ".2f"},
                                floatfmt=".1f"))
        if "forward_speedup" in bench and "mac_ratio" in bench and len(bench) > 1:
            L.append("")
            for _, r in bench.iloc[1:].iterrows():
                L.append(f"- {_title(r['model'])}: {r['mac_ratio']:.2f}x fewer MACs than {_title(bench['model'].iloc[0])}, "
                         f"but a {r['forward_speedup']:.2f}x faster forward pass.")
            L.append("")
            L.append("Latency falls less than MACs: memory traffic, per-layer overheads, the un-pruned parts "
                     "(extras, heads) and post-processing (decode + NMS) do not shrink with the pruned filters, "
                     "and depthwise convolutions do few MACs per byte moved.")
    bt = res.get("bench_trained.csv")
    if bt is not None:
        L += ["", "Trained models (as evaluated in this run):", ""]
        L.append(markdown_table(bt.assign(model=bt["model"].map(_title)), floatfmt=".2f"))

    # 4. params and MACs
    L += ["", "## 4. Parameters and MACs (exact count beside the original's seed-style count)", ""]
    fl = res.get("flops.csv")
    if fl is None:
        L.append(missing_note("flops.csv"))
    else:
        exact_cols = [c for c in ("model", "compress_rate", "params", "MACs", "GMACs", "params_ratio", "MACs_ratio")
                      if c in fl]
        seed_cols = [c for c in ("model", "seed_params", "seed_flops") if c in fl]
        L += ["### Exact (whole detector, 300x300, 21 classes)", "", markdown_table(
            fl[exact_cols], formats={"GMACs": ".3f", "params_ratio": ".3f", "MACs_ratio": ".3f"}), ""]
        L.append(MAC_NOTE)
        if len(seed_cols) > 1:
            seed = fl[seed_cols].copy()
            pubs = [_published_flops(r.get("net"), r.get("compress_rate")) for _, r in fl.iterrows()]
            seed["theirs: params (published)"] = [p["params"] if p else float("nan") for p in pubs]
            seed["theirs: flops (published)"] = [p["flops"] if p else float("nan") for p in pubs]
            L += ["", "### Seed style (the original project's counting rules, reproduced) beside their published "
                      "figures", "", markdown_table(seed, floatfmt=".0f"), ""]
            L.append("The seed count only counts the 14 pruned convs (VGG), sizes fc6 without dilation, removes "
                     "pruned filters twice, and for MobileNetV1 counts the ImageNet classifier at 256x256: "
                     "`hrank_ssd.measure.flops.seed_explanation` (notebook `05_flops_table.ipynb`) lists every difference "
                     "with its numbers.")

    # 5. sensitivity
    L += ["", "## 5. Per-layer sensitivity (prune one layer, no finetuning)", ""]
    sens = res.get("sensitivity.csv")
    if sens is None:
        L.append(missing_note("sensitivity.csv"))
    else:
        from hrank_ssd.measure.sensitivity import plot_sensitivity

        piv = sens.pivot_table(index="rate", columns="name", values="map", sort=False).reset_index()
        L.append(markdown_table(piv, formats={"rate": ".1f"}))
        _figure(L, made, run_dir, _save(plot_sensitivity(sens), plots / "sensitivity.png"), "sensitivity")

    # 6. criteria
    L += ["", "## 6. Pruning criteria at the same compress rate", ""]
    crit = res.get("criteria.csv")
    if crit is None:
        L.append(missing_note("criteria.csv"))
    else:
        from hrank_ssd.measure.sensitivity import plot_criteria

        L.append(markdown_table(crit))
        base = None
        mp = res.get("map.csv")
        if mp is not None and "vgg16-ssd" in set(mp["model"]):
            base = float(mp[mp["model"] == "vgg16-ssd"]["mAP"].iloc[0])
        _figure(L, made, run_dir, _save(plot_criteria(crit, baseline=base), plots / "criteria.png"), "criteria")

    L += ["", "### Finetuning with and without distillation from the unpruned model (same budget)", ""]
    kd = res.get("distillation.csv")
    L.append(missing_note("distillation.csv") if kd is None else markdown_table(kd))

    # 7. training
    L += ["", "## 7. Training and finetuning curves", ""]
    logs = res.get("logs") or {}
    if not logs:
        L.append(missing_note("log_*.csv"))
    else:
        from hrank_ssd.train.training import plot_curves

        rows = []
        for key, log in logs.items():
            last = log.iloc[-1]
            row = {"model": _title(key), "epochs": len(log)}
            for c in ("train_loss", "val_loss", "mAP"):
                if c in log:
                    row[f"last {c}"] = float(last[c]) if pd.notna(last[c]) else float("nan")
            if "time_s" in log:
                row["time s"] = float(log["time_s"].sum())
            rows.append(row)
        L.append(markdown_table(pd.DataFrame(rows), formats={"time s": ".1f"}))
        for key in logs:
            _figure(L, made, run_dir, plot_curves(run_dir / "results" / f"log_{key}.csv", plots / f"loss_{key}.png"),
                    f"loss curves {key}", caption=_title(key))

    # 8. video
    video = res.get("video.json")
    if video:
        L += ["", "## 8. Video demo", ""]
        L.append(markdown_table(pd.DataFrame([{k: v for k, v in video.items() if not isinstance(v, (list, dict))}]),
                                floatfmt=".2f"))

    # 9. timings
    L += ["", "## Step timings (this machine)", ""]
    times = res.get("timings.json")
    if not times:
        L.append(missing_note("timings.json"))
    else:
        L.append(markdown_table(pd.DataFrame([{"step": k, "seconds": float(v)} for k, v in times.items()]),
                                floatfmt=".1f"))
    if settings:
        L += ["", "## Settings", "", markdown_table(pd.DataFrame(
            [{"setting": k, "value": json.dumps(v) if isinstance(v, (list, dict)) else str(v)}
             for k, v in settings.items()]))]
    return "\n".join(L) + "\n", made


def _published_flops(net, compress_rate) -> Optional[Dict[str, float]]:
    from hrank_ssd.measure.flops import published_for
    from hrank_ssd.nets.compress import parse_compress_rate
    from hrank_ssd.nets.models import NUM_PRUNABLE

    if net not in NUM_PRUNABLE:
        return None
    try:
        return published_for(net, parse_compress_rate(str(compress_rate), NUM_PRUNABLE[net]))
    except HRankError:
        return None


HTML_HEAD = ("<!doctype html><html><head><meta charset='utf-8'><title>HRank-SSD course report</title>"
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}td,th{border:1px solid #ccc;"
             "padding:3px 8px}th{background:#f3f3f3}img{max-width:100%}code{background:#f6f6f6}"
             "blockquote{border-left:4px solid #e0a000;margin:1em 0;padding:0.2em 1em;background:#fff8e6}"
             "</style></head><body>\n")


def write_report(run_dir) -> Tuple[Path, Path]:
    """Write ``run_dir/report.md`` and ``run_dir/report.html`` (+ ``run_dir/plots/*.png``); return both paths."""
    try:
        import markdown
    except ImportError:
        raise HRankError('the HTML report needs markdown: pip install -e ".[colab]"') from None

    from hrank_ssd.nets.models import atomic_write_text

    run_dir = Path(run_dir)
    text, _ = build_report(run_dir)
    md_path, html_path = run_dir / "report.md", run_dir / "report.html"
    atomic_write_text(md_path, text)
    body = markdown.markdown(text, extensions=["tables", "fenced_code"])
    atomic_write_text(html_path, HTML_HEAD + body + "\n</body></html>\n")
    return md_path, html_path


# ---------------------------------------------------------------- README block


def readme_results_block(run_dir) -> str:
    """A short markdown summary of a run for the README (between the results markers)."""
    run_dir = Path(run_dir)
    res = load_results(run_dir)
    settings = res.get("settings.json") or {}
    comp = comparison_table(res)
    lines = [f"Results of `python -m hrank_ssd course` (run `{run_dir.name}`"
             + (f", profile `{settings['name']}`" if settings.get("name") else "") + "), generated by "
             "`hrank_ssd.course.report.update_readme`; the full report is `report.md` in the run folder.", ""]
    if len(comp):
        keep = [c for c in ("model", "mAP (ours)", "mAP (theirs, published)", "eval predict ms/img",
                            "bench forward ms", "forward FPS", "params (full size)", "GMACs (full size)")
                if c in comp]
        lines.append(markdown_table(comp[keep], formats=COMP_FORMATS))
        lines.append("")
        lines.append(f"*theirs*: {PUBLISHED_LABEL}.")
        if settings.get("synthetic"):
            lines.append("*ours*: synthetic offline data and small models (not comparable with VOC); "
                         "params, MACs and latency are for the full-size detectors.")
    else:
        lines.append(missing_note("map.csv"))
    timings = res.get("timings.json") or {}
    mp = res.get("map.csv")
    if "train vgg16-ssd" in timings and mp is not None and "vgg16-ssd" in set(mp["model"]):
        vgg = float(mp[mp["model"] == "vgg16-ssd"]["mAP"].iloc[0])
        lines += ["", f"The baseline VGG16-SSD (width {settings.get('vgg_width', '?')}) trained in "
                      f"{timings['train vgg16-ssd']:.0f} s on this machine and reaches mAP {vgg:.4f}."]
    for name, title in (("criteria.csv", "Criteria at the same compress rate"),
                        ("distillation.csv", "Finetuning with and without distillation")):
        table = res.get(name)
        if table is not None:
            lines += ["", f"{title}:", "", markdown_table(table)]
    if "course, all steps" in timings:
        lines += ["", f"The whole course run took {timings['course, all steps'] / 60:.1f} min on this machine."]
    return "\n".join(lines)


def replace_marked_block(path, start_marker: str, end_marker: str, block: str) -> Path:
    """Replace the text between ``start_marker`` and ``end_marker`` of the file ``path`` with ``block`` (atomic);
    the markers stay. A missing file or marker is a one-line error."""
    from hrank_ssd.nets.models import atomic_write_text

    path = Path(path)
    if not path.is_file():
        raise HRankError(f"{path} not found: pass the README.md that holds the {start_marker} markers")
    text = path.read_text(encoding="utf-8")
    start, end = text.find(start_marker), text.find(end_marker)
    if start < 0 or end < 0 or end < start:
        raise HRankError(f"{path} has no '{start_marker}' ... '{end_marker}' block: add both markers "
                         f"where the generated text should go")
    atomic_write_text(path, text[:start + len(start_marker)] + "\n" + block.strip("\n") + "\n" + text[end:])
    return path


def update_readme(readme_path, run_dir) -> Path:
    """Replace the text between the results markers of ``readme_path`` with :func:`readme_results_block`."""
    return replace_marked_block(readme_path, README_START, README_END, readme_results_block(run_dir))


__all__ = ["PUBLISHED_MAP", "build_report", "comparison_table", "load_results", "markdown_table", "missing_note",
           "per_class_pivot", "plot_map_vs", "plot_per_class", "readme_results_block", "replace_marked_block",
           "update_readme",
           "write_report"]
