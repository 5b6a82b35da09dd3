"""The course's lessons beside the main pipeline; each writes one results file (:mod:`hrank_ssd.course.results`).

Notebook 01: ``rank_stability`` and ``rank_comparison``; notebook 02: ``sensitivity``, ``criteria``,
``dead_filters``, ``fine_grained``; notebook 03: ``distillation`` and ``resume_lesson``.
"""

from __future__ import annotations

import sys

import pandas as pd

from hrank_ssd.data.voc import TestTransform, VOCDataset
from hrank_ssd.hrank.dead_filters import dead_filter_table
from hrank_ssd.hrank.pruning import kept_agreement
from hrank_ssd.hrank.ranks import load_ranks
from hrank_ssd.hrank.stability import rank_stability as stability_table
from hrank_ssd.measure.fine_grained import compare_fine_grained
from hrank_ssd.measure.sensitivity import compare_criteria, layer_sensitivity, quick_map
from hrank_ssd.nets.models import load_model
from hrank_ssd.train.resume_check import steps_per_epoch, stopped_and_resumed


def _saved(course, table: pd.DataFrame, name: str) -> pd.DataFrame:
    table.to_csv(course.result(name), index=False)
    return table


def _trainval(course, model=None) -> VOCDataset:
    transform = None if model is None else TestTransform(model.image_size, model.cfg.image_mean, model.cfg.image_std)
    return VOCDataset(course.dataset_root(), split="trainval", transform=transform, class_names=course.class_names())


def rank_stability(course) -> pd.DataFrame:
    """Ranks of two disjoint sets of ``stability_images`` training images (and of ``stability_few`` against the
    other set) compared per layer: Spearman's correlation and the share of kept filters that would change."""
    p, model = course.profile, load_model(course.baseline("vgg16-ssd"))
    with course.timed("rank stability"):
        table = stability_table(model, _trainval(course, model), p.stability_images, p.stability_few,
                                p.compress_rate, batch_size=min(p.rank_batch, 8), device=course.device,
                                progress=course.progress)
    return _saved(course, table, "rank_stability.csv")


def rank_comparison(course) -> pd.DataFrame:
    """The student's ranks against the published ones: per layer, how many of the kept filters at the profile's
    rate both keep. Empty (the reason printed) when the published ranks are unavailable."""
    published = course.published_ranks()
    if published is None:
        print("no comparison: the published ranks are unavailable (see above), so yours stand in for them",
              file=sys.stderr)
        return pd.DataFrame()
    model = load_model(course.baseline("vgg16-ssd"))
    return pd.DataFrame(kept_agreement(model, course.profile.compress_rate, course.rank_dir(generate=True),
                                       published))


def sensitivity(course) -> pd.DataFrame:
    """mAP of the baseline with one layer pruned at a time, at each of the profile's rates (no finetuning)."""
    p = course.profile
    with course.timed("sensitivity"):
        table = layer_sensitivity(load_model(course.baseline("vgg16-ssd")), course.test_dataset(p.sensitivity_images),
                                  "hrank", course.rank_dir(), p.sensitivity_rates, p.sensitivity_layers,
                                  device=course.device, progress=course.progress)
    return _saved(course, table, "sensitivity.csv")


def criteria(course) -> pd.DataFrame:
    """hrank vs l1 vs random at the same compress rate, right after pruning and after the same finetune."""
    p = course.profile
    epochs = p.criteria_finetune_epochs
    finetune = (lambda _pruned, crit: load_model(course.finetune_rate(epochs=epochs, criterion=crit))) \
        if epochs else None
    with course.timed("criteria"):
        table = compare_criteria(load_model(course.baseline("vgg16-ssd")), course.test_dataset(), p.compress_rate,
                                 course.rank_dir(), finetune=finetune, device=course.device, seed=p.seed,
                                 progress=course.progress)
    return _saved(course, table, "criteria.csv")


def distillation(course) -> pd.DataFrame:
    """The pruned model finetuned with and without distillation from the unpruned one, same budget."""
    epochs, ds = course.profile.criteria_finetune_epochs or 1, course.test_dataset()
    with course.timed("distillation"):
        rows = [{"finetune": name, "epochs": epochs,
                 "mAP": quick_map(load_model(course.finetune_rate(epochs=epochs, distill=kd)), ds, course.device,
                                  progress=course.progress, desc=f"mAP {name}")}
                for name, kd in (("plain", False), ("distilled", True))]
    return _saved(course, pd.DataFrame(rows), "distillation.csv")


def fine_grained(course) -> pd.DataFrame:
    """The baseline, its HRank-pruned copy at the profile's rate (no finetuning) and the baseline with as many
    smallest weights zeroed per tensor: sparsity, MACs, mAP on ``sensitivity_images`` images, latency."""
    p = course.profile
    model, pruned = load_model(course.baseline("vgg16-ssd")), load_model(course.prune())
    with course.timed("fine-grained"):
        table = compare_fine_grained(model, pruned, course.test_dataset(p.sensitivity_images), device=course.device,
                                     warmup=p.bench_warmup, runs=p.bench_runs, progress=course.progress)
    return _saved(course, table, "fine_grained.csv")


def dead_filters(course) -> pd.DataFrame:
    """Per layer of the baseline: near-dead filters (average rank below 1) and how many of them L1 and HRank keep
    at the profile's rate."""
    model = load_model(course.baseline("vgg16-ssd"))
    ranks = load_ranks(course.rank_dir(), model.cfg.name, model.plan.prunable)
    return _saved(course, dead_filter_table(model, course.profile.compress_rate, ranks), "dead_filters.csv")


def resume_lesson(course) -> pd.DataFrame:
    """The paper-rate pruned model finetuned two epochs on ``resume_images`` images, straight through and stopped
    mid-epoch then resumed (``work/<profile>/resume-lesson/``, afresh each time): every step's loss of both."""
    p = course.profile
    images = min(p.resume_images, len(_trainval(course)))
    cfg = course.train_config("vgg16-ssd", 2, p.finetune_lr, 1.0, course.work / "resume-lesson",
                              base_net=str(course.prune()), max_images=p.resume_images, validation_epochs=0,
                              batch_size=max(1, min(p.batch_size, images // 2)))  # two steps at least: a middle
    with course.timed("resume lesson"):
        table = stopped_and_resumed(cfg, course.work / "resume-lesson", 1, max(1, steps_per_epoch(cfg, images) // 2))
    return _saved(course, table, "resume.csv")
