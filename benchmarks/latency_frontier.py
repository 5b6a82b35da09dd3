"""Prune for the clock: a latency table of VGG16-SSD, pruned models predicted and timed, the issue's targets.

One run on this machine (CPU, random weights): VGG16-SSD's latency table (or ``--table``); pruned models from
random HRank-like ranks (or ``--rank_dir``): the seed rate, uniform rates, MAC and latency budgets, the latency
fastest widths at the seed's MACs, and the unpruned model, all timed interleaved against their predictions;
a second (check) table measured with every one of those models timed among its own models, so that both see
the same minutes of machine load; then the seed-MAC-matched model against the unpruned one under each
inference option. Checks the issue's targets (a) >= 1.8x in plain eager, (b) >= 1.94x with the fastest option,
(c) every prediction of the check table within 10 % of its interleaved measurement (the mAP target needs
finetuning: not here). Writes OUT.md, OUT.csv, OUT.png, OUT_table.json and OUT_check_table.json.

    python benchmarks/latency_frontier.py [--threads 2] [--grid 8] [--runs 10] [--warmup 3] [--table T.json]
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
from typing import Optional

import inference_options as speed  # beside this script
import numpy as np
import pandas as pd
import torch
from latency_frontier_report import MATCHED, NET, plot, report, table_path, targets  # beside this script

from hrank_ssd.cli.main import guarded
from hrank_ssd.errors import HRankError
from hrank_ssd.hrank.budget import Budget
from hrank_ssd.hrank.pruning import prune_model, prune_to_widths
from hrank_ssd.measure import budgets
from hrank_ssd.measure.bench import environment, num_threads, timings_interleaved
from hrank_ssd.measure.flops import count_exact
from hrank_ssd.measure.latency_measure import measure_latency_table
from hrank_ssd.measure.latency_table import LatencyTable
from hrank_ssd.nets.compress import PRUNED_RATE, PRUNED_RATE_TEXT
from hrank_ssd.nets.models import build_model

HERE = Path(__file__).resolve().parent
UNIFORM, FRACTIONS = (0.3, 0.5, 0.7), (0.4, 0.5, 0.6)
OPTIONS = ("channels_last", "torch.compile", "onnxruntime")
SMOKE = {"width": 0.125, "grid": 2, "runs": 1, "warmup": 0, "rounds": 1, "model_runs": 1, "model_warmup": 0}


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the table and every timing")
    ap.add_argument("--grid", type=int, default=8, help="coarse counts per layer of the latency table")
    ap.add_argument("--runs", type=int, default=2, help="timed forwards of each model the table times, per round")
    ap.add_argument("--warmup", type=int, default=1, help="untimed forwards of each model the table times, per round")
    ap.add_argument("--rounds", type=int, default=3, help="times each table times its whole design (new order each)")
    ap.add_argument("--check_copies", type=int, default=6,
                    help="places of each model in each round of the check table (moments its median pools: "
                         "copies x rounds; 2 until the drift reference showed 6 moments carried their own speed)")
    ap.add_argument("--channels_last", action="store_true", help="measure the table and the models in NHWC")
    ap.add_argument("--width", type=float, default=1.0, help="channel width of the measured net")
    ap.add_argument("--table", default=None, help="load this latency table instead of measuring one")
    ap.add_argument("--rank_dir", default=None, help="HRank ranks (rank_conv{i}.npy); default: random ones")
    ap.add_argument("--min_keep", type=float, default=0.5,
                    help="least fraction of filters a budget keeps (the course's seed_macs_min_keep: at 0.25 its "
                         "seed-MACs model lost 0.016 offline mAP, benchmarks/latency_map_seeds.md)")
    ap.add_argument("--keep", type=float, default=budgets.KEEP_IMPORTANCE,
                    help="the seed-MACs model keeps this fraction of the most importance the seed's MACs allow, "
                         "and is the fastest such (the course's seed_macs_keep)")
    ap.add_argument("--no_check_table", dest="check_table", action="store_false",
                    help="skip the second table measured with every model of the validation set timed among its "
                         "own (target (c) then reads the separate timing passes)")
    ap.add_argument("--model_runs", type=int, default=20, help="timed forwards per model (interleaved)")
    ap.add_argument("--model_warmup", type=int, default=3, help="untimed forwards per model first")
    ap.add_argument("--options", default=",".join(OPTIONS), help="inference options tried for target (b)")
    ap.add_argument("--seed", type=int, default=0, help="random weights and ranks")
    ap.add_argument("--course_results", default=None, help="a course run's results folder (runs/latest/results): "
                                                           "its map.csv decides target (d)")
    ap.add_argument("--out", default=None, help="OUT.md (default benchmarks/latency_frontier.md; --smoke: a temp "
                                                "folder); OUT.csv, OUT.png and OUT_table.json beside it")
    ap.add_argument("--smoke", action="store_true", help="width 0.125, grid 2, one run, no warm-up (seconds)")
    args = ap.parse_args(argv)
    if args.smoke:
        vars(args).update(SMOKE)
    args.options = [o.strip() for o in args.options.split(",") if o.strip()]
    for o in args.options:
        if o not in OPTIONS:
            ap.error(f"--options: {o!r} is not one of {', '.join(OPTIONS)}")
    default = Path(tempfile.mkdtemp(prefix="latency_frontier_")) if args.smoke else HERE
    args.out = Path(args.out or default / "latency_frontier.md")
    return args


def get_table(args) -> tuple:
    """The latency table (measured here, or ``--table``) and a sentence saying which."""
    if args.table:
        table = LatencyTable.load(args.table, threads=args.threads,
                                  layout="channels_last" if args.channels_last else None)
        return table, f"loaded from `{args.table}` (measured {table.date} in {table.measure_s or 0:.0f} s)"
    table = measure(args, args.threads, args.width, args.channels_last)
    return table, f"measured by this run in {table.measure_s:.0f} s, saved as `{table_path(args.out).name}`"


def check_table(args, table: LatencyTable, models: dict) -> LatencyTable:
    """A second table, measured like the first, with every validation model timed among its own models
    (``measure_latency_table(checks=...)``): a machine whose speed drifts over minutes moves both alike."""
    widths = {name: list(m.plan.prunable) for name, (_, _, m) in models.items()}
    return measure(args, table.threads, table.width, table.layout == "channels_last", checks=widths,
                   check_copies=args.check_copies)


def measure(args, threads: int, width: float, channels_last: bool, **checks) -> LatencyTable:
    """VGG16-SSD's table on this CPU at the run's grid, runs, warm-up and rounds (both tables are measured alike)."""
    return measure_latency_table(NET, "cpu", threads=threads, width=width, grid=args.grid, runs=args.runs,
                                 warmup=args.warmup, channels_last=channels_last, rounds=args.rounds, **checks)


def validation_set(base, table: LatencyTable, rank_dir, min_keep: float, keep: float):
    """name -> (kind, budget, pruned model), and notes on budgets that could not be met."""
    models = {"unpruned": ("unpruned", "-", base)}
    notes = []
    n = base.plan.num_prunable

    def by_widths(name, kind, choose, label):
        try:
            chosen = choose()
        except HRankError as e:
            return notes.append(f"{name}: not built ({e})")
        models[name] = (kind, label(chosen), prune_to_widths(base, chosen.widths, "hrank", rank_dir)[0])

    seed = f"seed {PRUNED_RATE_TEXT}"
    models[seed] = ("seed", "rates", prune_model(base, PRUNED_RATE, "hrank", rank_dir)[0])
    for r in UNIFORM:
        models[f"uniform {r:g}"] = ("uniform rate", "rates", prune_model(base, [r] * n, "hrank", rank_dir)[0])
    for f in FRACTIONS:
        by_widths(f"MAC budget {f:g}", "MAC budget", lambda f=f: budgets.widths_for_mac_budget(
            base, Budget(f, True), rank_dir, min_keep=min_keep), lambda w, f=f: f"{f:g} of MACs")
    for f in FRACTIONS:
        by_widths(f"latency budget {f:g}", "latency budget", lambda f=f: budgets.widths_for_latency_budget(
            base, table, Budget(f, True), rank_dir, min_keep=min_keep), lambda w, f=f: f"{f:g} of full_ms")
    cap = budgets.exact_macs(base, models[seed][2].plan.prunable)
    by_widths(MATCHED, "latency, seed MACs", lambda: budgets.fastest_widths_at_mac_cap(
        base, table, cap, rank_dir, min_keep=min_keep, keep=keep),
        lambda w: f"seed MACs, {keep:g} of their importance, {w.budget / w.full:.3f} of full_ms")
    return models, notes


def time_models(models: dict, threads: int, fmt, batch: int, size: int, warmup: int, runs: int) -> dict:
    """Median forward ms of each model, all interleaved, on one random input in ``fmt``."""
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=fmt)  # a plain tensor, as compile_model's
    with num_threads(threads), torch.inference_mode():
        fns = {name: (lambda m=m: m(x)) for name, m in models.items()}
        return {name: t["median_ms"] for name, t in timings_interleaved(fns, warmup, runs).items()}


def widths_text(widths) -> str:
    """Run-length summary of kept counts: ``57x2 115x2 230x3 ...``."""
    runs = [(k, len(list(g))) for k, g in itertools.groupby(widths)]
    return " ".join(f"{k}x{n}" if n > 1 else str(k) for k, n in runs)


def frontier_rows(models: dict, table: LatencyTable, passes, base, checked: Optional[LatencyTable]) -> pd.DataFrame:
    """One row per model: widths, exact MACs, predicted ms, measured ms (the median of two timing passes after the
    table), how far the two passes lie apart (``repeat_%``: the noise floor of those passes) and, with a
    ``checked`` table, its prediction and the model's median forward among that table's own models."""
    macs = count_exact(base)
    full_macs = int(macs["MACs"].sum())
    measured = {n: float(np.median([p[n] for p in passes])) for n in models}
    rows = []
    checks = {c["name"]: c for c in (checked.checks if checked is not None else [])}
    for name, (kind, budget, m) in models.items():
        w, mac = list(m.plan.prunable), budgets.exact_macs(base, m.plan.prunable, macs)
        pred, ms = table.predict(w), measured[name]
        rows.append({"model": name, "kind": kind, "budget": budget, "widths": widths_text(w), "GMACs": mac / 1e9,
                     "predicted_ms": pred, "measured_ms": ms, "error_%": 100 * (pred - ms) / ms,
                     "repeat_%": 100 * (passes[1][name] - passes[0][name]) / passes[0][name],
                     "speedup": measured["unpruned"] / ms, "predicted_speedup": table.full_ms / pred,
                     "mac_ratio": full_macs / mac})
        if name in checks:
            c = checks[name]
            rows[-1].update({"check_predicted_ms": c["predicted_ms"], "check_measured_ms": c["measured_ms"],
                             "check_error_%": 100 * (c["predicted_ms"] - c["measured_ms"]) / c["measured_ms"]})
            if "steady_ms" in c:  # tables measured with a drift reference
                rows[-1]["check_steady_error_%"] = 100 * (c["predicted_ms"] - c["steady_ms"]) / c["steady_ms"]
    return pd.DataFrame(rows)


def option_pairs(full, pruned, options, threads: int, batch: int, tmp: Path):
    """option -> (unpruned, pruned) as that option runs them (contiguous inputs), and notes on skipped ones."""
    full, pruned = (m.to(memory_format=torch.contiguous_format) for m in (full, pruned))
    pairs, notes = {"plain eager": (full, pruned)}, []
    example = torch.randn(batch, 3, full.image_size, full.image_size)
    with num_threads(threads):
        for opt in options:
            try:
                if opt == "channels_last":
                    pairs[opt] = (speed.channels_last(full), speed.channels_last(pruned))
                elif opt == "torch.compile":
                    (a, why_a), (b, why_b) = (speed.compile_model(m, example) for m in (full, pruned))
                    if why_a or why_b:
                        raise HRankError(why_a or why_b)
                    pairs[opt] = (a, b)
                else:
                    pairs[opt] = tuple(speed.OnnxModel(speed.export_onnx(m, tmp / f"{i}.onnx", batch), m, threads)
                                       for i, m in enumerate((full, pruned)))
            except Exception as e:  # noqa: BLE001 - an option missing here is reported, not fatal
                notes.append(f"{opt} skipped: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}")
    return pairs, notes


def option_rows(pairs: dict, times: dict) -> pd.DataFrame:
    return pd.DataFrame([{"option": o, "unpruned_ms": times[f"{o} | unpruned"], "pruned_ms": times[f"{o} | pruned"],
                          "speedup": times[f"{o} | unpruned"] / times[f"{o} | pruned"]} for o in pairs])


def run(args, command: str) -> str:
    seconds = {}
    start = time.perf_counter()
    table, table_note = get_table(args)
    if not args.table:
        table.save(table_path(args.out))
    seconds["latency table"] = time.perf_counter() - start
    fmt = torch.channels_last if table.layout == "channels_last" else torch.contiguous_format
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        torch.manual_seed(args.seed)
        base = build_model(NET, table.num_classes, width=table.width, image_size=table.image_size).eval()
        rank_dir = args.rank_dir or budgets.random_hrank_like_ranks(base, tmp / "ranks", args.seed)
        models, notes = validation_set(base, table, rank_dir, args.min_keep, args.keep)
        seconds["pruning"] = time.perf_counter() - start
        print(f"timing {len(models)} models interleaved", file=sys.stderr, flush=True)
        start = time.perf_counter()
        ready = {n: m.eval().to(memory_format=fmt) for n, (_, _, m) in models.items()}
        passes = [time_models(ready, table.threads, fmt, table.batch_size, table.image_size, args.model_warmup,
                              args.model_runs) for _ in range(2)]
        seconds["timing"] = time.perf_counter() - start
        checked = None
        if args.check_table:
            print(f"measuring a check table with the {len(models)} models among its own", file=sys.stderr, flush=True)
            start = time.perf_counter()
            checked = check_table(args, table, models)
            checked.save(table_path(args.out, "check_table"))
            seconds["check table"] = time.perf_counter() - start
        rows = frontier_rows(models, table, passes, base, checked)
        opts = pd.DataFrame()
        if MATCHED in models:
            start = time.perf_counter()
            pairs, more = option_pairs(base, models[MATCHED][2], args.options, table.threads, table.batch_size, tmp)
            notes += more
            flat = {f"{o} | {k}": m for o, pair in pairs.items() for k, m in zip(("unpruned", "pruned"), pair)}
            print(f"timing {len(pairs)} inference options", file=sys.stderr, flush=True)
            opts = option_rows(pairs, time_models(flat, table.threads, torch.contiguous_format, table.batch_size,
                                                  table.image_size, args.model_warmup, args.model_runs))
            seconds["options"] = time.perf_counter() - start
    env = environment("cpu", table.threads)
    tg = targets(rows, opts, args.course_results)
    rows.to_csv(args.out.with_suffix(".csv"), index=False)
    plot(rows, args.out.with_suffix(".png"), f"{NET} width {table.width:g}, {env['cpu']}, {table.threads} threads")
    text = report(args, env, table, table_note, rows, opts, notes, tg, seconds, command, checked)
    args.out.write_text(text)
    return text


def main(argv=None) -> int:
    args = parse(argv)
    command = shlex.join(["python", "benchmarks/latency_frontier.py", *(sys.argv[1:] if argv is None else argv)])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = run(args, command)
    print(text)
    print(f"wrote {args.out} (.csv, .png{', _table.json' if not args.table else ''})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
