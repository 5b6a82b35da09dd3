"""Prune for the clock: VGG16-SSD's latency table, pruned models predicted and timed, the targets.

One run on this CPU (random weights): a latency table (or ``--table``); pruned models from random HRank-like ranks
(or ``--rank_dir``): the paper's rate, uniform rates, MAC and latency budgets, the fastest widths at the paper rate's
MACs, the unpruned model, timed interleaved against their predictions; a check table measured with every one of
them timed among its own models; the paper-MACs model against the unpruned one under each inference option.
Targets: (a) >= 1.8x in plain eager, (b) >= 1.94x with the fastest option, (c) every check prediction within 10%,
(d) the course's mAP (``--course_results``). Writes OUT.md, OUT.csv, OUT.png, OUT_table.json, OUT_check_table.json.

    nice python benchmarks/latency_frontier.py [--threads 2] [--course_results runs/latest/results]
    python benchmarks/latency_frontier.py --smoke    # width 0.125, grid 2, one run; writes to a temp folder
"""

from __future__ import annotations

import argparse
import itertools
import shlex
import sys
import tempfile
import time
from pathlib import Path

import inference_options  # beside this script
import numpy as np
import pandas as pd
import torch
from latency_frontier_report import MATCHED, NET, plot, report, table_path, targets  # beside this script

from hrank_ssd.cli.main import guarded
from hrank_ssd.errors import HRankError
from hrank_ssd.hrank.pruning import prune_model, prune_to_widths
from hrank_ssd.hrank.ranks import save_ranks
from hrank_ssd.latency import budgets
from hrank_ssd.latency.knapsack import KEEP_IMPORTANCE, Budget
from hrank_ssd.latency.measure import measure_latency_table
from hrank_ssd.latency.table import LatencyTable
from hrank_ssd.measure.bench import environment, num_threads, timings_interleaved
from hrank_ssd.measure.flops import macs
from hrank_ssd.nets.compress import PRUNED_RATE, PRUNED_RATE_TEXT
from hrank_ssd.nets.models import build_model

HERE = Path(__file__).resolve().parent
UNIFORM, FRACTIONS = (0.3, 0.5, 0.7), (0.4, 0.5, 0.6)
OPTIONS = ("channels_last", "torch.compile", "onnxruntime")
SMOKE = {"width": 0.125, "grid": 2, "runs": 1, "warmup": 0, "rounds": 1, "model_runs": 1, "model_warmup": 0}


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = ap.add_argument
    add("--threads", type=int, default=2, help="torch threads for the tables and every timing")
    add("--grid", type=int, default=8, help="coarse counts per layer of the latency table")
    add("--runs", type=int, default=2, help="timed forwards of each model a table times, per round")
    add("--warmup", type=int, default=1, help="untimed forwards of each model a table times, per round")
    add("--rounds", type=int, default=3, help="times each table times its whole design (new order each)")
    add("--check_copies", type=int, default=6, help="places of each model in each round of the check table")
    add("--channels_last", action="store_true", help="measure the tables and the models in NHWC")
    add("--width", type=float, default=1.0, help="channel width of the measured net")
    add("--table", default=None, help="load this latency table instead of measuring one")
    add("--rank_dir", default=None, help="HRank ranks (rank_conv{i}.npy); default: random ones")
    add("--min_keep", type=float, default=0.5, help="least fraction of filters a budget keeps (the course's)")
    add("--keep", type=float, default=KEEP_IMPORTANCE, help="the paper-MACs model keeps this share of the most "
                                                           "importance the paper rate's MACs allow")
    add("--no_check_table", dest="check_table", action="store_false",
        help="skip the check table (target (c) then reads the separate timing passes)")
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


def measure(args, threads: int, width: float, channels_last: bool, **checks) -> LatencyTable:
    """VGG16-SSD's table on this CPU with the run's grid, runs, warm-up and rounds (both tables alike)."""
    return measure_latency_table(NET, "cpu", threads=threads, width=width, grid=args.grid, runs=args.runs,
                                 warmup=args.warmup, channels_last=channels_last, rounds=args.rounds, **checks)


def random_ranks(model, folder, seed: int) -> Path:
    """HRank-like ranks without data: per filter uniform in [0.3, 1] of its map's largest rank."""
    rng = np.random.default_rng(seed)
    save_ranks([rng.uniform(0.3, 1.0, c) * s for c, s in zip(model.plan.prunable, budgets.map_sizes(model))], folder)
    return Path(folder)


def validation_set(base, table: LatencyTable, rank_dir, min_keep: float, keep: float):
    """name -> (kind, budget, pruned model), and notes on budgets that could not be met."""
    paper = f"paper rate {PRUNED_RATE_TEXT}"
    models = {"unpruned": ("unpruned", "-", base),
              paper: ("paper rate", "rates", prune_model(base, PRUNED_RATE, "hrank", rank_dir)[0])}
    models.update({f"uniform {r:g}": ("uniform rate", "rates",
                                      prune_model(base, [r] * base.plan.num_prunable, "hrank", rank_dir)[0])
                   for r in UNIFORM})
    cap, notes = macs(models[paper][2]), []
    choices = [(f"MAC budget {f:g}", "MAC budget", f"{f:g} of MACs", lambda f=f: budgets.widths_for_mac_budget(
        base, Budget(f, True), rank_dir, min_keep=min_keep)) for f in FRACTIONS]
    choices += [(f"latency budget {f:g}", "latency budget", f"{f:g} of full_ms", lambda f=f: budgets.
                 widths_for_latency_budget(base, table, Budget(f, True), rank_dir, min_keep=min_keep))
                for f in FRACTIONS]
    choices += [(MATCHED, "latency, paper MACs", f"paper MACs, {keep:g} of their importance, {{:.3f}} of full_ms",
                 lambda: budgets.fastest_widths_at_mac_cap(base, table, cap, rank_dir, min_keep=min_keep, keep=keep))]
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
    return " ".join(f"{k}x{n}" if n > 1 else str(k) for k, n in ((k, len(list(g))) for k, g in itertools.groupby(widths)))


