"""Measuring a latency table (:mod:`latency_table` holds the format and the predictions).

1. The net's slice rules name every conv whose channels pruning changes; each becomes a *unit* with the
   BatchNorm, activation and max-pool modules right after it in its ``nn.Sequential`` (a BatchNorm in the
   rules that no conv absorbs is a unit of its own). A forward pre-hook on the full model records each unit's input size.
2. Each prunable layer gets a grid of kept counts (:func:`latency_table.grid_counts`, with the seed pruning's
   exact counts when the net publishes one).
3. For every unit and every (inputs, filters) cell of its grid, a standalone copy of the unit with those
   channels (random weights, eval mode, the model's memory layout) is timed with warm-up and medians; cells run
   interleaved (A, B, C, A, B, C...) in chunks of bounded memory, so background load hits them alike.
4. The full model's forward is timed too, ``runs`` calls first and one more after each unit (so a change of
   background load during the minutes of measuring weighs on it as on the units); ``full_ms`` is the median of
   these calls and ``rest_ms`` is it minus every unit at full width.
"""

from __future__ import annotations

import copy
import datetime as _dt
import math
import statistics
import time
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn
from tqdm.auto import tqdm

from hrank_ssd.devices import resolve_device
from hrank_ssd.errors import HRankError
from hrank_ssd.measure.bench import num_threads, timing, timings_interleaved
from hrank_ssd.measure.latency_table import (
    LatencyTable,
    UnitTimes,
    current_machine,
    grid_counts,
    hardware_block,
)
from hrank_ssd.nets.compress import format_compress_rate, layer_rates
from hrank_ssd.nets.models import build_model
from hrank_ssd.nets.registry import get_net
from hrank_ssd.nets.spec import NetSpec, Rule
from hrank_ssd.nets.ssd import kept_channels

# timed with the conv before them: they run on its output, so its kept filters set their cost too (a max pool
# after a VGG conv is ~10% of the forward on a CPU; left in rest_ms it would not shrink with pruning)
FOLLOWERS = (nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardswish, nn.SiLU, nn.MaxPool2d)
CHUNK_BYTES = 512 * 2 ** 20  # weights + inputs + outputs of the cells timed together
CHUNK_CELLS = 64


# ---------------------------------------------------------------- units


@dataclass
class Unit:
    """A conv (or a lone BatchNorm) of the slice rules and the modules timed with it."""

    names: List[str]
    modules: List[nn.Module]
    out_layer: Optional[int]
    in_layer: Optional[int]
    input_hw: Tuple[int, int] = (0, 0)

    @property
    def reads_own_channels(self) -> bool:
        """A depthwise conv or a BatchNorm reads as many channels as it makes."""
        first = self.modules[0]
        return isinstance(first, nn.BatchNorm2d) or (first.groups > 1 and first.groups == first.in_channels)

    def full_counts(self) -> Tuple[int, int]:
        first = self.modules[0]
        if isinstance(first, nn.BatchNorm2d):
            return first.num_features, first.num_features
        return first.in_channels, first.out_channels

    def input_channels(self, k_in: int, k_out: int) -> int:
        return k_out if self.reads_own_channels else k_in

    def copy(self, k_in: int, k_out: int) -> nn.Sequential:
        """A standalone copy with ``k_in`` input channels (ignored when it reads its own) and ``k_out`` filters."""
        layers = []
        for m in self.modules:
            if isinstance(m, nn.Conv2d):
                if m.groups > 1 and not self.reads_own_channels:
                    raise HRankError(f"{self.names[0]} is a grouped conv ({m.groups} groups): latency tables "
                                     f"time plain and depthwise convs only")
                groups = k_out if m.groups > 1 else 1
                layers.append(nn.Conv2d(self.input_channels(k_in, k_out), k_out, m.kernel_size, m.stride, m.padding,
                                        m.dilation, groups, bias=m.bias is not None, padding_mode=m.padding_mode))
            elif isinstance(m, nn.BatchNorm2d):
                layers.append(nn.BatchNorm2d(k_out, m.eps, m.momentum, m.affine, m.track_running_stats))
            else:  # a parameter-free activation or pool
                layers.append(copy.deepcopy(m))
        return nn.Sequential(*layers).eval()


def _followers(named: Mapping[str, nn.Module], name: str) -> List[str]:
    parent, _, idx = name.rpartition(".")
    seq = named.get(parent)
    if not isinstance(seq, nn.Sequential) or not idx.isdigit():
        return []
    out, i = [], int(idx) + 1
    while i < len(seq) and isinstance(seq[i], FOLLOWERS):
        out.append(f"{parent}.{i}")
        i += 1
    return out


