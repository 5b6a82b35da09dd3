"""Latency lookup tables: each unit's ms at each kept-filter count; ``predict(k) = rest_ms + sum of the units``.
A table holds only on the machine, torch, thread count and layout it was measured with (docs/latency.md)."""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from hrank_ssd.errors import HRankError
from hrank_ssd.io.files import atomic_write_text
from hrank_ssd.latency.knapsack import ChainCosts
from hrank_ssd.measure.bench import cpu_flags, cpu_model, device_name

FORMAT = "hrank-ssd latency table"
VERSION = 2  # 2: units timed inside whole models (1, timed standalone, is refused)


def capability(device="cpu") -> str:
    """What the kernels run on: ``sm_90`` on CUDA; torch's CPU capability (``AVX512``, ``AVX2``...) on a CPU."""
    if torch.device(device).type == "cuda":
        cuda = torch.cuda.is_available()
        return "sm_{}{}".format(*torch.cuda.get_device_capability(device)) if cuda else "no CUDA device"
    get = getattr(torch.backends.cpu, "get_cpu_capability", None)  # torch >= 2.1
    return str(get()) if get else "unknown"


def hardware_block(device="cpu") -> int:
    """Channels the kernels process together: 32 on CUDA (a warp), 16 with AVX-512, else 8."""
    if torch.device(device).type == "cuda":
        return 32
    flags = cpu_flags()  # empty off Linux: torch's capability then
    return 16 if ("avx512f" in flags if flags else capability("cpu").upper().startswith("AVX512")) else 8


