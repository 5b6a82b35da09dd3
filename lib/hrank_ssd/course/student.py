"""Notebook 02's student functions: their checks, then the pipeline built from them where they agree."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pandas as pd
import torch
from torch import nn

from hrank_ssd.course.checking import Case, attempt, run_check, say
from hrank_ssd.course.making import rates_of, record_choice
from hrank_ssd.course.models import rate_name
from hrank_ssd.hrank.pruning import apply_kept, kept_indices, save_pruned
from hrank_ssd.nets.compress import format_compress_rate
from hrank_ssd.nets.models import layer_names, load_model
from hrank_ssd.nets.registry import get_net
from hrank_ssd.nets.ssd import SSD

TOP_FILTERS, PRUNE_PAIR = "your top_filters chose the kept filters", "your prune_pair cut the layers"
BLOCK_IN, BLOCK_MID, BLOCK_OUT = 3, 8, 10  # conv (3 -> 8 filters), its BatchNorm, the next conv (8 -> 10)


def surgery_by(model: SSD, kept: Dict[str, List[int]], prune_pair: Callable) -> Dict[str, torch.Tensor]:
    """``model``'s state pruned to ``kept``: convs and BatchNorms by ``prune_pair``, the heads by the library."""
    net = get_net(model.cfg.name)
    names, work = layer_names(net.name), copy.deepcopy(model)
    convs = [work.get_submodule(net.producer_key(i)) for i in range(len(names) + 1)]
    norms = {out: name for name, (out, _) in net.slice_rules().items()  # VGG16-SSD: conv4_3's add-on
             if out is not None and isinstance(work.get_submodule(name), nn.BatchNorm2d)}
    bns = {i: work.get_submodule(name) for i, name in norms.items()}
    for i, name in enumerate(names):
        keep = torch.as_tensor(kept[name], dtype=torch.long)
        convs[i], bns[i], convs[i + 1] = prune_pair(convs[i], bns.get(i), convs[i + 1], keep)
    parts = {net.producer_key(i): conv for i, conv in enumerate(convs)} | {norms[i]: bns[i] for i in norms}
    yours = {f"{prefix}.{key}": t for prefix, module in parts.items() for key, t in module.state_dict().items()}
    return {key: yours.get(key, t) for key, t in apply_kept(model, kept).state_dict().items()}


def _state_difference(yours: Dict[str, torch.Tensor], library: Dict[str, torch.Tensor]) -> Optional[str]:
    for key, want in library.items():
        if yours[key].shape != want.shape:
            return f"made {key} of shape {list(yours[key].shape)}; the pruned model needs {list(want.shape)}"
        if not torch.equal(yours[key], want):
            return f"made a model that differs from the library's at {key}"
    return None


def _kept_difference(yours: Dict[str, List[int]], library: Dict[str, List[int]]) -> Optional[str]:
    return next((f"keeps other filters than HRank's rule in {name} (ties? equal scores keep the higher index)"
                 for name in library if yours[name] != library[name]), None)


@dataclass
class YourPruning:
    """What :func:`prune_yours` made: the file, what of it the student's functions made, and why not the rest."""

    compress_rate: str
    path: Path
    made_by: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def summary(self) -> str:
        return "\n".join([f"{self.compress_rate}: {self.path.name}"] + self.made_by + self.notes)

    def prefer(self, name: str, made: str, yours: Callable, library, difference):
        """``yours()`` where it runs and agrees with ``library`` (recorded as ``made``); else ``library`` and why."""
        got, why = attempt(yours)
        why = why or difference(got, library)
        if why:
            self.notes.append(f"your {name} {why}; the library's is used")
            return library
        self.made_by.append(made)
        return got


def prune_yours(course, rate, top_filters: Callable, prune_pair: Callable) -> YourPruning:
    """The baseline pruned at ``rate`` by the student's functions where they agree with the library; the choice."""
    rates, rank_dir = rates_of(course, rate), course.rank_dir()
    base = load_model(course.baseline("vgg16-ssd"))
    made = YourPruning(format_compress_rate(rates), course.path(f"vgg16-ssd-pruned-{rate_name(rates)}-yours"))
    kept = made.prefer("top_filters", TOP_FILTERS, lambda: kept_indices(base, rates, "hrank", rank_dir,
                                                                        select=top_filters),
                       kept_indices(base, rates, "hrank", rank_dir), _kept_difference)
    pruned = apply_kept(base, kept)
    pruned.load_state_dict(made.prefer("prune_pair", PRUNE_PAIR, lambda: surgery_by(base, kept, prune_pair),
                                       pruned.state_dict(), _state_difference))
    save_pruned(pruned, made.path, rates, "hrank", kept, made_by=made.made_by)
    record_choice(course, rates, made.path)
    return made


