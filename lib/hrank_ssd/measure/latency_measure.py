"""Measuring a latency table (:mod:`latency_table` holds the format and the predictions).

1. The net's slice rules name every conv whose channels pruning changes; each becomes a *unit* with the
   BatchNorm, activation and max-pool modules right after it in its ``nn.Sequential`` (a BatchNorm in the
   rules that no conv absorbs is a unit of its own). A forward pre-hook on the full model records each unit's
   input size.
2. Each prunable layer gets a grid of kept counts (:func:`latency_table.grid_counts`, with the seed pruning's
   exact counts when the net publishes one).
3. Units are timed **inside whole models**, as they will run: :func:`design_widths` lists models (the full
   model's first filters kept, :func:`hrank_ssd.hrank.pruning.apply_kept`) whose layers sit at grid positions
   ``p`` (even layers) and ``q`` (odd layers), for every pair ``(p, q)``, so every (inputs, filters) cell of every
   unit occurs in some model. A pre-hook on each unit's first module stamps the clock (CUDA events on a GPU);
   a unit's *segment* runs from its stamp to the next unit's (the last one's to the end of the forward), so the
   segments add up to the forward: the headers, reshapes and tensors freed between two units are charged to the
   unit before them, whose kept counts set their size. Models run interleaved in chunks of bounded memory, in
   a shuffled order, so background load hits every part of the grid alike; a cell's time is the median of all
   its segments. A cell is met by one or two models, so its samples share their chunk's moment: ``rounds > 1``
   times the whole design again in new orders, so each cell is sampled at ``rounds`` moments.
4. ``full_ms`` is the median forward of the full model (one of the design's models) and ``rest_ms`` is it minus
   every unit at full width: the time before the first unit.
"""

from __future__ import annotations

import datetime as _dt
import math
import random
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn
from tqdm.auto import tqdm

from hrank_ssd.devices import resolve_device
from hrank_ssd.errors import HRankError
from hrank_ssd.hrank.pruning import apply_kept
from hrank_ssd.measure.bench import num_threads, timings_interleaved
from hrank_ssd.measure.latency_table import (
    LatencyTable,
    UnitTimes,
    current_machine,
    grid_counts,
    hardware_block,
)
from hrank_ssd.nets.compress import format_compress_rate, layer_rates
from hrank_ssd.nets.models import build_model, layer_names
from hrank_ssd.nets.registry import get_net
from hrank_ssd.nets.spec import NetSpec, Rule
from hrank_ssd.nets.ssd import SSD, kept_channels

# timed with the conv before them: they run on its output, so its kept filters set their cost too (a max pool
# after a VGG conv is ~10% of the forward on a CPU)
FOLLOWERS = (nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardswish, nn.SiLU, nn.MaxPool2d)
CHUNK_BYTES = 512 * 2 ** 20  # parameters of the models timed together
CHUNK_MODELS = 8
CHECK_COPIES = 4  # places in the shuffled design of each check model


# ---------------------------------------------------------------- units


@dataclass
class Unit:
    """A conv (or a lone BatchNorm) of the slice rules and the modules timed with it."""

    names: List[str]
    modules: List[nn.Module]
    out_layer: Optional[int]
    in_layer: Optional[int]
    input_hw: Tuple[int, int] = (0, 0)

    def full_counts(self) -> Tuple[int, int]:
        first = self.modules[0]
        if isinstance(first, nn.BatchNorm2d):
            return first.num_features, first.num_features
        return first.in_channels, first.out_channels

    def cell(self, widths: Sequence[int], full: Tuple[int, int]) -> Tuple[int, int]:
        """(k_in, k_out) of this unit in a model whose prunable layers keep ``widths``; ``full`` fixes a side."""
        return (full[0] if self.in_layer is None else int(widths[self.in_layer]),
                full[1] if self.out_layer is None else int(widths[self.out_layer]))


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


# ---------------------------------------------------------------- the grid and the models that cover it


