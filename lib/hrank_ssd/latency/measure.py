"""Measuring a latency table: every unit timed inside whole models, on a grid of kept counts (docs/latency.md)."""

from __future__ import annotations

import datetime as _dt
import math
import random
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from hrank_ssd.devices import resolve_device
from hrank_ssd.errors import HRankError
from hrank_ssd.hrank.pruning import apply_kept
from hrank_ssd.latency.table import LatencyTable, UnitTimes, current_machine, grid_counts, hardware_block
from hrank_ssd.measure.bench import num_threads, timings_interleaved
from hrank_ssd.nets.compress import format_compress_rate, layer_rates
from hrank_ssd.nets.models import build_model, count_parameters, layer_names
from hrank_ssd.nets.registry import get_net
from hrank_ssd.nets.ssd import SSD, kept_channels
from hrank_ssd.progress import tqdm

FOLLOWERS = (nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardswish, nn.SiLU, nn.MaxPool2d)
CHUNK_MODELS, CHUNK_BYTES = 8, 512 * 2 ** 20  # models timed together, and their parameters' bytes
CHECK_COPIES = 4  # places of each check model in each round's shuffled list


@dataclass
class Unit:
    """A conv (or a lone BatchNorm) of the slice rules and the modules timed with it."""

    names: List[str]
    module: nn.Module
    out_layer: Optional[int]
    in_layer: Optional[int]

    def full_counts(self) -> Tuple[int, int]:
        m = self.module
        return (m.num_features,) * 2 if isinstance(m, nn.BatchNorm2d) else (m.in_channels, m.out_channels)

    def cell(self, widths: Sequence[int], full: Tuple[int, int]) -> Tuple[int, int]:
        """(k_in, k_out) in a model keeping ``widths``; ``full`` fixes a side that no layer cuts."""
        return (full[0] if self.in_layer is None else int(widths[self.in_layer]),
                full[1] if self.out_layer is None else int(widths[self.out_layer]))


def find_units(model: nn.Module, rules: Mapping) -> List[Unit]:
    """Each conv of the rules with its followers in its ``nn.Sequential``, then each BatchNorm no conv took."""
    named = dict(model.named_modules())
    if set(rules) - set(named):
        raise HRankError(f"the net's slice rules name modules its model lacks: {sorted(set(rules) - set(named))[:5]}")
    units, taken = [], set()
    for kind in (nn.Conv2d, nn.BatchNorm2d):
        for name, (out_layer, in_layer) in rules.items():
            if isinstance(named[name], kind) and name not in taken:
                parent, _, idx = name.rpartition(".")
                seq, names = named.get(parent), [name]
                while isinstance(seq, nn.Sequential) and idx.isdigit() and int(idx) + len(names) < len(seq) \
                        and isinstance(seq[int(idx) + len(names)], FOLLOWERS):
                    names.append(f"{parent}.{int(idx) + len(names)}")
                taken.update(names)
                units.append(Unit(names, named[name], out_layer, in_layer))
    order = {name: k for k, name in enumerate(named)}
    return sorted(units, key=lambda u: order[u.names[0]])


def first_filters(model: SSD, widths: Sequence[int]) -> SSD:
    """``model`` keeping the first ``widths[i]`` filters of prunable layer i (which ones does not change time)."""
    return apply_kept(model, {n: list(range(k)) for n, k in zip(layer_names(model.cfg.name), widths)})


def design_widths(counts: Sequence[Sequence[int]]) -> List[List[int]]:
    """The models to time: for every pair ``(p, q)`` of grid positions, even layers at p, odd ones at q."""
    longest = max(len(g) for g in counts)

    def at(grid, pos):
        return grid[round(pos * (len(grid) - 1) / (longest - 1))] if longest > 1 else grid[-1]

    out = [[at(g, q if i % 2 else p) for i, g in enumerate(counts)] for p in range(longest) for q in range(longest)]
    return [list(w) for w in dict.fromkeys(tuple(w) for w in out)]


class _Stamps:
    """Pre-hooks noting when each unit starts: ``perf_counter`` on a CPU, CUDA events on a GPU (no sync)."""

    def __init__(self, units: Sequence[Unit], device: torch.device):
        self.units, self.cuda, self.marks = units, device.type == "cuda", []
        self.handles = [u.module.register_forward_pre_hook(lambda m, i, j=j: self.marks.append((j, self._now())))
                        for j, u in enumerate(units)]

    def _now(self):
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def _ms(self, a, b) -> float:
        return a.elapsed_time(b) if self.cuda else (b - a) * 1e3

    def forward(self, model: nn.Module, x: torch.Tensor) -> Tuple[float, Dict[int, float]]:
        """One forward: its ms, and each unit's segment (from its stamp to the next one, or to the end)."""
        self.marks, start = [], self._now()
        model(x)
        end = self._now()
        if self.cuda:
            torch.cuda.synchronize()
        stamps = [t for _, t in self.marks] + [end]
        segments: Dict[int, float] = defaultdict(float)
        for k, (j, t) in enumerate(self.marks):
            segments[j] += self._ms(t, stamps[k + 1])
        return self._ms(start, end), segments


