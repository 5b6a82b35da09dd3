"""The course in one object: ``Course(profile, run_dir, work_dir)``, the workspace plus the verbs notebooks call.

Every verb is a plain function of the course, listed here; each writes its files and reuses what an earlier run
made, so any notebook can start from any step. The compared models: :mod:`hrank_ssd.course.models`.
"""

from __future__ import annotations

from hrank_ssd.course import latency_models, lessons, making, measures
from hrank_ssd.course.workspace import Workspace


class Course(Workspace):
    """Paths, data, trained baselines and ranks (:class:`Workspace`) and the course's verbs."""

    # models: made once, saved by readable names (course.making)
    prune = making.prune
    finetune = making.finetune
    finetune_rate = making.finetune_rate
    model = making.model
    model_epochs = making.model_epochs
    # the student's rate (notebooks 02 and 03)
    try_compress_rate = making.try_compress_rate
    suggested_rate = making.suggested_rate
    choose_compress_rate = making.choose_compress_rate
    chosen_compress_rate = making.chosen_compress_rate
    finetune_choice = making.finetune_choice
    your_model = making.your_model
    # pruning for this machine's clock (course.latency_models)
    latency_table = latency_models.latency_table
    latency_table_file = latency_models.latency_table_file
    latency_table_path = latency_models.latency_table_path
    chosen_table_path = latency_models.chosen_table_path
    latency_widths = latency_models.latency_widths
    latency_pruned = latency_models.latency_pruned
    paper_rate_mac_cap = latency_models.paper_rate_mac_cap
    min_keep = latency_models.min_keep
    budget_table = latency_models.budget_table
    latency_models = latency_models.latency_models
    # measurements (course.measures)
    evaluate = measures.evaluate
    flops = measures.flops
    bench = measures.bench
    frontier = measures.frontier
    layer_speed = measures.layer_speed
    street_clip = measures.street_clip
    video = measures.video
    settings = measures.settings
    # lessons (course.lessons)
    rank_stability = lessons.rank_stability
    rank_comparison = lessons.rank_comparison
    sensitivity = lessons.sensitivity
    criteria = lessons.criteria
    distillation = lessons.distillation
    fine_grained = lessons.fine_grained
    dead_filters = lessons.dead_filters
    resume_lesson = lessons.resume_lesson
