"""Prune for the clock: VGG16-SSD's latency table, pruned models predicted and timed, the targets.

On this CPU, random weights and ranks (or ``--table``, ``--rank_dir``): models pruned at the paper rate, uniform
rates, MAC and latency budgets and the fastest widths at the paper rate's MACs, timed interleaved against their
predictions and among a check table's own models; the paper-MACs model against the unpruned one under each inference
option. Targets: benchmarks/README.md. Writes OUT.md, .csv, .png, _table.json and _check_table.json.

    nice python benchmarks/latency_frontier.py [--threads 2] [--course_results runs/latest/results]
    python benchmarks/latency_frontier.py --smoke    # width 0.125, grid 2, one run; writes to a temp folder
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import benchkit  # beside this script
import inference_options  # beside this script
import numpy as np
import pandas as pd
import torch

from hrank_ssd.errors import HRankError
from hrank_ssd.hrank.pruning import prune_model, prune_to_widths
from hrank_ssd.hrank.ranks import save_ranks
from hrank_ssd.io.files import atomic_savefig, pyplot
from hrank_ssd.latency import budgets
from hrank_ssd.latency.knapsack import KEEP_IMPORTANCE, Budget
from hrank_ssd.latency.measure import measure_latency_table
from hrank_ssd.latency.table import LatencyTable
from hrank_ssd.measure.bench import num_threads, timings_interleaved
from hrank_ssd.measure.flops import macs
from hrank_ssd.measure.tables import markdown_table
from hrank_ssd.nets.compress import PRUNED_RATE, PRUNED_RATE_TEXT
from hrank_ssd.nets.models import build_model

HERE = Path(__file__).resolve().parent
NET, MATCHED = "vgg16-ssd", "latency at paper MACs"
UNIFORM, FRACTIONS = (0.3, 0.5, 0.7), (0.4, 0.5, 0.6)
OPTIONS = ("channels_last", "torch.compile", "onnxruntime")
SMOKE = {"width": 0.125, "grid": 2, "runs": 1, "warmup": 0, "rounds": 1, "model_runs": 1, "model_warmup": 0}
EAGER_TARGET, FAST_TARGET, ERROR_TARGET = 1.8, 1.94, 10.0  # the speed-ups (x) and prediction error (%) required
COURSE_MATCHED, COURSE_PAPER, MAP_TARGET = "vgg16-ssd-lat-paper-macs", "vgg16-ssd-pruned", 0.01  # course model keys


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = ap.add_argument
    add("--threads", type=int, default=2, help="torch threads for the tables and every timing")
    add("--grid", type=int, default=8, help="coarse counts per layer of the latency table")
    add("--runs", type=int, default=2, help="timed forwards of each model a table times, per round")
    add("--warmup", type=int, default=1, help="untimed forwards of each model a table times, per round")
    add("--rounds", type=int, default=3, help="times each table times its whole design (new order each)")
    add("--check_copies", type=int, default=6, help="places of each model in each round of the check table")
    add("--width", type=float, default=1.0, help="channel width of the measured net")
    add("--table", default=None, help="load this latency table instead of measuring one")
    add("--rank_dir", default=None, help="HRank ranks (rank_conv{i}.npy); default: random ones")
    add("--min_keep", type=float, default=0.5, help="least fraction of filters a budget keeps (the course's)")
    add("--keep", type=float, default=KEEP_IMPORTANCE, help="share of the most importance the paper MACs allow")
    add("--no_check_table", dest="check_table", action="store_false", help="target (c) from the timing passes")
    add("--model_runs", type=int, default=20, help="timed forwards per model (interleaved)")
    add("--model_warmup", type=int, default=3, help="untimed forwards per model first")
    add("--options", default=",".join(OPTIONS), help="inference options tried for target (b)")
    add("--seed", type=int, default=0, help="random weights and ranks")
    add("--course_results", default=None, help="a course run's results folder: its map.csv decides target (d)")
    add("--out", default=None, help="OUT.md (default benchmarks/latency_frontier.md; --smoke: a temp folder)")
    add("--smoke", action="store_true", help="width 0.125, grid 2, one run, no warm-up (seconds)")
    args = ap.parse_args(argv)
    if args.smoke:
        vars(args).update(SMOKE)
    args.options = [o.strip() for o in args.options.split(",") if o.strip()]
    if set(args.options) - set(OPTIONS):
        ap.error(f"--options: use some of {', '.join(OPTIONS)}")
    default = Path(tempfile.mkdtemp(prefix="latency_frontier_")) if args.smoke else HERE
    args.out = Path(args.out or default / "latency_frontier.md")
    return args


def table_path(out: Path, kind: str = "table") -> Path:
    return out.with_name(f"{out.stem}_{kind}.json")


def measure(args, threads: int, width: float, channels_last: bool = False, **checks) -> LatencyTable:
    """VGG16-SSD's table on this CPU (both tables alike; a loaded table's layout for the check table)."""
    return measure_latency_table(NET, "cpu", threads=threads, width=width, grid=args.grid, runs=args.runs,
                                 warmup=args.warmup, channels_last=channels_last, rounds=args.rounds, **checks)


def random_ranks(model, folder, seed: int) -> Path:
    """HRank-like ranks without data: per filter uniform in [0.3, 1] of its map's largest rank."""
    rng = np.random.default_rng(seed)
    save_ranks([rng.uniform(0.3, 1.0, c) * s for c, s in zip(model.plan.prunable, budgets.map_sizes(model))], folder)
    return Path(folder)


