"""Rank generation: the original HRank procedure vs ours, on the same images, the same ranks required.

"The same" is exact except where a map holds a singular value within ``rank_bounds.BORDERLINE_FACTOR`` of
``matrix_rank``'s tolerance (two correct SVDs may round it either way): the table counts those channels
(``borderline``) and requires ``unexplained == 0`` (no difference anywhere else).

* original: for each of the 14 prunable layers, one full forward pass of the whole detector with a hook
  on that layer only, and one ``matrix_rank`` call per feature map (HRank's rank_generation.py);
* truncated + per-map: one forward pass stopped after the last prunable layer, per-map ranks
  (isolates the forward-pass saving);
* per-layer forwards + batched: 14 full forwards, batched ranks (isolates the batching saving);
* ours: :func:`hrank_ssd.hrank.ranks.compute_ranks`, one truncated pass with batched ranks.

Full-width VGG16-SSD, 300x300, random weights, ``--images`` random images in one batch.

    python benchmarks/bench_ranks.py [--images 2] [--threads 1,2] [--repeats 3] [--json OUT]

At each thread count all four procedures get the same threads; ``batched_ranks`` spreads its SVDs over
them, the per-map loop cannot (one small LAPACK call at a time).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rank_bounds import rank_agreement, rank_bounds  # beside this script

from hrank_ssd.cli.main import guarded
from hrank_ssd.hrank.ranks import (
    batched_ranks,
    compute_ranks,
    ranks_one_at_a_time,
)
from hrank_ssd.measure import bench, tables
from hrank_ssd.nets.models import activation_key, build_model
from hrank_ssd.nets.registry import num_prunable


def per_layer_forwards(model, images, rank_fn):
    """The original procedure: one full forward per layer, a hook on that layer only."""
    net = model.cfg.name
    modules = dict(model.named_modules())
    out = []
    for i in range(num_prunable(net)):
        acc = {}

        def hook(_m, _inp, output, acc=acc):
            acc["r"] = rank_fn(output).sum(0)
        h = modules[activation_key(net, i)].register_forward_hook(hook)
        try:
            with torch.no_grad():
                model(images)
        finally:
            h.remove()
        out.append((acc["r"] / images.size(0)).numpy().astype(np.float32))
    return out


def forward_times(model, images):
    """Seconds of one full forward and of the truncated one (for the attribution)."""
    from hrank_ssd.hrank.ranks import RankAccumulator

    with torch.no_grad():
        full = bench.timing(lambda: model(images), warmup=1, runs=3)["median_ms"] / 1000
    acc = RankAccumulator(model, rank_fn=lambda t: torch.zeros(t.shape[:2]))
    try:
        trunc = bench.timing(lambda: acc.add(images), warmup=1, runs=3)["median_ms"] / 1000
    finally:
        acc.close()
    return full, trunc


def measure(model, images, threads: int, repeats: int = 3):
    """Rows (one per procedure, median seconds of ``repeats`` interleaved rounds) and the forward-time
    attribution at one thread count."""
    procedures = {
        "original (14 full forwards, per-map ranks)": lambda: per_layer_forwards(model, images, ranks_one_at_a_time),
        "14 full forwards, batched ranks": lambda: per_layer_forwards(model, images, batched_ranks),
        "1 truncated forward, per-map ranks": lambda: compute_ranks(model, [images], progress=False,
                                                                     rank_fn=ranks_one_at_a_time),
        "ours: 1 truncated forward, batched ranks": lambda: compute_ranks(model, [images], progress=False),
    }
    seconds, results = {name: [] for name in procedures}, {}
    with bench.num_threads(threads):
        full_s, trunc_s = forward_times(model, images)
        for _ in range(repeats):  # round-robin, so background load hits every procedure alike
            for name, fn in procedures.items():
                start = time.perf_counter()
                results[name] = fn()
                seconds[name].append(time.perf_counter() - start)
                print(f"{threads} thread(s), {name}: {seconds[name][-1]:.1f} s", file=sys.stderr, flush=True)
    rows = [{"threads": threads, "procedure": name, "seconds": statistics.median(t), "runs": len(t)}
            for name, t in seconds.items()]
    ref = results[next(iter(results))]
    bounds = compute_ranks(model, [images], progress=False, rank_fn=lambda t: torch.stack(rank_bounds(t), -1))
    lo, hi = [b[:, 0] for b in bounds], [b[:, 1] for b in bounds]  # one SVD per map gives both
    for row in rows:
        row.update(rank_agreement(ref, results[row["procedure"]], lo, hi))
        row["speedup_vs_original"] = rows[0]["seconds"] / row["seconds"]
    attribution = {"threads": threads, "images": images.size(0), "full_forward_s": full_s,
                   "truncated_forward_s": trunc_s,
                   "forward_share_of_original": 14 * full_s / rows[0]["seconds"],
                   "rank_share_of_ours": (rows[3]["seconds"] - trunc_s) / rows[3]["seconds"]}
    return rows, attribution


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--threads", default="1", help="thread counts, comma-separated (e.g. 1,2)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the table gives medians")
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    model = build_model("vgg16-ssd", 21, width=args.width).eval()
    images = torch.randn(args.images, 3, 300, 300)
    thread_counts = list(dict.fromkeys(int(t) for t in str(args.threads).split(",")))
    rows, attribution = [], []
    for threads in thread_counts:
        r, a = measure(model, images, threads, args.repeats)
        rows += r
        attribution.append(a)
        print(f"{threads} thread(s): one full forward of {a['images']} images: {a['full_forward_s']:.2f} s, "
              f"truncated: {a['truncated_forward_s']:.2f} s; the original's 14 forwards are "
              f"{a['forward_share_of_original']:.0%} of its time; ranks are {a['rank_share_of_ours']:.0%} of ours")
    table = pd.DataFrame(rows)
    print(tables.markdown_table(table))
    if args.json:
        Path(args.json).write_text(json.dumps({"environment": bench.environment("cpu", thread_counts[0]),
                                               "rows": json.loads(table.to_json(orient="records")),
                                               "attribution": attribution}, indent=1))
    if table["unexplained"].any():
        print("error: the procedures disagree where no singular value is borderline", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
