"""The sections of report.md, in order: each writes its part of a :class:`Page` from the loaded results files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional

import pandas as pd

from hrank_ssd.course import report_tables as tables
from hrank_ssd.course.explain import explanations
from hrank_ssd.course.plots import plot_frontier, plot_per_class, plot_published
from hrank_ssd.course.published import slower_pruned_line, source_line
from hrank_ssd.course.results import log_name, missing_note
from hrank_ssd.io.files import atomic_savefig
from hrank_ssd.measure.evaluation import TABLE_COLUMNS
from hrank_ssd.measure.flops import MAC_NOTE
from hrank_ssd.measure.sensitivity import plot_criteria, plot_sensitivity
from hrank_ssd.measure.tables import markdown_table
from hrank_ssd.nets.compress import PRUNED_RATE_TEXT
from hrank_ssd.train.logs import plot_curves

FLOATFMT = ".4f"  # the report's numbers: 4 digits unless a column says otherwise

Results = Dict[str, object]


class Page:
    """The report being written: its markdown lines and the PNG plots it links (under ``run_dir/plots``)."""

    def __init__(self, run_dir: Path):
        self.run_dir, self.plots = Path(run_dir), Path(run_dir) / "plots"
        self.lines: List[str] = []
        self.made: List[Path] = []

    def add(self, *lines: str) -> None:
        self.lines += lines

    def heading(self, text: str) -> None:
        self.add("", text, "")

    def table(self, df: pd.DataFrame, floatfmt: str = FLOATFMT, formats: Optional[Dict[str, str]] = None) -> None:
        self.add(markdown_table(df, floatfmt, formats=formats))

    def figure(self, fig, name: str, alt: str) -> None:
        """Save ``fig`` as ``plots/<name>`` and link it after a blank line."""
        self.link(atomic_savefig(fig, self.plots / name), alt)

    def link(self, path: Path, alt: str, caption: Optional[str] = None) -> None:
        """Record a saved plot and link it: a blank line (or a bold caption), then the image."""
        self.made.append(path)
        self.add(*(["", f"**{caption}**", ""] if caption else [""]))
        self.add(f"![{alt}]({path.relative_to(self.run_dir).as_posix()})")

    def missing(self, res: Results, *names: str) -> bool:
        """A note for each of ``names`` the run lacks (as one paragraph); whether any was missing."""
        notes = [missing_note(n) for n in names if res.get(n) is None]
        if notes:
            self.add("\n\n".join(notes))
        return bool(notes)

    def section(self, heading: str, res: Results, *names: str) -> bool:
        """A heading, then a note for each of ``names`` the run lacks; whether it has them all."""
        self.heading(heading)
        return not self.missing(res, *names)


def yours_line(info: Optional[dict]) -> str:
    """Where the student's model is in the tables, from ``results/yours.json`` (said once)."""
    if not info:
        return "Your model: not recorded (`results/yours.json` is written by `Course.evaluate()`)."
    rate = f"your rate `{info['compress_rate']}`, {info['source'].split(' (')[0]},"  # without choice.json's path
    if info.get("model"):
        return f"Yours: {rate} finetuned in notebook 03, is the row *{tables.title(info['model'])}*."
    if info.get("same_as"):
        return (f"Yours: {rate} gives the compared paper-rate model itself: its rows are "
                f"*{tables.title(info['same_as'])}* (no second row).")
    return f"Yours: {rate} is not finetuned yet (notebook 03): the tables hold the paper's rate only."


def intro(page: Page, res: Results) -> None:
    settings, mine = res.get("settings.json") or {}, res.get("yours.json") or {}
    profile = f", profile **{settings['name']}**" if settings.get("name") else ""
    page.add("# HRank-SSD course report", "", f"Run folder: `{page.run_dir.name}`{profile}. Every number below is "
             "read from `results/` of this run, except the figures marked *theirs*, which are quoted from the "
             "original HRank-SSD project (VOC2007 test).")
    if settings.get("synthetic"):
        page.add("", "> This run used the synthetic offline dataset and small models trained here "
                 f"(VGG width {settings.get('vgg_width')}, MobileNetV1 width {settings.get('mb1_width')}): "
                 "our mAP is measured on synthetic shapes and is **not comparable** to the published VOC numbers. "
                 "Section 1 times and counts those small models as evaluated; sections 2, 4 and 5 give the full-size "
                 "detectors' params, MACs and benchmark (300x300, 21 classes).")
    if settings.get("name") == "full-rehearsal":
        page.add("", "> A rehearsal of the full profile (`tools/rehearse.py`): the downloads came from a "
                 "local stand-in with seeded random weights and a few VOC images, so its mAP measures nothing; it "
                 "proves the path. Latencies, params and MACs are real.")
    if mine.get("model") or mine.get("same_as"):  # said once: the student's model has its own rows, or is the paper's
        page.add("", yours_line(mine))
    for key, why in (res.get("substitutes.json") or {}).items():  # a published model or rank folder not had
        name, what = ("VGG16-SSD HRank ranks", "ranks") if key.endswith("-ranks") else (tables.title(key), "model")
        page.add("", f"> **{name}: not the published {what}.** {why}. Retry later (Drive's quota "
                 "resets within 24 hours), or download it by hand: `python -m hrank_ssd download --list`.")