def validation_set(base, table: LatencyTable, rank_dir, min_keep: float, keep: float):
    """name -> (kind, budget, pruned model), and notes on budgets that could not be met."""
    paper, n = f"paper rate {PRUNED_RATE_TEXT}", base.plan.num_prunable
    models = {"unpruned": ("unpruned", "-", base),
              paper: ("paper rate", "rates", prune_model(base, PRUNED_RATE, "hrank", rank_dir)[0]),
              **{f"uniform {r:g}": ("uniform rate", "rates", prune_model(base, [r] * n, "hrank", rank_dir)[0])
                 for r in UNIFORM}}
    cap, notes, kw = macs(models[paper][2]), [], {"min_keep": min_keep}
    choices = [(f"MAC budget {f:g}", "MAC budget", f"{f:g} of MACs",
                lambda f=f: budgets.widths_for_mac_budget(base, Budget(f, True), rank_dir, **kw)) for f in FRACTIONS]
    choices += [(f"latency budget {f:g}", "latency budget", f"{f:g} of full_ms",
                 lambda f=f: budgets.widths_for_latency_budget(base, table, Budget(f, True), rank_dir, **kw))
                for f in FRACTIONS]
    choices += [(MATCHED, "latency, paper MACs", f"paper MACs, {keep:g} of their importance, {{:.3f}} of full_ms",
                 lambda: budgets.fastest_widths_at_mac_cap(base, table, cap, rank_dir, keep=keep, **kw))]
    for name, kind, label, choose in choices:
        try:
            chosen = choose()
            models[name] = (kind, label.format(chosen.budget / chosen.full),
                            prune_to_widths(base, chosen.widths, "hrank", rank_dir)[0])
        except HRankError as e:
            notes.append(f"{name}: not built ({e})")
    return models, notes


def time_models(models: dict, threads: int, fmt, batch: int, size: int, warmup: int, runs: int) -> dict:
    """Median forward ms of each model, all interleaved, on one random input in ``fmt``."""
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=fmt)
    with num_threads(threads), torch.inference_mode():
        fns = {name: (lambda m=m: m(x)) for name, m in models.items()}
        return {name: t["median_ms"] for name, t in timings_interleaved(fns, warmup, runs).items()}


def widths_text(widths) -> str:
    """Run-length summary of kept counts: ``57x2 115x2 230x3 ...``."""
    runs = ((k, len(list(g))) for k, g in itertools.groupby(widths))
    return " ".join(f"{k}x{n}" if n > 1 else str(k) for k, n in runs)


def frontier_rows(models: dict, table: LatencyTable, passes, base, checked) -> pd.DataFrame:
    """A row per model: widths, MACs, predicted and measured ms (two passes' median) and the check table's figures."""
    full_macs, checks = macs(base), {c["name"]: c for c in (checked.checks if checked is not None else [])}
    measured = {n: float(np.median([p[n] for p in passes])) for n in models}
    rows = []
    for name, (kind, budget, m) in models.items():
        w, ms = list(m.plan.prunable), measured[name]
        pred, count = table.predict(w), macs(base, w)
        rows.append({"model": name, "kind": kind, "budget": budget, "widths": widths_text(w), "GMACs": count / 1e9,
                     "predicted_ms": pred, "measured_ms": ms, "error_%": 100 * (pred - ms) / ms,
                     "repeat_%": 100 * (passes[1][name] - passes[0][name]) / passes[0][name],
                     "speedup": measured["unpruned"] / ms, "predicted_speedup": table.full_ms / pred,
                     "mac_ratio": full_macs / count})
        if name in checks:
            c = checks[name]
            rows[-1].update({"check_predicted_ms": c["predicted_ms"], "check_measured_ms": c["measured_ms"],
                             "check_error_%": 100 * (c["predicted_ms"] - c["measured_ms"]) / c["measured_ms"]})
    return pd.DataFrame(rows)


