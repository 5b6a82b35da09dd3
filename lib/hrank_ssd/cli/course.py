"""``course``: run the whole notebook course (or its steps directly) into runs/<timestamp>/, then write the report."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from hrank_ssd.cli.args import device_arg
from hrank_ssd.course.notebooks import NOTEBOOKS, execute_notebooks, notebook_paths  # noqa: F401 (re-exported)
from hrank_ssd.course.steps import repo_root
from hrank_ssd.errors import HRankError

STEPS = ("data", "train", "ranks", "prune", "finetune", "evaluate", "flops", "bench", "sensitivity", "criteria",
         "distillation", "video")


def add_parser(sub) -> None:
    p = sub.add_parser("course", help="run the notebook course end to end and write runs/<timestamp>/report.md",
                       description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="offline", choices=("offline", "tiny", "full"),
                   help="offline: synthetic data, small models trained here; tiny: seconds (CI); "
                        "full: real VOC and the published weights (network needed)")
    p.add_argument("--runs", default="runs", help="folder that receives runs/<timestamp>/ and the latest pointer")
    p.add_argument("--work", default="work", help="reusable artifacts (datasets, models, ranks) per profile")
    p.add_argument("--notebooks", default=None, help="notebook folder (default: the repository's notebooks/)")
    p.add_argument("--no_notebooks", action="store_true",
                   help="run the Course steps directly instead of executing the notebooks (same results files)")
    p.add_argument("--steps", default=None,
                   help=f"with --no_notebooks: comma-separated subset of {','.join(STEPS)} (default all)")
    p.add_argument("--run_dir", default=None, help="write into this folder instead of runs/<timestamp>/")
    device_arg(p)
    p.add_argument("--update_readme", action="store_true",
                   help="also refresh README.md's <!-- results:start --> ... <!-- results:end --> block")
    p.set_defaults(func=run)


# ---------------------------------------------------------------- paths


def new_run_dir(runs) -> Path:
    """``runs/<YYYYmmdd-HHMMSS>`` (a suffix when that exists already), created."""
    runs = Path(runs)
    runs.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir, k = runs / stamp, 1
    while run_dir.exists():
        run_dir, k = runs / f"{stamp}-{k}", k + 1
    run_dir.mkdir()
    return run_dir


def point_latest(runs, run_dir) -> Path:
    """Make ``runs/latest`` a relative symlink to ``run_dir``; where links are impossible (or ``runs/latest`` is a
    real folder from an interactive session) write ``runs/LATEST`` holding the run folder's name instead."""
    runs, run_dir = Path(runs), Path(run_dir)
    latest = runs / "latest"
    (runs / "LATEST").write_text(run_dir.name + "\n")
    if latest.is_symlink():
        latest.unlink()
    if not latest.exists():
        try:
            os.symlink(run_dir.name, latest, target_is_directory=True)
            return latest
        except OSError:
            pass
    return runs / "LATEST"


# ---------------------------------------------------------------- steps without notebooks


def run_steps(course, steps=STEPS, log=print) -> None:
    """The notebooks' Course calls, in the same order, without notebooks."""
    steps = list(steps)
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise HRankError(f"unknown --steps {','.join(unknown)}: choose from {','.join(STEPS)}")
    course.save_json("settings.json", course.settings())
    actions = {
        "data": course.dataset_root,
        "train": lambda: (course.baseline("vgg16-ssd"), course.baseline("mb1-ssd")),
        "ranks": course.rank_dir,
        "prune": course.pruned,
        "finetune": course.finetuned,
        "evaluate": course.evaluate,
        "flops": course.flops,
        "bench": course.bench,
        "sensitivity": course.sensitivity,
        "criteria": course.criteria,
        "distillation": course.distillation,
        "video": course.video,
    }
    for step in STEPS:
        if step in steps:
            start = time.perf_counter()
            log(f"[course] {step} ...")
            actions[step]()
            log(f"[course] {step} done in {time.perf_counter() - start:.0f} s")


# ---------------------------------------------------------------- command


def run(args: argparse.Namespace) -> int:
    from hrank_ssd.course.report import update_readme, write_report
    from hrank_ssd.course.steps import Course
    from hrank_ssd.devices import resolve_device

    if args.device:
        resolve_device(args.device)  # a clear error for a bad --device before anything runs
    try:
        import markdown  # noqa: F401 - the report needs it; fail now, not after the whole course
    except ImportError:
        raise HRankError('markdown is not installed: pip install -e ".[course]"') from None
    start = time.perf_counter()
    if args.run_dir:
        run_dir = Path(args.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
    else:
        run_dir = new_run_dir(args.runs)
        point_latest(args.runs, run_dir)
    print(f"[course] profile {args.profile}, run folder {run_dir}", flush=True)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    if args.no_notebooks:
        steps = [s.strip() for s in args.steps.split(",") if s.strip()] if args.steps else STEPS
        course = Course(args.profile, run_dir=run_dir, work_dir=args.work, device=args.device,
                        progress=sys.stderr.isatty())
        run_steps(course, steps, log=log)
    else:
        if args.steps:
            raise HRankError("--steps works with --no_notebooks only (the notebooks run every step)")
        folder = Path(args.notebooks) if args.notebooks else repo_root() / "notebooks"
        execute_notebooks(notebook_paths(folder), run_dir, args.profile, args.work, args.device, log=log,
                          progress=sys.stderr.isatty())  # a bar of cells per notebook in a terminal
    course = Course(args.profile, run_dir, args.work, progress=False)
    times = course.load_json("timings.json") or {}  # the total goes in before the report reads it
    times["course, all steps"] = round(time.perf_counter() - start, 1)
    course.save_json("timings.json", times)
    md, html = write_report(run_dir)
    print(f"[course] report: {md} and {html} ({time.perf_counter() - start:.0f} s in all)")
    if args.update_readme:
        print(f"[course] updated {update_readme(repo_root() / 'README.md', run_dir)}")
    return 0
