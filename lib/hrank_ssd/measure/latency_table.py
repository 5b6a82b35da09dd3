"""Latency lookup tables: what each prunable layer's kept-filter count costs in milliseconds, on one machine.

A *unit* is one conv named in the net's slice rules together with the BatchNorm, ReLU and max-pool modules
that follow it in the same ``nn.Sequential`` (a BatchNorm add-on in the rules is a unit of its own). Its time
depends on at most two kept counts: ``k[in_layer]`` (its input channels) and ``k[out_layer]`` (its filters);
``None`` is a fixed side. Each unit is timed inside whole models on a grid of counts per
prunable layer (:mod:`latency_measure`), and

    predict(k) = rest_ms + sum over units of unit_ms(k[in_layer], k[out_layer])

with bilinear interpolation between grid counts (clamped at the grid's ends); on a CPU a count off the grid is
priced for the kernels' channel block (:meth:`LatencyTable.off_grid_rule`, :mod:`off_grid`).
A unit's time is its *segment* inside a whole model, from its start to the next unit's (:mod:`latency_measure`),
so the extras, headers and reshapes between units are charged to the unit before them; ``rest_ms`` is the full
model's measured forward minus the units at full width: the time before the first unit. At grid counts nothing
is interpolated: ``predict`` is ``math.fsum`` of ``rest_ms`` and measured medians, so ``predict(full_widths())``
equals ``full_ms`` up to one rounding.

:meth:`LatencyTable.costs` rewrites the same sum for a chain knapsack over grid indices: a constant, a
``unary[i][a]`` per layer and a ``pairwise[i][a_prev, a]`` between layers ``i-1`` and ``i``.

A table is only true on the machine, device, torch, thread count and memory layout it was measured with;
:meth:`LatencyTable.load` refuses another's (``expect_machine=False`` loads it with a warning).
"""

from __future__ import annotations

import bisect
import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from hrank_ssd.errors import HRankError
from hrank_ssd.io.files import atomic_write_text
from hrank_ssd.measure.bench import cpu_flags, cpu_model
from hrank_ssd.measure.off_grid import surcharge
from hrank_ssd.nets.ssd import kept_channels

FORMAT = "hrank-ssd latency table"
VERSION = 2  # 2: units timed inside whole models (1: standalone, 20-49% high on thin layers)
MACHINE_KEYS = ("cpu", "device_name", "torch", "capability")
OFF_GRID_RULES = ("block", "surcharge", "tail", "linear")  # LatencyTable.off_grid_rule


# ---------------------------------------------------------------- the grid of kept counts


