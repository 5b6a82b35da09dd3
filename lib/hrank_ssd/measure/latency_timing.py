"""Timing units inside whole models, for :mod:`latency_measure` (whose docstring tells the whole method).

- A *unit* is a conv of the net's slice rules (or a lone BatchNorm) with the modules that run on its output.
- :class:`_Stamps` notes when each unit starts in a forward: a unit's segment runs to the next unit's stamp.
- :func:`time_chunk` times a chunk of models interleaved. With a drift *reference* (the full model) it also
  times that one model in every run of every chunk: the machine's speed at the chunk's moment. Each segment is
  then divided by its chunk's factor (the reference's median there over its median in all chunks), so a cell
  measured while the VM ran 20% slow is not priced 20% high; the table describes the machine at its median
  speed over the measurement. Check models' forwards stay raw: they are what the table is checked against.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from hrank_ssd.errors import HRankError
from hrank_ssd.hrank.pruning import apply_kept
from hrank_ssd.nets.models import layer_names
from hrank_ssd.nets.spec import Rule
from hrank_ssd.nets.ssd import SSD

# timed with the conv before them: they run on its output, so its kept filters set their cost too (a max pool
# after a VGG conv is ~10% of the forward on a CPU)
FOLLOWERS = (nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardswish, nn.SiLU, nn.MaxPool2d)
CHUNK_BYTES = 512 * 2 ** 20  # parameters of the models timed together
CHUNK_MODELS = 8


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
class TimingSetup:
    """How the chunks are timed: device, layout, forwards per model, the input, the drift reference (or None)."""

    device: torch.device
    fmt: torch.memory_format
    warmup: int
    runs: int
    x: torch.Tensor
    reference: Optional[nn.Module] = None


@dataclass
class Timings:
    """What the chunks measured, each sample with the chunk it came from."""

    cells: Dict[tuple, List[Tuple[int, float]]] = field(default_factory=lambda: defaultdict(list))
    rest: List[Tuple[int, float]] = field(default_factory=list)  # each design forward before its first stamp
    checks: Dict[str, list] = field(default_factory=lambda: defaultdict(list))  # name -> (chunk, ms, segments)
    reference: Dict[int, List[float]] = field(default_factory=lambda: defaultdict(list))  # chunk -> forwards
    chunks: int = 0

    def factors(self) -> Dict[int, float]:
        """Per chunk: how slow the machine ran there (1.0 at its median speed; all 1.0 without a reference)."""
        if not self.reference:
            return defaultdict(lambda: 1.0)
        overall = statistics.median(ms for forwards in self.reference.values() for ms in forwards)
        return {c: statistics.median(forwards) / overall for c, forwards in self.reference.items()}

    def steady(self) -> Tuple[Dict[tuple, List[float]], List[float]]:
        """The cells' segments and the rests, each divided by its chunk's factor."""
        f = self.factors()
        return ({key: [ms / f[c] for c, ms in samples] for key, samples in self.cells.items()},
                [ms / f[c] for c, ms in self.rest])

    def drift(self) -> Optional[dict]:
        """How the reference's speed moved over the chunks (None without a reference): the table keeps it."""
        if not self.reference:
            return None
        f = sorted(self.factors().values())
        q = statistics.quantiles(f, n=10, method="inclusive") if len(f) > 1 else f * 9
        return {"reference": "full model", "chunks": len(f), "forwards": sum(map(len, self.reference.values())),
                "min": f[0], "p10": q[0], "p90": q[-1], "max": f[-1]}


def time_chunk(models: Sequence[Tuple[List[int], Optional[str], SSD]], rules: Mapping[str, Rule],
               setup: TimingSetup, timings: Timings, full: Mapping[str, tuple]) -> None:
    """Time a chunk of models interleaved (and the drift reference in each run); add each unit's segments to
    ``timings.cells[(unit, k_in, k_out)]``, what each forward ran before its first unit to ``timings.rest`` and
    a named check model's forwards to ``timings.checks[name]`` (its segments stay out of both). ``full``: each unit's
    (in, out) channels unpruned (a fixed side of a depthwise conv or a BatchNorm shrinks in a pruned model but
    is recorded at its full count)."""
    chunk = timings.chunks
    timings.chunks += 1
    clocks = []
    for widths, name, model in models:  # each unit's sample key, once per model
        units = find_units(model, rules)
        keys = [(u.names[0], *u.cell(widths, full[u.names[0]])) for u in units]
        clocks.append((model, _Stamps(units, setup.device), keys, name))
    try:
        reference = [setup.reference] if setup.reference is not None else []
        for _ in range(setup.warmup):
            for model in reference + [m for m, *_ in clocks]:
                model(setup.x)
        for _ in range(setup.runs):
            if setup.reference is not None:
                timings.reference[chunk].append(_forward_ms(setup.reference, setup.x, setup.device))
            for model, clock, keys, name in clocks:
                total, segments = clock.forward(model, setup.x)
                if name is not None:
                    timings.checks[name].append((chunk, total, {keys[j][0]: ms for j, ms in segments.items()}))
                    continue
                timings.rest.append((chunk, total - math.fsum(segments.values())))
                for j, ms in segments.items():
                    timings.cells[keys[j]].append((chunk, ms))
    finally:
        for _, clock, *_ in clocks:
            clock.remove()


def _forward_ms(model: nn.Module, x: torch.Tensor, device: torch.device) -> float:
    stamps = _Stamps([], device)
    return stamps.forward(model, x)[0]


def chunks(design: Sequence[Tuple[List[int], Optional[str]]], base: SSD, setup: TimingSetup):
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


__all__ = ["CHUNK_BYTES", "CHUNK_MODELS", "FOLLOWERS", "Timings", "TimingSetup", "Unit", "chunks", "find_units",
           "first_filters", "record_input_sizes", "time_chunk"]
