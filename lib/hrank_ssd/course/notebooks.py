"""A whole course run: the solved notebooks executed with papermill, or their ``Course`` calls, then the report."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple

from hrank_ssd.course.checking import CORRECT, NOT_YET, SOLUTIONS
from hrank_ssd.course.models import FINETUNED
from hrank_ssd.course.report import update_readme, write_report
from hrank_ssd.course.results import NOTEBOOKS, STEPS, TOTAL_TIME, add_timing, open_run_dir, repo_root
from hrank_ssd.course.steps import Course
from hrank_ssd.devices import resolve_device
from hrank_ssd.errors import HRankError
from hrank_ssd.progress import STATUS_ENV, Watch

CHECKERS = ("exercises", "questions", "student", "mac_exercise")  # `<module>.check_*` of check cells


def notebook_paths(folder, solved: bool = True) -> list:
    """The course notebooks of ``folder`` in order, all present; ``solved``: the solved copies where there are."""
    folder = Path(folder)
    solutions = [folder / SOLUTIONS / f"{name}.ipynb" for name in NOTEBOOKS]
    paths = [s if solved and s.is_file() else folder / s.name for s in solutions]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise HRankError(f"notebooks missing in {folder}: {', '.join(missing)}; run "
                         f"`python notebooks/make_notebooks.py` or pass --notebooks")
    return paths


def failed_checks(path) -> list:
    """The check cells of an executed notebook without a ``correct`` per check: ``[(execution count, line)]``."""
    import nbformat

    failed = []
    for cell in nbformat.read(str(path), as_version=4).cells:
        if cell.cell_type != "code" or "check" not in cell.metadata.get("tags", []):
            continue
        text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
        lines = [ln.strip() for ln in text.splitlines()]
        wrong = [ln for ln in lines if ln.startswith(NOT_YET)]
        checks = sum(cell.source.count(f"{module}.check_") for module in CHECKERS)
        if wrong or sum(ln.startswith(CORRECT) for ln in lines) < checks:
            failed.append((cell.get("execution_count"), wrong[0] if wrong else "no verdict printed"))
    return failed


def _first_line(text) -> str:
    """The first non-blank line of ``text``, at most 300 characters."""
    return next((ln.strip()[:300] for ln in str(text).splitlines() if ln.strip()), "")


def notebook_params(profile: str, run_dir, work_dir, device=None) -> dict:
    """The values papermill injects into each notebook's parameters cell (absolute paths)."""
    return {"PROFILE": profile, "RUN_DIR": str(Path(run_dir).resolve()), "WORK_DIR": str(Path(work_dir).resolve()),
            "DEVICE": device}


def execute_notebooks(paths, run_dir, profile: str, work_dir, device=None, log=print, **options) -> list:
    """Execute ``paths`` (:func:`execute_one`'s ``options``) into ``run_dir/notebooks``, each check cell passing."""
    _papermill()  # a missing papermill is one line before anything starts
    out_dir = Path(run_dir).resolve() / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    params, done = notebook_params(profile, run_dir, work_dir, device), []
    for path in map(Path, paths):
        done.append(execute_one(path, out_dir, params, log=log, **options))
        failed = failed_checks(done[-1])
        if failed:
            cell, line = failed[0]
            raise HRankError(f"notebook {path.name}: the exercise check in cell {cell} did not pass: {line} "
                             f"(fix the solution in notebooks/{path.stem}.py, then `make notebooks`; "
                             f"executed copy: {done[-1]})")
    return done


def _papermill():
    try:
        import papermill
    except ImportError:
        raise HRankError('papermill is not installed: pip install -e ".[colab]" (or use --no_notebooks)') from None
    return papermill


