"""Inference options, each timed against the plain model, all interleaved in one run (CPU).

Full-width VGG16-SSD (21 classes, 300x300, batch 1, random weights), unpruned and at the paper rate, under each
option (inference_options.py); MobileNetV1-SSD plain vs BatchNorm folded; time and MACs by pruning group (why
latency falls less than MACs); with ``--trained`` the int8 mAP check.

    python benchmarks/bench_inference_options.py [--threads 1] [--runs 15] [--trained SMALL.pth --dataset VOC] \
        [--out benchmarks/bench_inference_options.md]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import benchkit  # beside this script
import inference_options as options  # beside this script
import pandas as pd
import torch

from hrank_ssd.data.voc import TestTransform, VOCDataset
from hrank_ssd.hrank.pruning import prune_model
from hrank_ssd.measure import bench, layer_times, tables
from hrank_ssd.measure.evaluation import evaluate_model, mean_ap
from hrank_ssd.nets.compress import PRUNED_RATE
from hrank_ssd.nets.models import build_model, load_model

RATE = PRUNED_RATE
GROUP = layer_times.pruning_groups(RATE)


def variants(tmp: Path, threads: int, calib_images: int):
    """name -> model, the notes (options skipped here) and the output agreement checks."""
    torch.manual_seed(0)
    full = build_model("vgg16-ssd", 21).eval()
    pruned, pruned8 = (prune_model(full, RATE, "l1", round_to=r)[0] for r in (None, 8))
    mb1 = build_model("mb1-ssd", 21).eval()
    bns = [m for m in mb1.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns + [m.source_layer_add_ons[0] for m in (full, pruned, pruned8)]:  # so folding is a real test
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    x, notes = torch.randn(1, 3, 300, 300), []
    out = {"vgg16-ssd": full, "vgg16-ssd-pruned": pruned, "vgg16-ssd channels_last": options.ChannelsLast(full),
           "vgg16-ssd-pruned channels_last": options.ChannelsLast(pruned), "vgg16-ssd-pruned round_to=8": pruned8,
           "vgg16-ssd-pruned round_to=8 channels_last": options.ChannelsLast(pruned8),
           "vgg16-ssd-pruned bn_folded": options.fold_batchnorm(pruned)}
    checks = {"vgg16-ssd-pruned bn_folded (exact, bias map)": out["vgg16-ssd-pruned bn_folded"],
              "vgg16-ssd-pruned bn_folded (plain bias, approximate)": options.fold_batchnorm(pruned, border_exact=False),
              "vgg16-ssd-pruned channels_last": out["vgg16-ssd-pruned channels_last"]}
    checks = {k: options.output_agreement(pruned, m, x) for k, m in checks.items()}
    pairs = (("vgg16-ssd", full), ("vgg16-ssd-pruned", pruned))
    calib = [torch.randn(1, 3, 300, 300) for _ in range(calib_images)]
    made = {"torch.compile": lambda name, m: options.compile_model(m),
            "onnxruntime": lambda name, m: options.OnnxModel(options.export_onnx(m, tmp / f"{name}.onnx"), m, threads),
            "onnxruntime int8": lambda name, m: options.quantize_int8(m, calib, tmp / f"{name}.int8.onnx", threads)}
    with bench.num_threads(threads):
        for option, make in made.items():
            for name, base in pairs:
                try:
                    t0 = time.perf_counter()
                    out[f"{name} {option}"] = make(name, base)
                    benchkit.log(f"{option} of {name} ready in {time.perf_counter() - t0:.0f} s")
                    checks[f"{name} {option}"] = options.output_agreement(base, out[f"{name} {option}"], x)
                except Exception as e:  # noqa: BLE001 - report and go on
                    notes.append(f"{option} skipped for {name}: {options.first_line(e, 160)}")
    out.update({"mb1-ssd": mb1, "mb1-ssd bn_folded": options.fold_batchnorm(mb1)})
    checks["mb1-ssd bn_folded"] = options.output_agreement(mb1, out["mb1-ssd bn_folded"], x)
    return out, notes, checks


def int8_map(trained: str, dataset: str, tmp: Path, threads: int, calib_images: int, prune: bool):
    """fp32 vs int8 mAP of a trained (small) model on a VOC-layout test split (trainval calibrates)."""
    model = load_model(trained).eval()
    if prune:
        model, _ = prune_model(model, RATE, "l1")
    transform = TestTransform(model.image_size, model.cfg.image_mean, model.cfg.image_std)
    calib_set = VOCDataset(dataset, split="trainval", transform=transform)
    calib = [calib_set[i][0][None] for i in range(min(calib_images, len(calib_set)))]
    test = VOCDataset(dataset, split="test", is_test=True)
    with bench.num_threads(threads):
        rows = {"fp32": model, "int8": options.quantize_int8(model, calib, tmp / "trained.int8.onnx", threads)}
        for name, m in rows.items():
            table, sec = evaluate_model(m, test, tmp / f"eval_{name}", progress=False)
            rows[name] = {"mAP": mean_ap(table), "avg_predict_s": sec}
    return rows


def speedups(table: pd.DataFrame) -> list:
    """Each pruned variant against the unpruned model in the same format (and against plain unpruned)."""
    base = dict(zip(table["model"], table["forward_median_ms"]))
    pbase = dict(zip(table["model"], table["predict_median_ms"]))
    pairs = []
    for name in table["model"]:
        if name.startswith("vgg16-ssd-pruned"):
            ref = " ".join(["vgg16-ssd"] + [w for w in name.split()[1:] if w not in ("round_to=8", "bn_folded")])
            ref = ref if ref in base else "vgg16-ssd"
            pairs.append({"pruned variant": name, "vs": ref, "forward_speedup": base[ref] / base[name],
                          "predict_speedup": pbase[ref] / pbase[name],
                          "vs_plain_unpruned_forward": base["vgg16-ssd"] / base[name]})
    return pairs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, default in (("threads", 1), ("warmup", 3), ("runs", 15), ("calib_images", 8), ("layer_runs", 7)):
        ap.add_argument(f"--{flag}", type=int, default=default)
    ap.add_argument("--trained", default=None, help="a trained small checkpoint for the int8 mAP check")
    ap.add_argument("--dataset", default=None, help="VOC folder (trainval: calibration, test: mAP)")
    ap.add_argument("--prune_trained", action="store_true", help="prune --trained (l1, [0.1]*7+[0.5]*9) first")
    ap.add_argument("--out", default=None, help="write the markdown page here (with its command and machine)")
    args = ap.parse_args(argv)
    result = {"environment": bench.environment("cpu", args.threads), "load": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        models, notes, checks = variants(Path(tmp), args.threads, args.calib_images)
        benchkit.log(f"timing {len(models)} variants interleaved, {args.runs} runs each")
        table = bench.benchmark_models(models, "cpu", 1, args.warmup, args.runs, args.threads, predict=True)
        layers = {}
        for key, suffix in (("layers", ""), ("layers_channels_last", " channels_last")):
            benchkit.log(f"per-layer timing{suffix}")
            timed = {"full": models[f"vgg16-ssd{suffix}"], "pruned": models[f"vgg16-ssd-pruned{suffix}"],
                     **({} if suffix else {"round8": models["vgg16-ssd-pruned round_to=8"]})}
            layers[key] = layer_times.layer_times_and_macs(timed, runs=args.layer_runs, threads=args.threads)
        records = lambda df: json.loads(df.to_json(orient="records"))  # noqa: E731
        result.update(table=records(table), pairs=speedups(table), notes=notes, checks=checks,
                      **{k: records(v) for k, v in layers.items()})
        if args.trained and args.dataset:
            benchkit.log("int8 mAP on the trained model")
            result["int8_map"] = int8_map(args.trained, args.dataset, Path(tmp), args.threads, args.calib_images,
                                          args.prune_trained)
    text = page(result, benchkit.command("bench_inference_options.py", argv))
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


def page(result: dict, command: str) -> str:
    """The markdown page: the machine, the options table, pruned vs unpruned, agreement, time by pruning group."""
    env, md = result["environment"], lambda rows, fmt=".2f": tables.markdown_table(pd.DataFrame(rows), fmt)
    lines = ["# Inference options (generated; do not edit)", "", f"`{command}` on {env['cpu']} ({env['cpu_count']} "
             f"cores, load average {result['load']:.1f} at the start, torch.set_num_threads({env['threads']})), "
             f"torch {env['torch']}, {env['date'][:10]}. Random weights (shapes set the speed), 300x300, batch 1, "
             "every model interleaved after warm-up; ms are medians unless labelled p90.", "", md(result["table"]),
             "", "Pruned vs unpruned, same inference option:", "", md(result["pairs"]), ""]
    lines += [f"- {n}" for n in result["notes"]] + ([""] if result["notes"] else [])
    lines += ["Output agreement with the plain PyTorch model (random input):", "",
              md([{"option": k, **v} for k, v in result["checks"].items()], ".3g"), ""]
    if "int8_map" in result:
        lines += ["int8 vs fp32 mAP (trained model):", "",
                  md([{"model": k, **v} for k, v in result["int8_map"].items()], ".4f"), ""]
    for key, label in (("layers", "plain eager"), ("layers_channels_last", "channels_last")):
        groups = layer_times.group_speedups(pd.DataFrame(result[key]), GROUP)
        c = layer_times.mac_ceiling(groups)
        lines += [f"Time and MACs by pruning group, {label} (per-layer hooks):", "",
                  tables.markdown_table(groups.reset_index()), "",
                  f"If every group's time fell exactly with its MACs ({label}), the pruned model's layers would take "
                  f"{c['mac_proportional_ms']:.1f} ms instead of {c['pruned_ms']:.1f} ms: "
                  f"{c['mac_proportional_speedup']:.2f}x over the unpruned {c['full_ms']:.1f} ms, against the "
                  f"{c['measured_speedup']:.2f}x measured.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    benchkit.run(main)
