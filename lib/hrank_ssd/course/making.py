"""The verbs that make models, each saved once under ``work/<profile>/models/`` by a readable name."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import pandas as pd

from hrank_ssd.course.latency_models import latency_pruned
from hrank_ssd.course.models import BY_KEY, PAPER, finetune_epochs, own_epochs, rate_name
from hrank_ssd.errors import HRankError
from hrank_ssd.hrank.pruning import prune_model, save_pruned
from hrank_ssd.io.files import atomic_write_text
from hrank_ssd.measure import flops
from hrank_ssd.measure.sensitivity import quick_map, suggest_compress_rate
from hrank_ssd.nets.compress import format_compress_rate, layer_rates, parse_compress_rate
from hrank_ssd.nets.models import count_parameters, layer_names, load_model
from hrank_ssd.nets.registry import num_prunable

CHOICE_FILE = "choice.json"


def rates_of(course, rate=None, net: str = "vgg16-ssd") -> List[float]:
    """Per-layer rates of ``net`` from text (``"[0.1]*7+[0.5]*9"``) or a list; None: the profile's rate."""
    if rate is None:
        rate = course.profile.compress_rate if net == "vgg16-ssd" else course.profile.mb1_compress_rate
    return layer_rates(parse_compress_rate(rate) if isinstance(rate, str) else list(rate), num_prunable(net))


def prune(course, rate=None, criterion: str = "hrank", net: str = "vgg16-ssd") -> Path:
    """The trained ``net`` pruned once per ``rate`` and criterion: ``models/<net>-pruned-<rate>[-<criterion>].pth``."""
    rates = rates_of(course, rate, net)
    out = course.path(f"{net}-pruned-{rate_name(rates)}" + ("" if criterion == "hrank" else f"-{criterion}"))
    if not out.is_file():
        rank_dir = course.rank_dir(net=net) if criterion == "hrank" else None
        pruned, kept = prune_model(load_model(course.baseline(net)), rates, criterion, rank_dir,
                                   seed=course.profile.seed)
        save_pruned(pruned, out, rates, criterion, kept)
    return out


def finetune_rate(course, rate=None, epochs: Optional[int] = None, criterion: str = "hrank", distill: bool = False,
                  hooks=None, init: Optional[Path] = None) -> Path:
    """:func:`prune` (or ``init``) finetuned ``epochs`` (default the profile's), distilled if asked."""
    p, rates = course.profile, rates_of(course, rate)
    epochs = p.finetune_epochs if epochs is None else epochs
    key = finetuned_key(course, rates, epochs, criterion, distill)
    if key == PAPER and epochs and p.published:
        return course.fetch("vgg16-ssd-hrank")
    init = init or course.prune(rates, criterion)
    if epochs == 0:
        return init
    extra = {"distill_from": str(course.baseline("vgg16-ssd"))} if distill else {}
    return course.train(key, "vgg16-ssd", epochs, p.finetune_lr_for(epochs), hooks, base_net=str(init), **extra)


def finetuned_key(course, rates, epochs: int, criterion: str = "hrank", distill: bool = False) -> str:
    """The model key :func:`finetune_rate` saves under (``vgg16-ssd-pruned`` for the compared finetune)."""
    at_profile = list(rates) == rates_of(course) and epochs == course.profile.finetune_epochs
    if at_profile and criterion == "hrank" and not distill:
        return PAPER
    crit = "" if criterion == "hrank" else f"-{criterion}"
    return f"vgg16-ssd-pruned-{rate_name(rates)}{crit}-ft{epochs}{'-kd' if distill else ''}"


def finetune(course, key: str, hooks=None) -> Path:
    """The compared model ``key`` pruned and finetuned as :data:`~hrank_ssd.course.models.MODELS` says."""
    p, m = course.profile, BY_KEY[key]
    if key == PAPER:
        return course.finetune_rate(hooks=hooks)
    epochs = finetune_epochs(p, key)
    init = latency_pruned(course, key) if m.made == "latency" else course.prune(getattr(p, m.setting), net=m.net)
    if not epochs:
        return init
    lr = p.finetune_lr_for(epochs) if m.net == "vgg16-ssd" else (p.mb1_finetune_lr or p.finetune_lr)
    return course.train(key, m.net, epochs, lr, hooks, base_net=str(init))


def model(course, key: str) -> Path:
    """The compared model ``key``, made when missing (the student's own when the published one cannot be had)."""
    m = BY_KEY[key]
    if m.made == "trained":
        return course.baseline(m.net)
    if key != PAPER:
        return course.finetune(key)
    try:
        path = course.finetune_rate()
    except HRankError as e:
        if not course.profile.published:
            raise
        course.substitute(key, "published pruned model unavailable: using your own finetuned pruned model "
                          f"instead ({course.profile.student_finetune_epochs} epoch(s), notebook 03); why: {e}")
        return course.finetune_choice()
    if course.profile.published:
        course.published_used(key)
    return path


def model_epochs(course, key: str) -> int:
    """The finetune epochs of the compared model ``key`` as made here (another key: the student's model)."""
    if key not in BY_KEY:
        return own_epochs(course.profile)
    return finetune_epochs(course.profile, key, substituted=key in course.substitutes)