def net_grid(spec: NetSpec, channels: Sequence[int], points: int, block: int) -> List[List[int]]:
    """Per prunable layer: :func:`grid_counts` with the seed pruning's exact counts when the net has one."""
    rates = layer_rates(spec.default_compress_rate, spec.num_prunable) if spec.default_compress_rate else None
    return [grid_counts(c, points, block, [kept_channels(c, rates[i])] if rates else ())
            for i, c in enumerate(channels)]


def design_widths(counts: Sequence[Sequence[int]]) -> List[List[int]]:
    """The models to time: for every pair ``(p, q)`` of positions in ``0..L-1`` (L the longest grid), even
    layers at position p and odd layers at q of their own grid (scaled to its length, so every count occurs).

    A unit between adjacent layers (or on one layer) then meets every cell of its grid in some model: L*L
    models, the full model (p = q = L-1) among them. Duplicates are dropped; the order is p-major."""
    longest = max(len(g) for g in counts)

    def at(grid, pos):
        return grid[round(pos * (len(grid) - 1) / (longest - 1))] if longest > 1 else grid[-1]

    seen, out = set(), []
    for p in range(longest):
        for q in range(longest):
            widths = [at(g, q if i % 2 else p) for i, g in enumerate(counts)]
            if tuple(widths) not in seen:
                seen.add(tuple(widths))
                out.append(widths)
    return out


def first_filters(model: SSD, widths: Sequence[int]) -> SSD:
    """``model`` keeping the first ``widths[i]`` filters of prunable layer i (for timing: which filters is moot)."""
    return apply_kept(model, {n: list(range(k)) for n, k in zip(layer_names(model.cfg.name), widths)})


# ---------------------------------------------------------------- timing units inside models


class _Stamps:
    """Pre-hooks on each unit's first module note when it starts: ``perf_counter`` on a CPU, CUDA events on a
    GPU (a synchronisation per unit would distort what it measures)."""

    def __init__(self, units: Sequence[Unit], device: torch.device):
        self.cuda = device.type == "cuda"
        self.marks: List[tuple] = []
        self.handles = [u.modules[0].register_forward_pre_hook(self._hook(j)) for j, u in enumerate(units)]

    def _now(self):
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def _hook(self, j: int):
        def hook(module, inputs):
            self.marks.append((j, self._now()))
        return hook

    def _ms(self, a, b) -> float:
        return a.elapsed_time(b) if self.cuda else (b - a) * 1e3

    def forward(self, model: nn.Module, x: torch.Tensor) -> Tuple[float, Dict[int, float]]:
        """One forward: its ms, and each unit's segment in ms (from its stamp to the next one, or to the end)."""
        self.marks = []
        start = self._now()
        model(x)
        end = self._now()
        if self.cuda:
            torch.cuda.synchronize()
        stamps = [t for _, t in self.marks] + [end]
        segments: Dict[int, float] = defaultdict(float)
        for k, (j, t) in enumerate(self.marks):
            segments[j] += self._ms(t, stamps[k + 1])
        return self._ms(start, end), segments

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


@dataclass
class _Setup:
    device: torch.device
    fmt: torch.memory_format
    warmup: int
    runs: int
    x: torch.Tensor


def _time_chunk(models: Sequence[Tuple[List[int], Optional[str], SSD]], rules: Mapping[str, Rule], setup: _Setup,
                samples: Dict[tuple, List[float]], full_times: List[float], full: Mapping[str, tuple],
                check_times: Dict[str, list]) -> None:
    """Time a chunk of models interleaved; append each unit's segments to ``samples[(unit, k_in, k_out)]``,
    the full model's forwards to ``full_times`` and a named check model's forwards to ``check_times[name]``
    as (ms, {unit: segment ms}): its segments stay out of the cells. ``full``: each unit's (in, out) channels
    unpruned (a fixed side of a depthwise conv or a BatchNorm shrinks in a pruned model but is recorded at its
    full count)."""
    clocks = []
    for widths, name, model in models:  # each unit's sample key and whether this is the full model: once per model
        units = find_units(model, rules)
        keys = [(u.names[0], *u.cell(widths, full[u.names[0]])) for u in units]
        is_full = name is None and all(u.full_counts() == full[u.names[0]] for u in units)
        clocks.append((model, _Stamps(units, setup.device), keys, is_full, name))
    try:
        for _ in range(setup.warmup):
            for model, *_ in clocks:
                model(setup.x)
        for _ in range(setup.runs):
            for model, clock, keys, is_full, name in clocks:
                total, segments = clock.forward(model, setup.x)
                if name is not None:
                    check_times[name].append((total, {keys[j][0]: ms for j, ms in segments.items()}))
                    continue
                if is_full:
                    full_times.append(total)
                for j, ms in segments.items():
                    samples[keys[j]].append(ms)
    finally:
        for _, clock, *_ in clocks:
            clock.remove()


