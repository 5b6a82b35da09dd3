"""How fast the fastest widths at the seed rate's MACs are, for each fraction ``keep`` of the cap's most importance.

``measure.budgets.fastest_widths_at_mac_cap`` keeps ``keep`` of the most HRank importance the seed rate's MACs allow,
and of those widths takes the fastest by a latency table. This scan prints, per table and ``keep``, the table's
predicted speed-up over the unpruned model and the widths' share of its MACs (no timing, no training: seconds).
Sources: finished courses' ``work`` folders (``--work``: their baseline, ranks and latency table) and full-width
latency tables (``--table``: random weights and random HRank-like ranks, seed 0, as ``latency_frontier.py``).

    python benchmarks/keep_scan.py --table benchmarks/latency_frontier_table.json --work /path/to/work[=LABEL] [...]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

import pandas as pd
import torch

from hrank_ssd.cli.main import guarded
from hrank_ssd.course.profiles import get_profile
from hrank_ssd.measure import budgets
from hrank_ssd.measure.flops import count_exact
from hrank_ssd.measure.latency_table import LatencyTable
from hrank_ssd.measure.tables import markdown_table
from hrank_ssd.nets.compress import PRUNED_RATE
from hrank_ssd.nets.models import build_model, load_model

HERE = Path(__file__).resolve().parent
KEEPS = (0.999, 0.99, 0.97, 0.95, 0.93, 0.9)


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", action="append", default=[],
                    help="a finished course's work folder, optionally DIR=LABEL to name it in the table (repeatable)")
    ap.add_argument("--table", action="append", default=[], help="a full-width latency table JSON (repeatable)")
    ap.add_argument("--profile", default="offline", help="the courses' profile")
    ap.add_argument("--min_keep", type=float, default=0.5, help="least fraction of every layer's filters")
    ap.add_argument("--keeps", default=",".join(map(str, KEEPS)))
    ap.add_argument("--out", default=str(HERE / "keep_scan.md"), help="OUT.md; OUT.csv beside it")
    args = ap.parse_args(argv)
    args.keeps = [float(k) for k in args.keeps.split(",") if k.strip()]
    if not args.work and not args.table:
        ap.error("give at least one --work or --table")
    return args


def sources(args):
    """(name, baseline, latency table, rank folder) per source."""
    for given in args.work:
        folder, _, label = given.partition("=")
        work = Path(folder) / args.profile
        table = LatencyTable.load(sorted((work / "latency").glob("*.json"))[-1], expect_machine=False)
        yield f"course {label or folder}", load_model(work / "models" / "vgg16-ssd.pth"), table, work / "ranks"
    for path in args.table:
        table = LatencyTable.load(path, expect_machine=False)
        torch.manual_seed(0)
        base = build_model("vgg16-ssd", table.num_classes, width=table.width, image_size=table.image_size).eval()
        yield f"table {Path(path).name}", base, table, budgets.random_hrank_like_ranks(base, tempfile.mkdtemp())


def scan(args) -> pd.DataFrame:
    """One row per source and keep: predicted speed-up and MAC share of the fastest widths, the seed rate's beside."""
    rows = []
    for name, base, table, ranks in sources(args):
        full = int(count_exact(base)["MACs"].sum())
        seed = table.widths_for_rates(PRUNED_RATE)
        cap = budgets.exact_macs(base, seed)
        for keep in args.keeps:
            chosen = budgets.fastest_widths_at_mac_cap(base, table, cap, ranks, min_keep=args.min_keep, keep=keep)
            rows.append({"source": name, "width": table.width, "layout": table.layout, "keep": keep,
                         "speed-up": table.full_ms / chosen.predicted, "MAC share": chosen.macs / full,
                         "importance": chosen.importance, "seed speed-up": table.full_ms / table.predict(seed),
                         "seed MAC share": cap / full})
    return pd.DataFrame(rows)


def wide(rows: pd.DataFrame) -> pd.DataFrame:
    """Per source: the seed rate's predicted speed-up, then one "speed-up (MAC share)" cell per keep."""
    out = rows.groupby("source", sort=False).first()[["width", "layout", "seed speed-up"]]
    out["width"] = [f"{w:g}" for w in out["width"]]
    for keep, part in rows.groupby("keep", sort=False):
        out[f"keep {keep:g}"] = [f"{s:.2f}x ({m:.2f})" for s, m in zip(part["speed-up"], part["MAC share"])]
    return out.reset_index()


def main(argv=None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    get_profile(args.profile)  # an unknown profile is a one-line error before any work
    rows = scan(args)
    out = Path(args.out)
    rows.to_csv(out.with_suffix(".csv"), index=False)
    command = "python benchmarks/keep_scan.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    out.write_text("\n".join([
        "# Fastest widths at the seed rate's MACs: predicted speed-up against `keep`", "",
        "Generated by `benchmarks/keep_scan.py`; do not edit. Every number below is computed by the run.", "",
        f"Command: `{command.strip()}`; --min_keep {args.min_keep:g}. Each cell: the table's predicted speed-up of "
        "`fastest_widths_at_mac_cap(keep)` over the unpruned model, and (in brackets) its share of the unpruned "
        "MACs; `seed rate`: the seed rate's own predicted speed-up (0.59 of the MACs). Predictions of each "
        "source's own latency table, not timings.", "",
        markdown_table(wide(rows), ".2f"), ""]))
    print(out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
