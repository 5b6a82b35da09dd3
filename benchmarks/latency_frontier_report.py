"""The report of ``latency_frontier.py``: the targets from its rows, the plot, the markdown page."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from hrank_ssd.latency.table import LatencyTable, capability
from hrank_ssd.measure.bench import cpu_flags
from hrank_ssd.measure.tables import markdown_table

NET = "vgg16-ssd"
EAGER_TARGET, FAST_TARGET, ERROR_TARGET = 1.8, 1.94, 10.0  # the speed-ups (x) and prediction error (%) required
MATCHED = "latency at paper MACs"
COURSE_MATCHED, COURSE_PAPER, MAP_TARGET = "vgg16-ssd-lat-paper-macs", "vgg16-ssd-pruned", 0.01  # course model keys


def table_path(out: Path, kind: str = "table") -> Path:
    return out.with_name(f"{out.stem}_{kind}.json")


def met(ok) -> str:
    return "not measured" if ok is None else "met" if ok else "not met"


def targets(rows: pd.DataFrame, opts: pd.DataFrame, course_results=None) -> pd.DataFrame:
    out = [{"target": f"(a), (b) `{MATCHED}`", "measured": "-", "required": "-", "result": met(None)}]
    if len(opts):
        eager = float(opts.set_index("option").loc["plain eager", "speedup"])
        fast = opts.loc[opts["pruned_ms"].idxmin()]
        out = [{"target": f"(a) `{MATCHED}` vs unpruned, plain eager", "measured": f"{eager:.2f}x",
                "required": f">= {EAGER_TARGET:.2f}x", "result": met(eager >= EAGER_TARGET)},
               {"target": f"(b) the same pair, fastest option here ({fast['option']})",
                "measured": f"{fast['speedup']:.2f}x", "required": f">= {FAST_TARGET:.2f}x",
                "result": met(fast["speedup"] >= FAST_TARGET)}]
    out += error_targets(rows)
    out.append({"target": "(c') noise floor: the same model timed in two passes", "measured":
                f"max {rows['repeat_%'].abs().max():.1f}% apart", "required": "-", "result": "for reading (c)"})
    out.append(map_target(course_results))
    return pd.DataFrame(out)


def error_targets(rows: pd.DataFrame) -> list:
    """(c) from the check table (models timed among its own models) when there is one; (c-later): the first table
    against the separate passes minutes after it (what drift between measuring and using a table costs)."""
    n, checked = len(rows), "check_error_%" in rows

    def target(col, name, required):
        worst = rows.loc[rows[col].abs().idxmax()]
        return {"target": name, "measured": f"max {abs(worst[col]):.1f}% ({worst['model']})",
                "required": f"<= {ERROR_TARGET:g}%" if required else "-",
                "result": met(bool((rows[col].abs() <= ERROR_TARGET).all())) if required else "drift, for reading"}

    later = target("error_%", f"(c-later) |prediction error|, the first table against the {n} models timed in "
                              "separate passes after it" if checked else
                   f"(c) |prediction error|, all {n} models, timed after the table (--no_check_table)", not checked)
    if not checked:
        return [later]
    return [target("check_error_%", f"(c) |prediction error|, all {n} models, each timed among the check table's "
                                    "own models", True), later]


def map_target(course_results) -> dict:
    """Target (d) from a course run's ``map.csv``: the latency-pruned model at the paper rate's MACs against the
    paper rate, both finetuned alike by the course."""
    row = {"target": f"(d) mAP, `{COURSE_MATCHED}` minus `{COURSE_PAPER}` (course, same finetune)",
           "required": f">= -{MAP_TARGET:g}"}
    path = Path(course_results or "") / "map.csv"
    if not course_results or not path.is_file():
        return {**row, "measured": "-", "result": "not measured: pass --course_results of a finished course run"}
    maps = pd.read_csv(path).set_index("model")["mAP"]
    if COURSE_MATCHED not in maps or COURSE_PAPER not in maps:
        return {**row, "measured": "-", "result": f"not measured: {path} lacks the two models"}
    diff = float(maps[COURSE_MATCHED] - maps[COURSE_PAPER])
    return {**row, "measured": f"{diff:+.4f} ({maps[COURSE_MATCHED]:.4f} vs {maps[COURSE_PAPER]:.4f})",
            "result": met(diff >= -MAP_TARGET)}


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
    fig.savefig(path, dpi=100)
    plt.close(fig)


def table_lines(table: LatencyTable, what: str, note: str) -> list:
    """What a table is and how fast the machine ran while it was measured (its drift reference)."""
    cells = sum(len(u.ms) * len(u.ms[0]) for u in table.units)
    lines = [f"- {what}: {note}; {len(table.units)} units, {cells} cells, timed inside {table.models} whole models "
             f"({table.warmup} warm-up and {table.runs} timed forwards each, in {table.rounds} rounds), block "
             f"{table.block}; full_ms {table.full_ms:.2f}, rest_ms {table.rest_ms:.2f}"]
    d = table.drift
    if d:
        lines.append(f"- {what}: the full model, timed in each of {d['chunks']} chunks, ran at {d['p10']:.2f}-"
                     f"{d['p90']:.2f}x its median time in 80% of them ({d['min']:.2f}-{d['max']:.2f}x in all); each "
                     "cell is divided by its chunk's factor")
    return lines


def report(args, env, table, table_note, rows, opts, notes, tg, seconds, command, checked=None) -> str:
    flags = cpu_flags()
    simd = ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in ("avx2", "avx512f"))
    ranks = f"from `{args.rank_dir}`" if args.rank_dir else f"random HRank-like (seed {args.seed})"
    lines = ["# Prune for the clock: VGG16-SSD's latency frontier", "",
             "Generated by `benchmarks/latency_frontier.py`; do not edit. Every number below is computed by the run.",
             "", f"- date: {env['date']}", f"- machine: {env['cpu']}, {env['cpu_count']} cores ({simd}; torch "
             f"capability {capability('cpu')}), no GPU used", f"- torch {env['torch']}, python {env['python']}, "
             f"{table.threads} threads, layout {table.layout}", f"- command: `{command}`",
             f"- models: {NET} width {table.width:g}, {table.num_classes} classes, {table.image_size}px, batch "
             f"{table.batch_size}, random weights; ranks {ranks}; --min_keep {args.min_keep:g}, --keep {args.keep:g}",
             *table_lines(table, "latency table", table_note)]
    if checked is not None:
        lines += table_lines(checked, "check table", f"measured after the models were chosen, each of the "
                             f"{len(checked.checks)} models below timed among its own models "
                             f"({checked.checks[0]['forwards']} forwards each), saved as "
                             f"`{table_path(args.out, 'check_table').name}`")
    lines += [f"- this run took {sum(seconds.values()) / 60:.1f} min ("
              + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + ")", "", "## Targets", "",
              markdown_table(tg), "",
              f"(a) and (b) time `{MATCHED}` and the unpruned model interleaved ({args.model_runs} runs after "
              f"{args.model_warmup} warm-up); the fastest option is the one with the fastest pruned model. (d) needs "
              "finetuning: the course does it on its offline data and this benchmark reads its `map.csv`.", "",
              "## The validation set", "",
              f"All {len(rows)} models timed interleaved in two passes ({args.model_runs} runs after "
              f"{args.model_warmup} warm-up, medians): measured_ms is their median, repeat_% = (second - first) / "
              "first, error = (predicted - measured) / measured; speed-up and MAC ratio against `unpruned`. check_*: "
              "the check table's prediction and the model's median forward among that table's own models: target "
              f"(c). `{MATCHED}`: within the paper rate's exact MACs, the fastest widths keeping --keep of the most "
              "HRank importance those MACs allow (`latency.budgets.fastest_widths_at_mac_cap`).", "",
              markdown_table(rows, formats={"GMACs": ".3f", "error_%": "+.1f", "repeat_%": "+.1f",
                                            "check_error_%": "+.1f", "predicted_speedup": ".2f"}), "",
              f"![MACs vs measured latency]({args.out.with_suffix('.png').name})", ""]
    if len(opts):
        lines += [f"## Inference options: `{MATCHED}` vs unpruned", "", markdown_table(opts), ""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)