def _chunks(design: Sequence[Tuple[List[int], Optional[str]]], base: SSD, setup: _Setup):
    """Models of ``design`` (widths, check name or None) built and moved to the device, yielded in chunks of
    bounded memory."""
    chunk, used = [], 0
    for widths, name in design:
        model = first_filters(base, widths).eval().to(device=setup.device, memory_format=setup.fmt)
        size = 4 * sum(p.numel() for p in model.parameters())
        if chunk and (used + size > CHUNK_BYTES or len(chunk) >= CHUNK_MODELS):
            yield chunk
            chunk, used = [], 0
        chunk.append((widths, name, model))
        used += size
    if chunk:
        yield chunk


def _check_args(batch_size, width, grid, runs, warmup, threads, block, repeats=1):
    if batch_size < 1 or runs < 1 or warmup < 0 or repeats < 1:
        raise HRankError("--batch_size, --runs, --rounds and the check copies must be at least 1, --warmup at "
                         "least 0")
    if not width > 0 or grid < 1:
        raise HRankError(f"--width must be positive and --grid at least 1, got {width} and {grid}")
    if (threads is not None and threads < 1) or (block is not None and block < 1):
        raise HRankError("--threads and --block must be at least 1")


def _unit_times(units: Sequence[Unit], counts, samples: Mapping[tuple, List[float]]) -> List[UnitTimes]:
    """Each unit's grid of medians; a cell no model covered is an error naming the unit."""
    records = []
    for u in units:
        full_in, full_out = u.full_counts()
        ins = [full_in] if u.in_layer is None else list(counts[u.in_layer])
        outs = [full_out] if u.out_layer is None else list(counts[u.out_layer])
        missing = [(a, b) for a in ins for b in outs if not samples.get((u.names[0], a, b))]
        if missing:
            raise HRankError(f"{u.names[0]} couples prunable layers {u.in_layer} and {u.out_layer}, which are not "
                             f"adjacent: the timed models never meet its cells {missing[:3]}")
        ms = [[statistics.median(samples[(u.names[0], a, b)]) for b in outs] for a in ins]
        records.append(UnitTimes(u.names[0], u.out_layer, u.in_layer, ins, outs, ms, list(u.names),
                                 list(u.input_hw)))
    return records


