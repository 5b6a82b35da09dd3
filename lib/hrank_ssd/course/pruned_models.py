"""The comparison's pruned models beyond the paper rate, and the latency table of this machine they are chosen on.

:class:`PrunedModels` is the part of :class:`~hrank_ssd.course.steps.Course` that makes them under
``work_dir/<profile>/``, reusing what an earlier run made (as :class:`~hrank_ssd.course.workspace.Workspace`):

- ``latency/vgg16-ssd-<key>.json``: VGG16-SSD's latency table at the profile's width and image size, measured
  here (:func:`~hrank_ssd.latency.measure.measure_latency_table`). ``<key>`` hashes this machine (CPU or
  GPU, torch, threads) with the profile's table settings. Once the latency-pruned models exist, the table their
  widths were chosen on (named in their sidecars) is the one used, on any machine, as long as it is in the work
  folder (a later notebook on a new Colab VM with Drive predicts with it, never with a re-measured one); before
  that, another machine measures its own, and a table :meth:`LatencyTable.load` refuses is measured again
  (:meth:`PrunedModels.latency_table`). Copied into ``results/latency_table.json``.
- ``vgg16-ssd-lat-paper-macs``: within the paper rate's exact MACs, the fastest widths that keep ``paper_macs_keep``
  of the most HRank importance those MACs allow (:func:`~hrank_ssd.latency.budgets.fastest_widths_at_mac_cap`),
  finetuned exactly as the paper-rate model (same epochs and learning rate: their mAPs are compared).
- ``vgg16-ssd-lat-small``: the widths under ``latency_budget`` of the unpruned model's predicted forward
  (:func:`~hrank_ssd.latency.budgets.widths_for_latency_budget`), finetuned ``small_finetune_epochs``.
- ``mb1-ssd-pruned``: MobileNetV1-SSD pruned at ``mb1_compress_rate`` with its own HRank ranks, finetuned
  ``small_finetune_epochs``.
"""

from __future__ import annotations

import hashlib
import json
import sys
import warnings
from pathlib import Path
from typing import Dict, Optional, Tuple

import pandas as pd
import torch

from hrank_ssd.course.student import StudentPruning
from hrank_ssd.errors import HRankError
from hrank_ssd.latency import budgets
from hrank_ssd.latency.knapsack import Budget
from hrank_ssd.latency.measure import measure_latency_table
from hrank_ssd.latency.table import LatencyTable, current_machine
from hrank_ssd.measure.flops import macs
from hrank_ssd.nets.compress import format_compress_rate
from hrank_ssd.nets.models import layer_names, load_model, read_sidecar
from hrank_ssd.nets.ssd import SSD

PAPER_MACS, SMALL = "vgg16-ssd-lat-paper-macs", "vgg16-ssd-lat-small"  # the latency-pruned models' keys
MB1_PRUNED = "mb1-ssd-pruned"


