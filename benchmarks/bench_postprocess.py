"""Post-processing before/after: pytorch-ssd's per-class Python loop vs the vectorised one, same outputs.

Both run on the raw outputs of a full-width VGG16-SSD (21 classes, random weights: every class keeps its
200 candidates above the 0.01 threshold, the worst case for NMS) and of a few synthetic-looking score
distributions. Detections must be identical; times are interleaved medians.

    python benchmarks/bench_postprocess.py [--threads 1] [--runs 20] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import reference_nms  # beside this script
import torch

from hrank_ssd.cli.main import guarded
from hrank_ssd.measure import bench, tables
from hrank_ssd.nets.models import build_model
from hrank_ssd.nets.predictor import postprocess


def cases(batch: int = 1):
    """name -> (confidences, locations, priors, cfg)."""
    torch.manual_seed(0)
    model = build_model("vgg16-ssd", 21).eval()
    with torch.inference_mode():
        conf, loc = model(torch.randn(batch, 3, 300, 300))
    g = torch.Generator().manual_seed(1)
    # Random weights give some exactly tied scores (same value, different boxes); which of two tied boxes
    # NMS keeps is implementation-defined (sort order), so a 1e-3 logit jitter removes the ties first.
    out = {"vgg16-ssd random weights (+1e-3 logit jitter)": (conf + 1e-3 * torch.randn(conf.shape, generator=g), loc)}
    peaked = torch.randn(conf.shape, generator=g) * 3  # sharper scores: fewer candidates above 0.01
    peaked[..., 0] += 6  # mostly background, like a trained detector
    out["peaked scores (mostly background)"] = (peaked, torch.randn(loc.shape, generator=g) * 0.5)
    return {k: (c, v, model.priors, model.cfg) for k, (c, v) in out.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    rows = []
    with bench.num_threads(args.threads):
        for name, (conf, loc, priors, cfg) in cases().items():
            ref = reference_nms.reference_postprocess(conf, loc, priors, cfg)
            vec = postprocess(conf, loc, priors, cfg)
            same = all(reference_nms.same_detections(a, b) for a, b in zip(ref, vec))
            args_ = (conf, loc, priors, cfg)
            t = bench.timings_interleaved({"loop": lambda a=args_: reference_nms.reference_postprocess(*a),
                                           "vectorised": lambda a=args_: postprocess(*a)},
                                          args.warmup, args.runs)
            rows.append({"case": name, "detections": int(vec[0][1].numel()), "identical": same,
                         "loop_median_ms": t["loop"]["median_ms"], "loop_p90_ms": t["loop"]["p90_ms"],
                         "vectorised_median_ms": t["vectorised"]["median_ms"],
                         "vectorised_p90_ms": t["vectorised"]["p90_ms"],
                         "speedup": t["loop"]["median_ms"] / t["vectorised"]["median_ms"]})
    table = pd.DataFrame(rows)
    print(tables.markdown_table(table))
    if args.json:
        Path(args.json).write_text(json.dumps({"environment": bench.environment("cpu", args.threads),
                                               "rows": json.loads(table.to_json(orient="records"))}, indent=1))
    if not table["identical"].all():
        print("error: the loop and the vectorised post-processing disagree", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
