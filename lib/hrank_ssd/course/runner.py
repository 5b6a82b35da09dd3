"""A whole course run: the notebooks (or the same ``Course`` calls without them) into a run folder, the total
time, then the report (and, when asked, the README's results block). ``python -m hrank_ssd course`` is this."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple

from hrank_ssd.course.folders import open_run_dir
from hrank_ssd.course.models import FINETUNED
from hrank_ssd.course.notebooks import execute_notebooks, notebook_paths
from hrank_ssd.course.report import update_readme, write_report
from hrank_ssd.course.results import STEPS, TOTAL_TIME, add_timing
from hrank_ssd.course.steps import Course
from hrank_ssd.devices import resolve_device
from hrank_ssd.errors import HRankError


def step_calls(course: Course) -> dict:
    """Each ``--steps`` name (:data:`~hrank_ssd.course.results.STEPS`) -> the notebooks' Course call(s)."""
    return {
        "data": course.dataset_root,
        "train": lambda: (course.baseline("vgg16-ssd"), course.baseline("mb1-ssd")),
        "ranks": lambda: (course.rank_dir(), course.rank_dir(net="mb1-ssd")),
        "prune": course.prune,
        "latency": course.latency_models,
        "finetune": lambda: [course.finetune(key) for key in FINETUNED],
        "evaluate": course.evaluate,
        "flops": course.flops,
        "bench": course.bench,
        "frontier": course.frontier,
        "sensitivity": course.sensitivity,
        "criteria": course.criteria,
        "distillation": course.distillation,
        "video": course.video,
    }


def run_steps(course: Course, steps: Sequence[str] = STEPS, log: Callable[[str], None] = print) -> None:
    """The notebooks' Course calls, in the same order, without notebooks."""
    steps = list(steps)
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise HRankError(f"unknown --steps {','.join(unknown)}: choose from {','.join(STEPS)}")
    course.save_json("settings.json", course.settings())
    calls = step_calls(course)
    for step in STEPS:
        if step in steps:
            start = time.perf_counter()
            log(f"[course] {step} ...")
            calls[step]()
            log(f"[course] {step} done in {time.perf_counter() - start:.0f} s")


def check_report_needs() -> None:
    """The report needs markdown: fail before the course runs, not after it."""
    try:
        import markdown  # noqa: F401 - the colab extra's; only its presence is checked here
    except ImportError:
        raise HRankError('markdown is not installed: pip install -e ".[course]"') from None


def run_course(profile: str, runs="runs", work="work", run_dir: Optional[Path] = None, device=None,
               notebooks: Optional[Path] = None, steps: Optional[Sequence[str]] = None,
               readme: Optional[Path] = None, log: Callable[[str], None] = print,
               progress: bool = False) -> Tuple[Path, Path]:
    """Run the course into ``run_dir`` (default: a new ``runs/<timestamp>`` that ``runs/latest`` points to) and
    write its report; return (report.md, report.html).

    ``notebooks``: the folder whose notebooks run in order, each in its own kernel; None: the Course steps run
    directly (``steps``, default all). ``readme``: a README.md whose results block is refreshed afterwards.
    ``progress``: progress bars (cells per notebook, or the steps' own)."""
    if device:
        resolve_device(device)  # a clear error for a bad device before anything runs
    check_report_needs()
    start = time.perf_counter()
    run_dir = open_run_dir(runs, run_dir)
    log(f"[course] profile {profile}, run folder {run_dir}")
    if notebooks is None:
        course = Course(profile, run_dir=run_dir, work_dir=work, device=device, progress=progress)
        run_steps(course, STEPS if steps is None else steps, log=log)
    else:
        execute_notebooks(notebook_paths(notebooks), run_dir, profile, work, device, log=log, progress=progress)
    add_timing(run_dir / "results", TOTAL_TIME, time.perf_counter() - start)  # in before the report reads it
    md, html = write_report(run_dir)
    log(f"[course] report: {md} and {html} ({time.perf_counter() - start:.0f} s in all)")
    if readme is not None:
        log(f"[course] updated {update_readme(readme, run_dir)}")
    return md, html