def scan_sensitivity(course, scan: Optional[Callable] = None) -> pd.DataFrame:
    """``sensitivity.csv`` by the student's ``scan(layers, rates, prune_one, evaluate)``; the library's if it fails."""
    table, why = attempt(course.sensitivity, scan) if scan else (None, None)
    if why:
        print(f"your scan {why}; the library's is used")
    return course.sensitivity() if table is None else table


def target(course, trial) -> str:
    """Whether a tried rate (``course.try_compress_rate``) meets the profile's target, and why, in one line."""
    p = course.profile
    cut, drop = 1 - trial.macs / trial.full_macs, trial.full_map - trial.map
    misses = ([f"it cuts {cut:.1%} of the MACs, the target at least {p.target_mac_cut:.0%}: prune harder where the "
               f"sensitivity curves stay flat"] if cut < p.target_mac_cut else []) + \
        ([f"it loses {drop:.4f} quick mAP before finetuning, the target at most {p.target_map_drop:.2f}: spare the "
          f"layers whose curves fall"] if drop > p.target_map_drop else [])
    if misses:
        return f"not met: {'; '.join(misses)}"
    return (f"met: {cut:.1%} fewer MACs (target at least {p.target_mac_cut:.0%}), {drop:.4f} quick mAP lost before "
            f"finetuning (target at most {p.target_map_drop:.2f})")


def check_target(course, fn) -> Optional[List[float]]:
    """Notebook 02: ``fn()``'s rate (per stage or per layer) tried and judged; the per-layer rate, or None."""
    def tried():
        chosen = fn()
        rates = get_net("vgg16-ssd").stage_rates(chosen) if isinstance(chosen, dict) else rates_of(course, chosen)
        return rates, course.try_compress_rate(rates)

    got, why = attempt(tried)
    if why:
        say(False, f"your_stage_rates {why}: return one rate per stage (e.g. {{'conv1': 0.1, ...}}), run that cell, "
                   "then this one")
        return None
    rates, trial = got
    verdict = target(course, trial)
    say(verdict.startswith("met"), f"{trial.summary()}\n  {verdict}")
    return rates


def _block(seed: int):
    """A conv, its BatchNorm (trained-looking, eval mode) and the next conv, with an input batch."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    conv, bn, nxt = nn.Conv2d(BLOCK_IN, BLOCK_MID, 3, padding=1), nn.BatchNorm2d(BLOCK_MID), \
        nn.Conv2d(BLOCK_MID, BLOCK_OUT, 3, padding=1)
    with torch.no_grad():
        for t, low, high in ((bn.weight, 0.5, 1.5), (bn.bias, -0.2, 0.2), (bn.running_mean, -0.1, 0.1),
                             (bn.running_var, 0.5, 2.0)):
            t.uniform_(low, high, generator=g)
    return conv, bn.eval(), nxt, torch.randn(2, BLOCK_IN, 7, 7, generator=g)


def _forward(conv, bn, nxt, x, mask=None) -> torch.Tensor:
    """next(relu(bn(conv(x)))), the removed filters' activations zeroed by ``mask`` (the masked original)."""
    with torch.no_grad():
        h = conv(x)
        h = torch.relu(bn(h) if bn is not None else h)
        return nxt(h if mask is None else h * mask.view(1, -1, 1, 1))