def timed_options(args, table, base, models, notes, tmp) -> pd.DataFrame:
    """The paper-MACs model against the unpruned one under each option, interleaved (a missing option: a note)."""
    if MATCHED not in models:
        return pd.DataFrame()
    full, pruned = (m.to(memory_format=torch.contiguous_format) for m in (base, models[MATCHED][2]))
    pairs, opt, threads, batch = {"plain eager": (full, pruned)}, inference_options, table.threads, table.batch_size
    x = torch.randn(batch, 3, full.image_size, full.image_size)
    make = {"channels_last": lambda m, i: opt.ChannelsLast(m), "torch.compile": lambda m, i: opt.compile_model(m, x),
            "onnxruntime": lambda m, i: opt.OnnxModel(opt.export_onnx(m, tmp / f"{i}.onnx", batch), m, threads)}
    with num_threads(threads):
        for o in args.options:
            try:
                pairs[o] = tuple(make[o](m, i) for i, m in enumerate((full, pruned)))
            except Exception as e:  # noqa: BLE001 - an option missing here is reported, not fatal
                notes.append(f"{o} skipped: {opt.first_line(e, 160)}")
    flat = {f"{o} | {k}": m for o, pair in pairs.items() for k, m in zip(("unpruned", "pruned"), pair)}
    benchkit.log(f"timing {len(pairs)} inference options")
    t = time_models(flat, table.threads, torch.contiguous_format, table.batch_size, table.image_size,
                    args.model_warmup, args.model_runs)
    return pd.DataFrame([{"option": o, "unpruned_ms": t[f"{o} | unpruned"], "pruned_ms": t[f"{o} | pruned"],
                          "speedup": t[f"{o} | unpruned"] / t[f"{o} | pruned"]} for o in pairs])


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
    return pd.DataFrame(out + [map_target(course_results)])


def error_targets(rows: pd.DataFrame) -> list:
    """(c) from the check table (models timed among its own models) when there is one; (c-later): the first table
    against the separate passes minutes after it (what drift between measuring and using a table costs)."""
    n, checked = len(rows), "check_error_%" in rows

    def target(col, name, required):
        worst = rows.loc[rows[col].abs().idxmax()]
        return {"target": name, "measured": f"max {abs(worst[col]):.1f}% ({worst['model']})",
                "required": f"<= {ERROR_TARGET:g}%" if required else "-",
                "result": met(bool((rows[col].abs() <= ERROR_TARGET).all())) if required else "drift, for reading"}

    if not checked:
        return [target("error_%", f"(c) |prediction error|, all {n} models, timed after the table (--no_check_table)",
                       True)]
    return [target("check_error_%", f"(c) |prediction error|, all {n} models, each timed among the check table's "
                                    "own models", True),
            target("error_%", f"(c-later) |prediction error|, the first table against the {n} models timed in "
                              "separate passes after it", False)]


def map_target(course_results) -> dict:
    """Target (d) from a course run's ``map.csv``: the latency model at the paper rate's MACs against the paper rate."""
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
    fig, ax = pyplot().subplots(figsize=(9, 6))
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
    atomic_savefig(fig, path)


def table_lines(table: LatencyTable, what: str, note: str) -> list:
    """What a table is and how fast the machine ran while it was measured (its drift reference)."""
    cells, d = sum(len(u.ms) * len(u.ms[0]) for u in table.units), table.drift
    lines = [f"- {what}: {note}; {len(table.units)} units, {cells} cells, timed inside {table.models} whole models "
             f"({table.warmup} warm-up and {table.runs} timed forwards each, in {table.rounds} rounds), block "
             f"{table.block}; full_ms {table.full_ms:.2f}, rest_ms {table.rest_ms:.2f}"]
    if d:
        lines.append(f"- {what}: the full model, timed in each of {d['chunks']} chunks, ran at {d['p10']:.2f}-"
                     f"{d['p90']:.2f}x its median time in 80% of them ({d['min']:.2f}-{d['max']:.2f}x in all); each "
                     "cell is divided by its chunk's factor")
    return lines


