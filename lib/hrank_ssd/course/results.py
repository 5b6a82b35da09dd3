"""The results files of a course run, and the one table that says where each comes from.

Every step of :class:`~hrank_ssd.course.steps.Course` writes ``run_dir/results/<file>``; the report reads them
back (:func:`load_results`). :data:`RESULTS` maps each file to the ``Course`` call that writes it, the
notebook(s) that make that call and the ``python -m hrank_ssd course --no_notebooks --steps`` name that runs
it; the report's "missing file" notes (:func:`missing_note`), the ``course`` command's ``--steps``
(:data:`STEPS`) and the notebook list (:data:`NOTEBOOKS`) all come from here:

=========================  ==========================================  ========================  ============
results file               written by                                  notebook                  ``--steps``
=========================  ==========================================  ========================  ============
settings.json              Course.settings() (saved at the start)      00_setup                  all
log_<model>.csv            Course.baseline() / finetuned() / ...       00_setup and 03_finetune  train
sensitivity.csv            Course.sensitivity()                        02_hrank_pruning          sensitivity
criteria.csv               Course.criteria()                           02_hrank_pruning          criteria
rank_stability.csv         Course.rank_stability()                     01_rank_generation        -
fine_grained.csv           Course.fine_grained()                       02_hrank_pruning          -
dead_filters.csv           Course.dead_filters()                       02_hrank_pruning          -
latency_table.json         Course.latency_table()                      02_hrank_pruning          latency
latency_models.csv         Course.latency_models()                     02_hrank_pruning          latency
distillation.csv           Course.distillation()                       03_finetune               distillation
resume.csv                 Course.resume_lesson()                      03_finetune               -
map.csv, per_class_ap.csv  Course.evaluate()                           04_eval_map_fps           evaluate
bench.csv, machine.json    Course.bench()                              04_eval_map_fps           bench
frontier.csv               Course.frontier()                           04_eval_map_fps           frontier
frontier_machine.json      Course.frontier()                           04_eval_map_fps           frontier
layer_speed*.csv [#]_      Course.layer_speed()                        04_eval_map_fps           -
bench_trained.csv          Course.bench(trained=True)                  -                         -
substitutes.json           Course.pruned_model() (full profile)        04 and 06                 evaluate
flops.csv                  Course.flops()                              05_flops_table            flops
video.json                 the video demo (Course.video())             06_video_demo             video
timings.json               any Course step                             any notebook              all
=========================  ==========================================  ========================  ============

.. [#] Not in the report, nor are the side lessons' rank_stability.csv, fine_grained.csv, dead_filters.csv and resume.csv;
   every other file is (:func:`load_results`).

Models are named by :data:`MODEL_KEYS` in the files (``model`` columns, ``log_<model>.csv``) and shown as
:data:`MODEL_TITLES`. JSON files are written by :func:`write_json` and read by :func:`read_json`.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import pandas as pd

from hrank_ssd.errors import HRankError
from hrank_ssd.io.files import atomic_write_text

NOTEBOOKS = ("00_setup", "01_rank_generation", "02_hrank_pruning", "03_finetune", "04_eval_map_fps",
             "05_flops_table", "06_video_demo")

# the `course --no_notebooks --steps` names, in the order the notebooks take them
STEPS = ("data", "train", "ranks", "prune", "latency", "finetune", "evaluate", "flops", "bench", "frontier",
         "sensitivity", "criteria", "distillation", "video")

# the compared models: VGG16-SSD, pruned at the paper rate, pruned for the clock at the paper rate's MACs and at a
# smaller latency budget (course.pruned_models), MobileNetV1-SSD and MobileNetV1-SSD pruned
MODEL_KEYS = ("vgg16-ssd", "vgg16-ssd-pruned", "vgg16-ssd-lat-paper-macs", "vgg16-ssd-lat-small", "mb1-ssd",
              "mb1-ssd-pruned")
MODEL_TITLES = {"vgg16-ssd": "VGG16-SSD", "vgg16-ssd-pruned": "VGG16-SSD pruned (HRank)",
                "vgg16-ssd-lat-paper-macs": "VGG16-SSD latency-pruned (paper rate's MACs)",
                "vgg16-ssd-lat-small": "VGG16-SSD latency-pruned (small budget)",
                "mb1-ssd": "MobileNetV1-SSD", "mb1-ssd-pruned": "MobileNetV1-SSD pruned (HRank)"}
MODEL_LABELS = {"vgg16-ssd": "VGG", "vgg16-ssd-pruned": "VGG paper rate", "vgg16-ssd-lat-paper-macs": "VGG latency @ paper MACs",
                "vgg16-ssd-lat-small": "VGG latency small", "mb1-ssd": "MB1", "mb1-ssd-pruned": "MB1 pruned"}  # plots

LOGS = "log_*.csv"  # a training log per model: log_name(key)
TOTAL_TIME = "course, all steps"  # timings.json's entry for a whole `course` run


@dataclass(frozen=True)
class Producer:
    """What writes a results file: the ``Course`` call, the notebooks that make it (all of :data:`NOTEBOOKS`:
    any notebook; none: no notebook) and the ``--steps`` name that runs it ("all": every one; None: none)."""

    call: str
    notebooks: Tuple[str, ...]
    step: Optional[str]
    in_report: bool = True  # load_results reads it

    @property
    def notebook_text(self) -> str:
        if self.notebooks == NOTEBOOKS:
            return "any notebook"
        return " and ".join(f"{name}.ipynb" for name in self.notebooks) or "no notebook"


_PRUNE, _EVAL, _VIDEO = ("02_hrank_pruning",), ("04_eval_map_fps",), ("06_video_demo",)
RESULTS: Dict[str, Producer] = {
    "settings.json": Producer("Course.settings()", ("00_setup",), "all"),
    LOGS: Producer("Course.baseline() / Course.finetuned() / Course.extra_finetunes()", ("00_setup", "03_finetune"),
                   "train"),
    "sensitivity.csv": Producer("Course.sensitivity()", _PRUNE, "sensitivity"),
    "criteria.csv": Producer("Course.criteria()", _PRUNE, "criteria"),
    "rank_stability.csv": Producer("Course.rank_stability()", ("01_rank_generation",), None, in_report=False),
    "fine_grained.csv": Producer("Course.fine_grained()", _PRUNE, None, in_report=False),
    "dead_filters.csv": Producer("Course.dead_filters()", _PRUNE, None, in_report=False),
    "latency_table.json": Producer("Course.latency_table()", _PRUNE, "latency"),
    "latency_models.csv": Producer("Course.latency_models()", _PRUNE, "latency"),
    "distillation.csv": Producer("Course.distillation()", ("03_finetune",), "distillation"),
    "resume.csv": Producer("Course.resume_lesson()", ("03_finetune",), None, in_report=False),
    "map.csv": Producer("Course.evaluate()", _EVAL, "evaluate"),
    "per_class_ap.csv": Producer("Course.evaluate()", _EVAL, "evaluate"),
    "bench.csv": Producer("Course.bench()", _EVAL, "bench"),
    "machine.json": Producer("Course.bench()", _EVAL, "bench"),
    "frontier.csv": Producer("Course.frontier()", _EVAL, "frontier"),
    "frontier_machine.json": Producer("Course.frontier()", _EVAL, "frontier"),
    "layer_speed.csv": Producer("Course.layer_speed()", _EVAL, None, in_report=False),
    "layer_speed_groups.csv": Producer("Course.layer_speed()", _EVAL, None, in_report=False),
    "bench_trained.csv": Producer("Course.bench(trained=True)", (), None),
    "substitutes.json": Producer("Course.pruned_model()", _EVAL + _VIDEO, "evaluate"),
    "flops.csv": Producer("Course.flops()", ("05_flops_table",), "flops"),
    "video.json": Producer("the video demo", _VIDEO, "video"),
    "timings.json": Producer("any Course step", NOTEBOOKS, "all"),
}


def log_name(key: str) -> str:
    """The results file of a model's training log (``log_<key>.csv``)."""
    return LOGS.replace("*", key)