def choose_compress_rate(course, rate) -> str:
    """Record ``rate`` (as text, returned) and its pruned model as notebook 03's choice."""
    rates = rates_of(course, rate)
    return record_choice(course, rates, course.prune(rates))


def record_choice(course, rates, pruned: Path) -> str:
    """Write ``work/<profile>/choice.json``: ``rates`` (returned as text) and the pruned file notebook 03 finetunes."""
    text = format_compress_rate(list(rates))
    atomic_write_text(course.work / CHOICE_FILE, json.dumps({"compress_rate": text, "pruned": pruned.name}) + "\n")
    return text


def read_choice(course) -> Tuple[List[float], str, Optional[Path]]:
    """``choice.json``'s per-layer rates, where they come from and its pruned file if there (else the profile's)."""
    path = course.work / CHOICE_FILE
    if path.is_file():
        try:
            choice = json.loads(path.read_text(encoding="utf-8"))
            rates, name = rates_of(course, choice["compress_rate"]), choice.get("pruned")
            pruned = course.path(Path(name).stem) if isinstance(name, str) and name else None
            return rates, f"chosen in notebook 02 ({path})", pruned if pruned and pruned.is_file() else None
        except (ValueError, KeyError, TypeError, AttributeError, HRankError) as e:
            print(f"ignoring {path} ({e}): using the profile's compress rate; choose again in notebook 02",
                  file=sys.stderr)
    return rates_of(course), f"the {course.profile.name} profile's", None


def chosen_compress_rate(course) -> Tuple[List[float], str]:
    """The per-layer rate notebook 03 finetunes and where it comes from (notebook 02's choice, else the profile's)."""
    return read_choice(course)[:2]


def finetune_choice(course, hooks=None) -> Path:
    """Notebook 03: the chosen rate finetuned, from the model ``course.prune_yours`` made when there is one."""
    rates, _, pruned = read_choice(course)
    return course.finetune_rate(rates, own_epochs(course.profile), hooks=hooks, init=pruned)


def your_model(course) -> Optional[Path]:
    """Notebook 03's finetune of the chosen rate when it exists (nothing is trained here), else None."""
    path = course.path(finetuned_key(course, read_choice(course)[0], own_epochs(course.profile)))
    return path if path.is_file() else None


@dataclass
class PruningTrial:
    """What :func:`try_compress_rate` measured for one rate (no finetuning; mAP on ``images`` test images)."""

    compress_rate: str
    layers: pd.DataFrame  # layer, rate, filters, kept
    parameters: int
    full_parameters: int
    macs: int
    full_macs: int
    map: float
    full_map: float  # the unpruned baseline on the same images
    images: int

    def row(self) -> dict:
        return {"compress_rate": self.compress_rate, "MAC cut": 1 - self.macs / self.full_macs,
                "parameters": self.parameters, "quick mAP": self.map, "unpruned quick mAP": self.full_map}

    def summary(self) -> str:
        return (f"{self.compress_rate}: params {self.parameters:,} ({self.parameters / self.full_parameters:.1%}), "
                f"MACs {self.macs / 1e6:.1f} M ({self.macs / self.full_macs:.1%}), quick mAP {self.map:.4f} "
                f"(unpruned {self.full_map:.4f}; {self.images} test images, no finetuning)")


def try_compress_rate(course, rate) -> PruningTrial:
    """:func:`prune` at ``rate`` measured without finetuning: kept filters, parameters, MACs, quick mAP."""
    rates = rates_of(course, rate)
    base, pruned = load_model(course.baseline("vgg16-ssd")).eval(), load_model(course.prune(rates)).eval()
    images = course.test_dataset(course.profile.quick_map_images)
    if course.baseline_quick_map is None:  # the same images every time: measured once
        course.baseline_quick_map = quick_map(base, images, course.device, course.progress, "quick mAP, unpruned")
    layers = pd.DataFrame({"layer": layer_names("vgg16-ssd"), "rate": rates, "filters": base.plan.prunable,
                           "kept": pruned.plan.prunable})
    return PruningTrial(format_compress_rate(rates), layers, count_parameters(pruned), count_parameters(base),
                        flops.macs(pruned), flops.macs(base),
                        quick_map(pruned, images, course.device, course.progress, "quick mAP, pruned"),
                        course.baseline_quick_map, len(images))


def suggested_rate(course, sensitivity: pd.DataFrame) -> pd.DataFrame:
    """The sensitivity scan's suggestion at the profile rate's MAC cut, tried beside that rate."""
    paper = try_compress_rate(course, course.profile.compress_rate)
    rows = [{"rate": "profile's rate", "note": "", **paper.row()}]
    try:
        suggestion = suggest_compress_rate(sensitivity, load_model(course.baseline("vgg16-ssd")),
                                           1 - paper.macs / paper.full_macs, sorted(set(sensitivity["rate"]) - {0.0}))
        tried = try_compress_rate(course, suggestion["rates"])
        rows.append({"rate": "suggested by the scan", "note": "", **tried.row()})
    except HRankError as e:  # a scan of too few layers or rates (the tiny profile's)
        rows.append({"rate": "suggested by the scan", "note": str(e)})
    return pd.DataFrame(rows).set_index("rate")[["compress_rate", "MAC cut", "parameters", "quick mAP",
                                                 "unpruned quick mAP", "note"]]