def report(args, table, table_note, rows, opts, notes, tg, seconds, command, checked=None) -> str:
    ranks = f"from `{args.rank_dir}`" if args.rank_dir else f"random HRank-like (seed {args.seed})"
    runs = f"{args.model_runs} runs after {args.model_warmup} warm-up"
    lines = ["# Prune for the clock: VGG16-SSD's latency frontier", "",
             "Generated by `benchmarks/latency_frontier.py`; do not edit. Every number below is computed by the run.",
             "", f"- machine: {benchkit.machine(table.threads)}, layout {table.layout}, no GPU used",
             f"- command: `{command}`",
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
              f"(a) and (b) time `{MATCHED}` and the unpruned model interleaved ({runs}); the fastest option is the "
              "one with the fastest pruned model. (d) needs finetuning: the course does it on its offline data and "
              "this benchmark reads its `map.csv`.", "", "## The validation set", "",
              f"All {len(rows)} models timed interleaved in two passes ({runs}, medians): measured_ms is their median, "
              "repeat_% = (second - first) / first, error = (predicted - measured) / measured; speed-up and MAC ratio "
              "against `unpruned`. check_*: the check table's prediction and the model's median forward among that "
              f"table's own models: target (c). `{MATCHED}`: within the paper rate's exact MACs, the fastest widths "
              "keeping --keep of the most HRank importance those MACs allow "
              "(`latency.budgets.fastest_widths_at_mac_cap`).", "",
              markdown_table(rows, formats={"GMACs": ".3f", "error_%": "+.1f", "repeat_%": "+.1f",
                                            "check_error_%": "+.1f", "predicted_speedup": ".2f"}), "",
              f"![MACs vs measured latency]({args.out.with_suffix('.png').name})", ""]
    if len(opts):
        lines += [f"## Inference options: `{MATCHED}` vs unpruned", "", markdown_table(opts), ""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


def run(args, command: str) -> str:
    seconds, start = {}, time.perf_counter()
    if args.table:
        table = LatencyTable.load(args.table, threads=args.threads)
        note = f"loaded from `{args.table}` (measured {table.date} in {table.measure_s or 0:.0f} s)"
    else:
        table = measure(args, args.threads, args.width)
        table.save(table_path(args.out))
        note = f"measured by this run in {table.measure_s:.0f} s, saved as `{table_path(args.out).name}`"
    seconds["latency table"] = time.perf_counter() - start
    fmt = torch.channels_last if table.layout == "channels_last" else torch.contiguous_format
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(args.seed)
        base = build_model(NET, table.num_classes, width=table.width, image_size=table.image_size).eval()
        rank_dir = args.rank_dir or random_ranks(base, Path(tmp) / "ranks", args.seed)
        models, notes = validation_set(base, table, rank_dir, args.min_keep, args.keep)
        benchkit.log(f"timing {len(models)} models interleaved")
        start = time.perf_counter()
        ready = {n: m.eval().to(memory_format=fmt) for n, (_, _, m) in models.items()}
        passes = [time_models(ready, table.threads, fmt, table.batch_size, table.image_size, args.model_warmup,
                              args.model_runs) for _ in range(2)]
        seconds["timing"], start, checked = time.perf_counter() - start, time.perf_counter(), None
        if args.check_table:
            benchkit.log(f"measuring a check table with the {len(models)} models among its own")
            checked = measure(args, table.threads, table.width, table.layout == "channels_last",
                              checks={n: list(m.plan.prunable) for n, (_, _, m) in models.items()},
                              check_copies=args.check_copies)
            checked.save(table_path(args.out, "check_table"))
            seconds["check table"] = time.perf_counter() - start
        rows = frontier_rows(models, table, passes, base, checked)
        start = time.perf_counter()
        opts = timed_options(args, table, base, models, notes, Path(tmp))
        seconds["options"] = time.perf_counter() - start
    rows.to_csv(args.out.with_suffix(".csv"), index=False)
    plot(rows, args.out.with_suffix(".png"), f"{NET} width {table.width:g}, {benchkit.machine(table.threads)}")
    text = report(args, table, note, rows, opts, notes, targets(rows, opts, args.course_results), seconds,
                  command, checked)
    args.out.write_text(text)
    return text


def main(argv=None) -> int:
    args = parse(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    print(run(args, benchkit.command("latency_frontier.py", argv)))
    benchkit.log(f"wrote {args.out} (.csv, .png{', _table.json' if not args.table else ''})")
    return 0


if __name__ == "__main__":
    benchkit.run(main)
