"""This project's measurements: ``bench``, ``latency-table`` and ``sensitivity`` (per-layer pruning scans)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hrank_ssd.cli.main import command
from hrank_ssd.data.voc import VOCDataset, read_labels
from hrank_ssd.devices import resolve_device
from hrank_ssd.errors import HRankError
from hrank_ssd.io.files import atomic_savefig, atomic_write_text
from hrank_ssd.latency.measure import default_checks, measure_latency_table
from hrank_ssd.measure import bench, tables
from hrank_ssd.measure.sensitivity import layer_sensitivity, plot_sensitivity, suggest_compress_rate
from hrank_ssd.nets.compress import PRUNED_RATE_TEXT, format_compress_rate, parse_compress_rate
from hrank_ssd.nets.models import load_model
from hrank_ssd.nets.registry import get_net, net_names


def add_parser(sub) -> None:
    p = command(sub, "bench", run_bench, "latency/FPS of detectors, interleaved, with warm-up and sync",
                "--threads", "--num_classes", "--width", "--amp", "--channels_last", "--no_progress")
    p.add_argument("--nets", default="vgg16-ssd,vgg16-ssd-pruned,mb1-ssd", help="-pruned ones use --compress_rate")
    p.add_argument("--compress_rate", type=parse_compress_rate, default=PRUNED_RATE_TEXT,
                   help="rates of the -pruned entries")
    p.add_argument("--weights", nargs="*", default=[], metavar="NAME=PTH", help="weights of a --nets entry")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--batch_size", type=int, default=1)
    p.add_argument("--image_size", type=int, default=300)
    p.add_argument("--warmup", type=int, default=10, help="untimed calls per model first")
    p.add_argument("--runs", type=int, default=50, help="timed calls per model")
    p.add_argument("--no_predict", dest="predict", action="store_false", help="time the forward pass only")
    p.add_argument("--json", metavar="OUT", default=None, help="also write machine-readable results here")
    p = command(sub, "latency-table", run_latency_table, "latency table of a net's layers",
                "--threads", "--width", "--image_size", "--num_classes", "--channels_last", "--no_progress")
    p.add_argument("--net", default="vgg16-ssd", help="vgg16-ssd or mb1-ssd (any registered net)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--batch_size", type=int, default=1)
    p.add_argument("--grid", type=int, default=8, help="counts per layer from ~10%% to 100%% (+ block multiples)")
    p.add_argument("--block", type=int, default=None, help="channel block (default: 32 CUDA, 16 AVX-512, else 8)")
    p.add_argument("--runs", type=int, default=2, help="timed forwards of each model per round (cells: medians)")
    p.add_argument("--warmup", type=int, default=1, help="untimed forwards of each model first, per round")
    p.add_argument("--rounds", type=int, default=3, help="timings of the design, each in a new order")
    p.add_argument("--no_drift_reference", dest="drift_reference", action="store_false",
                   help="leave the machine's drift in the cells")
    p.add_argument("--no_check", dest="check", action="store_false", help="skip checking predictions on whole models")
    p.add_argument("--out", required=True, help="the table (JSON)")
    p = command(sub, "sensitivity", run_sensitivity, "per-layer pruning sensitivity, suggested rates",
                "--dataset", "--label_file", "--criterion", "--rank_dir", "--device")
    p.add_argument("--trained_model", "--base_net", dest="trained_model", required=True, help="detector (.pth)")
    p.add_argument("--net", default=None, choices=net_names(), help="network (default: the checkpoint's)")
    p.add_argument("--split", default="test")
    p.add_argument("--rates", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9")
    p.add_argument("--layers", default=None, help="1-based prunable layers to scan, e.g. 1,5,14 (default all)")
    p.add_argument("--limit_images", type=int, default=None, help="evaluate on the first N images only")
    p.add_argument("--target_mac_reduction", type=float, default=None, help="suggest rates removing this share of MACs")
    p.add_argument("--output_dir", default="sensitivity", help="writes sensitivity.csv and sensitivity.png")


def run_bench(args: argparse.Namespace) -> int:
    """Forward and end-to-end latency (median, p90), FPS, params and MACs of detectors, side by side."""
    if min(args.batch_size, args.runs, args.threads or 1) < 1 or args.warmup < 0:
        raise HRankError("--batch_size, --runs and --threads must be at least 1, --warmup at least 0")
    nets = [n.strip() for n in args.nets.split(",") if n.strip()]
    for item in args.weights:
        if not item.partition("=")[2]:
            raise HRankError(f"--weights expects NAME=PTH (e.g. vgg16-ssd-pruned=models/pruned.pth), got {item!r}")
    weights = dict(item.split("=", 1) for item in args.weights)
    device = resolve_device(args.device)  # a bad --device fails before any model is built
    nets_models = bench.build_bench_models(nets, args.compress_rate, weights, args.num_classes, args.width,
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
        rates = format_compress_rate(args.compress_rate)
        out = bench.results_json(table, raw, nets=nets, compress_rate=rates, weights=weights,
                                 image_size=args.image_size, num_classes=args.num_classes, width=args.width)
        atomic_write_text(args.json, json.dumps(out, indent=1))
        print(f"wrote {args.json}")
    return 0


def run_latency_table(args: argparse.Namespace) -> int:
    """Time every prunable unit of a net on a grid of kept-filter counts, on this machine (JSON)."""
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


def _floats(text: str, what: str):
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise HRankError(f"--{what} must be comma-separated numbers, got {text!r}") from None


def run_sensitivity(args: argparse.Namespace) -> int:
    """Prune one layer at a time, evaluate without finetuning, plot, suggest a compress rate."""
    rates = _floats(args.rates, "rates")
    if any(not 0 < r < 1 for r in rates):
        raise HRankError("--rates must lie in (0, 1)")
    class_names = read_labels(args.label_file) if args.label_file else None
    dataset = VOCDataset(args.dataset, split=args.split, is_test=True, class_names=class_names)
    if args.limit_images:
        dataset.ids = dataset.ids[: args.limit_images]
    model = load_model(args.trained_model, net=args.net, num_classes=len(dataset.class_names))
    layers = [int(v) for v in _floats(args.layers, "layers")] if args.layers else None
    table = layer_sensitivity(model, dataset, args.criterion, args.rank_dir, rates, layers,
                              device=resolve_device(args.device))
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "sensitivity.csv", table.to_csv(index=False))
    atomic_savefig(plot_sensitivity(table), out / "sensitivity.png", dpi=110)
    print(table.pivot(index="rate", columns="name", values="map").round(4).to_string())
    print(f"wrote {out / 'sensitivity.csv'} and {out / 'sensitivity.png'}")
    if args.target_mac_reduction:
        s = suggest_compress_rate(table, model, args.target_mac_reduction, rates)
        print(f"suggested --compress_rate \"{s['compress_rate']}\": removes {s['mac_reduction']:.1%} of the MACs, "
              f"each layer losing at most {s['tolerated_drop']:.4f} scan mAP on its own")
    return 0
