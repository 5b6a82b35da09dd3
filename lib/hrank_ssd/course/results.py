"""Where course runs live (``runs/<timestamp>/``, ``runs/latest``) and their results files (:data:`RESULTS`)."""

from __future__ import annotations

import contextlib
import fnmatch
import json
import time
from pathlib import Path
from typing import Dict, NamedTuple, Optional, Tuple

import pandas as pd

from hrank_ssd.course.models import MODEL_KEYS
from hrank_ssd.errors import HRankError
from hrank_ssd.io.files import atomic_write_text

NOTEBOOKS = ("00_setup", "01_rank_generation", "02_hrank_pruning", "03_finetune", "04_eval_map_fps",
             "05_flops_table", "06_video_demo", "07_latency_pruning", "08_speed_frontier")

# the `course --no_notebooks --steps` names, in the order the notebooks take them
STEPS = ("data", "train", "ranks", "prune", "latency", "finetune", "evaluate", "flops", "bench", "frontier",
         "sensitivity", "criteria", "distillation", "video")

LATEST_LINK, LATEST_FILE = "latest", "LATEST"  # runs/latest -> the newest run; runs/LATEST holds its name
LOGS = "log_*.csv"  # a training log per model: log_name(key)
TOTAL_TIME = "course, all steps"  # timings.json's entry for a whole `course` run


class Producer(NamedTuple):
    """What writes a results file: the call, its notebooks, its ``--steps`` name (None: the report skips it)."""

    call: str
    notebooks: Tuple[str, ...]
    step: Optional[str]


_PRUNE, _EVAL, _VIDEO = ("02_hrank_pruning",), ("04_eval_map_fps",), ("06_video_demo",)
_CLOCK, _SPEED = ("07_latency_pruning",), ("08_speed_frontier",)
RESULTS: Dict[str, Producer] = {
    "settings.json": Producer("Course.settings()", ("00_setup",), "all"),
    LOGS: Producer("Course.baseline() / Course.finetune()", ("00_setup", "03_finetune"), "train"),
    "sensitivity.csv": Producer("Course.scan_sensitivity()", _PRUNE, "sensitivity"),
    "criteria.csv": Producer("Course.criteria()", _PRUNE, "criteria"),
    "rank_stability.csv": Producer("Course.rank_stability()", ("01_rank_generation",), None),
    "fine_grained.csv": Producer("Course.fine_grained()", _PRUNE, None),
    "dead_filters.csv": Producer("Course.dead_filters()", _CLOCK, None),
    "latency_table.json": Producer("Course.latency_table()", ("03_finetune", *_CLOCK), "latency"),
    "latency_models.csv": Producer("Course.latency_models()", _CLOCK, "latency"),
    "distillation.csv": Producer("Course.distillation()", ("03_finetune",), "distillation"),
    "resume.csv": Producer("Course.resume_lesson()", ("03_finetune",), None),
    **dict.fromkeys(("map.csv", "per_class_ap.csv", "yours.json"), Producer("Course.evaluate()", _EVAL, "evaluate")),
    **dict.fromkeys(("bench.csv", "machine.json"), Producer("Course.bench()", _SPEED, "bench")),
    **dict.fromkeys(("frontier.csv", "frontier_machine.json"), Producer("Course.frontier()", _SPEED, "frontier")),
    **dict.fromkeys(("layer_speed.csv", "layer_speed_groups.csv"),
                    Producer("Course.layer_speed()", _SPEED, None)),
    "substitutes.json": Producer("Course.model()", _EVAL + _VIDEO, "evaluate"),
    "flops.csv": Producer("Course.flops()", ("05_flops_table",), "flops"),
    "video.json": Producer("the video demo", _VIDEO, "video"),
    "timings.json": Producer("any Course step", NOTEBOOKS, "all"),
}


def log_name(key: str) -> str:
    """The results file of a model's training log (``log_<key>.csv``)."""
    return LOGS.replace("*", key)


