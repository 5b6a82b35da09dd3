"""Latency and FPS, measured properly: warm-up, CUDA synchronisation, fixed threads, medians, interleaving.

The original project timed its pruned VGG16-SSD slower than the unpruned one: its timer had no warm-up
(the first calls pay for allocation and kernel selection), no ``torch.cuda.synchronize()`` (CUDA calls
return before the GPU is done, so the time lands on whichever later call waits) and a per-class Python
NMS loop that dominated the end-to-end time. Here:

* :func:`timing` runs ``warmup`` untimed calls, then ``runs`` timed calls, each bracketed by a device
  synchronisation and read with ``time.perf_counter``; it reports the median and p90 (robust to the
  odd slow call) besides mean/min/max.
* :func:`timings_interleaved` times several callables round-robin (A, B, C, A, B, C, ...), so a burst of
  background load hits every model alike; ratios between models are then meaningful on a busy machine.
* :func:`benchmark_models` is the one table used by the CLI (``python -m hrank_ssd bench``), notebook 04
  and the report: per model, forward and end-to-end predict latency (preprocess, forward, decode, NMS via
  :class:`~hrank_ssd.nets.predictor.Predictor`), FPS, parameters and MACs.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import os
import platform
import re
import statistics
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from hrank_ssd.measure.speed import Wrapped, unwrap
from hrank_ssd.nets.compress import PRUNED_RATE

TIMING_KEYS = ("median_ms", "p90_ms", "mean_ms", "min_ms", "max_ms", "std_ms", "warmup", "runs")
WRAPPER_PREFIX = re.compile(r"^((model|_orig_mod)\.)+")  # speed.py wrappers, torch.compile
TABLE_COLUMNS = ["model", "params", "GMACs", "forward_median_ms", "forward_p90_ms", "forward_fps",
                 "predict_median_ms", "predict_p90_ms", "predict_fps", "forward_speedup", "mac_ratio"]


# ---------------------------------------------------------------- timing


def sync(device) -> None:
    """Wait for queued CUDA work on ``device`` (no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def summarize(seconds: Sequence[float], warmup: int = 0) -> Dict[str, float]:
    """Median, p90 (nearest-rank), mean, min, max and standard deviation of timed calls, in ms."""
    ms = sorted(1000.0 * s for s in seconds)
    if not ms:
        raise ValueError("no timed runs")
    p90 = ms[min(len(ms) - 1, max(0, math.ceil(0.9 * len(ms)) - 1))]
    return {"median_ms": statistics.median(ms), "p90_ms": p90, "mean_ms": statistics.fmean(ms), "min_ms": ms[0],
            "max_ms": ms[-1], "std_ms": statistics.pstdev(ms), "warmup": int(warmup), "runs": len(ms)}


def _timed(fn: Callable[[], object], device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def timing(fn: Callable[[], object], warmup: int = 10, runs: int = 50, device="cpu") -> Dict[str, float]:
    """Time ``fn()``: ``warmup`` untimed calls, then ``runs`` calls each between two device syncs.

    Returns ``median_ms``, ``p90_ms``, ``mean_ms``, ``min_ms``, ``max_ms``, ``std_ms``, ``warmup``, ``runs``.
    """
    if runs < 1 or warmup < 0:
        raise ValueError("runs must be >= 1 and warmup >= 0")
    for _ in range(warmup):
        fn()
    sync(device)
    return summarize([_timed(fn, device) for _ in range(runs)], warmup)


def timings_interleaved(fns: Mapping[str, Callable[[], object]], warmup: int = 10, runs: int = 50,
                        device="cpu") -> Dict[str, Dict[str, float]]:
    """:func:`timing` for several callables at once, round-robin (A, B, C, A, B, C, ...)."""
    if runs < 1 or warmup < 0:
        raise ValueError("runs must be >= 1 and warmup >= 0")
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    sync(device)
    seconds: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            seconds[name].append(_timed(fn, device))
    return {name: summarize(s, warmup) for name, s in seconds.items()}


@contextlib.contextmanager
def num_threads(threads: Optional[int]):
    """Run the block with ``torch.set_num_threads(threads)`` (unchanged when None), then restore."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------- model facts


def count_params(model) -> int:
    from hrank_ssd.nets.models import count_parameters

    inner = unwrap(model)
    return int(count_parameters(inner)) if isinstance(inner, nn.Module) else 0


def count_macs(model, image_size: Optional[int] = None) -> int:
    """MACs of one image (:func:`hrank_ssd.measure.flops.count_exact`, which agrees with thop)."""
    from hrank_ssd.measure.flops import count_exact

    return int(count_exact(unwrap(model), image_size)["MACs"].sum())


def device_name(device) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device="cpu", threads: Optional[int] = None) -> dict:
    """Where and when numbers were taken: device, CPU, cores, threads, torch/python versions, date."""
    return {"device": str(torch.device(device)), "device_name": device_name(device), "cpu": cpu_model(),
            "cpu_count": os.cpu_count(), "threads": int(threads or torch.get_num_threads()),
            "torch": torch.__version__, "python": platform.python_version(),
            "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds")}


# ---------------------------------------------------------------- building the compared models


def build_bench_models(nets: Sequence[str], compress_rate: str = PRUNED_RATE, weights: Optional[Mapping[str, str]] = None,
                       num_classes: int = 21, width: float = 1.0, image_size: Optional[int] = None,
                       seed: int = 0) -> Dict[str, nn.Module]:
    """``vgg16-ssd``, ``mb1-ssd`` and their ``-pruned`` variants (``compress_rate``), random weights unless
    ``weights[name]`` gives a checkpoint (shapes are what matter for speed)."""
    from hrank_ssd.errors import HRankError
    from hrank_ssd.nets.models import build_model, load_model

    weights = dict(weights or {})
    unknown = set(weights) - set(nets)
    if unknown:
        raise HRankError(f"--weights names {sorted(unknown)} are not in --nets {list(nets)}: use name=PTH with "
                         f"a name from --nets")
    out = {}
    for name in nets:
        net = name.removesuffix("-pruned")
        if net not in ("vgg16-ssd", "mb1-ssd"):
            raise HRankError(f"unknown net {name!r} in --nets: use vgg16-ssd, mb1-ssd or either with -pruned")
        if name in weights:
            out[name] = load_model(weights[name], net=net, image_size=image_size).eval()
            continue
        torch.manual_seed(seed)
        rate = compress_rate if name.endswith("-pruned") else None
        out[name] = build_model(net, num_classes, compress_rate=rate, width=width, image_size=image_size).eval()
    return out


# ---------------------------------------------------------------- the table


def sample_images(batch_size: int, height: int = 375, width: int = 500, seed: int = 0) -> List[np.ndarray]:
    """Random RGB uint8 images of a typical VOC size (the predictor resizes them, as in real use)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(batch_size)]


def _autocast(device, amp: bool):
    if amp and torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def benchmark_models(models: Mapping[str, nn.Module], device="cpu", batch_size: int = 1, warmup: int = 10,
                     runs: int = 50, threads: Optional[int] = None, image_size: Optional[int] = None,
                     amp: bool = False, predict: bool = True, channels_last: bool = False,
                     raw: Optional[dict] = None) -> pd.DataFrame:
    """One row per model: params, GMACs, forward and predict latency (median, p90 in ms), FPS.

    Models run interleaved, with fixed threads and warm-up; ``forward_speedup`` and ``mac_ratio`` are
    relative to the first model. FPS = ``batch_size / median``. ``predict`` times
    :meth:`Predictor.predict_batch` on ``batch_size`` random 500x375 images (resize, normalise, forward,
    decode, NMS); with random weights every class keeps its 200 candidates, the worst case for NMS.
    ``amp`` runs the forward under fp16 autocast (CUDA only). ``raw``, when given, receives the full
    timing dicts.
    """
    from hrank_ssd.devices import resolve_device
    from hrank_ssd.errors import HRankError
    from hrank_ssd.nets.predictor import Predictor

    device = resolve_device(device)
    if amp and device.type != "cuda":
        raise HRankError("--amp is fp16 autocast on CUDA: use it with --device cuda")
    if not models:
        raise HRankError("no models to benchmark: pass --nets")
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    with num_threads(threads) as used_threads, torch.inference_mode():
        prepared, facts = {}, {}
        for name, model in models.items():
            size = image_size or unwrap(model).image_size
            facts[name] = {"params": count_params(model), "MACs": count_macs(model, size)}
            model = model.to(device).eval()
            if channels_last and isinstance(model, nn.Module):
                model = model.to(memory_format=torch.channels_last)
            prepared[name] = model
        sizes = {name: image_size or unwrap(m).image_size for name, m in prepared.items()}
        inputs = {name: torch.randn(batch_size, 3, s, s, generator=torch.Generator().manual_seed(0)).to(device)
                  .contiguous(memory_format=fmt) for name, s in sizes.items()}

        def forward(name):
            model, x = prepared[name], inputs[name]

            def run():
                with _autocast(device, amp):
                    return model(x)
            return run

        fwd = timings_interleaved({n: forward(n) for n in prepared}, warmup, runs, device)
        pred = {}
        if predict:
            images = sample_images(batch_size)
            predictors = {n: Predictor(_AmpModel(m, device) if amp else m, device, channels_last=channels_last)
                          for n, m in prepared.items()}
            pred = timings_interleaved({n: (lambda p=p: p.predict_batch(images)) for n, p in predictors.items()},
                                       warmup, runs, device)
    rows = []
    first = next(iter(prepared))
    for name in prepared:
        f = fwd[name]
        row = {"model": name, "params": facts[name]["params"], "GMACs": facts[name]["MACs"] / 1e9,
               "forward_median_ms": f["median_ms"], "forward_p90_ms": f["p90_ms"],
               "forward_fps": 1000.0 * batch_size / f["median_ms"]}
        if predict:
            p = pred[name]
            row.update(predict_median_ms=p["median_ms"], predict_p90_ms=p["p90_ms"],
                       predict_fps=1000.0 * batch_size / p["median_ms"])
        row["forward_speedup"] = fwd[first]["median_ms"] / f["median_ms"]
        row["mac_ratio"] = facts[first]["MACs"] / facts[name]["MACs"] if facts[name]["MACs"] else math.nan
        rows.append(row)
    table = pd.DataFrame(rows, columns=[c for c in TABLE_COLUMNS if predict or not c.startswith("predict")])
    table.attrs.update(environment(device, used_threads), batch_size=batch_size, warmup=warmup, runs=runs,
                       amp=amp, channels_last=channels_last)
    if raw is not None:
        raw.update(forward=fwd, predict=pred)
    return table


class _AmpModel(Wrapped):
    """Forward under fp16 autocast, outputs back to float32 (so post-processing is unchanged)."""

    def __init__(self, model, device):
        super().__init__(model)
        self.device_type = torch.device(device).type

    def forward(self, x):
        with _autocast(self.device_type, True):
            conf, loc = self.model(x)
        return conf.float(), loc.float()


# ---------------------------------------------------------------- per-layer timing


def layer_times(models: Mapping[str, nn.Module], runs: int = 10, warmup: int = 2, threads: Optional[int] = None,
                image_size: Optional[int] = None, kinds=(nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.ReLU)
                ) -> pd.DataFrame:
    """Median wall time of every Conv2d/BatchNorm/pool/ReLU call, per model, runs interleaved (CPU).

    Forward pre/post hooks read ``time.perf_counter``; rows are matched across models by module name,
    so models must share a layout (e.g. a net and its pruned copy). Columns: ``name``, ``type``, and per
    model ``<model>_ms`` and ``<model>_shape`` (``in->out channels @ HxW``). Hooks add a few microseconds
    per call, so the column sums slightly exceed the plain forward time.
    """
    times: Dict[str, Dict[str, List[float]]] = {n: {} for n in models}
    shapes: Dict[str, Dict[str, str]] = {n: {} for n in models}
    order: List[str] = []
    handles = []
    starts: Dict[int, float] = {}
    for mname, model in models.items():
        for lname, mod in model.named_modules():
            if not isinstance(mod, kinds):
                continue
            lname = WRAPPER_PREFIX.sub("", lname)  # match rows of wrapped (channels_last, compiled) and plain models
            if lname not in order:
                order.append(lname)

            def pre(mod, inputs):
                starts[id(mod)] = time.perf_counter()

            def post(mod, inputs, out, _m=mname, _l=lname):
                times[_m].setdefault(_l, []).append(time.perf_counter() - starts[id(mod)])
                if _l not in shapes[_m]:
                    c_in = inputs[0].shape[1]
                    shapes[_m][_l] = f"{c_in}->{out.shape[1]}@{out.shape[-2]}x{out.shape[-1]}"
            handles += [mod.register_forward_pre_hook(pre), mod.register_forward_hook(post)]
    try:
        with num_threads(threads), torch.inference_mode():
            xs = {n: torch.randn(1, 3, image_size or m.image_size, image_size or m.image_size)
                  for n, m in models.items()}
            fns = {n: (lambda m=m, x=xs[n]: m(x)) for n, m in models.items()}
            timings_interleaved(fns, warmup, 1)  # warm up
            for n in times:
                times[n].clear()
            for _ in range(runs):
                for fn in fns.values():
                    fn()
    finally:
        for h in handles:
            h.remove()
    rows = []
    types = {WRAPPER_PREFIX.sub("", ln): type(mod).__name__ for m in models.values() for ln, mod in m.named_modules()}
    for lname in order:
        row = {"name": lname, "type": types[lname]}
        for n in models:
            t = times[n].get(lname)
            row[f"{n}_ms"] = 1000.0 * statistics.median(t) if t else math.nan
            row[f"{n}_shape"] = shapes[n].get(lname, "")
        rows.append(row)
    return pd.DataFrame(rows)


def vgg_pruning_groups(compress_rate=PRUNED_RATE) -> Callable[[str], str]:
    """Module name -> its pruning group in VGG16-SSD, e.g. ``conv1_1..conv3_3 (rate 0.1)``.

    A group is a run of consecutive prunable convs with the same rate, together with the ReLUs and pools
    that follow them; fc7, conv4_3's BatchNorm add-on, the extras and the headers are "unpruned".
    """
    from hrank_ssd.nets.compress import parse_compress_rate
    from hrank_ssd.nets.models import NUM_PRUNABLE, VGG_CONV_INDEXES, VGG_LAYER_NAMES

    n = NUM_PRUNABLE["vgg16-ssd"]
    rates = parse_compress_rate(compress_rate, n)
    label, start = [""] * n, 0
    for i in range(1, n + 1):
        if i == n or rates[i] != rates[start]:
            text = f"{VGG_LAYER_NAMES[start]}..{VGG_LAYER_NAMES[i - 1]}" if i - 1 > start else VGG_LAYER_NAMES[start]
            label[start:i] = [f"{text} (rate {rates[start]:g})"] * (i - start)
            start = i
    unpruned = "fc7, BN add-on, extras, headers (unpruned)"

    def group(name: str) -> str:
        parts = name.split(".")
        if parts[0] != "base_net" or int(parts[1]) >= VGG_CONV_INDEXES[n]:  # fc7 and after
            return unpruned
        return label[max(i for i in range(n) if VGG_CONV_INDEXES[i] <= int(parts[1]))]

    return group


def layer_times_and_macs(models: Mapping[str, nn.Module], runs: int = 10, warmup: int = 2,
                         threads: Optional[int] = None) -> pd.DataFrame:
    """:func:`layer_times` plus each model's MACs per layer (``<model>_MMACs``, 0 for ReLU and pooling).

    Wrapped models (e.g. :class:`hrank_ssd.measure.speed.ChannelsLast`) are timed as they run, under the plain
    model's module names.
    """
    from hrank_ssd.measure.flops import count_exact

    layers = layer_times(models, runs=runs, warmup=warmup, threads=threads)
    for key, model in models.items():
        macs = count_exact(unwrap(model))
        layers[f"{key}_MMACs"] = layers["name"].map(dict(zip(macs["name"], macs["MACs"] / 1e6))).fillna(0.0)
    return layers


def conv_speedups(layers: pd.DataFrame) -> pd.DataFrame:
    """The Conv2d rows of :func:`layer_times_and_macs` with ``full/pruned time`` and ``full/pruned MACs``
    (NaN where the pruned layer has no MACs)."""
    conv = layers[layers["type"] == "Conv2d"].copy()
    conv["full/pruned time"] = conv["full_ms"] / conv["pruned_ms"]
    conv["full/pruned MACs"] = conv["full_MMACs"] / conv["pruned_MMACs"].where(conv["pruned_MMACs"] > 0)
    return conv


def group_speedups(layers: pd.DataFrame, group: Callable[[str], str], models=("full", "pruned")) -> pd.DataFrame:
    """Per group (``group(module name)``): time and MACs of each model, the full/pruned ratios of both, and
    the group's share of the pruned model's time. ``layers`` comes from :func:`layer_times_and_macs` with
    models named ``full`` and ``pruned`` (more, e.g. ``round8``, are summed alongside)."""
    layers = layers.assign(group=[group(n) for n in layers["name"]])
    cols = [f"{m}_{unit}" for unit in ("ms", "MMACs") for m in models]
    groups = layers.groupby("group", sort=False)[cols].sum()
    groups["time ratio full/pruned"] = groups["full_ms"] / groups["pruned_ms"]
    groups["MAC ratio full/pruned"] = groups["full_MMACs"] / groups["pruned_MMACs"]
    groups["share of pruned time"] = groups["pruned_ms"] / groups["pruned_ms"].sum()
    return groups


def mac_ceiling(groups: pd.DataFrame) -> Dict[str, float]:
    """The pruned model's speed-up if every group's time fell exactly with its MACs, next to the measured one
    (both over the layers that :func:`layer_times` sees)."""
    ideal = float((groups["full_ms"] / groups["MAC ratio full/pruned"]).sum())
    full, pruned = float(groups["full_ms"].sum()), float(groups["pruned_ms"].sum())
    return {"full_ms": full, "pruned_ms": pruned, "mac_proportional_ms": ideal,
            "measured_speedup": full / pruned, "mac_proportional_speedup": full / ideal}


# ---------------------------------------------------------------- formatting


def _fmt(v, floatfmt: str) -> str:
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        return "n/a" if math.isnan(v) else format(float(v), floatfmt)
    return str(v).replace("|", "\\|").replace("\n", " ")


def markdown_table(df: pd.DataFrame, floatfmt: str = ".2f", index: bool = False,
                   formats: Optional[Dict[str, str]] = None) -> str:
    """A GitHub markdown table from a DataFrame (no ``tabulate`` needed): ints with thousands separators,
    numbers right-aligned; ``formats`` maps a column name to its float format (default ``floatfmt``)."""
    formats = formats or {}
    frame = df.reset_index() if index else df
    cols = [str(c) for c in frame.columns]
    body = [[_fmt(v, formats.get(c, floatfmt)) for c, v in zip(cols, row)] for row in frame.itertuples(index=False)]
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
               for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |",
             "|" + "|".join("---:" if num else "---" for num in numeric) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def results_json(table: pd.DataFrame, raw: Optional[dict] = None, **extra) -> dict:
    """Machine-readable results: environment (device name, torch, threads, date...), settings, rows."""
    meta = {k: (v.item() if hasattr(v, "item") else v) for k, v in table.attrs.items()}
    rows = [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in table.to_dict("records")]
    out = {**meta, **extra, "results": rows}
    if raw is not None:
        out["timings"] = raw
    return out




# ---------------------------------------------------------------- the post-processing baseline


def _iou_one(box: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    lt = torch.maximum(box[:2], boxes[:, :2])
    rb = torch.minimum(box[2:], boxes[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    area = lambda b: (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)  # noqa: E731
    return inter / (area(boxes) + area(box) - inter + 1e-5)  # pytorch-ssd's iou_of, its eps included


def hard_nms_loop(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, candidate_size: int = 200,
                  top_k: int = -1) -> torch.Tensor:
    """pytorch-ssd's ``box_utils.hard_nms`` for one class: sort, keep the best ``candidate_size``, then pick
    the best box and drop the rest overlapping it above ``iou_threshold`` (IoU with pytorch-ssd's 1e-5 added
    to the denominator), one Python step per kept box, stopping at ``top_k`` boxes when ``top_k > 0``."""
    order = scores.argsort(descending=True)[:candidate_size]
    picked = []
    while order.numel() > 0:
        current = order[0]
        picked.append(int(current))
        if 0 < top_k == len(picked) or order.numel() == 1:
            break
        rest = order[1:]
        order = rest[_iou_one(boxes[current], boxes[rest]) <= iou_threshold]
    return torch.as_tensor(picked, dtype=torch.long)


def reference_postprocess(confidences: torch.Tensor, locations: torch.Tensor, priors: torch.Tensor, cfg,
                          score_threshold: float = 0.01, iou_threshold: Optional[float] = None,
                          candidate_size: int = 200, top_k: int = -1):
    """The per-class loop of pytorch-ssd's ``Predictor.predict`` (the seed's post-processing): for every
    class, threshold its scores, then :func:`hard_nms_loop`. Same outputs as
    :func:`hrank_ssd.nets.predictor.postprocess` (boxes in [0, 1] xyxy, labels, scores), grouped by class."""
    from hrank_ssd.nets.priors import center_to_corner, decode

    iou_threshold = cfg.iou_threshold if iou_threshold is None else iou_threshold
    probs = torch.softmax(confidences.float(), dim=2)
    boxes = center_to_corner(decode(locations.float(), priors, cfg.center_variance, cfg.size_variance))
    out = []
    for p, b in zip(probs, boxes):
        picked_boxes, picked_labels, picked_scores = [], [], []
        for c in range(1, p.size(1)):
            s = p[:, c]
            mask = s > score_threshold
            s, cb = s[mask], b[mask]
            if s.numel() == 0:
                continue
            keep = hard_nms_loop(cb, s, iou_threshold, candidate_size, top_k)
            picked_boxes.append(cb[keep])
            picked_scores.append(s[keep])
            picked_labels.append(torch.full((keep.numel(),), c, dtype=torch.long))
        if picked_boxes:
            out.append((torch.cat(picked_boxes), torch.cat(picked_labels), torch.cat(picked_scores)))
        else:
            out.append((torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), torch.zeros(0)))
    return out


def same_detections(a, b, atol: float = 1e-6) -> bool:
    """Whether two (boxes, labels, scores) results hold the same detections, in any order."""
    def canon(d):
        boxes, labels, scores = (t.detach().cpu() for t in d)
        order = sorted(range(labels.numel()), key=lambda i: (int(labels[i]), -float(scores[i]), boxes[i].tolist()))
        idx = torch.as_tensor(order, dtype=torch.long)
        return boxes[idx].reshape(-1, 4), labels[idx], scores[idx]
    (ba, la, sa), (bb, lb, sb) = canon(a), canon(b)
    return (la.shape == lb.shape and bool(torch.equal(la, lb)) and torch.allclose(sa, sb, atol=atol, rtol=0)
            and torch.allclose(ba, bb, atol=atol, rtol=0))


__all__ = ["PRUNED_RATE", "TABLE_COLUMNS", "TIMING_KEYS", "benchmark_models", "build_bench_models", "count_macs",
           "hard_nms_loop", "reference_postprocess", "same_detections",
           "count_params", "cpu_model", "device_name", "environment", "layer_times", "markdown_table", "num_threads",
           "results_json", "sample_images", "summarize", "sync", "timing", "timings_interleaved"]