def find_units(model: nn.Module, rules: Mapping[str, Rule]) -> List[Unit]:
    """The units of ``model`` (see the module's docstring), in the order ``named_modules`` lists them."""
    named = dict(model.named_modules())
    missing = sorted(set(rules) - set(named))
    if missing:
        raise HRankError(f"the net's slice rules name modules its model lacks: {missing[:5]}")
    units, taken = [], set()
    for kind in (nn.Conv2d, nn.BatchNorm2d):  # convs first: they absorb the BatchNorms that follow them
        for name, (out_layer, in_layer) in rules.items():
            if isinstance(named[name], kind) and name not in taken:
                names = [name] + _followers(named, name)
                taken.update(names)
                units.append(Unit(names, [named[n] for n in names], out_layer, in_layer))
    order = {name: k for k, name in enumerate(named)}
    return sorted(units, key=lambda u: order[u.names[0]])


@torch.no_grad()
def record_input_sizes(model: nn.Module, units: Sequence[Unit], image_size: int) -> None:
    """Set each unit's ``input_hw`` from one batch-1 forward of ``model`` (on its current device)."""
    handles = []
    for unit in units:
        def hook(module, inputs, _u=unit):
            _u.input_hw = tuple(int(s) for s in inputs[0].shape[-2:])
        handles.append(unit.modules[0].register_forward_pre_hook(hook))
    try:
        device = next(model.parameters()).device
        model(torch.zeros(1, 3, image_size, image_size, device=device))
    finally:
        for h in handles:
            h.remove()
    unseen = [u.names[0] for u in units if u.input_hw == (0, 0)]
    if unseen:
        raise HRankError(f"the forward pass never reaches {unseen[:5]}: they cannot be timed")


# ---------------------------------------------------------------- grid and timing


def net_grid(spec: NetSpec, channels: Sequence[int], points: int, block: int) -> List[List[int]]:
    """Per prunable layer: :func:`grid_counts` with the seed pruning's exact counts when the net has one."""
    rates = layer_rates(spec.default_compress_rate, spec.num_prunable) if spec.default_compress_rate else None
    return [grid_counts(c, points, block, [kept_channels(c, rates[i])] if rates else ())
            for i, c in enumerate(channels)]


@dataclass
class _Setup:
    batch_size: int
    device: torch.device
    fmt: torch.memory_format
    warmup: int
    runs: int


def _time_cells(unit: Unit, cells, setup: _Setup) -> Dict[tuple, float]:
    """Median ms of each (k_in, k_out) cell, interleaved in chunks of bounded memory."""
    out: Dict[tuple, float] = {}
    chunk: Dict[tuple, tuple] = {}
    used = 0
    h, w = unit.input_hw

    def flush():
        inputs: Dict[int, torch.Tensor] = {}
        fns = {}
        for cell, (module, c_in) in chunk.items():
            if c_in not in inputs:
                inputs[c_in] = torch.randn(setup.batch_size, c_in, h, w, device=setup.device).contiguous(
                    memory_format=setup.fmt)
            fns[cell] = lambda m=module, x=inputs[c_in]: m(x)
        for cell, t in timings_interleaved(fns, setup.warmup, setup.runs, setup.device).items():
            out[cell] = t["median_ms"]
        chunk.clear()

    for k_in, k_out in cells:
        module = unit.copy(k_in, k_out).to(device=setup.device, memory_format=setup.fmt)
        c_in = unit.input_channels(k_in, k_out)
        size = 4 * (sum(p.numel() for p in module.parameters()) + setup.batch_size * (c_in + k_out) * h * w)
        if chunk and (used + size > CHUNK_BYTES or len(chunk) >= CHUNK_CELLS):
            flush()
            used = 0
        chunk[(k_in, k_out)] = (module, c_in)
        used += size
    if chunk:
        flush()
    return out


def measure_unit(unit: Unit, counts: Sequence[Sequence[int]], setup: _Setup) -> UnitTimes:
    """One unit timed on every cell of its grid."""
    full_in, full_out = unit.full_counts()
    in_counts = [full_in] if unit.in_layer is None else list(counts[unit.in_layer])
    out_counts = [full_out] if unit.out_layer is None else list(counts[unit.out_layer])
    if in_counts[-1] != full_in or out_counts[-1] != full_out:
        raise HRankError(f"{unit.names[0]} has {full_in}->{full_out} channels but its slice rule's layers have "
                         f"{in_counts[-1]}->{out_counts[-1]}: the net's slice rules are wrong")
    ms = _time_cells(unit, [(a, b) for a in in_counts for b in out_counts], setup)
    return UnitTimes(unit.names[0], unit.out_layer, unit.in_layer, in_counts, out_counts,
                     [[ms[(a, b)] for b in out_counts] for a in in_counts], list(unit.names), list(unit.input_hw))


def _check_args(batch_size, width, grid, runs, warmup, threads, block):
    if batch_size < 1 or runs < 1 or warmup < 0:
        raise HRankError("--batch_size and --runs must be at least 1, --warmup at least 0")
    if not width > 0 or grid < 1:
        raise HRankError(f"--width must be positive and --grid at least 1, got {width} and {grid}")
    if (threads is not None and threads < 1) or (block is not None and block < 1):
        raise HRankError("--threads and --block must be at least 1")