def grid_counts(channels: int, points: int = 8, block: int = 8, exact: Sequence[int] = ()) -> List[int]:
    """Sorted counts: ``points`` from 10% to 100% of ``channels``, the ``block`` multiples around each, ``exact``."""
    counts = {channels, *(int(c) for c in exact)}
    for f in [1.0] if points == 1 else [0.1 + 0.9 * j / (points - 1) for j in range(points)]:
        p = max(1, int(round(f * channels)))
        counts |= {p, p // block * block, -(-p // block) * block}
    return sorted(c for c in counts if 1 <= c <= channels)


def surcharge(grid: Sequence[int], rows: Sequence[Sequence[float]], block: int) -> float:
    """What a count off the block costs beyond its rounded-up count (median ratio - 1 over the grid; 0 if none)."""
    ratios = [row[grid.index(k)] / row[grid.index(-(-k // block) * block)] - 1 for row in rows for k in grid
              if k % block and -(-k // block) * block in grid and row[grid.index(-(-k // block) * block)] > 0]
    return float(np.median(ratios)) if ratios else 0.0


@dataclass
class UnitTimes:
    """Median ms of one unit: ``ms[a][b]`` at ``in_counts[a]`` inputs and ``out_counts[b]`` filters."""

    module: str
    out_layer: Optional[int]
    in_layer: Optional[int]
    in_counts: List[int]
    out_counts: List[int]
    ms: List[List[float]]
    modules: List[str] = field(default_factory=list)  # the modules timed together, in order

    def __post_init__(self):  # plain ints and floats (numpy scalars would not serialise)
        self.in_counts = [int(c) for c in self.in_counts]
        self.out_counts = [int(c) for c in self.out_counts]
        self.ms = [[float(v) for v in row] for row in self.ms]

    def at(self, k_in: float, k_out: float) -> float:
        """Bilinear interpolation on the grid, clamped; a grid point returns its measured median."""
        return float(np.interp(k_in, self.in_counts, [np.interp(k_out, self.out_counts, row) for row in self.ms]))

    def price(self, widths: Sequence[float], block: Optional[int]) -> float:
        """Predicted ms; off grid and block: the rounded-up count's times 1 + :func:`surcharge` (docs/latency.md)."""
        counts, factor = [], 1.0
        for layer, grid, rows in ((self.in_layer, self.in_counts, [list(c) for c in zip(*self.ms)]),
                                  (self.out_layer, self.out_counts, self.ms)):
            k = grid[0] if layer is None else widths[layer]  # this unit's count when the layers keep ``widths``
            if block and k not in grid and k % block:
                factor *= 1.0 + surcharge(grid, rows, block)
                k = min(math.ceil(k / block) * block, grid[-1])
            counts.append(k)
        return self.at(*counts) * factor

    def check(self, counts: Sequence[Sequence[int]]) -> None:
        for side, layer, grid in (("in", self.in_layer, self.in_counts), ("out", self.out_layer, self.out_counts)):
            ok = len(grid) == 1 if layer is None else 0 <= layer < len(counts) and grid == list(counts[layer])
            if not ok:
                raise ValueError(f"unit {self.module}: {side}_counts {grid} do not match its layer {layer}")
        if len(self.ms) != len(self.in_counts) or any(len(r) != len(self.out_counts) for r in self.ms):
            raise ValueError(f"unit {self.module}: ms is not {len(self.in_counts)}x{len(self.out_counts)}")


def current_machine(device="cpu") -> Dict[str, str]:
    """The facts a table must share with the machine it is used on (besides threads and layout)."""
    return {"cpu": cpu_model(), "device_name": device_name(device), "torch": torch.__version__,
            "capability": capability(device)}


@dataclass
class LatencyTable:
    """A net's latency table on one machine; ``counts[i]``: prunable layer i's grid, ending at its full count."""

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
    rounds: int = 1
    measure_s: Optional[float] = None
    models: Optional[int] = None
    date: Optional[str] = None
    checks: List[dict] = field(default_factory=list)
    drift: Optional[dict] = None  # how the machine's speed moved over the chunks (measure.Timings.drift)

    def __post_init__(self):
        self.counts = [[int(c) for c in grid] for grid in self.counts]
        for i, grid in enumerate(self.counts):
            if not grid or grid != sorted(set(grid)):
                raise ValueError(f"counts[{i}] must be sorted, unique and not empty: {grid}")
        for unit in self.units:
            unit.check(self.counts)

    def full_widths(self) -> List[int]:
        return [grid[-1] for grid in self.counts]

    def predict(self, widths: Sequence[float]) -> float:
        """Predicted forward ms when prunable layer i keeps ``widths[i]`` filters (see :meth:`UnitTimes.price`)."""
        if len(widths) != len(self.counts):
            raise HRankError(f"predict takes {len(self.counts)} kept counts for {self.net}, got {len(widths)}")
        return math.fsum([self.rest_ms] + [u.price(widths, self.block) for u in self.units])

    def costs(self) -> ChainCosts:
        """The prediction as chain knapsack costs on the grid of ``counts`` (equal to :meth:`predict` there)."""
        terms = ((f"unit {u.module}", u.in_layer, u.out_layer, np.asarray(u.ms, dtype=float)) for u in self.units)
        return ChainCosts.of_terms([len(g) for g in self.counts], terms, self.rest_ms)

    def save(self, path) -> Path:
        """Write the table as JSON, atomically: one line per key, per layer's counts, per unit, per check."""
        items = []
        for key, value in {"format": FORMAT, "version": VERSION, **asdict(self)}.items():
            text = json.dumps(value)
            if isinstance(value, list) and value:
                text = "[\n  " + ",\n  ".join(json.dumps(v) for v in value) + "\n ]"
            items.append(f" {json.dumps(key)}: {text}")
        atomic_write_text(path, "{\n" + ",\n".join(items) + "\n}\n")
        return Path(path)

    @classmethod
    def from_dict(cls, data: dict) -> LatencyTable:
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            raise ValueError(f"not a {FORMAT!r} version {VERSION}")
        def known(kind, d):  # keys a table does not know are ignored: older tables load
            return {f.name: d[f.name] for f in dataclasses.fields(kind) if f.name in d}
        return cls(**{**known(cls, data), "units": [UnitTimes(**known(UnitTimes, u)) for u in data["units"]]})

    @classmethod
    def load(cls, path, expect_machine: bool = True, threads: Optional[int] = None) -> LatencyTable:
        """Read a table; one measured elsewhere is an :class:`HRankError` (a warning with ``expect_machine=False``)."""
        path, how = Path(path), f"`python -m hrank_ssd latency-table --net NET --out {path}`"
        try:
            table = cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise HRankError(f"latency table {path} does not exist: measure one with {how}") from None
        except (ValueError, TypeError, KeyError, AttributeError, OSError) as e:
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise HRankError(f"latency table {path} is damaged or not a latency table ({why}): measure it again "
                             f"with {how}") from None
        here, threads = current_machine(table.device), threads or torch.get_num_threads()
        diffs = [f"{k} {table.machine.get(k)!r} in the table, {v!r} here" for k, v in here.items()
                 if table.machine.get(k) != v]
        if torch.device(table.device).type == "cpu" and threads != table.threads:
            diffs.append(f"{table.threads} threads in the table, {threads} here")
        if diffs:
            text = (f"latency table {path} was measured elsewhere ({'; '.join(diffs)}): re-measure here with "
                    f"`python -m hrank_ssd latency-table --net {table.net} --device "
                    f"{torch.device(table.device).type} --threads {table.threads} --width {table.width:g} "
                    f"--image_size {table.image_size} --batch_size {table.batch_size}"
                    f"{' --channels_last' if table.layout == 'channels_last' else ''} --out {path}`")
            if expect_machine:
                raise HRankError(text + ", or load it with expect_machine=False")
            warnings.warn(text + "; its times may not hold here", stacklevel=2)
        return table