def frontier(page: Page, res: Results) -> None:
    page.heading("## 1. The compared models on this machine: mAP against measured latency and MACs")
    table = tables.frontier_table(res)
    if not len(table):
        page.missing(res, "map.csv", "frontier.csv")
        return
    page.table(tables.frontier_display(table), formats=tables.FRONTIER_FORMATS)
    machine, notes = tables.machine_title(res.get("frontier_machine.json")), explanations(res)
    page.add("", "The models this run evaluated (the six compared, and the student's own when it is another), as "
             "they are (the profile's widths and image size). *forward ms*: median forward latency, batch 1, "
             f"interleaved, measured on {machine}; *predicted ms*: this machine's latency table's, for the "
             "VGG16-SSDs. *GMACs*, *params*: exact. *speed-up vs unpruned*: against the same net unpruned. "
             "*frontier*: no other model is both cheaper and better. *note*: offline, a model finetuned fewer epochs "
             "than the paper-rate model is not a fair comparison; on VOC, one finetuned for under "
             f"{tables.SHORT_FINETUNE:.0%} of the published epochs is a short stand-in for them.")
    if notes:
        page.add("", "**What these numbers say** (written from them):", "", *[f"- {n}" for n in notes])
    page.figure(plot_frontier(table, machine), "frontier.png", "mAP vs latency and MACs")
    if not page.section("### How the latency-pruned widths were chosen", res, "latency_models.csv"):
        return
    models = res["latency_models.csv"]
    page.table(models.drop(columns=["note"], errors="ignore").assign(pruning=models["pruning"].map(tables.title)),
               floatfmt=".3f")
    page.add("", tables.latency_table_line(res.get("latency_table.json")))
    for _, row in models.iterrows():
        if isinstance(row.get("note"), str) and row["note"]:
            page.add("", f"> **{tables.title(row['pruning'])}**: {row['note']}")


def comparison(page: Page, res: Results) -> None:
    page.heading("## 2. The full-size detectors, and the published figures (theirs)")
    comp = tables.comparison_table(res)
    if len(comp):
        page.table(comp, formats=tables.COMP_FORMATS)
        page.add("", f"*mAP (ours)*: this run's test set; *mAP (theirs, published)*: {tables.PUBLISHED_LABEL}, "
                 f"pruned with `{PRUNED_RATE_TEXT}`. *eval predict ms/img*: average predict time (resize, forward, "
                 "decode, NMS) of the trained model during evaluation; *predict ms (theirs, T4)*: the same average "
                 "from their evaluation on a T4; *bench*: median latency of the full-size "
                 "detectors, batch 1 (`results/bench.csv`): *forward* is the network alone, *predict* adds pre- and "
                 "post-processing (with random weights NMS sees its worst case, so compare models by *forward*). "
                 "*params (trained)*: the model evaluated in this run; *full size*: the detector at 300x300 with 21 "
                 "classes (`results/flops.csv`).", "", tables.machine_line(res.get("machine.json")), "",
                 f"> {slower_pruned_line()}")
    if any(res.get(n) is None for n in ("map.csv", "bench.csv", "flops.csv")):
        page.add("")
        page.missing(res, "map.csv", "bench.csv", "flops.csv")
    points = tables.published_points(res.get("flops.csv"))
    if len(points):
        page.figure(plot_published(points), "published_map_vs_macs.png", "published mAP vs MACs (theirs)")
        page.add("", "Theirs alone, on their own axes: the original project's VOC2007 test mAP against the exact "
                 "MACs of the full-size detectors; our mAPs are never drawn on the same axes.")


def per_class(page: Page, res: Results) -> None:
    if not page.section("## 3. Per-class AP", res, "per_class_ap.csv"):
        return
    pc = res["per_class_ap.csv"]
    page.table(tables.per_class_pivot(pc))
    page.figure(plot_per_class(pc), "per_class_ap.png", "per-class AP")
    page.heading("### The published per-class AP (theirs)")
    page.table(tables.published_ap_table(pc))
    page.add("", f"*theirs*: quoted from {source_line()}. *ours* appears beside them when this run evaluated the "
             "same VOC classes (the full profile).")
    for key in dict.fromkeys(pc["model"]):
        page.heading(f"### {tables.title(key)}: ground truths, detections, recall, precision")
        page.table(pc[pc["model"] == key][TABLE_COLUMNS])