@dataclass
class Timings:
    """How chunks are timed (device, input, forwards per model, each unit's unpruned (in, out), the drift
    reference) and what they measured, each sample with its chunk's number."""

    device: torch.device
    x: torch.Tensor
    warmup: int
    runs: int
    rules: Mapping
    full: List[Tuple[int, int]]
    reference_model: Optional[nn.Module]
    cells: Dict[tuple, List[Tuple[int, float]]] = field(default_factory=lambda: defaultdict(list))
    rest: List[Tuple[int, float]] = field(default_factory=list)  # each design forward before its first stamp
    checks: Dict[str, List[float]] = field(default_factory=lambda: defaultdict(list))
    reference: Dict[int, float] = field(default_factory=dict)  # chunk -> the full model's median forward there
    chunks: int = 0

    def factors(self) -> Dict[int, float]:
        """Per chunk, how slow the machine ran there against its median (all 1.0 without a reference)."""
        overall = statistics.median(self.reference.values()) if self.reference else None
        return defaultdict(lambda: 1.0, {c: ms / overall for c, ms in self.reference.items()})

    def drift(self) -> Optional[dict]:
        """The factors' spread over the chunks (None without a reference)."""
        f = sorted(self.factors()[c] for c in self.reference)
        q = statistics.quantiles(f, n=10, method="inclusive") if len(f) > 1 else f * 9
        return {"chunks": len(f), "min": f[0], "p10": q[0], "p90": q[-1], "max": f[-1]} if f else None

    def steady(self, samples: Sequence[Tuple[int, float]]) -> List[float]:
        """The samples, each divided by its chunk's factor."""
        return [ms / self.factors()[c] for c, ms in samples]

    def time_chunk(self, chunk: Sequence[Tuple[List[int], Optional[str], SSD]]) -> None:
        """Time a chunk's models (and the reference) interleaved; keep segments by cell, rests and checks."""
        c, records = self.chunks, defaultdict(list)
        self.chunks += 1
        ref = self.reference_model
        fns = {} if ref is None else {"reference": lambda: ref(self.x)}
        clocks = [_Stamps(find_units(model, self.rules), self.device) for _, _, model in chunk]
        for j, ((_, _, model), clock) in enumerate(zip(chunk, clocks)):
            fns[j] = lambda m=model, k=clock, j=j: records[j].append(k.forward(m, self.x))
        try:
            times = timings_interleaved(fns, self.warmup, self.runs, self.device)
        finally:
            for h in (h for clock in clocks for h in clock.handles):
                h.remove()
        if ref is not None:
            self.reference[c] = times["reference"]["median_ms"]
        for (widths, name, _), clock, runs in zip(chunk, clocks, records.values()):
            for total, segments in runs[self.warmup:]:
                if name is not None:
                    self.checks[name].append(total)
                    continue
                self.rest.append((c, total - math.fsum(segments.values())))
                for k, ms in segments.items():
                    unit = clock.units[k]
                    self.cells[(unit.names[0], *unit.cell(widths, self.full[k]))].append((c, ms))


def _chunks(design: Sequence[Tuple[List[int], Optional[str]]], base: SSD, device, fmt):
    """The models of ``design`` (widths, check name or None), built on the device, in chunks of bounded memory."""
    chunk, used = [], 0
    for widths, name in design:
        model = first_filters(base, widths).eval().to(device=device, memory_format=fmt)
        size = 4 * count_parameters(model)
        if chunk and (used + size > CHUNK_BYTES or len(chunk) >= CHUNK_MODELS):
            yield chunk
            chunk, used = [], 0
        chunk.append((widths, name, model))
        used += size
    if chunk:
        yield chunk


def _unit_times(units: Sequence[Unit], counts, timings: Timings) -> List[UnitTimes]:
    """Each unit's grid of medians (drift taken out); a cell no model met is an error naming the unit."""
    records = []
    for u in units:
        (full_in, full_out), key = u.full_counts(), u.names[0]
        ins = [full_in] if u.in_layer is None else list(counts[u.in_layer])
        outs = [full_out] if u.out_layer is None else list(counts[u.out_layer])
        missing = [(a, b) for a in ins for b in outs if not timings.cells.get((key, a, b))]
        if missing:
            raise HRankError(f"{key} couples prunable layers {u.in_layer} and {u.out_layer}, which are not "
                             f"adjacent: the timed models never meet its cells {missing[:3]}")
        ms = [[statistics.median(timings.steady(timings.cells[(key, a, b)])) for b in outs] for a in ins]
        records.append(UnitTimes(key, u.out_layer, u.in_layer, ins, outs, ms, list(u.names)))
    return records