def check_prune_pair(fn) -> bool:
    """Notebook 02: ``fn(conv, bn, next_conv, keep)`` must compute the original with the other filters zeroed."""
    cases = []
    for seed, keep, with_bn in ((0, [0, 2, 3, 7], True), (1, [1, 4, 5], False), (2, [6], True)):
        conv, bn, nxt, x = _block(seed)
        bn, mask = bn if with_bn else None, torch.zeros(BLOCK_MID).index_fill_(0, torch.tensor(keep), 1.0)
        cases.append(Case((conv, bn, nxt, torch.tensor(keep)), f"keep={keep}, {'with' if with_bn else 'without'} a "
                          "BatchNorm", (x, _forward(conv, bn, nxt, x, mask)), "the masked original's output"))

    def same(got, want) -> bool:
        x, masked = want
        out = _forward(*got, x)
        # the kept filters' sums are the same products, added in another order: float32 rounding, far below 1e-5
        return out.shape == masked.shape and bool(torch.allclose(out, masked, rtol=1e-5, atol=1e-5))

    def hint(case, got) -> Optional[str]:
        conv, bn, nxt = got
        kept, with_bn = len(case.args[3]), case.args[1] is not None
        if conv.weight.shape[0] != kept:
            return f"the conv has {conv.weight.shape[0]} filters: keep only the filters in keep (dim 0 of its weight)"
        if conv.bias is not None and conv.bias.shape[0] != kept:
            return "the conv's bias still has one value per original filter: slice it with keep too"
        if with_bn and (bn is None or any(t.shape[0] != kept for t in (bn.weight, bn.bias, bn.running_mean,
                                                                       bn.running_var))):
            return ("the BatchNorm still normalises every original channel: slice its weight, bias, running_mean "
                    "and running_var with keep")
        if nxt.weight.shape[0] != BLOCK_OUT:
            return "the next conv must keep all its filters: cut its input channels (dim 1), not its outputs (dim 0)"
        if nxt.weight.shape[1] != kept:
            return "the next conv still reads every original channel: keep only its input channels in keep (dim 1)"
        return ("the shapes are right but the block computes something else: copy the original weights (in keep's "
                "order, the same for the conv, the BatchNorm and the next conv's inputs), not new random ones")

    return run_check("prune_pair", fn, cases, same, "the masked original (removed filters zeroed)", hint,
                     "keep the filters a pruned layer keeps: dim 0 of the conv's weight and bias, every BatchNorm "
                     "vector, dim 1 of the next conv's weight")


def _fake_map(layer: int, rate: float) -> float:
    return round(0.9 - 0.04 * layer * rate, 6)


def _table(rows) -> pd.DataFrame:
    """A scan's rows (a list of dicts or a DataFrame): layer, rate and map as floats, sorted by layer and rate."""
    table = pd.DataFrame(list(rows.to_dict("records") if isinstance(rows, pd.DataFrame) else rows))
    return table[["layer", "rate", "map"]].astype(float).sort_values(["layer", "rate"]).reset_index(drop=True)


def check_sensitivity_scan(fn) -> bool:
    """Notebook 02: ``fn(layers, rates, prune_one, evaluate)`` -> rows (layer, rate, map), on stand-in models."""
    def prune_one(layer, rate):
        return ("pruned", int(layer), float(rate))

    def evaluate(model):
        if not (isinstance(model, tuple) and len(model) == 3 and model[0] == "pruned"):
            raise ValueError("evaluate() takes a model that prune_one(layer, rate) returned")
        return _fake_map(model[1], model[2])

    cases = []
    for layers, rates in (([1, 4, 7], [0.3, 0.6]), ([2], [0.5, 0.9, 0.1]), ([14, 3], [0.7])):
        rows = [{"layer": i, "rate": r, "map": _fake_map(i, r)} for i in layers for r in rates]
        cases.append(Case((layers, rates, prune_one, evaluate), f"layers={layers}, rates={rates}", _table(rows),
                          f"{len(rows)} rows (layer, rate, map): {[tuple(r.values()) for r in rows]}"))

    def hint(case, got) -> Optional[str]:
        try:
            rows = len(_table(got))
        except KeyError:
            return "give every row the keys layer, rate and map (a list of dicts, or a DataFrame with those columns)"
        if rows < len(case.want):
            return "some (layer, rate) pairs are missing: loop over every layer and, inside that loop, over every rate"
        if rows > len(case.want):
            return "one row per (layer, rate) pair: the unpruned model's row is added for you"
        return "each row's map must be evaluate() of the model prune_one made for that row's layer and rate"

    return run_check("sensitivity_scan", fn, cases, lambda got, want: _table(got).equals(want),
                     "the stand-in scan's known mAPs", hint,
                     "for each layer, for each rate: prune that one layer at that rate, evaluate it, record a row")
