"""``latency-table``: time every prunable unit of a net on a grid of kept-filter counts, on this machine (JSON)."""

from __future__ import annotations

import argparse

from hrank_ssd.errors import HRankError


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("latency-table", help="latency lookup table of a net's prunable layers on this machine",
                       description=__doc__.splitlines()[0])
    p.add_argument("--net", default="vgg16-ssd", help="vgg16-ssd or mb1-ssd (any registered net)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--batch_size", type=int, default=1)
    p.add_argument("--width", type=float, default=1.0, help="channel multiplier (small course/test models)")
    p.add_argument("--image_size", type=int, default=None, help="input size (default: the net's, 300)")
    p.add_argument("--num_classes", type=int, default=21, help="classes incl. BACKGROUND (sets the headers)")
    p.add_argument("--channels_last", action="store_true", help="NHWC memory format, as the model will run")
    p.add_argument("--grid", type=int, default=8,
                   help="evenly spaced counts per layer from ~10%% to 100%% (block multiples and the published "
                        "pruning's counts are added)")
    p.add_argument("--block", type=int, default=None,
                   help="channel block of the kernels (default: 32 on CUDA, 16 with AVX-512, else 8)")
    p.add_argument("--runs", type=int, default=2, help="timed forwards of each model per round (cells: medians)")
    p.add_argument("--warmup", type=int, default=1, help="untimed forwards of each model first, per round")
    p.add_argument("--rounds", type=int, default=3,
                   help="time the whole design this many times, each in a new order: on a machine whose speed "
                        "drifts, each cell gets samples from several moments (docs/latency.md)")
    p.add_argument("--no_drift_reference", dest="drift_reference", action="store_false",
                   help="do not time the full model in every chunk to take the machine's drift out of the cells")
    p.add_argument("--no_check", dest="check", action="store_false",
                   help="skip timing whole models (the full net and its published pruning), among the table's "
                        "own, against the table's predictions")
    p.add_argument("--no_progress", dest="progress", action="store_false", help="no tqdm bar")
    p.add_argument("--out", required=True, help="the table (JSON)")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from hrank_ssd.latency.measure import default_checks, measure_latency_table
    from hrank_ssd.nets.registry import get_net

    get_net(args.net)  # an unknown net fails here, in one line, before anything is timed
    if args.num_classes < 2:
        raise HRankError(f"--num_classes must be at least 2 (BACKGROUND + one class), got {args.num_classes}")
    table = measure_latency_table(args.net, device=args.device, threads=args.threads, batch_size=args.batch_size,
                                  width=args.width, image_size=args.image_size, channels_last=args.channels_last,
                                  grid=args.grid, runs=args.runs, warmup=args.warmup, num_classes=args.num_classes,
                                  block=args.block, progress=args.progress,
                                  checks=default_checks(args.net, args.width) if args.check else None,
                                  rounds=args.rounds, drift_reference=args.drift_reference)
    cells = sum(len(u.in_counts) * len(u.out_counts) for u in table.units)
    print(f"{table.net} width {table.width:g}, {table.image_size}x{table.image_size}, batch {table.batch_size}, "
          f"{table.machine['device_name']} ({table.device}, {table.machine['capability']}), {table.threads} threads, "
          f"{table.layout}, torch {table.machine['torch']}")
    print(f"{len(table.units)} units, {cells} cells, grid of {min(map(len, table.counts))}-"
          f"{max(map(len, table.counts))} counts per layer (block {table.block}), measured in {table.measure_s:.1f} s")
    print(f"full model {table.full_ms:.3f} ms = units at full width "
          f"{table.full_ms - table.rest_ms:.3f} ms + rest {table.rest_ms:.3f} ms")
    if table.drift:
        print(f"machine drift: the full model ran at {table.drift['min']:.2f}-{table.drift['max']:.2f}x its median "
              f"time over {table.drift['chunks']} chunks (taken out of the cells)")
    for c in table.checks:
        err = 100.0 * (c["predicted_ms"] - c["measured_ms"]) / c["measured_ms"]
        print(f"{c['name']}: predicted {c['predicted_ms']:.3f} ms, measured {c['measured_ms']:.3f} ms "
              f"({err:+.1f}%, {c['forwards']} forwards among the table's)")
    table.save(args.out)
    print(f"wrote {args.out}")
    return 0
