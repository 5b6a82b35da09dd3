"""``bench``: forward and end-to-end latency (median, p90), FPS, params and MACs of detectors, side by side."""

from __future__ import annotations

import argparse
import json

from hrank_ssd.cli.args import compress_rate_of
from hrank_ssd.errors import HRankError
from hrank_ssd.nets.compress import PRUNED_RATE_TEXT, format_compress_rate


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("bench", help="latency/FPS of detectors, measured interleaved with warm-up and sync",
                       description=__doc__.splitlines()[0])
    p.add_argument("--nets", default="vgg16-ssd,vgg16-ssd-pruned,mb1-ssd",
                   help="comma-separated: vgg16-ssd, mb1-ssd, and either with -pruned (uses --compress_rate)")
    p.add_argument("--compress_rate", default=PRUNED_RATE_TEXT, help="rates of the -pruned entries")
    p.add_argument("--weights", nargs="*", default=[], metavar="NAME=PTH",
                   help="checkpoint for a --nets entry (default: random weights; shapes set the speed)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--batch_size", type=int, default=1)
    p.add_argument("--image_size", type=int, default=300)
    p.add_argument("--warmup", type=int, default=10, help="untimed calls per model first")
    p.add_argument("--runs", type=int, default=50, help="timed calls per model")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--num_classes", type=int, default=21, help="classes incl. BACKGROUND")
    p.add_argument("--width", type=float, default=1.0, help="channel multiplier (small course/test models)")
    p.add_argument("--amp", action="store_true", help="fp16 autocast forward (CUDA only)")
    p.add_argument("--channels_last", action="store_true", help="NHWC memory format for every model")
    p.add_argument("--no_predict", dest="predict", action="store_false", help="time the forward pass only")
    p.add_argument("--no_progress", dest="progress", action="store_false", help="no tqdm bars")
    p.add_argument("--json", metavar="OUT", default=None, help="also write machine-readable results here")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from hrank_ssd.devices import resolve_device
    from hrank_ssd.io.files import atomic_write_text
    from hrank_ssd.measure import bench, tables

    if args.batch_size < 1 or args.runs < 1 or args.warmup < 0:
        raise HRankError("--batch_size and --runs must be at least 1, --warmup at least 0")
    if args.threads is not None and args.threads < 1:
        raise HRankError("--threads must be at least 1")
    nets = [n.strip() for n in args.nets.split(",") if n.strip()]
    weights = {}
    for item in args.weights:
        name, sep, path = item.partition("=")
        if not sep or not path:
            raise HRankError(f"--weights expects NAME=PTH (e.g. vgg16-ssd-pruned=models/pruned.pth), got {item!r}")
        weights[name] = path
    rates = compress_rate_of(args)
    device = resolve_device(args.device)
    nets_models = bench.build_bench_models(nets, rates, weights, args.num_classes, args.width,
                                           args.image_size)
    raw: dict = {}
    table = bench.benchmark_models(nets_models, device, args.batch_size, args.warmup, args.runs, args.threads,
                                   args.image_size, amp=args.amp, predict=args.predict,
                                   channels_last=args.channels_last, raw=raw, progress=args.progress)
    a = table.attrs
    print(f"{a['device_name']} ({a['device']}), torch {a['torch']}, {a['threads']} threads, batch {args.batch_size}, "
          f"{args.image_size}x{args.image_size}, warm-up {args.warmup}, {args.runs} runs interleaved"
          f"{', AMP fp16' if args.amp else ''}{', channels_last' if args.channels_last else ''}")
    print(tables.markdown_table(table))
    if args.json:
        out = bench.results_json(table, raw, nets=nets, compress_rate=format_compress_rate(rates), weights=weights,
                                 image_size=args.image_size, num_classes=args.num_classes, width=args.width)
        atomic_write_text(args.json, json.dumps(out, indent=1))
        print(f"wrote {args.json}")
    return 0