def speed(page: Page, res: Results) -> None:
    if not page.section("## 4. Latency and FPS of the full-size detectors", res, "bench.csv"):
        return
    bench = res["bench.csv"]
    page.table(bench.assign(model=bench["model"].map(tables.title)), floatfmt=".1f",
               formats={"GMACs": ".3f", "forward_speedup": ".2f", "mac_ratio": ".2f"})
    if len(bench) > 1:
        first = tables.title(bench["model"].iloc[0])
        page.add("", *[f"- {tables.title(r['model'])}: {r['mac_ratio']:.2f}x fewer MACs than {first}, but a "
                       f"{r['forward_speedup']:.2f}x faster forward pass." for _, r in bench.iloc[1:].iterrows()])
        page.add("", "Latency falls less than MACs: memory traffic, per-layer overheads, the un-pruned parts "
                 "(extras, heads) and post-processing (decode + NMS) do not shrink with the pruned filters, "
                 "and depthwise convolutions do few MACs per byte moved.")


def flops(page: Page, res: Results) -> None:
    if not page.section("## 5. Parameters and MACs (exact count beside the original project's own count)",
                        res, "flops.csv"):
        return
    fl = res["flops.csv"]
    page.add("### Exact (whole detector, 300x300, 21 classes)", "")
    page.table(fl[["model", "compress_rate", "params", "MACs", "GMACs", "params_ratio", "MACs_ratio"]],
               formats={"GMACs": ".3f", "params_ratio": ".3f", "MACs_ratio": ".3f"})
    page.add("", MAC_NOTE)
    page.heading("### The original project's counting rules, reproduced (`--style published`), beside their "
                 "published figures")
    page.table(tables.published_table(fl), floatfmt=".0f")
    page.add("", "Their count only counts the 14 pruned convs (VGG), sizes fc6 without dilation, removes "
             "pruned filters twice, and for MobileNetV1 counts the ImageNet classifier at 256x256: "
             "`hrank_ssd.measure.published_flops.published_explanation` (notebook `05_flops_table.ipynb`) gives "
             "the share of MACs it leaves out and the net effect, computed.")


def sensitivity(page: Page, res: Results) -> None:
    if page.section("## 6. Per-layer sensitivity (prune one layer, no finetuning)", res, "sensitivity.csv"):
        sens = res["sensitivity.csv"]
        page.table(sens.pivot_table(index="rate", columns="name", values="map", sort=False).reset_index(),
                   formats={"rate": ".1f"})
        page.figure(plot_sensitivity(sens), "sensitivity.png", "sensitivity")


def criteria(page: Page, res: Results) -> None:
    if page.section("## 7. Pruning criteria at the same compress rate", res, "criteria.csv"):
        crit = res["criteria.csv"]
        page.table(crit)
        page.figure(plot_criteria(crit, baseline=tables.baseline_map(res.get("map.csv"))), "criteria.png", "criteria")
    if page.section("### Finetuning with and without distillation from the unpruned model (same budget)", res,
                    "distillation.csv"):
        page.table(res["distillation.csv"])


def training(page: Page, res: Results) -> None:
    page.heading("## 8. Training and finetuning curves")
    if not res["logs"]:
        page.add(missing_note("log_*.csv"))
        return
    page.table(tables.training_summary(res["logs"]), formats={"time s": ".1f"})
    for key in res["logs"]:
        png = plot_curves(page.run_dir / "results" / log_name(key), page.plots / f"loss_{key}.png")
        page.link(png, f"loss curves {key}", caption=tables.title(key))


def video(page: Page, res: Results) -> None:
    info = res.get("video.json")
    if info:
        page.heading("## 9. Video demo")
        page.table(pd.DataFrame([{k: v for k, v in info.items() if not isinstance(v, (list, dict))}]), floatfmt=".2f")


def timings(page: Page, res: Results) -> None:
    times, settings = res.get("timings.json"), res.get("settings.json")
    page.heading("## Step timings (this machine)")
    if times:
        page.table(pd.DataFrame({"step": list(times), "seconds": [float(v) for v in times.values()]}), floatfmt=".1f")
    else:
        page.add(missing_note("timings.json"))
    if settings:
        page.heading("## Settings")
        page.table(pd.DataFrame({"setting": list(settings), "value": [
            json.dumps(v) if isinstance(v, (list, dict)) else str(v) for v in settings.values()]}))


SECTIONS = (intro, frontier, comparison, per_class, speed, flops, sensitivity, criteria, training, video, timings)