def log_key(name: str) -> str:
    """The model key of a training log's file name (the inverse of :func:`log_name`)."""
    prefix, suffix = LOGS.split("*")
    return name[len(prefix):len(name) - len(suffix)]


def table_entry(name: str) -> Optional[str]:
    """The :data:`RESULTS` key that names the results file ``name`` (a log matches ``log_*.csv``)."""
    if name in RESULTS:
        return name
    return next((pattern for pattern in RESULTS if "*" in pattern and fnmatch.fnmatchcase(name, pattern)), None)


def results_file(results: Path, name: str) -> Path:
    """``results/name``, for a file :data:`RESULTS` knows: a new results file gets its row there first."""
    if table_entry(name) is None:
        raise HRankError(f"{name} is not a results file: add it to hrank_ssd.course.results.RESULTS")
    return Path(results) / name


def missing_note(name: str) -> str:
    """One line naming what writes a missing results file."""
    entry = RESULTS.get(table_entry(name) or "")
    call, notebook, step = (entry.call, entry.notebook_text, entry.step) if entry else \
        ("a Course step", "the course notebooks", "all")
    run = f"or run `python -m hrank_ssd course --no_notebooks --steps {step}` " if step else ""
    return (f"_Not available: `results/{name}` is missing. It is written by `{call}` (notebook `{notebook}`), "
            f"{run}(whole course: `python -m hrank_ssd course --profile offline --runs runs`)._")


