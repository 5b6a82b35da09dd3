"""The student's functions as the pipeline (notebook 02): the kept filters their ``top_filters`` chooses from the rank
files, the smaller model their ``prune_pair`` surgery builds, their sensitivity scan, and the target their rate
meets or misses. Each is compared with the library's; a function that fails or differs is one line, and the
library's result is used instead, so the notebook goes on."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pandas as pd
import torch
from torch import nn

from hrank_ssd.course.checking import CORRECT, NOT_YET
from hrank_ssd.course.making import rates_of, record_choice
from hrank_ssd.course.models import rate_name
from hrank_ssd.errors import HRankError
from hrank_ssd.hrank.pruning import apply_kept, kept_indices, save_pruned
from hrank_ssd.nets.compress import format_compress_rate
from hrank_ssd.nets.models import layer_names, load_model
from hrank_ssd.nets.registry import get_net
from hrank_ssd.nets.ssd import SSD

TOP_FILTERS, PRUNE_PAIR = "your top_filters chose the kept filters", "your prune_pair cut the layers"


def _batch_norms(model: nn.Module, net: str) -> Dict[int, str]:
    """Prunable layer -> the BatchNorm that normalises its output channels (VGG16-SSD: conv4_3's add-on)."""
    return {out: name for name, (out, _) in get_net(net).slice_rules().items()
            if out is not None and isinstance(model.get_submodule(name), nn.BatchNorm2d)}


def surgery_by(model: SSD, kept: Dict[str, List[int]], prune_pair: Callable) -> SSD:
    """``model`` pruned to ``kept`` with every backbone conv, its BatchNorm and the next conv cut by
    ``prune_pair(conv, bn, next_conv, keep) -> (conv, bn, next_conv)`` (on copies: ``model`` is unchanged); the
    heads that read a pruned layer are cut by the library (:func:`~hrank_ssd.hrank.pruning.apply_kept`)."""
    net = get_net(model.cfg.name)
    names, work = layer_names(net.name), copy.deepcopy(model)
    convs = [work.get_submodule(net.producer_key(i)) for i in range(len(names) + 1)]
    if not all(isinstance(c, nn.Conv2d) and c.groups == 1 for c in convs):
        raise HRankError(f"the surgery exercise cuts a chain of plain convs; {net.name} has grouped convs: use "
                         f"hrank_ssd.hrank.pruning.prune_model")
    norms = _batch_norms(work, net.name)
    bns = {i: work.get_submodule(name) for i, name in norms.items()}
    for i, name in enumerate(names):
        keep = torch.as_tensor(kept[name], dtype=torch.long)
        convs[i], bns[i], convs[i + 1] = prune_pair(convs[i], bns.get(i), convs[i + 1], keep)
    pruned = apply_kept(model, kept)
    state = pruned.state_dict()
    parts = [(net.producer_key(i), conv) for i, conv in enumerate(convs)] + [(norms[i], bns[i]) for i in norms]
    for prefix, module in parts:
        for key, t in module.state_dict().items():
            want = state[f"{prefix}.{key}"]
            if tuple(t.shape) != tuple(want.shape):
                raise HRankError(f"{prefix}.{key} came out of prune_pair with shape {list(t.shape)}; the pruned "
                                 f"model needs {list(want.shape)}")
            state[f"{prefix}.{key}"] = t
    pruned.load_state_dict(state, strict=True)
    return pruned


def _first_difference(a: nn.Module, b: nn.Module) -> Optional[str]:
    """The first tensor of ``a``'s state that differs from ``b``'s (None: every tensor equal)."""
    other = b.state_dict()
    return next((k for k, t in a.state_dict().items() if not torch.equal(t, other[k])), None)


@dataclass
class YourPruning:
    """What :func:`prune_yours` made: the pruned file, what of it the student's functions made, and why not the rest."""

    compress_rate: str
    path: Path
    made_by: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{self.compress_rate}: {self.path.name}"] + self.made_by + self.notes
        return "\n".join(lines)


def _try(notes: List[str], what: str, fn: Callable):
    try:
        return fn()
    except HRankError as e:  # the library's check of what the student's code returned
        notes.append(f"{what}: {e}; the library's is used")
    except Exception as e:  # the student's code: any error is one line
        notes.append(f"{what} failed ({type(e).__name__}: {e}): the library's is used")
    return None


def prune_yours(course, rate, top_filters: Optional[Callable] = None, prune_pair: Optional[Callable] = None
                ) -> YourPruning:
    """The baseline pruned at ``rate`` by the student's ``top_filters`` and ``prune_pair`` where they agree with the
    library, saved as ``models/vgg16-ssd-pruned-<rate>-yours.pth`` and recorded as notebook 03's choice."""
    rates, rank_dir = rates_of(course, rate), course.rank_dir()
    base = load_model(course.baseline("vgg16-ssd"))
    made, notes = YourPruning(format_compress_rate(rates), course.path(f"vgg16-ssd-pruned-{rate_name(rates)}-yours")), []
    kept = kept_indices(base, rates, "hrank", rank_dir)
    theirs = _try(notes, "your top_filters", lambda: kept_indices(base, rates, "hrank", rank_dir, select=top_filters)
                  ) if top_filters else None
    if theirs is not None:
        differ = next((n for n in kept if theirs[n] != kept[n]), None)
        if differ is None:
            kept = theirs
            made.made_by.append(TOP_FILTERS)
        else:
            notes.append(f"your top_filters keeps other filters than HRank's rule in {differ} (ties? equal scores "
                         f"keep the higher index): the library's choice is used")
    pruned = apply_kept(base, kept)
    cut = _try(notes, "your prune_pair", lambda: surgery_by(base, kept, prune_pair)) if prune_pair else None
    if cut is not None:
        differ = _first_difference(cut, pruned)
        if differ is None:
            pruned = cut
            made.made_by.append(PRUNE_PAIR)
        else:
            notes.append(f"your prune_pair's model differs from the library's at {differ}: the library's is used")
    made.notes = notes
    save_pruned(pruned, made.path, rates, "hrank", kept, made_by=made.made_by)
    record_choice(course, rates, made.path)
    return made


def scan_sensitivity(course, scan: Optional[Callable] = None) -> pd.DataFrame:
    """The sensitivity table (results/sensitivity.csv) from ``scan(layers, rates, prune_one, evaluate)``, the
    student's loop, over the profile's layers and rates; without a scan, or when it fails, the library's."""
    notes: List[str] = []
    table = None if scan is None else _try(notes, "your scan", lambda: course.sensitivity(scan=scan))
    for note in notes:
        print(note)
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
    """Notebook 02: ``fn()`` returns the student's rate (one per VGG stage as a dict, or per layer); it is tried
    (``course.try_compress_rate``) and the verdict printed. Returns the per-layer rate, or None when it did not run."""
    try:
        chosen = fn()
        rates = get_net("vgg16-ssd").stage_rates(chosen) if isinstance(chosen, dict) else rates_of(course, chosen)
        trial = course.try_compress_rate(rates)
    except NotImplementedError:
        print(f"{NOT_YET} your_stage_rates is still blank: return one rate per stage, run that cell, then this one")
        return None
    except Exception as e:  # the student's code: one line
        print(f"{NOT_YET} your rate did not run ({type(e).__name__}: {e}): return e.g. {{'conv1': 0.1, ...}}")
        return None
    verdict = target(course, trial)
    print(f"{CORRECT if verdict.startswith('met') else NOT_YET} {trial.summary()}\n  {verdict}")
    return rates