def results_file(results: Path, name: str) -> Path:
    """``results/name``, for a file :data:`RESULTS` knows: a new results file gets its row there first."""
    if name not in RESULTS and not fnmatch.fnmatchcase(name, LOGS):
        raise HRankError(f"{name} is not a results file: add it to hrank_ssd.course.results.RESULTS")
    return Path(results) / name


def missing_note(name: str) -> str:
    """One line naming what writes the missing results file ``name``."""
    entry = RESULTS[name]
    notebook = "any notebook" if entry.notebooks == NOTEBOOKS else " and ".join(f"{nb}.ipynb" for nb in entry.notebooks)
    run = f"or run `python -m hrank_ssd course --no_notebooks --steps {entry.step}` " if entry.step else ""
    return (f"_Not available: `results/{name}` is missing. It is written by `{entry.call}` (notebook "
            f"`{notebook}`), {run}(whole course: `python -m hrank_ssd course --profile offline --runs runs`)._")


def repo_root() -> Path:
    """The checkout holding notebooks/ and lib/hrank_ssd (found from this file, else the working folder)."""
    return next((parent for parent in Path(__file__).resolve().parents
                 if (parent / "pyproject.toml").is_file() and (parent / "lib" / "hrank_ssd").is_dir()),
                Path.cwd())


def open_run_dir(runs, run_dir: Optional[Path] = None) -> Path:
    """``run_dir`` (created), else a new ``runs/<YYYYmmdd-HHMMSS>`` that ``runs/latest`` (or ``runs/LATEST``) names."""
    if run_dir is not None:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        return Path(run_dir)
    runs = Path(runs)
    runs.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir, k = runs / stamp, 1
    while run_dir.exists():
        run_dir, k = runs / f"{stamp}-{k}", k + 1
    run_dir.mkdir()
    latest = runs / LATEST_LINK
    (runs / LATEST_FILE).write_text(run_dir.name + "\n")
    if latest.is_symlink():
        latest.unlink()
    if not latest.exists():  # a real folder from an interactive session stays
        with contextlib.suppress(OSError):
            latest.symlink_to(run_dir.name, target_is_directory=True)
    return run_dir


def read_result(results: Path, name: str):
    """``results/name`` parsed (JSON) or as a frame (CSV); None when absent, a one-line error when unreadable."""
    path = Path(results) / name
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text()) if name.endswith(".json") else pd.read_csv(path)
    except json.JSONDecodeError as e:
        raise HRankError(f"{path} is not valid JSON ({e}): re-run the step that writes it or delete it") from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as e:
        raise HRankError(f"{path} is not a readable CSV ({str(e).splitlines()[0]}): re-run the step that "
                         f"writes it or delete the file") from None


def write_json(results: Path, name: str, obj) -> Path:
    """Write ``results/name`` atomically (indented; numpy numbers as floats)."""
    path = results_file(results, name)
    atomic_write_text(path, json.dumps(obj, indent=1, default=float))
    return path


def add_timing(results: Path, step: str, seconds: float) -> None:
    """Record a step's duration in ``results/timings.json`` (rounded to 0.1 s; a re-run replaces it)."""
    times = read_result(results, "timings.json") or {}
    times[step] = round(seconds, 1)
    write_json(results, "timings.json", times)


def load_results(run_dir) -> Dict[str, object]:
    """Every results file the report reads, by name (absent: None); training logs under ``"logs"`` by model key."""
    run_dir = Path(run_dir)
    results = run_dir / "results"
    if not run_dir.is_dir():
        raise HRankError(f"run folder {run_dir} not found: pass a runs/<timestamp> folder made by "
                         f"`python -m hrank_ssd course`")
    out: Dict[str, object] = {name: read_result(results, name) for name, entry in RESULTS.items()
                              if entry.step and name != LOGS}
    logs = {p.stem[len("log_"):]: p.name for p in results.glob(LOGS)}  # by model key
    order = [k for k in MODEL_KEYS if k in logs] + sorted(k for k in logs if k not in MODEL_KEYS)
    out["logs"] = {k: read_result(results, logs[k]) for k in order}
    return out