def measure_latency_table(net: str, device="cpu", threads: Optional[int] = None, batch_size: int = 1,
                          width: float = 1.0, image_size: Optional[int] = None, channels_last: bool = False,
                          grid: int = 8, runs: int = 10, warmup: int = 3, num_classes: int = 21,
                          block: Optional[int] = None, progress: bool = True) -> LatencyTable:
    """Measure ``net``'s latency table on this machine (random weights: shapes set the speed)."""
    spec = get_net(net)
    _check_args(batch_size, width, grid, runs, warmup, threads, block)
    device = resolve_device(device)
    block = block or hardware_block(device)
    image_size = image_size or spec.config.image_size
    torch.manual_seed(0)
    model = build_model(net, num_classes, width=width, image_size=image_size).eval()
    counts = net_grid(spec, model.plan.prunable, grid, block)
    units = find_units(model, spec.slice_rules())
    record_input_sizes(model, units, image_size)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    setup = _Setup(batch_size, device, fmt, warmup, runs)
    start = time.perf_counter()
    with num_threads(threads) as used_threads, torch.inference_mode():
        model = model.to(device=device, memory_format=fmt)
        x = torch.randn(batch_size, 3, image_size, image_size, device=device).contiguous(memory_format=fmt)

        def forward_ms(warm: int = 0) -> float:
            return timing(lambda: model(x), warm, 1, device)["median_ms"]

        full = [forward_ms(warmup)] + [forward_ms() for _ in range(runs - 1)]
        records = []
        for unit in tqdm(units, desc=f"latency-table {net}", unit="unit", disable=not progress):
            records.append(measure_unit(unit, counts, setup))
            full.append(forward_ms())  # one more call between units
        full_ms = statistics.median(full)
    rest_ms = full_ms - math.fsum(r.ms[-1][-1] for r in records)
    return LatencyTable(net=net, width=width, image_size=image_size, batch_size=batch_size, device=str(device),
                        threads=used_threads, layout="channels_last" if channels_last else "contiguous",
                        machine=current_machine(device), counts=counts, units=records, rest_ms=rest_ms,
                        full_ms=full_ms, num_classes=num_classes, block=block, runs=runs, warmup=warmup,
                        measure_s=time.perf_counter() - start,
                        date=_dt.datetime.now().astimezone().isoformat(timespec="seconds"))


# ---------------------------------------------------------------- checking predictions


def default_checks(net: str) -> Dict[str, Optional[List[float]]]:
    """Models to check a table on: the full net, and its published pruning (or every layer at rate 0.5)."""
    spec = get_net(net)
    rates = list(spec.default_compress_rate or [0.5] * spec.num_prunable)[:spec.num_prunable]
    kind = "published" if spec.default_compress_rate else "uniform"
    return {"full": None, f"{kind} {format_compress_rate(rates)}": rates}


def time_as_measured(table: LatencyTable, models: Mapping[str, nn.Module], runs: int = 10,
                     warmup: int = 3) -> Dict[str, Dict[str, float]]:
    """Forward timings of whole models as ``table`` was measured (device, threads, batch, layout), interleaved."""
    device = resolve_device(table.device)
    fmt = torch.channels_last if table.layout == "channels_last" else torch.contiguous_format
    with num_threads(table.threads), torch.inference_mode():
        ready = {n: m.eval().to(device=device, memory_format=fmt) for n, m in models.items()}
        x = torch.randn(table.batch_size, 3, table.image_size, table.image_size, device=device).contiguous(
            memory_format=fmt)
        return timings_interleaved({n: (lambda m=m: m(x)) for n, m in ready.items()}, warmup, runs, device)


def check_predictions(table: LatencyTable, models: Mapping[str, Optional[Sequence[float]]], runs: int = 10,
                      warmup: int = 3) -> List[dict]:
    """Time whole models (name -> compress rates, None: unpruned) as the table was measured, interleaved, and
    put each beside its prediction: ``{name, widths, predicted_ms, measured_ms}``."""
    rates = {name: layer_rates(r, len(table.counts)) if r is not None else [0.0] * len(table.counts)
             for name, r in models.items()}
    built = {}
    for name, r in rates.items():
        torch.manual_seed(0)
        built[name] = build_model(table.net, table.num_classes, compress_rate=r, width=table.width,
                                  image_size=table.image_size)
    times = time_as_measured(table, built, runs, warmup)
    rows = []
    for name, r in rates.items():
        widths = table.widths_for_rates(r)
        rows.append({"name": name, "widths": widths, "predicted_ms": table.predict(widths),
                     "measured_ms": times[name]["median_ms"]})
    return rows


__all__ = ["Unit", "check_predictions", "default_checks", "find_units", "measure_latency_table", "measure_unit",
           "net_grid", "record_input_sizes", "time_as_measured"]