# ---------------------------------------------------------------- reading and writing


def read_csv(results: Path, name: str) -> Optional[pd.DataFrame]:
    """``results/name`` as a frame, None when absent, a one-line error when unreadable."""
    path = Path(results) / name
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as e:
        raise HRankError(f"{path} is not a readable CSV ({str(e).splitlines()[0]}): re-run the step that "
                         f"writes it or delete the file") from None


def read_json(results: Path, name: str):
    """``results/name`` parsed, None when absent, a one-line error when unreadable."""
    path = Path(results) / name
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise HRankError(f"{path} is not valid JSON ({e}): re-run the step that writes it or delete it") from None


def write_json(results: Path, name: str, obj) -> Path:
    """Write ``results/name`` atomically (indented; numpy numbers as floats)."""
    path = results_file(results, name)
    atomic_write_text(path, json.dumps(obj, indent=1, default=float))
    return path


def add_timing(results: Path, step: str, seconds: float) -> None:
    """Record a step's duration in ``results/timings.json`` (rounded to 0.1 s; a re-run replaces it)."""
    times = read_json(results, "timings.json") or {}
    times[step] = round(seconds, 1)
    write_json(results, "timings.json", times)


def load_results(run_dir) -> Dict[str, object]:
    """Every results file of ``run_dir/results`` the report reads, by name (absent ones are None); the training
    logs under ``"logs"`` as {model key: frame}, the course's models first."""
    run_dir = Path(run_dir)
    results = run_dir / "results"
    if not run_dir.is_dir():
        raise HRankError(f"run folder {run_dir} not found: pass a runs/<timestamp> folder made by "
                         f"`python -m hrank_ssd course`")
    out: Dict[str, object] = {}
    for name, entry in RESULTS.items():
        if entry.in_report and "*" not in name:
            out[name] = (read_json if name.endswith(".json") else read_csv)(results, name)
    logs = {log_key(p.name): p for p in results.glob(LOGS)}
    order = [k for k in MODEL_KEYS if k in logs] + sorted(k for k in logs if k not in MODEL_KEYS)
    out["logs"] = {k: read_csv(results, logs[k].name) for k in order}
    return out