def measure_latency_table(net: str, device="cpu", threads: Optional[int] = None, batch_size: int = 1,
                          width: float = 1.0, image_size: Optional[int] = None, channels_last: bool = False,
                          grid: int = 8, runs: int = 5, warmup: int = 2, num_classes: int = 21,
                          block: Optional[int] = None, progress: bool = True,
                          checks: Optional[Mapping[str, Sequence[int]]] = None,
                          check_copies: int = CHECK_COPIES, rounds: int = 1) -> LatencyTable:
    """Measure ``net``'s latency table on this machine (random weights: shapes set the speed). ``runs`` and
    ``warmup`` count forwards of each timed model per round; ``rounds`` times every model again, each round in
    its own shuffled order (see the module's docstring; ``latency-table`` defaults to 3 rounds of 1 + 2).

    ``checks`` (name -> kept counts per prunable layer): whole models timed *among* the table's models,
    ``check_copies`` times each per round at shuffled places, so a drifting machine load hits them and the cells
    alike; ``table.checks`` puts the median of their forwards beside the table's prediction."""
    spec = get_net(net)
    _check_args(batch_size, width, grid, runs, warmup, threads, block, min(rounds, check_copies))
    device = resolve_device(device)
    block = block or hardware_block(device)
    image_size = image_size or spec.config.image_size
    torch.manual_seed(0)
    base = build_model(net, num_classes, width=width, image_size=image_size).eval()
    counts = net_grid(spec, base.plan.prunable, grid, block)
    rules = spec.slice_rules()
    units = find_units(base, rules)
    record_input_sizes(base, units, image_size)
    checks = {name: [int(k) for k in widths] for name, widths in (checks or {}).items()}
    _check_widths(checks, base.plan.prunable)
    design = [(w, None) for w in design_widths(counts)] + [(w, n) for n, w in checks.items()] * check_copies
    full = {u.names[0]: u.full_counts() for u in units}
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(batch_size, 3, image_size, image_size, device=device).contiguous(memory_format=fmt)
    setup = _Setup(device, fmt, warmup, runs, x)
    samples: Dict[tuple, List[float]] = defaultdict(list)
    full_times: List[float] = []
    check_times: Dict[str, list] = defaultdict(list)
    start = time.perf_counter()
    with num_threads(threads) as used_threads, torch.inference_mode():
        bar = tqdm(total=len(design) * rounds, desc=f"latency-table {net}", unit="model", disable=not progress)
        for r in range(rounds):  # each round its own order: a cell's samples come from `rounds` moments
            order = list(design)
            random.Random(r).shuffle(order)  # load drifting over the minutes of measuring is noise, not a slope
            for chunk in _chunks(order, base, setup):
                _time_chunk(chunk, rules, setup, samples, full_times, full, check_times)
                bar.update(len(chunk))
        bar.close()
    records = _unit_times(units, counts, samples)
    full_ms = statistics.median(full_times)
    rest_ms = full_ms - math.fsum(r.ms[-1][-1] for r in records)
    table = LatencyTable(net=net, width=width, image_size=image_size, batch_size=batch_size, device=str(device),
                         threads=used_threads, layout="channels_last" if channels_last else "contiguous",
                         machine=current_machine(device), counts=counts, units=records, rest_ms=rest_ms,
                         full_ms=full_ms, num_classes=num_classes, block=block, runs=runs, warmup=warmup,
                         rounds=rounds, measure_s=time.perf_counter() - start, models=len(design),
                         date=_dt.datetime.now().astimezone().isoformat(timespec="seconds"))
    table.checks = [_check_record(table, name, widths, check_times[name]) for name, widths in checks.items()]
    return table


def _check_record(table: LatencyTable, name: str, widths: List[int], forwards: list) -> dict:
    """A check model beside the table: its median forward and each unit's median segment (``unit_ms``) against
    the whole prediction and the unit's own (``predicted_unit_ms``), to see where a prediction misses."""
    return {"name": name, "widths": widths, "predicted_ms": table.predict(widths),
            "measured_ms": statistics.median(ms for ms, _ in forwards), "forwards": len(forwards),
            "unit_ms": {u.module: statistics.median(seg[u.module] for _, seg in forwards) for u in table.units},
            "predicted_unit_ms": dict(zip((u.module for u in table.units), table.predicted_unit_ms(widths)))}


def _check_widths(checks: Mapping[str, List[int]], full: Sequence[int]) -> None:
    for name, widths in checks.items():
        if len(widths) != len(full) or not all(1 <= k <= c for k, c in zip(widths, full)):
            raise HRankError(f"check model {name!r} keeps {widths}: give one count per prunable layer, each "
                             f"between 1 and the layer's {list(full)}")


def default_checks(net: str, width: float = 1.0) -> Dict[str, List[int]]:
    """Models to check a table on (name -> kept counts): the full net, and its published pruning (or every
    layer at rate 0.5)."""
    spec = get_net(net)
    rates = list(spec.default_compress_rate or [0.5] * spec.num_prunable)[:spec.num_prunable]
    kind = "published" if spec.default_compress_rate else "uniform"
    full = build_model(net, 21, width=width).plan.prunable
    kept = [kept_channels(c, float(r)) for c, r in zip(full, layer_rates(rates, len(full)))]
    return {"full": list(full), f"{kind} {format_compress_rate(rates)}": kept}


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


__all__ = ["Unit", "default_checks", "design_widths", "find_units", "first_filters",
           "measure_latency_table", "net_grid", "record_input_sizes", "time_as_measured"]
