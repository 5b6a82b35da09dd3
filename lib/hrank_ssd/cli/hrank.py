"""HRank's scripts: ``rank`` (HR_rank_generation.py), ``prune`` (by ``--compress_rate`` or a MAC/latency budget:
docs/pruning-budgets.md) and ``flops`` (parameters and MACs, exact or as the original project printed them)."""

from __future__ import annotations

import argparse
import re

import pandas as pd

from hrank_ssd.cli.main import add_compress_rate, add_net, command, compress_rate_of, device_arg
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
from hrank_ssd.nets.models import count_parameters, load_model

MAC_SUFFIXES = {"": None, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
NUMBER = r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*"


def add_parser(sub) -> None:
    p = command(sub, "rank", run_rank, help="compute HRank feature-map ranks (rank_conv{i}.npy)")
    p.add_argument("--dataset", required=True, help="VOC root (VOCdevkit/VOC2007 layout)")
    p.add_argument("--base_net", required=True, help="trained detector checkpoint (.pth)")
    add_net(p)
    p.add_argument("--label_file", default=None, help="labels file, BACKGROUND first (checks the class count)")
    p.add_argument("--split", default="trainval", help="ImageSets/Main split to read images from")
    p.add_argument("--limit", type=int, default=5, help="number of batches to average over")
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--rank_dir", default="rank_conv/vgg-16-limitbatch5", help="output folder")
    p.add_argument("--shuffle", action="store_true", help="sample images instead of taking them in order")
    p.add_argument("--seed", type=int, default=0)
    device_arg(p)
    _prune_flags(command(sub, "prune", run_prune, help="prune a detector (hrank, l1 or random; rates or a budget)"))
    p = command(sub, "flops", run_flops, help="parameters and MACs per layer (exact) or the original's table")
    add_net(p)
    add_compress_rate(p)
    p.add_argument("--style", default="exact", choices=("exact", "published"), help="published: the original's table")
    p.add_argument("--num_classes", type=int, default=21, help="classes incl. BACKGROUND (sizes the heads)")
    p.add_argument("--image_size", type=int, default=None, help="input side (default 300; published mb1-ssd: 256)")
    p.add_argument("--csv", metavar="OUT", default=None, help="also write the per-layer table to this CSV file")


def _prune_flags(p: argparse.ArgumentParser) -> None:
    add_net(p)
    p.add_argument("--base_net", required=True, help="detector checkpoint to prune (.pth)")
    p.add_argument("--rank_dir", default=None, help="folder of rank_conv{i}.npy (needed by --criterion hrank)")
    add_compress_rate(p)
    p.add_argument("--mac_budget", default=None, help="a fraction of the unpruned MACs (0.5) or MACs (10G)")
    p.add_argument("--latency_budget", default=None, help="a fraction of the table's full_ms (0.6) or 12.5ms")
    p.add_argument("--latency_table", default=None, help="latency table JSON (`python -m hrank_ssd latency-table`)")
    p.add_argument("--budget_steps", type=int, default=400, help="steps of the budget (costs rounded up: never over)")
    p.add_argument("--keep_importance", type=float, default=KEEP_IMPORTANCE,
                   help="--mac_budget and --latency_table: fastest widths keeping this share of the best importance")
    p.add_argument("--min_keep", type=float, default=0.0, help="with a budget: least fraction of filters a layer keeps")
    p.add_argument("--criterion", default="hrank", choices=("hrank", "l1", "random"))
    p.add_argument("--seed", type=int, default=0, help="seed of --criterion random")
    p.add_argument("--round_to", type=int, default=None, help="round kept filter counts up to a multiple of N")
    p.add_argument("--output", required=True, help="pruned state dict (.pth); its kept indices go to .pth.json")


def parse_budget(text: str, flag: str, latency: bool):
    """``--mac_budget`` / ``--latency_budget`` text -> :class:`hrank_ssd.latency.knapsack.Budget` (one-line errors)."""
    example = "0.6 (of the table's full_ms) or 12.5ms" if latency else "0.5 (of the unpruned MACs) or 10G (MACs)"
    suffix = r"(ms)?" if latency else r"([kKmMgGtT]?)"
    m = re.fullmatch(NUMBER + suffix + r"\s*", text or "")
    if not m:
        raise HRankError(f"{flag} {text!r} is not a budget: give a fraction in (0, 1] or an absolute one, e.g. {example}")
    value, unit = float(m.group(1)), (m.group(2) or "").lower()
    if not unit:
        if not 0 < value <= 1:
            raise HRankError(f"{flag} {text!r}: a plain number is a fraction of the unpruned cost and must lie in "
                             f"(0, 1]; write an absolute budget with its unit, e.g. {example}")
        return Budget(value, True)
    if value <= 0:
        raise HRankError(f"{flag} {text!r} must be positive, e.g. {example}")
    return Budget(value * (1.0 if latency else MAC_SUFFIXES[unit]), False)


def _mode(args):
    """("rates", list) | ("macs", Budget, None) | ("latency", latency Budget or None, MAC Budget or None)."""
    if args.compress_rate is not None and (args.mac_budget is not None or args.latency_budget is not None):
        raise HRankError("--compress_rate sets every layer's rate itself: drop --mac_budget / --latency_budget, or "
                         "drop --compress_rate to let a budget choose the widths")
    if args.compress_rate is not None:
        if args.latency_table is not None:
            raise HRankError("--latency_table goes with a budget, not with --compress_rate")
        return "rates", compress_rate_of(args), None
    if args.latency_budget is not None and args.latency_table is None:
        raise HRankError("--latency_budget needs --latency_table: a budget needs the table it is priced by")
    if args.latency_table is not None and args.latency_budget is None and args.mac_budget is None:
        raise HRankError("--latency_table prices a budget: add --latency_budget (e.g. 0.6) or --mac_budget (the "
                         "fastest widths within those MACs)")
    if args.mac_budget is None and args.latency_budget is None:
        raise HRankError("prune needs --compress_rate (e.g. \"[0.1]*7+[0.5]*9\"), --mac_budget (e.g. 0.5) or "
                         "--latency_budget (e.g. 0.6, with --latency_table)")
    if args.criterion != "hrank":
        raise HRankError("a budget chooses widths by HRank ranks: use --criterion hrank with --rank_dir")
    if not 0 < args.keep_importance <= 1:
        raise HRankError(f"--keep_importance {args.keep_importance:g} must lie in (0, 1]: the fraction of the most "
                         "importance the MACs allow that the fastest widths keep")
    macs = None if args.mac_budget is None else parse_budget(args.mac_budget, "--mac_budget", latency=False)
    if args.latency_table is None:
        return "macs", macs, None
    latency = None if args.latency_budget is None else parse_budget(args.latency_budget, "--latency_budget", True)
    return "latency", latency, macs


def run_rank(args: argparse.Namespace) -> int:
    """HRank feature-map ranks of every prunable layer (the original HR_rank_generation.py)."""
    if args.limit < 1 or args.batch_size < 1:
        raise HRankError("--limit and --batch_size must be at least 1")
    num_classes = len(read_labels(args.label_file)) if args.label_file else None
    model = load_model(args.base_net, net=args.net, num_classes=num_classes)
    cfg = model.cfg
    dataset = VOCDataset(args.dataset, split=args.split,
                         transform=TestTransform(model.image_size, cfg.image_mean, cfg.image_std))
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
    kind, value, macs = _mode(args)
    model = load_model(args.base_net, net=args.net)
    if kind == "rates":
        pruned, kept = prune_model(model, value, args.criterion, args.rank_dir, args.seed, args.round_to)
        save_pruned(pruned, args.output, value, args.criterion, kept)
        for row in describe_surgery(model, pruned):
            if row["parameter"].endswith("weight"):
                print(f"{row['parameter']:<34} {str(row['before']):>22} -> {row['after']}")
    else:
        pruned = _prune_to_budget(args, model, kind, value, macs)
    before, after = count_parameters(model), count_parameters(pruned)
    print(f"parameters: {before:,} -> {after:,} ({after / before:.1%}); wrote {args.output} and {args.output}.json")
    return 0


def _prune_to_budget(args, model, kind: str, budget, mac_budget):
    if args.round_to:
        raise HRankError("--round_to applies to --compress_rate; a budget's candidate counts already include the "
                         "multiples of the channel block around each count")
    if kind == "macs":
        chosen = budgets.widths_for_mac_budget(model, budget, args.rank_dir, args.budget_steps, min_keep=args.min_keep)
    else:
        table = LatencyTable.load(args.latency_table)
        full_macs = macs(model)  # the MAC fraction's base (the MAC path has chosen.full)
        cap = None if mac_budget is None else mac_budget.of(full_macs)
        if budget is None:
            chosen = budgets.fastest_widths_at_mac_cap(model, table, cap, args.rank_dir, steps=args.budget_steps,
                                                       min_keep=args.min_keep, keep=args.keep_importance)
        else:
            chosen = budgets.widths_for_latency_budget(model, table, budget, args.rank_dir, args.budget_steps,
                                                       args.min_keep, mac_cap=cap)
    pruned = budgets.prune_to_budget(model, chosen, args.rank_dir, args.output, args.min_keep)
    for row in chosen.rows():
        print(f"{row['layer']:<10} {row['channels']:>5} -> {row['kept']}")
    print(f"importance (normalised ranks kept): {chosen.importance:.4g} of {chosen.max_importance:.4g}")
    exact = macs(pruned)
    if kind == "macs":
        print(f"MACs: predicted {chosen.predicted / 1e9:.4f}G, exact {exact / 1e9:.4f}G, budget "
              f"{chosen.budget / 1e9:.4f}G ({exact / chosen.full:.1%} of the unpruned {chosen.full / 1e9:.4f}G)")
        return pruned
    ms = _measured_ms(pruned, table)
    print(f"latency: predicted {chosen.predicted:.3f} ms, measured {ms:.3f} ms (median), budget "
          f"{chosen.budget:.3f} ms ({chosen.predicted / chosen.full:.1%} of the table's full {chosen.full:.3f} ms)")
    if chosen.mac_cap is not None:
        print(f"MACs: exact {exact / 1e9:.4f}G within {chosen.mac_cap / 1e9:.4f}G ({exact / full_macs:.1%} of the "
              f"unpruned {full_macs / 1e9:.4f}G)")
    return pruned


def _measured_ms(model, table) -> float:
    """``model``'s median forward ms, timed as ``table`` was measured (device, threads, batch, layout)."""
    rows = bench.benchmark_models({"model": model}, table.device, table.batch_size, warmup=5, runs=20,
                                  threads=table.threads, image_size=table.image_size, predict=False,
                                  channels_last=table.layout == "channels_last")
    return float(rows["forward_median_ms"].iloc[0])


def run_flops(args: argparse.Namespace) -> int:
    """Parameters and MACs of a (pruned) detector, exact per layer or as the original project printed them."""
    rates = compress_rate_of(args)
    if args.style == "published":
        res = published_flops.print_published_table(args.net, rates, num_classes=args.num_classes,
                                                    image_size=args.image_size)
        table = res.frame()
    else:
        model = flops.build_for_counting(args.net, args.num_classes, compress_rate=rates,
                                        image_size=args.image_size)
        table = flops.compare_with_thop(model)
        agree = flops.thop_agreement(model, table=table)
        tot = flops.totals(table)
        show = table.assign(out=table["out_h"].astype(str) + "x" + table["out_w"].astype(str))
        cols = ["label", "type", "in_channels", "out_channels", "kernel", "stride", "dilation", "groups", "out",
                "params", "MACs", "thop_ops"]
        with pd.option_context("display.max_rows", None, "display.width", 200):
            print(show[cols].to_string(index=False))
        print()
        print(f"{args.net} compress_rate={args.compress_rate or 'none'} "
              f"{table.attrs['image_size']}x{table.attrs['image_size']}, {args.num_classes} classes")
        print(f"Params: {tot['params']}   (sum of p.numel(): {count_parameters(model)})")
        print(f"MACs:   {tot['MACs']}   ({tot['MACs'] / 1e9:.3f} GMACs; FLOPs ~= 2 x MACs = {2 * tot['MACs']})")
        parts = ", ".join(f"{p} {tot[f'{p}_MACs']}" for p in table["part"].unique())
        print(f"MACs by part: {parts}")
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
