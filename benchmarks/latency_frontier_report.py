"""The report of ``latency_frontier.py``: the issue's targets from its rows, the plot, the markdown page.

A module of its own so the benchmark stays readable; ``latency_frontier`` imports it (``benchmarks/`` is on
``sys.path`` when a script there runs, and ``tests/conftest.load_benchmark`` puts it there).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pandas as pd

from hrank_ssd.measure.bench import cpu_flags
from hrank_ssd.measure.latency_table import LatencyTable, capability
from hrank_ssd.measure.off_grid import off_block_costs
from hrank_ssd.measure.tables import markdown_table

NET = "vgg16-ssd"
EAGER_TARGET, FAST_TARGET, ERROR_TARGET = 1.8, 1.94, 10.0  # the speed-ups (x) and prediction error (%)
MATCHED = "latency at seed MACs"
COURSE_MATCHED, COURSE_SEED, MAP_TARGET = "vgg16-ssd-lat-seedmacs", "vgg16-ssd-pruned", 0.01  # course model keys


def table_path(out: Path, kind: str = "table") -> Path:
    return out.with_name(f"{out.stem}_{kind}.json")


def worst_check_units(checked: Optional[LatencyTable], top: int = 5) -> tuple:
    """(name, rows): the check model predicted worst, and its units whose median segment (among the check
    table's models) lies furthest from the unit's prediction: where the table misses that model."""
    checks = [c for c in (checked.checks if checked is not None else []) if c.get("unit_ms")]
    if not checks:
        return None, pd.DataFrame()
    worst = max(checks, key=lambda c: abs(c["predicted_ms"] / c["measured_ms"] - 1))
    rows = pd.DataFrame({"unit": list(worst["unit_ms"]), "predicted_ms": list(worst["predicted_unit_ms"].values()),
                         "measured_ms": list(worst["unit_ms"].values())})
    rows["difference_ms"] = rows["predicted_ms"] - rows["measured_ms"]
    return worst["name"], rows.reindex(rows["difference_ms"].abs().sort_values(ascending=False).index).head(top)


def targets(rows: pd.DataFrame, opts: pd.DataFrame, course_results=None) -> pd.DataFrame:
    def met(ok):
        return "not measured" if ok is None else "met" if ok else "not met"

    out = [{"target": f"(a), (b) `{MATCHED}`", "measured": "-", "required": "-", "result": met(None)}]
    if len(opts):
        eager = float(opts.set_index("option").loc["plain eager", "speedup"])
        fast = opts.loc[opts["pruned_ms"].idxmin()]
        out = [{"target": f"(a) `{MATCHED}` vs unpruned, plain eager", "measured": f"{eager:.2f}x",
                "required": f">= {EAGER_TARGET:.2f}x", "result": met(eager >= EAGER_TARGET)},
               {"target": f"(b) the same pair, fastest option here ({fast['option']})",
                "measured": f"{fast['speedup']:.2f}x", "required": f">= {FAST_TARGET:.2f}x",
                "result": met(fast["speedup"] >= FAST_TARGET)}]
    out += error_targets(rows, met)
    out.append({"target": "(c') noise floor: the same model timed in two passes", "measured":
                f"max {rows['repeat_%'].abs().max():.1f}% apart", "required": "-", "result": "for reading (c)"})
    ratio = rows.assign(err=100 * (rows["predicted_speedup"] / rows["speedup"] - 1))
    worst = ratio.loc[ratio["err"].abs().idxmax()]
    out.append({"target": "(c'') the same, predicted speed-up (table.full_ms / predicted) vs measured speed-up",
                "measured": f"max {abs(worst['err']):.1f}% ({worst['model']})", "required": "-",
                "result": "what a budget (a fraction of full_ms) relies on"})
    out.append(map_target(course_results))
    return pd.DataFrame(out)


def error_targets(rows: pd.DataFrame, met) -> list:
    """(c) from the check table (models timed among its own models) when there is one, and (c-later): the first
    table against the separate passes minutes after it (what drift between measuring and using a table costs)."""
    n, checked = len(rows), "check_error_%" in rows

    def target(col, name, required, reading="drift, for reading"):
        worst = rows.loc[rows[col].abs().idxmax()]
        return {"target": name, "measured": f"max {abs(worst[col]):.1f}% ({worst['model']})",
                "required": f"<= {ERROR_TARGET:g}%" if required else "-",
                "result": met(bool((rows[col].abs() <= ERROR_TARGET).all())) if required else reading}

    later = target("error_%", f"(c-later) |prediction error|, the first table against the {n} models timed in "
                              "separate passes after it" if checked else
                   f"(c) |prediction error|, all {n} models, timed after the table (--no_check_table)", not checked)
    if not checked:
        return [later]
    steady = [target("check_steady_error_%", "(c-steady) the same, each check forward divided by its moment's "
                                             "drift factor", False, "the machine held still, for reading")
              ] if "check_steady_error_%" in rows else []
    return [target("check_error_%", f"(c) |prediction error|, all {n} models, each timed among the check "
                                    "table's own models", True)] + steady + [later]


def map_target(course_results) -> dict:
    """Target (d) from a course run's ``map.csv``: the latency-pruned model at the seed's MACs against the seed
    rate, both finetuned alike by the course (offline data)."""
    row = {"target": f"(d) mAP, `{COURSE_MATCHED}` minus `{COURSE_SEED}` (course, same finetune)",
           "required": f">= -{MAP_TARGET:g}"}
    path = Path(course_results or "") / "map.csv"
    if not course_results or not path.is_file():
        return {**row, "measured": "-", "result": "not measured: pass --course_results of a finished course run"}
    maps = pd.read_csv(path).set_index("model")["mAP"]
    if COURSE_MATCHED not in maps or COURSE_SEED not in maps:
        return {**row, "measured": "-", "result": f"not measured: {path} lacks the two models"}
    diff = float(maps[COURSE_MATCHED] - maps[COURSE_SEED])
    return {**row, "measured": f"{diff:+.4f} ({maps[COURSE_MATCHED]:.4f} vs {maps[COURSE_SEED]:.4f})",
            "result": "met" if diff >= -MAP_TARGET else "not met"}


def plot(rows: pd.DataFrame, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6))
    for kind, group in rows.groupby("kind", sort=False):
        ax.scatter(group["GMACs"], group["measured_ms"], label=kind, zorder=3)
    ax.scatter(rows["GMACs"], rows["predicted_ms"], facecolors="none", edgecolors="grey", label="predicted (table)")
    for i, r in enumerate(rows.itertuples()):  # labels alternate above and below their point
        ax.annotate(r.model, (r.GMACs, r.measured_ms), fontsize=7, xytext=(4, 3 if i % 2 else -9),
                    textcoords="offset points")
    ax.set(xlabel="GMACs (exact)", ylabel="forward ms (median, interleaved)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def drift_line(table: Optional[LatencyTable], what: str) -> Optional[str]:
    """How fast the machine ran while ``table`` was measured, by its drift reference (None: no table, no line)."""
    d = table.drift if table is not None else None
    if not d:
        return f"- {what}: measured without a drift reference" if table is not None else None
    return (f"- {what}: the drift reference ({d['reference']}, {d['forwards']} forwards in {d['chunks']} chunks) "
            f"ran at {d['p10']:.2f}-{d['p90']:.2f}x its median time in 80% of the chunks ({d['min']:.2f}-"
            f"{d['max']:.2f}x in all); each cell is divided by its chunk's factor")


def report(args, env, table, table_note, rows, opts, notes, tg, seconds, command, checked=None) -> str:
    flags = cpu_flags()
    simd = ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in ("avx2", "avx512f"))
    cells = sum(len(u.ms) * len(u.ms[0]) for u in table.units)
    evidence = off_block_costs(table)
    lines = ["# Prune for the clock: VGG16-SSD's latency frontier", "",
             "Generated by `benchmarks/latency_frontier.py`; do not edit. Every number below is computed by the run.", "",
             f"- date: {env['date']}", f"- machine: {env['cpu']}, {env['cpu_count']} cores ({simd}; torch capability "
             f"{capability('cpu')}), no GPU used", f"- torch {env['torch']}, python {env['python']}, "
             f"{table.threads} threads, layout {table.layout}", f"- command: `{command}`",
             f"- models: {NET} width {table.width:g}, {table.num_classes} classes, {table.image_size}x{table.image_size}, "
             f"batch {table.batch_size}, random weights; ranks "
             + (f"from `{args.rank_dir}`" if args.rank_dir else f"random HRank-like (seed {args.seed})")
             + f"; --min_keep {args.min_keep:g}, --keep {args.keep:g}",
             f"- latency table: {table_note}; {len(table.units)} units, {cells} cells, timed inside {table.models} "
             f"whole models ({table.warmup} warm-up and {table.runs} timed forwards each, in {table.rounds} rounds), "
             f"block {table.block}; "
             f"full_ms {table.full_ms:.2f}, rest_ms {table.rest_ms:.2f}", drift_line(table, "latency table"),
             f"- off-grid counts priced by the `{table.off_grid_rule()}` rule (`LatencyTable.off_grid_rule`); this "
             "table's cells (`off_block_costs`): " + (
                 f"a filter count off the block costs {evidence['rounded_up_%']:+.1f}% against its count rounded up "
                 f"to the block (median of {evidence['cells']} cells); linear interpolation between the block "
                 f"neighbours would be {evidence['linear_%']:+.1f}% off"
                 if evidence["cells"] else "no off-block cell has both block neighbours on this grid"),
             (f"- check table: measured by this run after the models were chosen, like the first, in "
              f"{checked.measure_s:.0f} s, with each of the {len(checked.checks)} models below timed among its own "
              f"({checked.models} models in all, shuffled; {checked.checks[0]['forwards']} forwards per model), "
              f"saved as `{table_path(args.out, 'check_table').name}`" if checked is not None else
              "- check table: none (--no_check_table)"), drift_line(checked, "check table"),
             f"- this run took {sum(seconds.values()) / 60:.1f} min ("
             + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + ")", "",
             "## Targets", "", markdown_table(tg), "",
             f"(a) and (b) time only `{MATCHED}` and the unpruned model, interleaved ({args.model_runs} runs after "
             f"{args.model_warmup} warm-up); the fastest option is the one with the fastest pruned model (int8 is "
             "not tried: it computes other numbers). The mAP target (d) needs finetuning: the course does it on its offline "
             "data (at the course's width and on the course's machine) and this benchmark reads its `map.csv`.", "",
             "## The validation set", "",
             f"All {len(rows)} models timed interleaved, {args.model_runs} runs after {args.model_warmup} warm-up, "
             "medians, in two passes: measured_ms is their mean, repeat_% = (second - first) / first; "
             "error = (predicted - measured) / measured; speed-up and MAC ratio against `unpruned`. check_*: the "
             "check table's prediction, the model's median forward among that table's own models (the same minutes "
             "of machine load as its cells) and the error between them: target (c); check_steady_error_%: the "
             "same prediction against that model's forwards each divided by its moment's drift factor (what (c) "
             "would read on a machine whose speed held still). "
             f"`{MATCHED}`: within the seed rate's exact MACs, the fastest widths that keep --keep of the most HRank "
             "importance those MACs allow (`measure.budgets.fastest_widths_at_mac_cap`). Without --min_keep a "
             "budget may cut an expensive early layer to a few filters.", "",
             markdown_table(rows,
                            formats={"GMACs": ".3f", "error_%": "+.1f", "repeat_%": "+.1f", "check_error_%": "+.1f",
                                     "predicted_speedup": ".2f"}), "",
             f"![MACs vs measured latency]({args.out.with_suffix('.png').name})", ""]
    worst, units = worst_check_units(checked)
    if worst is not None:
        lines += [f"## Where the check table misses `{worst}` the most", "",
                  "Its units' median segments among the check table's models against each unit's prediction, "
                  f"the {len(units)} furthest apart (the rest of the forward, before the first unit, is not a "
                  "unit).", "", markdown_table(units), ""]
    if len(opts):
        lines += [f"## Inference options: `{MATCHED}` vs unpruned", "", markdown_table(opts), ""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(line for line in lines if line is not None)