def capability(device="cpu") -> str:
    """What the kernels run on: ``sm_90`` on CUDA; torch's CPU capability (``AVX512``, ``AVX2``...) on CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return "no CUDA device"
        major, minor = torch.cuda.get_device_capability(device)
        return f"sm_{major}{minor}"
    get = getattr(torch.backends.cpu, "get_cpu_capability", None)
    return str(get()) if get else "unknown"


def hardware_block(device="cpu") -> int:
    """Channel counts the kernels process together: 32 on CUDA (a warp), 16 with AVX-512, else 8 (AVX2).

    On Linux the CPU's own flags decide (oneDNN picks its kernels from them), else torch's CPU capability."""
    if torch.device(device).type == "cuda":
        return 32
    flags = cpu_flags()
    if flags:
        return 16 if "avx512f" in flags else 8
    return 16 if capability("cpu").upper().startswith("AVX512") else 8


def grid_counts(channels: int, points: int = 8, block: int = 8, exact: Sequence[int] = ()) -> List[int]:
    """Candidate kept counts for a layer of ``channels`` filters, sorted and unique.

    ``points`` counts evenly spaced from ~10% to 100% of ``channels``; for each, the multiples of ``block``
    just below and above it (where kernel times step); the ``exact`` counts (e.g. a seed pruning's); the full
    count. Every count lies in ``[1, channels]``.
    """
    if channels < 1 or points < 1 or block < 1:
        raise HRankError(f"grid_counts needs channels, points and block >= 1, got {channels}, {points}, {block}")
    fractions = [1.0] if points == 1 else [0.1 + 0.9 * j / (points - 1) for j in range(points)]
    counts = {channels}
    for f in fractions:
        p = max(1, int(round(f * channels)))
        counts |= {p, (p // block) * block, -(-p // block) * block}
    counts |= {int(c) for c in exact}
    return sorted(c for c in counts if 1 <= c <= channels)


# ---------------------------------------------------------------- one unit's times


def _bracket(grid: Sequence[int], x: float, tail_block: Optional[int] = None):
    """(i0, i1, t): ``x`` clamped to the grid lies between ``grid[i0]`` and ``grid[i1]`` at fraction ``t``.

    With ``tail_block``, an ``x`` off the grid is placed among the grid counts of its own kind (multiples of the
    block, or counts with a tail) when two of them surround it; else among all of them."""
    x = min(max(float(x), grid[0]), grid[-1])
    i1 = bisect.bisect_left(grid, x)
    if grid[i1] == x:
        return i1, i1, 0.0
    if tail_block:
        kind = [i for i, c in enumerate(grid) if (c % tail_block == 0) == (x % tail_block == 0)]
        below, above = [i for i in kind if grid[i] < x], [i for i in kind if grid[i] > x]
        if below and above:
            i0, i1 = below[-1], above[0]
            return i0, i1, (x - grid[i0]) / (grid[i1] - grid[i0])
    i0 = i1 - 1
    return i0, i1, (x - grid[i0]) / (grid[i1] - grid[i0])


@dataclass
class UnitTimes:
    """Median ms of one unit on its grid: ``ms[a][b]`` at ``in_counts[a]`` inputs and ``out_counts[b]`` filters.

    A fixed side (layer ``None``) has one count, the module's own. A depthwise conv or a BatchNorm unit reads as
    many channels as it makes: its input side is fixed in the record and follows ``out_counts`` when timed.
    """

    module: str
    out_layer: Optional[int]
    in_layer: Optional[int]
    in_counts: List[int]
    out_counts: List[int]
    ms: List[List[float]]
    modules: List[str] = field(default_factory=list)  # the modules timed together, in order
    input_hw: Optional[List[int]] = None  # the input's spatial size in the full model

    def __post_init__(self):  # plain ints and floats (numpy scalars would not serialise)
        self.in_counts = [int(c) for c in self.in_counts]
        self.out_counts = [int(c) for c in self.out_counts]
        self.ms = [[float(v) for v in row] for row in self.ms]

    def at(self, k_in: float, k_out: float, tail_block: Optional[int] = None) -> float:
        """Bilinear interpolation on the grid (clamped); a grid point returns its measured median itself.
        ``tail_block``: interpolate an off-grid count among grid counts of its own kind (see :func:`_bracket`)."""
        r0, r1, rt = _bracket(self.in_counts, k_in, tail_block)
        c0, c1, ct = _bracket(self.out_counts, k_out, tail_block)

        def row(r):
            v = self.ms[r][c0]
            return v if c0 == c1 else (1.0 - ct) * v + ct * self.ms[r][c1]

        return row(r0) if r0 == r1 else (1.0 - rt) * row(r0) + rt * row(r1)

    def counts_of(self, widths: Sequence[float]):
        """(k_in, k_out) of this unit when the prunable layers keep ``widths``."""
        k_in = self.in_counts[0] if self.in_layer is None else widths[self.in_layer]
        k_out = self.out_counts[0] if self.out_layer is None else widths[self.out_layer]
        return k_in, k_out

    def surcharges(self, block: int) -> Tuple[float, float]:
        """(input side, output side): what a count off the block costs beyond its count rounded up, from this
        unit's own cells (:func:`~hrank_ssd.measure.off_grid.surcharge`)."""
        columns = [list(c) for c in zip(*self.ms)]
        return surcharge(self.in_counts, columns, block), surcharge(self.out_counts, self.ms, block)

    def check(self, counts: Sequence[Sequence[int]]) -> None:
        for side, layer, grid in (("in", self.in_layer, self.in_counts), ("out", self.out_layer, self.out_counts)):
            if layer is None:
                ok = len(grid) == 1
            else:
                ok = 0 <= layer < len(counts) and list(grid) == list(counts[layer])
            if not ok:
                raise ValueError(f"unit {self.module}: {side}_counts {list(grid)} do not match its layer {layer}")
        if len(self.ms) != len(self.in_counts) or any(len(r) != len(self.out_counts) for r in self.ms):
            raise ValueError(f"unit {self.module}: ms is not {len(self.in_counts)}x{len(self.out_counts)}")


# ---------------------------------------------------------------- costs for a chain knapsack


@dataclass
class LatencyCosts:
    """``total(a) = constant_ms + sum_i unary[i][a_i] + sum_{i>=1} pairwise[i][a_{i-1}, a_i]`` in ms, where
    ``a_i`` indexes ``counts[i]``. ``pairwise[0]`` is None. Equal to :meth:`LatencyTable.predict` at the grid
    counts (up to float summation order)."""

    counts: List[np.ndarray]
    unary: List[np.ndarray]
    pairwise: List[Optional[np.ndarray]]
    constant_ms: float

    def total(self, index: Sequence[int]) -> float:
        t = self.constant_ms + sum(float(u[a]) for u, a in zip(self.unary, index))
        return t + sum(float(self.pairwise[i][index[i - 1], index[i]]) for i in range(1, len(index)))


# ---------------------------------------------------------------- the table


def current_machine(device="cpu") -> Dict[str, str]:
    """The facts a table must share with the machine it is used on (besides threads and layout)."""
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device) if torch.cuda.is_available() else "no CUDA device"
    else:
        name = cpu_model()
    return {"cpu": cpu_model(), "device_name": name, "torch": torch.__version__, "capability": capability(device)}


