"""Per-layer times and MACs of several models side by side; speed-ups per pruning group against the MACs'."""

from __future__ import annotations

import itertools
import math
import re
import statistics
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import pandas as pd
import torch
from torch import nn

from hrank_ssd.measure.bench import num_threads, timings_interleaved, unwrap
from hrank_ssd.measure.flops import count_exact
from hrank_ssd.nets.compress import PRUNED_RATE, layer_rates
from hrank_ssd.nets.registry import get_net

WRAPPER_PREFIX = re.compile(r"^((model|_orig_mod)\.)+")  # bench.Wrapped's wrappers, torch.compile
TIMED = (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.ReLU)


def _hook_layers(models: Mapping[str, nn.Module], kinds, times, shapes) -> tuple:
    """Pre/post hooks timing every module of ``kinds``; ({layer: type}, hook handles)."""
    types, handles, starts = {}, [], {}
    for mname, model in models.items():
        for lname, mod in model.named_modules():
            if not isinstance(mod, kinds):
                continue
            lname = WRAPPER_PREFIX.sub("", lname)  # match rows of wrapped (channels_last, compiled) and plain models
            types.setdefault(lname, type(mod).__name__)

            def pre(mod, inputs):
                starts[id(mod)] = time.perf_counter()

            def post(mod, inputs, out, _m=mname, _l=lname):
                times[_m].setdefault(_l, []).append(time.perf_counter() - starts[id(mod)])
                if _l not in shapes[_m]:
                    shapes[_m][_l] = f"{inputs[0].shape[1]}->{out.shape[1]}@{out.shape[-2]}x{out.shape[-1]}"
            handles += [mod.register_forward_pre_hook(pre), mod.register_forward_hook(post)]
    return types, handles


def layer_times_and_macs(models: Mapping[str, nn.Module], runs: int = 10, warmup: int = 2,
                         threads: Optional[int] = None, progress: bool = False) -> pd.DataFrame:
    """Median ms (``<model>_ms``), ``<model>_shape`` and ``<model>_MMACs`` of every Conv2d/BatchNorm/pool/ReLU
    call, matched by name (wrapped models under the plain names)."""
    times: Dict[str, Dict[str, List[float]]] = {n: {} for n in models}
    shapes: Dict[str, Dict[str, str]] = {n: {} for n in models}
    types, handles = _hook_layers(models, TIMED, times, shapes)
    try:
        with num_threads(threads), torch.inference_mode():
            xs = {n: torch.randn(1, 3, m.image_size, m.image_size) for n, m in models.items()}
            fns = {n: (lambda m=m, x=xs[n]: m(x)) for n, m in models.items()}
            timings_interleaved(fns, warmup, 1)  # warm up
            for n in times:
                times[n].clear()
            timings_interleaved(fns, 0, runs, progress=progress, desc="layer times")
    finally:
        for h in handles:
            h.remove()
    layers = pd.DataFrame({"name": list(types), "type": list(types.values())})
    for n in models:
        layers[f"{n}_ms"] = [1000.0 * statistics.median(times[n][k]) if times[n].get(k) else math.nan for k in types]
        layers[f"{n}_shape"] = [shapes[n].get(k, "") for k in types]
    for n, model in models.items():
        macs = count_exact(unwrap(model))
        layers[f"{n}_MMACs"] = layers["name"].map(dict(zip(macs["name"], macs["MACs"] / 1e6))).fillna(0.0)
    return layers


def pruning_groups(compress_rate: Sequence[float] = PRUNED_RATE, net: str = "vgg16-ssd") -> Callable[[str], str]:
    """Module name -> its group of consecutive layers of one rate, e.g. ``conv1_1..conv3_3 (rate 0.1)``."""
    spec = get_net(net)
    names, rates, label = spec.layer_names, layer_rates(compress_rate, spec.num_prunable), []
    for rate, run in itertools.groupby(range(len(rates)), key=rates.__getitem__):
        run = list(run)
        text = f"{names[run[0]]}..{names[run[-1]]}" if len(run) > 1 else names[run[0]]
        label += [f"{text} (rate {rate:g})"] * len(run)
    unpruned = f"{spec.unpruned_parts} (unpruned)"

    def group(name: str) -> str:
        layer = spec.layer_of_module(name)
        return unpruned if layer is None else label[layer]

    return group


def conv_speedups(layers: pd.DataFrame) -> pd.DataFrame:
    """The Conv2d rows of :func:`layer_times_and_macs` with ``full/pruned time`` and ``full/pruned MACs``."""
    conv = layers[layers["type"] == "Conv2d"].copy()
    conv["full/pruned time"] = conv["full_ms"] / conv["pruned_ms"]
    conv["full/pruned MACs"] = conv["full_MMACs"] / conv["pruned_MMACs"].where(conv["pruned_MMACs"] > 0)
    return conv


def group_speedups(layers: pd.DataFrame, group: Callable[[str], str], models=("full", "pruned")) -> pd.DataFrame:
    """Per group: time and MACs of models ``full`` and ``pruned``, their ratios and the share of the pruned time."""
    layers = layers.assign(group=[group(n) for n in layers["name"]])
    cols = [f"{m}_{unit}" for unit in ("ms", "MMACs") for m in models]
    groups = layers.groupby("group", sort=False)[cols].sum()
    groups["time ratio full/pruned"] = groups["full_ms"] / groups["pruned_ms"]
    groups["MAC ratio full/pruned"] = groups["full_MMACs"] / groups["pruned_MMACs"]
    groups["share of pruned time"] = groups["pruned_ms"] / groups["pruned_ms"].sum()
    return groups


def mac_ceiling(groups: pd.DataFrame) -> Dict[str, float]:
    """The pruned model's speed-up if every group's time fell with its MACs, beside the measured one."""
    ideal = float((groups["full_ms"] / groups["MAC ratio full/pruned"]).sum())
    full, pruned = float(groups["full_ms"].sum()), float(groups["pruned_ms"].sum())
    return {"full_ms": full, "pruned_ms": pruned, "mac_proportional_ms": ideal,
            "measured_speedup": full / pruned, "mac_proportional_speedup": full / ideal}