def frontier_rows(models: dict, table: LatencyTable, passes, base, checked) -> pd.DataFrame:
    """One row per model: widths, exact MACs, predicted and measured ms (the median of two passes after the
    table, ``repeat_%`` apart) and, with a check table, its prediction against the model's forwards among it."""
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


def option_pairs(full, pruned, options, threads: int, batch: int, tmp: Path):
    """option -> (unpruned, pruned) as that option runs them, and notes on options skipped here."""
    full, pruned = (m.to(memory_format=torch.contiguous_format) for m in (full, pruned))
    pairs, notes, opt = {"plain eager": (full, pruned)}, [], inference_options
    example = torch.randn(batch, 3, full.image_size, full.image_size)
    make = {"channels_last": lambda m, i: opt.channels_last(m),
            "torch.compile": lambda m, i: opt.compile_model(m, example),
            "onnxruntime": lambda m, i: opt.OnnxModel(opt.export_onnx(m, tmp / f"{i}.onnx", batch), m, threads)}
    with num_threads(threads):
        for o in options:
            try:
                pair = tuple(make[o](m, i) for i, m in enumerate((full, pruned)))
                if o == "torch.compile":
                    (a, why_a), (b, why_b) = pair
                    if why_a or why_b:
                        raise HRankError(why_a or why_b)
                    pair = (a, b)
                pairs[o] = pair
            except Exception as e:  # noqa: BLE001 - an option missing here is reported, not fatal
                notes.append(f"{o} skipped: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}")
    return pairs, notes


def timed_options(args, table, base, models, notes, tmp) -> pd.DataFrame:
    """The paper-MACs model against the unpruned one under each inference option, interleaved."""
    if MATCHED not in models:
        return pd.DataFrame()
    pairs, more = option_pairs(base, models[MATCHED][2], args.options, table.threads, table.batch_size, tmp)
    notes += more
    flat = {f"{o} | {k}": m for o, pair in pairs.items() for k, m in zip(("unpruned", "pruned"), pair)}
    print(f"timing {len(pairs)} inference options", file=sys.stderr, flush=True)
    t = time_models(flat, table.threads, torch.contiguous_format, table.batch_size, table.image_size,
                    args.model_warmup, args.model_runs)
    return pd.DataFrame([{"option": o, "unpruned_ms": t[f"{o} | unpruned"], "pruned_ms": t[f"{o} | pruned"],
                          "speedup": t[f"{o} | unpruned"] / t[f"{o} | pruned"]} for o in pairs])


def run(args, command: str) -> str:
    seconds, start = {}, time.perf_counter()
    if args.table:
        table = LatencyTable.load(args.table, threads=args.threads, layout="channels_last" if args.channels_last else None)
        note = f"loaded from `{args.table}` (measured {table.date} in {table.measure_s or 0:.0f} s)"
    else:
        table = measure(args, args.threads, args.width, args.channels_last)
        table.save(table_path(args.out))
        note = f"measured by this run in {table.measure_s:.0f} s, saved as `{table_path(args.out).name}`"
    seconds["latency table"] = time.perf_counter() - start
    fmt = torch.channels_last if table.layout == "channels_last" else torch.contiguous_format
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(args.seed)
        base = build_model(NET, table.num_classes, width=table.width, image_size=table.image_size).eval()
        rank_dir = args.rank_dir or random_ranks(base, Path(tmp) / "ranks", args.seed)
        models, notes = validation_set(base, table, rank_dir, args.min_keep, args.keep)
        print(f"timing {len(models)} models interleaved", file=sys.stderr, flush=True)
        start = time.perf_counter()
        ready = {n: m.eval().to(memory_format=fmt) for n, (_, _, m) in models.items()}
        passes = [time_models(ready, table.threads, fmt, table.batch_size, table.image_size, args.model_warmup,
                              args.model_runs) for _ in range(2)]
        seconds["timing"], start, checked = time.perf_counter() - start, time.perf_counter(), None
        if args.check_table:
            print(f"measuring a check table with the {len(models)} models among its own", file=sys.stderr, flush=True)
            checked = measure(args, table.threads, table.width, table.layout == "channels_last",
                              checks={n: list(m.plan.prunable) for n, (_, _, m) in models.items()},
                              check_copies=args.check_copies)
            checked.save(table_path(args.out, "check_table"))
            seconds["check table"] = time.perf_counter() - start
        rows = frontier_rows(models, table, passes, base, checked)
        start = time.perf_counter()
        opts = timed_options(args, table, base, models, notes, Path(tmp))
        seconds["options"] = time.perf_counter() - start
    env = environment("cpu", table.threads)
    rows.to_csv(args.out.with_suffix(".csv"), index=False)
    plot(rows, args.out.with_suffix(".png"), f"{NET} width {table.width:g}, {env['cpu']}, {table.threads} threads")
    tg = targets(rows, opts, args.course_results)
    text = report(args, env, table, note, rows, opts, notes, tg, seconds, command, checked)
    args.out.write_text(text)
    return text


def main(argv=None) -> int:
    args = parse(argv)
    command = shlex.join(["python", "benchmarks/latency_frontier.py", *(sys.argv[1:] if argv is None else argv)])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    print(run(args, command))
    print(f"wrote {args.out} (.csv, .png{', _table.json' if not args.table else ''})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