class PrunedModels(StudentPruning):
    """The latency table, the latency-pruned VGG16-SSDs and the pruned MobileNetV1-SSD of one course run."""

    _table: Optional[LatencyTable] = None
    _table_file: Optional[Path] = None

    # ------------------------------------------------------------ the latency table

    def latency_table_path(self) -> Path:
        """Where this machine's table for the profile lives: ``work/<profile>/latency/vgg16-ssd-<key>.json``."""
        p = self.profile
        device = torch.device(self.device)
        facts = {"machine": current_machine(device), "device": device.type, "width": p.vgg_width,
                 "threads": torch.get_num_threads() if device.type == "cpu" else None, "image_size": p.image_size,
                 "grid": p.latency_grid, "runs": p.latency_runs, "warmup": p.latency_warmup}
        key = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:12]
        return self.work / "latency" / f"vgg16-ssd-{key}.json"

    def chosen_table_path(self) -> Optional[Path]:
        """The latency table the latency-pruned models' widths were chosen on (named in their sidecars) when it is
        in the work folder; None before notebook 02 made them, or when that file is gone."""
        for key in (PAPER_MACS, SMALL):
            init = self.path(f"{key}-init")
            name = (read_sidecar(init).get("budget") or {}).get("latency_table") if init.is_file() else None
            if name and (self.work / "latency" / name).is_file():
                return self.work / "latency" / name
        return None

    def latency_table(self) -> LatencyTable:
        """VGG16-SSD's latency table at the profile's width and image size, by this rule:

        1. once the latency-pruned models exist, the table their widths were chosen on
           (:meth:`chosen_table_path`), whatever machine measured it: a later notebook on a new VM predicts with
           the table that chose the widths it finetuned, never a re-measured one (said when it is another
           machine's);
        2. else this machine's (:meth:`latency_table_path`), when :meth:`LatencyTable.load` accepts it;
        3. else measured here (the profile's ``latency_grid``, ``latency_runs``, ``latency_warmup``) and saved there.

        Also written to ``results/latency_table.json``; :meth:`latency_table_file` names the file used."""
        if self._table is not None:
            return self._table
        table = self._chosen_table()
        if table is None:
            table = self._own_table()
        table.save(self.result("latency_table.json"))
        self._table = table
        return table

    def latency_table_file(self) -> Path:
        """The file :meth:`latency_table` read or measured."""
        self.latency_table()
        return self._table_file

    def _chosen_table(self) -> Optional[LatencyTable]:
        path = self.chosen_table_path()
        if path is None:
            return None
        with warnings.catch_warnings(record=True) as elsewhere:
            warnings.simplefilter("always")
            try:
                table = LatencyTable.load(path, expect_machine=False)
            except HRankError as e:
                print(f"the latency table the latency-pruned models were chosen on is unreadable ({e}): using this "
                      "machine's", file=sys.stderr)
                return None
        if elsewhere:
            print(f"using {path.name}, the latency table the latency-pruned models' widths were chosen on: it was "
                  "measured on another machine, so its predicted ms are that machine's", file=sys.stderr)
        self._table_file = path
        return table

    def _own_table(self) -> LatencyTable:
        p, path, table = self.profile, self.latency_table_path(), None
        if path.is_file():
            try:
                table = LatencyTable.load(path)
            except HRankError as e:  # another machine's, or damaged: this machine measures its own
                print(f"measuring the latency table again: {e}", file=sys.stderr)
        if table is None:
            with self.timed("latency table"):
                table = measure_latency_table("vgg16-ssd", device=self.device, width=p.vgg_width,
                                              image_size=p.image_size, grid=p.latency_grid, runs=p.latency_runs,
                                              warmup=p.latency_warmup, num_classes=len(self.class_names()),
                                              progress=self.progress)
            table.save(path)
        self._table_file = path
        return table

    # ------------------------------------------------------------ VGG16-SSD pruned for the clock

    def paper_rate_mac_cap(self) -> int:
        """Exact MACs of the baseline pruned at the profile's compress rate (the paper rate's model)."""
        return macs(load_model(self.pruned("hrank")))

    def latency_widths(self, key: str, base: Optional[SSD] = None) -> Tuple[budgets.BudgetWidths, str]:
        """The kept counts of a latency-pruned model, chosen on this machine's table (every layer keeping at
        least :meth:`min_keep` of its filters), and a note saying which fallback was needed (empty: none):

        - ``vgg16-ssd-lat-paper-macs``: within the paper rate's MACs, the fastest widths keeping ``paper_macs_keep``
          of the most importance those MACs allow. Where the table's grid has no widths within that cap, it
          falls back to the MAC knapsack at the paper rate's MACs.
        - ``vgg16-ssd-lat-small``: under ``latency_budget`` of the unpruned forward; a budget below the cheapest
          widths is raised to a tenth of the way from those to the unpruned forward; a table on which even that
          fails (times that do not grow with the counts) falls back to the MAC knapsack at ``latency_budget`` of
          the unpruned MACs.
        """
        base = base or load_model(self.baseline("vgg16-ssd"))
        if key == PAPER_MACS:
            return self._paper_macs_widths(base)
        if key == SMALL:
            return self._small_budget_widths(base)
        raise HRankError(f"{key} is not a latency-pruned model: use {PAPER_MACS} or {SMALL}")

    def min_keep(self, key: str) -> float:
        """The least fraction of every layer's filters the latency-pruned model ``key`` keeps."""
        return self.profile.paper_macs_min_keep if key == PAPER_MACS else self.profile.min_keep

    def _paper_macs_widths(self, base: SSD) -> Tuple[budgets.BudgetWidths, str]:
        cap, min_keep = self.paper_rate_mac_cap(), self.min_keep(PAPER_MACS)
        try:
            return budgets.fastest_widths_at_mac_cap(base, self.latency_table(), cap, self.rank_dir(),
                                                     min_keep=min_keep, keep=self.profile.paper_macs_keep), ""
        except HRankError as e:
            note = (f"fallback: {e}; chose the widths of largest HRank importance within the paper rate's MACs "
                    f"instead (MAC knapsack). Re-measure the table on a quiet machine.")
        print(note, file=sys.stderr)
        return budgets.widths_for_mac_budget(base, Budget(cap, False), self.rank_dir(), min_keep=min_keep), note

    def _small_budget_widths(self, base: SSD) -> Tuple[budgets.BudgetWidths, str]:
        p, table, ranks = self.profile, self.latency_table(), self.rank_dir()
        cheapest, full = budgets.latency_range(base, table, ranks, p.min_keep)
        budget, note = p.latency_budget * full, ""
        if budget < cheapest + 0.05 * (full - cheapest):
            budget = cheapest + 0.1 * (full - cheapest)
            note = (f"latency_budget {p.latency_budget:g} of the unpruned {full:.4g} ms is below the cheapest widths "
                    f"min_keep {p.min_keep:g} allows ({cheapest:.4g} ms): budget {budget:.4g} ms instead, a tenth "
                    "of the way from those to the unpruned forward")
        try:
            return budgets.widths_for_latency_budget(base, table, Budget(budget, False), ranks,
                                                     min_keep=p.min_keep), note
        except HRankError as e:
            note = (f"fallback: {e}; chose the widths of largest HRank importance within {p.latency_budget:g} of "
                    "the unpruned MACs instead (MAC knapsack). Re-measure the table on a quiet machine.")
        print(note, file=sys.stderr)
        return budgets.widths_for_mac_budget(base, Budget(p.latency_budget, True), ranks, min_keep=p.min_keep), note

    def latency_pruned(self, key: str) -> Path:
        """A latency-pruned VGG16-SSD before finetuning (``models/<key>-init.pth``, the budget in its sidecar)."""
        out = self.path(f"{key}-init")
        if out.is_file():
            return out
        base = load_model(self.baseline("vgg16-ssd"))
        chosen, note = self.latency_widths(key, base)
        budgets.prune_to_budget(base, chosen, self.rank_dir(), out, self.min_keep(key),
                                latency_table=self.latency_table_file().name, note=note)
        return out

    def finetune_epochs(self, key: str) -> int:
        """The finetuning epochs of one of the course's models (0: not finetuned by the course)."""
        p = self.profile
        published = p.use_published_pruned and not p.synthetic
        if key == "vgg16-ssd-pruned":  # the published model's epochs, or the student's when theirs stands in
            short = published and key in self.substitutes and p.student_finetune_epochs
            return p.student_finetune_epochs if short else p.finetune_epochs
        if key == PAPER_MACS:  # as the paper-rate model; where the published one stands in for it, as the student's
            return (p.student_finetune_epochs or p.finetune_epochs) if published else p.finetune_epochs
        return p.small_finetune_epochs if key in (SMALL, MB1_PRUNED) else 0

    def latency_finetuned(self, key: str, hooks=None) -> Path:
        """A latency-pruned VGG16-SSD finetuned (:meth:`finetune_epochs` at ``Profile.finetune_lr_for`` those
        epochs): ``models/<key>.pth``."""
        epochs = self.finetune_epochs(key)
        init = self.latency_pruned(key)
        if epochs == 0:
            return init
        return self._train(key, "vgg16-ssd", epochs, self.profile.finetune_lr_for(epochs), 1.0, hooks,
                           base_net=str(init))

    # ------------------------------------------------------------ MobileNetV1-SSD pruned

    def mb1_pruned(self) -> Path:
        """MobileNetV1-SSD pruned at ``mb1_compress_rate`` with its own HRank ranks, before finetuning."""
        return self.pruned_at("mb1-ssd-hrank", self.profile.mb1_compress_rate, net="mb1-ssd")

    def mb1_finetuned(self, hooks=None) -> Path:
        """The pruned MobileNetV1-SSD finetuned (``small_finetune_epochs`` at ``mb1_finetune_lr``, else
        ``finetune_lr``)."""
        epochs, p = self.finetune_epochs(MB1_PRUNED), self.profile
        if epochs == 0:
            return self.mb1_pruned()
        return self._train(MB1_PRUNED, "mb1-ssd", epochs, p.mb1_finetune_lr or p.finetune_lr, 1.0, hooks,
                           base_net=str(self.mb1_pruned()))

    def model_path(self, key: str) -> Path:
        """The checkpoint of one of :data:`~hrank_ssd.course.results.MODEL_KEYS` (made here when missing)."""
        if key in (PAPER_MACS, SMALL):
            return self.latency_finetuned(key)
        if key == MB1_PRUNED:
            return self.mb1_finetuned()
        return super().model_path(key)

    def extra_finetunes(self, hooks=None) -> Dict[str, Path]:
        """The comparison's other finetuned models: both latency-pruned VGG16-SSDs and the pruned MobileNetV1-SSD."""
        return {PAPER_MACS: self.latency_finetuned(PAPER_MACS, hooks), SMALL: self.latency_finetuned(SMALL, hooks),
                MB1_PRUNED: self.mb1_finetuned(hooks)}

    # ------------------------------------------------------------ choosing widths, as notebook 02 shows it

    def _budget_row(self, name: str, widths, base: SSD, full_macs: int) -> dict:
        table = self.latency_table()
        count = macs(base, widths)
        return {"pruning": name, "predicted ms": table.predict(widths), "of unpruned ms": table.predict(widths)
                / table.predict(table.full_widths()), "MMACs": count / 1e6, "of unpruned MACs": count / full_macs,
                **dict(zip(layer_names("vgg16-ssd"), (int(k) for k in widths)))}

    def budget_table(self, fraction: Optional[float] = None) -> pd.DataFrame:
        """Kept filters per layer, predicted latency (this machine's table) and exact MACs: the unpruned model, the
        paper rate (the reference) and the widths chosen under a latency budget of ``fraction`` of the unpruned
        forward (default: the profile's ``latency_budget``), every layer keeping at least ``min_keep``. A budget
        no widths meet gets a row with only a ``note`` saying the least budget that can be met."""
        p = self.profile
        base = load_model(self.baseline("vgg16-ssd"))
        fraction = p.latency_budget if fraction is None else float(fraction)
        full_macs = macs(base)
        seed = load_model(self.pruned("hrank")).plan.prunable
        rows = [self._budget_row("unpruned", base.plan.prunable, base, full_macs),
                self._budget_row(f"paper rate {format_compress_rate(p.compress_rate)}", seed, base, full_macs)]
        name = f"latency budget {fraction:g}"
        try:
            chosen = budgets.widths_for_latency_budget(base, self.latency_table(), Budget(fraction, True),
                                                       self.rank_dir(), min_keep=p.min_keep)
            rows.append(self._budget_row(name, chosen.widths, base, full_macs))
        except HRankError:  # below the cheapest widths min_keep allows
            cheapest, full = budgets.latency_range(base, self.latency_table(), self.rank_dir(), p.min_keep)
            rows.append({"pruning": name, "note": f"no widths keeping min_keep {p.min_keep:g} fit: the least budget "
                                                  f"that can be met is about {cheapest / full:.2f}"})
        return pd.DataFrame(rows)

    def latency_models(self) -> pd.DataFrame:
        """The latency table, then both latency-pruned VGG16-SSDs (before finetuning), beside the unpruned model and
        the paper rate: ``results/latency_models.csv`` (widths, predicted ms, exact MACs, the budget met)."""
        base = load_model(self.baseline("vgg16-ssd"))
        full_macs = macs(base)
        rate = f"compress rate {format_compress_rate(self.profile.compress_rate)}"
        rows = [dict(self._budget_row("vgg16-ssd", base.plan.prunable, base, full_macs), **{"chosen by": "-"}),
                dict(self._budget_row("vgg16-ssd-pruned", load_model(self.pruned("hrank")).plan.prunable, base,
                                      full_macs), **{"chosen by": rate})]
        for key in (PAPER_MACS, SMALL):
            path = self.latency_pruned(key)
            budget = read_sidecar(path).get("budget") or {}
            rows.append(dict(self._budget_row(key, load_model(path).plan.prunable, base, full_macs),
                             **{"chosen by": f"{budget.get('kind')} knapsack", "budget": budget.get("budget"),
                                "budget unit": budget.get("unit"), "note": budget.get("note") or ""}))
        table = pd.DataFrame(rows)
        table.to_csv(self.result("latency_models.csv"), index=False)
        return table
