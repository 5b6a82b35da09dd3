"""The student's own pruning: a compress rate tried in notebook 02 (pruned, counted, quickly evaluated), recorded,
and finetuned in notebook 03.

:class:`StudentPruning` is the part of :class:`~hrank_ssd.course.steps.Course` behind it:

- :meth:`~StudentPruning.try_compress_rate` prunes the trained baseline with HRank's ranks at a rate and returns the
  layers' kept filters, parameters, MACs and a quick mAP on ``quick_map_images`` test images (no finetuning);
- :meth:`~StudentPruning.choose_compress_rate` records that rate in ``work/<profile>/choice.json``, which outlives
  the kernel: notebook 03's :meth:`~StudentPruning.student_finetuned` finetunes it. Without a choice the profile's
  rate is used, and then the student's model *is* the comparison's paper-rate model (trained once, shared).
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import pandas as pd

from hrank_ssd.course.workspace import Workspace
from hrank_ssd.errors import HRankError
from hrank_ssd.hrank.pruning import prune_model
from hrank_ssd.io.files import atomic_write_text
from hrank_ssd.measure import flops
from hrank_ssd.measure.sensitivity import quick_map, suggest_compress_rate
from hrank_ssd.nets.compress import format_compress_rate, layer_rates, parse_compress_rate
from hrank_ssd.nets.models import count_parameters, layer_names, load_model
from hrank_ssd.nets.registry import num_prunable

CHOICE_FILE = "choice.json"


@dataclass
class PruningTrial:
    """What :meth:`StudentPruning.try_compress_rate` measured for one compress rate (no finetuning)."""

    compress_rate: str
    layers: pd.DataFrame  # layer, rate, filters, kept
    parameters: int
    full_parameters: int
    macs: int
    full_macs: int
    map: float  # after pruning, on `images` test images
    full_map: float  # the unpruned baseline on the same images
    images: int

    def row(self) -> dict:
        """The trial as a table row: rate, MAC cut, parameters, quick mAP (and the unpruned model's)."""
        return {"compress_rate": self.compress_rate, "MAC cut": 1 - self.macs / self.full_macs,
                "parameters": self.parameters, "quick mAP": self.map, "unpruned quick mAP": self.full_map}

    def summary(self) -> str:
        """One line: parameters, MACs and quick mAP against the unpruned model."""
        return (f"{self.compress_rate}: params {self.parameters:,} ({self.parameters / self.full_parameters:.1%}), "
                f"MACs {self.macs / 1e6:.1f} M ({self.macs / self.full_macs:.1%}), quick mAP {self.map:.4f} "
                f"(unpruned {self.full_map:.4f}; {self.images} test images, no finetuning)")


def _rates(compress_rate) -> List[float]:
    """VGG16-SSD's per-layer rates from a rate as text (``"[0.1]*7+[0.5]*9"``) or a list."""
    rates = parse_compress_rate(compress_rate) if isinstance(compress_rate, str) else list(compress_rate)
    return layer_rates(rates, num_prunable("vgg16-ssd"))


class StudentPruning(Workspace):
    """Notebook 02's tried and chosen compress rate, and notebook 03's finetuning of it."""

    _baseline_quick_map = None  # the unpruned model's quick mAP: the same images every time, measured once

    def try_compress_rate(self, compress_rate) -> PruningTrial:
        """Prune the trained VGG16-SSD with HRank's ranks at ``compress_rate`` (text or per-layer list) and
        measure it without finetuning: kept filters per layer, parameters, MACs (of this profile's model) and mAP
        on the first ``quick_map_images`` test images (seconds offline)."""
        rates = _rates(compress_rate)
        base = load_model(self.baseline("vgg16-ssd")).eval()
        pruned, _ = prune_model(base, rates, "hrank", self.rank_dir(), seed=self.profile.seed)
        images = self.test_dataset(self.profile.quick_map_images)
        if self._baseline_quick_map is None:
            self._baseline_quick_map = quick_map(base, images, self.device, self.progress, "quick mAP, unpruned")
        layers = pd.DataFrame({"layer": layer_names("vgg16-ssd"), "rate": rates, "filters": base.plan.prunable,
                               "kept": pruned.plan.prunable})
        return PruningTrial(format_compress_rate(rates), layers, count_parameters(pruned), count_parameters(base),
                            flops.totals(flops.count_exact(pruned))["MACs"], flops.totals(flops.count_exact(base))["MACs"],
                            quick_map(pruned, images, self.device, self.progress, "quick mAP, pruned"),
                            self._baseline_quick_map, len(images))

    def suggested_rate(self, sensitivity: pd.DataFrame) -> pd.DataFrame:
        """What the sensitivity scan suggests (:func:`~hrank_ssd.measure.sensitivity.suggest_compress_rate`) for the
        MAC cut of the profile's rate, tried beside that rate: one row each (rate, MAC cut, parameters, quick mAP).
        Layers the scan did not cover stay unpruned in the suggestion."""
        seed = self.try_compress_rate(self.profile.compress_rate)
        base = load_model(self.baseline("vgg16-ssd"))
        target = 1 - seed.macs / seed.full_macs
        row = {"rate": "profile's rate", "note": ""}
        rows = [dict(row, **seed.row())]
        try:
            suggestion = suggest_compress_rate(sensitivity, base, target, sorted(set(sensitivity["rate"]) - {0.0}))
            rows.append(dict(row, rate="suggested by the scan", **self.try_compress_rate(suggestion["rates"]).row()))
        except HRankError as e:  # a scan of too few layers or rates (the tiny profile's)
            rows.append(dict(row, rate="suggested by the scan", note=str(e)))
        return pd.DataFrame(rows).set_index("rate")[["compress_rate", "MAC cut", "parameters", "quick mAP",
                                                     "unpruned quick mAP", "note"]]

    def choose_compress_rate(self, compress_rate) -> str:
        """Record ``compress_rate`` as the one notebook 03 finetunes (``work/<profile>/choice.json``); returns it
        as text. Rates that would leave a layer without filters are refused here, not after the finetune starts."""
        text = format_compress_rate(_rates(compress_rate))  # checked: every entry in [0, 1)
        self.work.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.work / CHOICE_FILE, json.dumps({"compress_rate": text}) + "\n")
        return text

    def chosen_compress_rate(self) -> Tuple[List[float], str]:
        """The per-layer rate notebook 03 finetunes and where it comes from (notebook 02's choice or the
        profile); a choice file that cannot be read is reported and the profile's rate used."""
        path = self.work / CHOICE_FILE
        if path.is_file():
            try:
                return _rates(json.loads(path.read_text(encoding="utf-8"))["compress_rate"]), f"chosen in notebook 02 ({path})"
            except (ValueError, KeyError, TypeError, HRankError) as e:
                print(f"ignoring {path} ({e}): using the profile's compress rate; choose again in notebook 02",
                      file=sys.stderr)
        return _rates(self.profile.compress_rate), f"the {self.profile.name} profile's"

    def _student_key(self, rates: Sequence[float]) -> str:
        digest = hashlib.sha1(format_compress_rate(rates).encode()).hexdigest()[:8]
        return f"vgg16-ssd-rate-{digest}"

    def student_pruned(self, rates: Optional[Sequence[float]] = None) -> Path:
        """The baseline pruned with HRank at per-layer ``rates`` (default :meth:`chosen_compress_rate`), before
        finetuning: at the profile's rate the comparison's own :meth:`pruned`."""
        rates = self.chosen_compress_rate()[0] if rates is None else list(rates)
        if rates == _rates(self.profile.compress_rate):
            return self.pruned()
        return self.pruned_at(self._student_key(rates), rates)

    def student_finetuned(self, hooks=None) -> Path:
        """Notebook 03's finetuning of :meth:`chosen_compress_rate`. At the profile's rate it is the comparison's
        own (``finetuned()``), or, where the published pruned model stands in for the original 120 GPU epochs
        (full), a short run of ``student_finetune_epochs`` epochs from the student's pruned model; at another rate
        a model of its own, finetuned as long. Resumable; its per-epoch log is :meth:`log_file` of the path."""
        p = self.profile
        short = p.use_published_pruned and not p.synthetic and p.student_finetune_epochs
        rates, _ = self.chosen_compress_rate()
        if rates == _rates(p.compress_rate):
            return self.finetuned(epochs=p.student_finetune_epochs, hooks=hooks) if short else self.finetuned(hooks=hooks)
        epochs = p.student_finetune_epochs if short else p.finetune_epochs
        return self._train(self._student_key(rates), "vgg16-ssd", epochs, p.finetune_lr_for(epochs), 1.0, hooks,
                           base_net=str(self.student_pruned(rates)))

    def pruned_model(self) -> Path:
        """The finetuned pruned detector that notebooks 04-06 measure: :meth:`finetuned`. On the full profile,
        when the published one cannot be had (Drive over quota, a corrupt copy, a checkpoint whose widths are not the
        manifest's compress rate), the course goes on with the
        student's own (:meth:`student_finetuned`), says so once, and records it in ``results/substitutes.json``."""
        published = not self.profile.synthetic and self.profile.use_published_pruned
        try:
            path = self.finetuned()
        except HRankError as e:
            if not published:
                raise
            self.substitute("vgg16-ssd-pruned", "published pruned model unavailable: using your own finetuned "
                            f"pruned model instead ({self.profile.student_finetune_epochs} epoch(s), notebook 03); "
                            f"why: {e}")
            return self.student_finetuned()
        if published:
            self.published_used("vgg16-ssd-pruned")
        return path

    def model_path(self, key: str) -> Path:
        """The checkpoint of one of :data:`~hrank_ssd.course.results.MODEL_KEYS`."""
        if key == "vgg16-ssd-pruned":
            return self.pruned_model()
        return super().model_path(key)


__all__ = ["CHOICE_FILE", "PruningTrial", "StudentPruning"]
