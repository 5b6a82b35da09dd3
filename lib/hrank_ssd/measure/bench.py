"""Latency and FPS: warm-up, device syncs, fixed threads, medians, models timed round-robin
(:func:`timings_interleaved`, the one timer); :func:`benchmark_models` is the table of ``bench`` and the report.
Models wrapped for inference (fp16 autocast, channels_last...) keep the facts of the SSD inside (:class:`Wrapped`)."""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import torch
from torch import nn

from hrank_ssd.devices import evaluating, model_on, resolve_device, sync
from hrank_ssd.errors import HRankError
from hrank_ssd.measure.flops import macs
from hrank_ssd.nets.models import build_model, count_parameters, load_model
from hrank_ssd.nets.predictor import Predictor
from hrank_ssd.nets.registry import net_names
from hrank_ssd.nets.ssd import SSD
from hrank_ssd.progress import tqdm

SSD_FACTS = ("cfg", "image_size", "num_classes", "plan")  # what Predictor, bench and flops read off a model


def summarize(seconds: Sequence[float], warmup: int = 0) -> Dict[str, float]:
    """Median, p90 (nearest-rank), mean, min, max and standard deviation of timed calls, in ms."""
    ms = sorted(1000.0 * s for s in seconds)
    p90 = ms[math.ceil(0.9 * len(ms)) - 1]
    return {"median_ms": statistics.median(ms), "p90_ms": p90, "mean_ms": statistics.fmean(ms), "min_ms": ms[0],
            "max_ms": ms[-1], "std_ms": statistics.pstdev(ms), "warmup": int(warmup), "runs": len(ms)}


def clocked(fn: Callable[[], object], device="cpu") -> Tuple[object, float]:
    """``(fn()``'s result, its seconds``)``, the device synchronised before and after (``time.perf_counter``)."""
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - start


def timings_interleaved(fns: Mapping[str, Callable[[], object]], warmup: int = 10, runs: int = 50,
                        device="cpu", progress: bool = False, desc: str = "timing") -> Dict[str, Dict[str, float]]:
    """:func:`summarize` of each callable, timed round-robin after ``warmup`` untimed rounds, between device syncs."""
    with tqdm(total=warmup + runs, desc=desc, unit="round", disable=not progress) as bar:
        for _ in range(warmup):
            for fn in fns.values():
                fn()
            bar.update()
        sync(device)
        seconds: Dict[str, List[float]] = {name: [] for name in fns}
        for _ in range(runs):
            for name, fn in fns.items():
                seconds[name].append(clocked(fn, device)[1])
            bar.update()
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


def device_name(device) -> str:
    """The GPU's name on CUDA ("no CUDA device" where there is none), else the CPU's."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device) if torch.cuda.is_available() else "no CUDA device"
    return cpu_model()


def _cpuinfo(field: str) -> str:
    """The value of the first ``field`` line of /proc/cpuinfo (Linux); "" elsewhere."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    return next((line.split(":", 1)[1].strip() for line in lines if line.lower().startswith(field)), "")


def cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_flags() -> set:
    """The CPU's feature flags (avx2, avx512f, ...); empty off Linux."""
    return set(_cpuinfo("flags").split())


def environment(device="cpu", threads: Optional[int] = None) -> dict:
    """Where and when numbers were taken: device, CPU, cores, threads, torch/python versions, date."""
    return {"device": str(torch.device(device)), "device_name": device_name(device), "cpu": cpu_model(),
            "cpu_count": os.cpu_count(), "threads": int(threads or torch.get_num_threads()),
            "torch": torch.__version__, "python": platform.python_version(),
            "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds")}


def build_bench_models(nets: Sequence[str], compress_rate: Sequence[float], weights: Mapping[str, str],
                       num_classes: int, width: float, image_size: Optional[int]) -> Dict[str, nn.Module]:
    """``vgg16-ssd``, ``mb1-ssd`` and their ``-pruned`` variants, random weights unless ``weights[name]`` is given."""
    unknown = set(weights) - set(nets)
    if unknown:
        raise HRankError(f"--weights names {sorted(unknown)} are not in --nets {list(nets)}: use name=PTH with "
                         f"a name from --nets")
    out = {}
    for name in nets:
        net = name.removesuffix("-pruned")
        if net not in net_names():
            raise HRankError(f"unknown net {name!r} in --nets: use {', '.join(net_names())} or one with -pruned")
        if name in weights:
            out[name] = load_model(weights[name], net=net, image_size=image_size).eval()
            continue
        torch.manual_seed(0)
        rate = compress_rate if name.endswith("-pruned") else None
        out[name] = build_model(net, num_classes, compress_rate=rate, width=width, image_size=image_size).eval()
    return out


def unwrap(model):
    """The SSD inside wrappers (:class:`Wrapped` ones, ``torch.compile``'s, an onnxruntime model's)."""
    while not isinstance(model, SSD):
        if hasattr(model, "_orig_mod"):  # torch.compile
            model = model._orig_mod
        elif hasattr(model, "model"):  # Wrapped, an onnxruntime model
            model = model.model
        else:
            break
    return model