@dataclass
class LatencyTable:
    """A net's latency lookup table on one machine (see the module's docstring). ``counts[i]`` is prunable layer
    i's grid, its last entry the layer's full count at ``width``."""

    net: str
    width: float
    image_size: int
    batch_size: int
    device: str
    threads: int
    layout: str  # "contiguous" or "channels_last"
    machine: Dict[str, str]
    counts: List[List[int]]
    units: List[UnitTimes]
    rest_ms: float
    full_ms: float
    num_classes: int = 21
    block: Optional[int] = None
    runs: Optional[int] = None
    warmup: Optional[int] = None
    rounds: int = 1  # times the whole design was timed, each in its own order
    measure_s: Optional[float] = None  # how long measuring took
    models: Optional[int] = None  # whole models timed to measure it
    date: Optional[str] = None
    checks: List[dict] = field(default_factory=list)  # {name, widths, predicted_ms, measured_ms, forwards, unit_ms...}
    drift: Optional[dict] = None  # the machine's speed over the measurement, by a reference model (latency_timing)

    def __post_init__(self):
        self.counts = [[int(c) for c in grid] for grid in self.counts]
        for i, grid in enumerate(self.counts):
            if not grid or grid != sorted(set(grid)):
                raise ValueError(f"counts[{i}] must be sorted, unique and not empty: {grid}")
        for unit in self.units:
            unit.check(self.counts)

    def full_widths(self) -> List[int]:
        return [grid[-1] for grid in self.counts]

    def widths_for_rates(self, rates: Sequence[float]) -> List[int]:
        """Kept counts at per-layer compress rates, as pruning computes them (``kept_channels``)."""
        return [kept_channels(grid[-1], float(r)) for grid, r in zip(self.counts, rates)]

    def predict(self, widths: Sequence[float], rule: Optional[str] = None) -> float:
        """Predicted forward ms when prunable layer i keeps ``widths[i]`` filters (interpolated, clamped; a count
        off the grid priced by ``rule``, default :meth:`off_grid_rule`)."""
        return math.fsum([self.rest_ms] + self.predicted_unit_ms(widths, rule))

    def predicted_unit_ms(self, widths: Sequence[float], rule: Optional[str] = None) -> List[float]:
        """Each unit's predicted ms (in the order of ``units``) at ``widths``; :meth:`predict` adds ``rest_ms``."""
        if len(widths) != len(self.counts):
            raise HRankError(f"predict takes {len(self.counts)} kept counts for {self.net}, got {len(widths)}")
        rule = rule or self.off_grid_rule()
        if rule not in OFF_GRID_RULES:
            raise HRankError(f"unknown off-grid rule {rule!r}: use one of {', '.join(OFF_GRID_RULES)}")
        counts = self.computed_counts(widths, rule)
        tail = self.block if rule == "tail" else None
        prices = [u.at(*u.counts_of(counts), tail) for u in self.units]
        if rule == "surcharge":
            prices = [p * self._surcharge_factor(u, widths) for p, u in zip(prices, self.units)]
        return prices

    def _surcharge_factor(self, unit: UnitTimes, widths: Sequence[float]) -> float:
        """1 + the unit's own surcharge for each side whose count is off its grid and off the block (the
        surcharges are read from the cells only for such a unit: a model on the grid costs no extra work)."""
        factor, extras = 1.0, None
        for side, (k, grid) in enumerate(zip(unit.counts_of(widths), (unit.in_counts, unit.out_counts))):
            if k % self.block and k not in grid:
                extras = extras or unit.surcharges(self.block)
                factor *= 1.0 + extras[side]
        return factor

    def off_grid_rule(self) -> str:
        """How a count off the grid is priced; grid counts (all the knapsack chooses) always as measured.

        ``block`` (a CPU in NCHW): oneDNN computes in its blocked nChw16c format, channels padded to ``block``,
        so the count costs its count rounded up to a block (:meth:`computed_counts`). ``surcharge`` (a CPU in
        NCHW, the default since 2026-12-02): ``block``, times 1 + each unit's own median surcharge of its
        off-block grid cells over their rounded-up neighbours, per side whose count is off the block
        (:func:`~hrank_ssd.measure.off_grid.surcharge`; a uniform 0.3 rate's 44/89/179/358 filters ran 8-22%
        slower than 48/96/192/368 in some units). ``tail`` (a CPU in NHWC): no padding, but a count with a tail
        of fewer than ``block`` channels pays for the tail, so it is interpolated among the grid's counts with a
        tail, a block multiple among block multiples. ``linear`` (CUDA, or no block recorded): among all grid
        counts. Evidence: docs/latency.md, benchmarks/off_grid_rules.md."""
        if not self.block or torch.device(self.device).type != "cpu":
            return "linear"
        return "surcharge" if self.layout == "contiguous" else "tail"

    def computed_counts(self, widths: Sequence[float], rule: Optional[str] = None) -> List[float]:
        """The channel counts the kernels work on: under the ``block`` and ``surcharge`` rules a count off the
        grid rounded up to the block (clamped to the layer's full count; 19 channels are computed as 32), else the counts."""
        if (rule or self.off_grid_rule()) not in ("block", "surcharge") or not self.block:
            return list(widths)
        return [k if k in grid else min(math.ceil(k / self.block) * self.block, grid[-1])
                for k, grid in zip(widths, self.counts)]

    def costs(self) -> LatencyCosts:
        """The prediction as a chain knapsack's costs on the grid of ``counts`` (see :class:`LatencyCosts`)."""
        grids = [np.asarray(g, dtype=float) for g in self.counts]
        unary = [np.zeros(len(g)) for g in grids]
        pairwise: List[Optional[np.ndarray]] = [None] + [np.zeros((len(grids[i - 1]), len(grids[i])))
                                                         for i in range(1, len(grids))]
        constant = self.rest_ms
        for u in self.units:
            ms = np.asarray(u.ms, dtype=float)
            i, o = u.in_layer, u.out_layer
            if i is None and o is None:
                constant += float(ms[0, 0])
            elif i is None:
                unary[o] += ms[0, :]
            elif o is None:
                unary[i] += ms[:, 0]
            elif i == o:
                unary[i] += np.diag(ms)
            elif i == o - 1:
                pairwise[o] += ms
            elif o == i - 1:
                pairwise[i] += ms.T
            else:
                raise HRankError(f"unit {u.module} couples layers {i} and {o}, which are not adjacent: a chain "
                                 f"knapsack cannot price it (predict() still can)")
        return LatencyCosts(grids, unary, pairwise, constant)

    # ------------------------------------------------------------ files

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> LatencyTable:
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            raise ValueError(f"not a {FORMAT!r} version {VERSION}")
        data = {k: v for k, v in data.items() if k not in ("format", "version")}
        data["units"] = [UnitTimes(**u) for u in data["units"]]
        return cls(**data)

    def save(self, path) -> Path:
        """Write the table as JSON, atomically: one line per key, per layer's counts, per unit, per check."""
        items = []
        for key, value in self.to_dict().items():
            if isinstance(value, list) and value:
                value = "[\n  " + ",\n  ".join(json.dumps(v) for v in value) + "\n ]"
            else:
                value = json.dumps(value)
            items.append(f" {json.dumps(key)}: {value}")
        atomic_write_text(path, "{\n" + ",\n".join(items) + "\n}\n")
        return Path(path)

    def remeasure_command(self, path) -> str:
        return (f"python -m hrank_ssd latency-table --net {self.net} --device {torch.device(self.device).type} "
                f"--threads {self.threads} --width {self.width:g} --image_size {self.image_size} "
                f"--batch_size {self.batch_size}{' --channels_last' if self.layout == 'channels_last' else ''} "
                f"--out {path}")

    def differences(self, threads: Optional[int] = None, layout: Optional[str] = None) -> List[str]:
        """How this machine (at ``threads``, default torch's, and ``layout``, default the table's) differs."""
        here = current_machine(self.device)
        diffs = [f"{k} {self.machine.get(k)!r} in the table, {here[k]!r} here" for k in MACHINE_KEYS
                 if self.machine.get(k) != here[k]]
        threads = threads or torch.get_num_threads()
        if torch.device(self.device).type == "cpu" and threads != self.threads:
            diffs.append(f"{self.threads} threads in the table, {threads} here")
        if layout is not None and layout != self.layout:
            diffs.append(f"layout {self.layout} in the table, {layout} here")
        return diffs

    @classmethod
    def load(cls, path, expect_machine: bool = True, threads: Optional[int] = None,
             layout: Optional[str] = None) -> LatencyTable:
        """Read a table; one measured on another machine, device, torch, thread count or layout is refused
        (a one-line :class:`HRankError` naming the differences) unless ``expect_machine=False`` (a warning)."""
        path = Path(path)
        try:
            table = cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise HRankError(f"latency table {path} does not exist: measure one with "
                             f"`python -m hrank_ssd latency-table --net NET --out {path}`") from None
        except (ValueError, TypeError, KeyError, AttributeError, OSError) as e:
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise HRankError(f"latency table {path} is damaged or not a latency table ({why}): measure it again "
                             f"with `python -m hrank_ssd latency-table --net NET --out {path}`") from None
        diffs = table.differences(threads, layout)
        if diffs:
            text = (f"latency table {path} was measured elsewhere ({'; '.join(diffs)}): re-measure here with "
                    f"`{table.remeasure_command(path)}`")
            if expect_machine:
                raise HRankError(text + ", or load it with expect_machine=False")
            warnings.warn(text + "; its times may not hold here", stacklevel=2)
        return table


__all__ = ["FORMAT", "OFF_GRID_RULES", "LatencyCosts", "LatencyTable", "UnitTimes", "capability", "current_machine",
           "grid_counts", "hardware_block"]