def _check_args(batch_size, width, grid, runs, warmup, threads, block, rounds, copies, checks, full):
    at_least_one = [batch_size, runs, grid, rounds, copies] + [v for v in (threads, block) if v is not None]
    if min(at_least_one) < 1 or warmup < 0 or not width > 0:
        raise HRankError("--batch_size, --runs, --grid, --threads, --block, --rounds and the check copies must be at "
                         f"least 1, --warmup at least 0, --width positive (got width {width}, warmup {warmup})")
    for name, widths in checks.items():
        if len(widths) != len(full) or not all(1 <= k <= c for k, c in zip(widths, full)):
            raise HRankError(f"check model {name!r} keeps {widths}: give one count per prunable layer, each "
                             f"between 1 and the layer's {list(full)}")


def measure_latency_table(net: str, device="cpu", threads: Optional[int] = None, batch_size: int = 1,
                          width: float = 1.0, image_size: Optional[int] = None, channels_last: bool = False,
                          grid: int = 8, runs: int = 5, warmup: int = 2, num_classes: int = 21,
                          block: Optional[int] = None, progress: bool = True,
                          checks: Optional[Mapping[str, Sequence[int]]] = None, check_copies: int = CHECK_COPIES,
                          rounds: int = 1, drift_reference: bool = True) -> LatencyTable:
    """Measure ``net``'s table on this machine (random weights); ``checks``: models (name -> kept counts) timed
    among the design's; ``drift_reference`` divides each cell by its chunk's speed."""
    spec = get_net(net)
    device, image_size = resolve_device(device), image_size or spec.config.image_size
    torch.manual_seed(0)
    base = build_model(net, num_classes, width=width, image_size=image_size).eval()
    checks = {name: [int(k) for k in widths] for name, widths in (checks or {}).items()}
    _check_args(batch_size, width, grid, runs, warmup, threads, block, rounds, check_copies, checks, base.plan.prunable)
    block = block or hardware_block(device)
    rates = layer_rates(spec.default_compress_rate, base.plan.num_prunable)  # the published counts on the grid
    counts = [grid_counts(c, grid, block, [kept_channels(c, r)]) for c, r in zip(base.plan.prunable, rates)]
    units = find_units(base, spec.slice_rules())
    design = [(w, None) for w in design_widths(counts)] + [(w, n) for n, w in checks.items()] * check_copies
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(batch_size, 3, image_size, image_size, device=device).contiguous(memory_format=fmt)
    timings = Timings(device, x, warmup, runs, spec.slice_rules(), [u.full_counts() for u in units],
                      base.to(device=device, memory_format=fmt) if drift_reference else None)
    start = time.perf_counter()
    with num_threads(threads) as used_threads, torch.inference_mode(), \
            tqdm(total=len(design) * rounds, desc=f"latency-table {net}", unit="model", disable=not progress) as bar:
        for r in range(rounds):  # each round in its own order: a cell's samples come from `rounds` moments
            for chunk in _chunks(random.Random(r).sample(design, len(design)), base, device, fmt):
                timings.time_chunk(chunk)
                bar.update(len(chunk))
    records, rest_ms = _unit_times(units, counts, timings), statistics.median(timings.steady(timings.rest))
    table = LatencyTable(net, width, image_size, batch_size, str(device), used_threads,
                         "channels_last" if channels_last else "contiguous", current_machine(device), counts, records,
                         rest_ms, math.fsum([rest_ms] + [r.ms[-1][-1] for r in records]), num_classes, block, runs,
                         warmup, rounds, time.perf_counter() - start, len(design),
                         _dt.datetime.now().astimezone().isoformat(timespec="seconds"), drift=timings.drift())
    table.checks = [{"name": n, "widths": w, "predicted_ms": table.predict(w), "forwards": len(timings.checks[n]),
                     "measured_ms": statistics.median(timings.checks[n])} for n, w in checks.items()]
    return table


def default_checks(net: str, width: float = 1.0) -> Dict[str, List[int]]:
    """Models to check a table on: the full net, and its published pruning (or every layer at rate 0.5)."""
    spec = get_net(net)
    rates = list(spec.default_compress_rate or [0.5] * spec.num_prunable)[:spec.num_prunable]
    full = build_model(net, 21, width=width).plan.prunable
    kept = [kept_channels(c, float(r)) for c, r in zip(full, layer_rates(rates, len(full)))]
    kind = "published" if spec.default_compress_rate else "uniform"
    return {"full": list(full), f"{kind} {format_compress_rate(rates)}": kept}
