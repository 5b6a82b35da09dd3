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
   With a drift reference (the default) the full model is also timed in every chunk, and each segment is
   divided by how slow the machine ran in its chunk (:mod:`latency_timing`): the cells describe the machine at
   its median speed, not at the moments that happened to time them.
4. ``rest_ms`` is the time before the first unit's stamp, the median over every forward of the design (total
   minus its segments); ``full_ms`` is the table's unpruned forward, ``rest_ms`` plus every unit at full width.
   Until 2026-12-02 ``full_ms`` was the full model's own median forward and ``rest_ms`` that minus the units:
   a few forwards at a few moments, whose noise (-5.6 to +9.7 ms in the committed and kept check tables) then
   sat in every prediction as a constant.
"""

from __future__ import annotations

import datetime as _dt
import math
import random
import statistics
import time
from typing import Dict, List, Mapping, Optional, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from hrank_ssd.devices import evaluating, model_on, resolve_device
from hrank_ssd.errors import HRankError
from hrank_ssd.measure.bench import num_threads, timings_interleaved
from hrank_ssd.measure.latency_table import (
    LatencyTable,
    UnitTimes,
    current_machine,
    grid_counts,
    hardware_block,
)
from hrank_ssd.measure.latency_timing import (
    Timings,
    TimingSetup,
    Unit,
    chunks,
    find_units,
    record_input_sizes,
    time_chunk,
)
from hrank_ssd.nets.compress import format_compress_rate, layer_rates
from hrank_ssd.nets.models import build_model
from hrank_ssd.nets.registry import get_net
from hrank_ssd.nets.spec import NetSpec
from hrank_ssd.nets.ssd import kept_channels

CHECK_COPIES = 4  # places in the shuffled design of each check model


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
                          check_copies: int = CHECK_COPIES, rounds: int = 1, drift_reference: bool = True) -> LatencyTable:
    """Measure ``net``'s latency table on this machine (random weights: shapes set the speed). ``runs`` and
    ``warmup`` count forwards of each timed model per round; ``rounds`` times every model again, each round in
    its own shuffled order (see the module's docstring; ``latency-table`` defaults to 3 rounds of 1 + 2);
    ``drift_reference``: time the full model in every chunk too and take the machine's drift out of the cells
    (:mod:`latency_timing`; ``table.drift`` says how far it moved).

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
    reference = base.to(device=device, memory_format=fmt) if drift_reference else None
    setup, timings = TimingSetup(device, fmt, warmup, runs, x, reference), Timings()
    start = time.perf_counter()
    with num_threads(threads) as used_threads, torch.inference_mode():
        bar = tqdm(total=len(design) * rounds, desc=f"latency-table {net}", unit="model", disable=not progress)
        for r in range(rounds):  # each round its own order: a cell's samples come from `rounds` moments
            order = list(design)
            random.Random(r).shuffle(order)  # load drifting over the minutes of measuring is noise, not a slope
            for chunk in chunks(order, base, setup):
                time_chunk(chunk, rules, setup, timings, full)
                bar.update(len(chunk))
        bar.close()
    samples, rests = timings.steady()
    records = _unit_times(units, counts, samples)
    rest_ms = statistics.median(rests)  # every design forward's, not the full model's few: see the docstring
    full_ms = math.fsum([rest_ms] + [r.ms[-1][-1] for r in records])
    table = LatencyTable(net=net, width=width, image_size=image_size, batch_size=batch_size, device=str(device),
                         threads=used_threads, layout="channels_last" if channels_last else "contiguous",
                         machine=current_machine(device), counts=counts, units=records, rest_ms=rest_ms,
                         full_ms=full_ms, num_classes=num_classes, block=block, runs=runs, warmup=warmup,
                         rounds=rounds, measure_s=time.perf_counter() - start, models=len(design),
                         date=_dt.datetime.now().astimezone().isoformat(timespec="seconds"), drift=timings.drift())
    factors = timings.factors()
    table.checks = [_check_record(table, name, widths, timings.checks[name], factors)
                    for name, widths in checks.items()]
    return table


def _check_record(table: LatencyTable, name: str, widths: List[int], forwards: list, factors) -> dict:
    """A check model beside the table: its median forward as measured, and as the cells are (``steady_ms``: each
    forward divided by its chunk's drift factor), and each unit's median segment (``unit_ms``) against the whole
    prediction and the unit's own (``predicted_unit_ms``), to see where a prediction misses."""
    predicted = table.predicted_unit_ms(widths)
    return {"name": name, "widths": widths, "predicted_ms": math.fsum([table.rest_ms] + predicted),
            "measured_ms": statistics.median(ms for _, ms, _ in forwards), "forwards": len(forwards),
            "steady_ms": statistics.median(ms / factors[c] for c, ms, _ in forwards),
            "unit_ms": {u.module: statistics.median(seg[u.module] for *_, seg in forwards) for u in table.units},
            "predicted_unit_ms": dict(zip((u.module for u in table.units), predicted))}


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
        ready = {n: model_on(m, device, channels_last=table.layout == "channels_last") for n, m in models.items()}
        x = torch.randn(table.batch_size, 3, table.image_size, table.image_size, device=device).contiguous(
            memory_format=fmt)

        def forward(m):
            with evaluating(m):
                return m(x)
        return timings_interleaved({n: (lambda m=m: forward(m)) for n, m in ready.items()}, warmup, runs, device)


__all__ = ["CHECK_COPIES", "default_checks", "design_widths", "measure_latency_table", "net_grid", "time_as_measured"]
