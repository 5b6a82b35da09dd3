"""HRank's scripts: ``rank`` (HR_rank_generation.py), ``prune`` (by rates or a budget) and ``flops``."""

from __future__ import annotations

import argparse
import re

import pandas as pd

from hrank_ssd.cli.main import command
from hrank_ssd.data.voc import TestTransform, VOCDataset, read_labels
from hrank_ssd.devices import resolve_device
from hrank_ssd.errors import HRankError
from hrank_ssd.hrank.pruning import describe_surgery, prune_model, save_pruned
from hrank_ssd.hrank.ranks import compute_ranks, image_batches, rank_summary, save_ranks
from hrank_ssd.io.files import atomic_write_text
from hrank_ssd.latency import budgets
from hrank_ssd.latency.knapsack import KEEP_IMPORTANCE, Budget
from hrank_ssd.latency.table import LatencyTable
from hrank_ssd.measure import bench, flops, published_flops
from hrank_ssd.measure.flops import macs
from hrank_ssd.nets.compress import format_compress_rate
from hrank_ssd.nets.models import count_parameters, load_model

MAC_SUFFIXES = {"k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
NUMBER = r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*"


def add_parser(sub) -> None:
    p = command(sub, "rank", run_rank, "compute HRank feature-map ranks (rank_conv{i}.npy)",
                "--net", "--dataset", "--base_net", "--label_file", "--seed", "--device")
    p.add_argument("--split", default="trainval", help="ImageSets/Main split to read images from")
    p.add_argument("--limit", type=int, default=5, help="number of batches to average over")
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--rank_dir", default="rank_conv/vgg-16-limitbatch5", help="output folder")
    p.add_argument("--shuffle", action="store_true", help="sample images instead of taking them in order")
    p = command(sub, "prune", run_prune, "prune a detector (hrank, l1 or random; rates or a budget)",
                "--net", "--base_net", "--rank_dir", "--compress_rate", "--criterion", "--seed", "--round_to")
    p.add_argument("--mac_budget", type=lambda text: parse_budget(text, "--mac_budget", latency=False),
                   help="a fraction of the unpruned MACs (0.5) or MACs (10G)")
    p.add_argument("--latency_budget", type=lambda text: parse_budget(text, "--latency_budget", latency=True),
                   help="a fraction of the table's full_ms (0.6) or 12.5ms")
    p.add_argument("--latency_table", default=None, help="latency table JSON (`python -m hrank_ssd latency-table`)")
    p.add_argument("--budget_steps", type=int, default=400, help="steps of the budget (costs rounded up: never over)")
    p.add_argument("--keep_importance", type=float, default=KEEP_IMPORTANCE,
                   help="--mac_budget and --latency_table: fastest widths keeping this share of the best importance")
    p.add_argument("--min_keep", type=float, default=0.0, help="with a budget: least fraction of filters a layer keeps")
    p.add_argument("--output", required=True, help="pruned state dict (.pth); its kept indices go to .pth.json")
    p = command(sub, "flops", run_flops, "parameters and MACs per layer (exact) or the original's table",
                "--net", "--compress_rate", "--num_classes")
    p.add_argument("--style", default="exact", choices=("exact", "published"), help="published: the original's table")
    p.add_argument("--image_size", type=int, default=None, help="input side (default 300; published mb1-ssd: 256)")
    p.add_argument("--csv", metavar="OUT", default=None, help="also write the per-layer table to this CSV file")


def parse_budget(text: str, flag: str, latency: bool) -> Budget:
    """``--mac_budget`` / ``--latency_budget`` text -> :class:`hrank_ssd.latency.knapsack.Budget` (one-line errors)."""
    example = "0.6 (of the table's full_ms) or 12.5ms" if latency else "0.5 (of the unpruned MACs) or 10G (MACs)"
    m = re.fullmatch(NUMBER + (r"(ms)?" if latency else r"([kKmMgGtT]?)") + r"\s*", text)
    if not m:
        raise HRankError(f"{flag} {text!r} is not a budget: give a fraction in (0, 1] or an absolute one, e.g. {example}")
    value, unit = float(m.group(1)), (m.group(2) or "").lower()
    if not (value > 0 if unit else 0 < value <= 1):
        raise HRankError(f"{flag} {text!r}: a plain number is a fraction of the unpruned cost and must lie "
                         f"in (0, 1], an absolute budget (with its unit) must be positive, e.g. {example}")
    return Budget(value * MAC_SUFFIXES.get(unit, 1.0), not unit)  # fraction, ms: as written


def _mode(args) -> str:
    """"rates", "macs" (--mac_budget) or "latency" (--latency_table: --latency_budget and/or --mac_budget)."""
    if args.compress_rate is not None:
        if args.mac_budget is not None or args.latency_budget is not None or args.latency_table is not None:
            raise HRankError("--compress_rate sets every layer's rate itself: drop --mac_budget, "
                             "--latency_budget and --latency_table, or drop --compress_rate for a budget")
        return "rates"
    if args.latency_budget is not None and args.latency_table is None:
        raise HRankError("--latency_budget needs --latency_table: a budget needs the table it is priced by")
    if args.mac_budget is None and args.latency_budget is None:
        raise HRankError("prune needs --compress_rate (e.g. \"[0.1]*7+[0.5]*9\"), --mac_budget (e.g. 0.5) or "
                         "--latency_budget (e.g. 0.6, with --latency_table)")
    if args.criterion != "hrank":
        raise HRankError("a budget chooses widths by HRank ranks: use --criterion hrank with --rank_dir")
    if not 0 < args.keep_importance <= 1:
        raise HRankError(f"--keep_importance {args.keep_importance:g} must lie in (0, 1]: the fraction of the most "
                         "importance the MACs allow that the fastest widths keep")
    if args.round_to:
        raise HRankError("--round_to applies to --compress_rate; a budget's candidate counts already include the "
                         "multiples of the channel block around each count")
    return "macs" if args.latency_table is None else "latency"


def run_rank(args: argparse.Namespace) -> int:
    """HRank feature-map ranks of every prunable layer (the original HR_rank_generation.py)."""
    if args.limit < 1 or args.batch_size < 1:
        raise HRankError("--limit and --batch_size must be at least 1")
    num_classes = len(read_labels(args.label_file)) if args.label_file else None
    model = load_model(args.base_net, net=args.net, num_classes=num_classes)
    transform = TestTransform(model.image_size, model.cfg.image_mean, model.cfg.image_std)
    dataset = VOCDataset(args.dataset, split=args.split, transform=transform)
    batches = image_batches(dataset, args.batch_size, args.limit, args.shuffle, args.seed)
    total = min(args.limit, -(-len(dataset) // args.batch_size))
    ranks = compute_ranks(model, batches, device=resolve_device(args.device), total=total)
    paths = save_ranks(ranks, args.rank_dir)
    for row in rank_summary(ranks, model.cfg.name):
        print(f"rank_conv{row['layer']:<2} {row['name']:<9} filters {row['filters']:>5}  "
              f"rank min {row['min']:8.2f} mean {row['mean']:8.2f} max {row['max']:8.2f}")
    print(f"wrote {len(paths)} rank files to {args.rank_dir}")
    return 0


def run_prune(args: argparse.Namespace) -> int:
    """Keep the best filters of every prunable layer and rebuild a smaller model, by rates or a budget."""
    kind = _mode(args)
    model = load_model(args.base_net, net=args.net)
    if kind == "rates":
        rates = args.compress_rate
        pruned, kept = prune_model(model, rates, args.criterion, args.rank_dir, args.seed, args.round_to)
        save_pruned(pruned, args.output, rates, args.criterion, kept)
        for row in describe_surgery(model, pruned):
            if row["parameter"].endswith("weight"):
                print(f"{row['parameter']:<34} {str(row['before']):>22} -> {row['after']}")
    else:
        pruned = _prune_to_budget(args, model, kind)
    before, after = count_parameters(model), count_parameters(pruned)
    print(f"parameters: {before:,} -> {after:,} ({after / before:.1%}); wrote {args.output} and {args.output}.json")
    return 0


def _prune_to_budget(args, model, kind: str):
    if kind == "macs":
        chosen = budgets.widths_for_mac_budget(model, args.mac_budget, args.rank_dir, args.budget_steps,
                                               min_keep=args.min_keep)
    else:
        table = LatencyTable.load(args.latency_table)
        full_macs = macs(model)  # the MAC fraction's base (the MAC path has chosen.full)
        cap = None if args.mac_budget is None else args.mac_budget.of(full_macs)
        if args.latency_budget is None:
            chosen = budgets.fastest_widths_at_mac_cap(model, table, cap, args.rank_dir, steps=args.budget_steps,
                                                       min_keep=args.min_keep, keep=args.keep_importance)
        else:
            chosen = budgets.widths_for_latency_budget(model, table, args.latency_budget, args.rank_dir,
                                                       args.budget_steps, args.min_keep, mac_cap=cap)
    pruned = budgets.prune_to_budget(model, chosen, args.rank_dir, args.output, args.min_keep)
    for row in chosen.rows():
        print(f"{row['layer']:<10} {row['channels']:>5} -> {row['kept']}")
    print(f"importance (normalised ranks kept): {chosen.importance:.4g} of {chosen.max_importance:.4g}")
    exact = macs(pruned)
    if kind == "macs":
        print(f"MACs: predicted {chosen.predicted / 1e9:.4f}G, exact {exact / 1e9:.4f}G, budget "
              f"{chosen.budget / 1e9:.4f}G ({exact / chosen.full:.1%} of the unpruned {chosen.full / 1e9:.4f}G)")
        return pruned
    rows = bench.benchmark_models({"model": pruned}, table.device, table.batch_size, warmup=5, runs=20,
                                  threads=table.threads, image_size=table.image_size, predict=False,
                                  channels_last=table.layout == "channels_last")  # timed as the table was
    ms = float(rows["forward_median_ms"].iloc[0])
    print(f"latency: predicted {chosen.predicted:.3f} ms, measured {ms:.3f} ms (median), budget "
          f"{chosen.budget:.3f} ms ({chosen.predicted / chosen.full:.1%} of the table's full {chosen.full:.3f} ms)")
    if chosen.mac_cap is not None:
        print(f"MACs: exact {exact / 1e9:.4f}G within {chosen.mac_cap / 1e9:.4f}G ({exact / full_macs:.1%} of the "
              f"unpruned {full_macs / 1e9:.4f}G)")
    return pruned


def run_flops(args: argparse.Namespace) -> int:
    """Parameters and MACs of a (pruned) detector, exact per layer or as the original project printed them."""
    rates = args.compress_rate
    if args.style == "published":
        table = published_flops.print_published_table(args.net, rates, num_classes=args.num_classes,
                                                      image_size=args.image_size).frame()
    else:
        model = flops.build_for_counting(args.net, args.num_classes, rates, image_size=args.image_size)
        table = flops.compare_with_thop(model)
        agree = flops.thop_agreement(table)
        tot = flops.totals(table)
        show = table.assign(out=table["out_h"].astype(str) + "x" + table["out_w"].astype(str))
        cols = ["label", "type", "in_channels", "out_channels", "kernel", "stride", "dilation", "groups", "out",
                "params", "MACs", "thop_ops"]
        with pd.option_context("display.max_rows", None, "display.width", 200):
            print(show[cols].to_string(index=False))
        print(f"\n{args.net} compress_rate={format_compress_rate(rates) if rates else 'none'} "
              f"{table.attrs['image_size']}x{table.attrs['image_size']}, {args.num_classes} classes")
        print(f"Params: {tot['params']}   (sum of p.numel(): {count_parameters(model)})")
        print(f"MACs:   {tot['MACs']}   ({tot['MACs'] / 1e9:.3f} GMACs; FLOPs ~= 2 x MACs = {2 * tot['MACs']})")
        print("MACs by part: " + ", ".join(f"{p} {tot[f'{p}_MACs']}" for p in table["part"].unique()))
        bn_factor = agree["thop_bn_ops_per_element"]
        print(f"thop.profile: {agree['thop_total']} ops, {agree['thop_params']} params. Conv/Linear MACs "
              f"{'agree exactly' if agree['conv_linear_equal'] else 'DIFFER'} ({agree['analytic_conv_linear_MACs']}"
              f" vs {agree['thop_conv_linear_ops']}); BatchNorm: {agree['bn_elements']} elements, counted here as "
              f"1 MAC each, by thop as {bn_factor if bn_factor is None else f'{bn_factor:g}'} ops each; "
              f"other thop ops: {agree['thop_other_ops']}.")
        print(flops.MAC_NOTE)
    if args.csv:
        atomic_write_text(args.csv, table.to_csv(index=False))
        print(f"wrote {args.csv}")
    return 0
