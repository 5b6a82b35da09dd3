"""The course's short lessons that measure something beside the main pipeline (a few seconds each, offline).

:class:`Lessons` is the part of :class:`~hrank_ssd.course.steps.Course` behind them; each writes one results file
(:mod:`hrank_ssd.course.results`):

- :meth:`Lessons.rank_stability` (notebook 01, ``rank_stability.csv``): ranks from two disjoint image sets, and from
  a few images against many, agree (:mod:`hrank_ssd.hrank.stability`).
- :meth:`Lessons.fine_grained` (notebook 02, ``fine_grained.csv``): magnitude pruning of single weights against
  HRank's filter pruning at the same sparsity: mAP without finetuning and forward latency
  (:mod:`hrank_ssd.measure.fine_grained`).
- :meth:`Lessons.dead_filters` (notebook 02, ``dead_filters.csv``): how many of the filters L1 keeps never fire
  (:mod:`hrank_ssd.hrank.dead_filters`).
- :meth:`Lessons.resume_lesson` (notebook 03, ``resume.csv``): a short finetune stopped mid-epoch and resumed gives
  the same losses, step by step, as the same run left alone (:mod:`hrank_ssd.train.resume_check`).
"""

from __future__ import annotations

import pandas as pd

from hrank_ssd.course.pruned_models import PrunedModels
from hrank_ssd.data.voc import TestTransform, VOCDataset
from hrank_ssd.hrank.dead_filters import dead_filter_table
from hrank_ssd.hrank.ranks import load_ranks
from hrank_ssd.hrank.stability import rank_stability
from hrank_ssd.measure.fine_grained import compare_fine_grained
from hrank_ssd.nets.models import load_model
from hrank_ssd.train.resume_check import steps_per_epoch, stopped_and_resumed


class Lessons(PrunedModels):
    """Rank stability, fine-grained against filter pruning, and the near-dead filters L1 keeps."""

    def rank_stability(self) -> pd.DataFrame:
        """VGG16-SSD's ranks on two disjoint sets of ``stability_images`` training images (and on only
        ``stability_few`` of them against the other set), compared per layer: Spearman's correlation and the share
        of the filters kept at the profile's compress rate that would change. Writes ``results/rank_stability.csv``."""
        p = self.profile
        model = load_model(self.baseline("vgg16-ssd"))
        ds = VOCDataset(self.dataset_root(), split="trainval",
                        transform=TestTransform(model.image_size, model.cfg.image_mean, model.cfg.image_std),
                        class_names=self.class_names())
        with self.timed("rank stability"):
            table = rank_stability(model, ds, p.stability_images, p.stability_few, p.compress_rate,
                                   batch_size=min(p.rank_batch, 8), device=self.device, progress=self.progress)
        table.to_csv(self.result("rank_stability.csv"), index=False)
        return table

    def fine_grained(self) -> pd.DataFrame:
        """The baseline, its HRank-pruned copy at the profile's compress rate (:meth:`pruned`, no finetuning) and the
        baseline with as many smallest weights zeroed in each tensor: sparsity, MACs, mAP on ``sensitivity_images``
        test images and forward latency timed round-robin. Writes ``results/fine_grained.csv``."""
        p = self.profile
        model, pruned = load_model(self.baseline("vgg16-ssd")), load_model(self.pruned("hrank"))
        with self.timed("fine-grained"):
            table = compare_fine_grained(model, pruned, self.test_dataset(p.sensitivity_images), device=self.device,
                                         warmup=p.bench_warmup, runs=p.bench_runs, progress=self.progress)
        table.to_csv(self.result("fine_grained.csv"), index=False)
        return table

    def dead_filters(self) -> pd.DataFrame:
        """Per layer of the baseline VGG16-SSD: near-dead filters (average rank below 1) and how many of them L1 and
        HRank keep at the profile's compress rate (the ranks of :meth:`rank_dir`: on the full profile the
        published ones, with the published weights). Writes ``results/dead_filters.csv``."""
        model = load_model(self.baseline("vgg16-ssd"))
        ranks = load_ranks(self.rank_dir(), model.cfg.name, model.plan.prunable)
        table = dead_filter_table(model, self.profile.compress_rate, ranks)
        table.to_csv(self.result("dead_filters.csv"), index=False)
        return table

    def resume_lesson(self) -> pd.DataFrame:
        """Finetune the paper-rate pruned model for two epochs on the first ``resume_images`` images, straight through
        and stopped in the middle of the second epoch then resumed (``work/<profile>/resume-lesson/``, made afresh
        each time): the training loss of every step of both. Writes ``results/resume.csv``."""
        p = self.profile
        images = min(p.resume_images, len(VOCDataset(self.dataset_root(), split="trainval",
                                                     class_names=self.class_names())))
        cfg = self.train_config("vgg16-ssd", 2, p.finetune_lr, 1.0, self.work / "resume-lesson",
                                base_net=str(self.pruned()), max_images=p.resume_images, validation_epochs=0,
                                batch_size=max(1, min(p.batch_size, images // 2)))  # two steps at least: a middle
        stop_step = max(1, steps_per_epoch(cfg, images) // 2)
        with self.timed("resume lesson"):
            table = stopped_and_resumed(cfg, self.work / "resume-lesson", 1, stop_step)
        table.to_csv(self.result("resume.csv"), index=False)
        return table