def take_facts(wrapper, model):
    """Copy :data:`SSD_FACTS` of the SSD inside ``model`` onto ``wrapper``; return that SSD."""
    inner = unwrap(model)
    for name in SSD_FACTS:
        setattr(wrapper, name, getattr(inner, name))
    return inner


class Wrapped(nn.Module):
    """Base of the inference wrappers: forwards the SSD's attributes (``cfg``, ``priors``...)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        inner = take_facts(self, model)
        self.register_buffer("priors", inner.priors.clone(), persistent=False)

    def forward(self, x):
        return self.model(x)


def _table(facts: Mapping[str, dict], fwd: Mapping[str, dict], pred: Mapping[str, dict],
           batch_size: int) -> pd.DataFrame:
    """One row per model from its facts and timings; speed-up and MAC ratio against the first model."""
    names, first = list(facts), next(iter(facts))
    table = pd.DataFrame({"model": names, "params": [facts[n]["params"] for n in names],
                          "GMACs": [facts[n]["MACs"] / 1e9 for n in names]})
    for kind, timed in (("forward", fwd), ("predict", pred)):
        if timed:
            table[f"{kind}_median_ms"] = [timed[n]["median_ms"] for n in names]
            table[f"{kind}_p90_ms"] = [timed[n]["p90_ms"] for n in names]
            table[f"{kind}_fps"] = [1000.0 * batch_size / timed[n]["median_ms"] for n in names]
    table["forward_speedup"] = [fwd[first]["median_ms"] / fwd[n]["median_ms"] for n in names]
    table["mac_ratio"] = [facts[first]["MACs"] / facts[n]["MACs"] if facts[n]["MACs"] else math.nan
                          for n in names]
    return table


def benchmark_models(models: Mapping[str, nn.Module], device="cpu", batch_size: int = 1, warmup: int = 10,
                     runs: int = 50, threads: Optional[int] = None, image_size: Optional[int] = None,
                     amp: bool = False, predict: bool = True, channels_last: bool = False,
                     raw: Optional[dict] = None, progress: bool = False) -> pd.DataFrame:
    """One row per model: params, GMACs, forward and predict latency (median, p90 in ms), FPS, speed-ups against
    the first model; ``predict`` on ``batch_size`` random 500x375 images; ``amp``: fp16 autocast (CUDA only)."""
    device = resolve_device(device)
    if amp and device.type != "cuda":
        raise HRankError("--amp is fp16 autocast on CUDA: use it with --device cuda")
    if not models:
        raise HRankError("no models to benchmark: pass --nets")
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    with num_threads(threads) as used_threads, torch.inference_mode():
        facts = {n: {"params": count_parameters(unwrap(m)), "MACs": macs(unwrap(m), image_size=image_size)}
                 for n, m in models.items()}
        # the caller's model stays where it was: itself when already there, else a copy
        prepared = {n: model_on(m, device, channels_last=channels_last and isinstance(m, nn.Module))
                    for n, m in models.items()}
        prepared = {n: _AmpModel(m) for n, m in prepared.items()} if amp else prepared

        def forward(model):
            size = image_size or unwrap(model).image_size
            x = torch.randn(batch_size, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
            x = x.contiguous(memory_format=fmt)

            def run():
                with evaluating(model):
                    return model(x)
            return run

        fwd = timings_interleaved({n: forward(m) for n, m in prepared.items()}, warmup, runs, device, progress,
                                  "bench forward")
        pred = {}
        if predict:
            rng = np.random.default_rng(0)  # random 500x375 RGB images: the predictor resizes them, as in real use
            images = [rng.integers(0, 256, (375, 500, 3), dtype=np.uint8) for _ in range(batch_size)]
            predictors = {n: Predictor(m, device, channels_last=channels_last)
                          for n, m in prepared.items()}
            pred = timings_interleaved({n: (lambda p=p: p.predict_batch(images)) for n, p in predictors.items()},
                                       warmup, runs, device, progress, "bench predict")
    table = _table(facts, fwd, pred, batch_size)
    table.attrs.update(environment(device, used_threads), batch_size=batch_size, warmup=warmup, runs=runs,
                       amp=amp, channels_last=channels_last)
    if raw is not None:
        raw.update(forward=fwd, predict=pred)
    return table


class _AmpModel(Wrapped):
    """Forward under fp16 autocast (CUDA), outputs back to float32 (so post-processing is unchanged)."""

    def forward(self, x):
        with torch.autocast("cuda", dtype=torch.float16):
            conf, loc = self.model(x)
        return conf.float(), loc.float()


def results_json(table: pd.DataFrame, raw: Optional[dict] = None, **extra) -> dict:
    """Machine-readable results: environment (device name, torch, threads, date...), settings, rows."""
    meta = {k: (v.item() if hasattr(v, "item") else v) for k, v in table.attrs.items()}
    rows = [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in table.to_dict("records")]
    out = {**meta, **extra, "results": rows}
    if raw is not None:
        out["timings"] = raw
    return out