def execute_one(path: Path, out_dir: Path, params: dict, cwd=None, kernel_name: str = "python3",
                progress: bool = False, log=print, shared=None, cell_timeout: float | None = None) -> Path:
    """Execute one notebook into ``out_dir``; a failure is one line. ``shared``: one kernel for all (``km``)."""
    pm, out = _papermill(), out_dir / path.name
    source, extra = (shared.input_copy(path), {"km": shared.km}) if shared else (path, {})
    try:  # the kernel's own warnings (e.g. "running over TCP without encryption") stay out of the terminal
        with _logged(path.name, log):
            pm.execute_notebook(str(source), str(out), parameters=params, cwd=str(cwd or repo_root()),
                                kernel_name=kernel_name, progress_bar=progress, log_output=False,
                                execution_timeout=cell_timeout, extra_arguments=["--IPKernelApp.log_level=ERROR"],
                                **extra)
    except pm.PapermillExecutionError as e:
        raise HRankError(f"notebook {path.name} failed in cell {e.exec_count}: {e.ename}: "
                         f"{_first_line(e.evalue)} (executed copy: {out})") from None
    except TimeoutError:  # nbclient's CellTimeoutError
        raise HRankError(f"notebook {path.name}: a cell ran longer than {cell_timeout:g} s and was stopped "
                         f"(executed copy: {out})") from None
    except Exception as e:  # kernel died, kernel not found, ...
        raise HRankError(f"notebook {path.name} could not run: {type(e).__name__}: {_first_line(e)} "
                         f"(install the kernel with `python -m ipykernel install --user --name python3`)") from None
    return out


@contextlib.contextmanager
def _logged(step: str, log: Callable[[str], None]):
    """``[course] <step> ...``, the block watched (:class:`hrank_ssd.progress.Watch`), then its time."""
    start = time.perf_counter()
    log(f"[course] {step} ...")
    with Watch(step, log):
        yield
    log(f"[course] {step} done in {time.perf_counter() - start:.0f} s")


@contextlib.contextmanager
def status_file():
    """A status file for the run's hidden progress bars (the kernels inherit its name): see hrank_ssd.progress."""
    before = os.environ.get(STATUS_ENV)
    with tempfile.TemporaryDirectory(prefix="hrank-ssd-status-") as tmp:
        os.environ[STATUS_ENV] = str(Path(tmp) / "status.json")
        try:
            yield Path(os.environ[STATUS_ENV])
        finally:
            del os.environ[STATUS_ENV]
            if before is not None:
                os.environ[STATUS_ENV] = before


def run_steps(course: Course, steps: Sequence[str] = STEPS, log: Callable[[str], None] = print) -> None:
    """The notebooks' Course calls of ``steps`` (:data:`~hrank_ssd.course.results.STEPS`), without notebooks."""
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise HRankError(f"unknown --steps {','.join(unknown)}: choose from {','.join(STEPS)}")
    course.save_json("settings.json", course.settings())
    calls = {  # the notebooks' Course calls of each step; another step is the Course verb of its name
        "data": course.dataset_root,
        "train": lambda: (course.baseline("vgg16-ssd"), course.baseline("mb1-ssd")),
        "ranks": lambda: (course.rank_dir(), course.rank_dir(net="mb1-ssd")),
        "latency": course.latency_models,
        "finetune": lambda: [course.finetune(key) for key in FINETUNED],
    }
    for step in (s for s in STEPS if s in steps):
        with _logged(step, log):
            (calls.get(step) or getattr(course, step))()


def run_course(profile: str, runs="runs", work="work", run_dir: Optional[Path] = None, device=None,
               notebooks: Optional[Path] = None, steps: Optional[Sequence[str]] = None,
               readme: Optional[Path] = None, log: Callable[[str], None] = print,
               progress: bool = False) -> Tuple[Path, Path]:
    """Run the course (``notebooks``' notebooks, else the Course ``steps``) into ``run_dir`` and write the report."""
    resolve_device(device)  # a clear error for a bad device before anything runs
    try:  # the report needs markdown: fail before the course runs, not after it
        import markdown  # noqa: F401 - the colab extra's; only its presence is checked here
    except ImportError:
        raise HRankError('markdown is not installed: pip install -e ".[colab]"') from None
    start = time.perf_counter()
    run_dir = open_run_dir(runs, run_dir)
    log(f"[course] profile {profile}, run folder {run_dir}")
    with status_file():
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
