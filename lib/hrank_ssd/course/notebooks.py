"""Executing the course notebooks with papermill: in order, a kernel each (as on Colab) or one shared kernel.

papermill, nbformat and the Jupyter client are the ``colab`` extra's: they are imported where used, so that the
course runs its steps directly (``course --no_notebooks``) without them.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from hrank_ssd.course.folders import repo_root
from hrank_ssd.course.results import NOTEBOOKS
from hrank_ssd.errors import HRankError

__all__ = ["NOTEBOOKS", "execute_notebooks", "execute_one", "notebook_params", "notebook_paths"]


def notebook_paths(folder) -> list:
    """The course notebooks of ``folder`` in order (:data:`~hrank_ssd.course.results.NOTEBOOKS`), all present."""
    folder = Path(folder)
    paths = [folder / f"{name}.ipynb" for name in NOTEBOOKS]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise HRankError(f"notebooks missing in {folder}: {', '.join(missing)}; run "
                         f"`python notebooks/make_notebooks.py` or pass --notebooks")
    return paths


def _first_line(text) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return lines[0][:300] if lines else ""


def notebook_params(profile: str, run_dir, work_dir, device=None) -> dict:
    """The values papermill injects into each notebook's parameters cell (absolute paths)."""
    return {"PROFILE": profile, "RUN_DIR": str(Path(run_dir).resolve()), "WORK_DIR": str(Path(work_dir).resolve()),
            "DEVICE": device}


def execute_notebooks(paths, run_dir, profile: str, work_dir, device=None, cwd=None, log=print,
                      kernel_name: str = "python3", progress: bool = False, one_kernel: bool = False) -> list:
    """Execute ``paths`` in order with papermill into ``run_dir/notebooks``; stop at the first failure.

    Parameters injected: PROFILE, RUN_DIR, WORK_DIR (absolute paths), DEVICE. A failing cell raises
    :class:`HRankError` naming the notebook, the cell and its error, with the executed copy's path.
    ``one_kernel``: one kernel for all notebooks, each starting with ``%reset_selective -f .`` (no user name can
    leak from one notebook to the next; only imported modules stay loaded; unlike ``%reset -f`` it skips a
    full garbage collection, which took minutes on slow CI machines). The tests' shortcut on slow machines,
    where starting torch in seven kernels costs minutes; Colab and ``course`` use a kernel per notebook.
    """
    _papermill()  # a missing papermill is one line before anything starts
    out_dir = Path(run_dir).resolve() / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    params = notebook_params(profile, run_dir, work_dir, device)
    shared = _SharedKernel(kernel_name, out_dir) if one_kernel else None
    try:
        return [execute_one(Path(path), out_dir, params, cwd, kernel_name, progress, log, shared)
                for path in paths]
    finally:
        if shared:
            shared.close()


class _SharedKernel:
    """A kernel manager papermill reuses across notebooks, and each notebook's copy opening with a reset."""

    def __init__(self, kernel_name: str, out_dir: Path):
        from jupyter_client.manager import AsyncKernelManager

        self.km = AsyncKernelManager(kernel_name=kernel_name)  # started by the first notebook, in its cwd
        self.inputs = out_dir / ".inputs"

    def input_copy(self, path: Path) -> Path:
        import nbformat

        nb = nbformat.read(str(path), as_version=4)
        reset = nbformat.v4.new_code_cell("%reset_selective -f .", metadata={"tags": ["shared-kernel-reset"]})
        nb.cells.insert(0, reset)
        self.inputs.mkdir(exist_ok=True)
        copy = self.inputs / path.name
        nbformat.write(nb, str(copy))
        return copy

    def close(self) -> None:
        from jupyter_core.utils import run_sync

        if self.km.has_kernel:
            run_sync(self.km.shutdown_kernel)(now=True)
        shutil.rmtree(self.inputs, ignore_errors=True)


def _papermill():
    try:
        import papermill
    except ImportError:
        raise HRankError('papermill is not installed: pip install -e ".[course]" (or use --no_notebooks)') from None
    return papermill


def execute_one(path: Path, out_dir: Path, params: dict, cwd=None, kernel_name: str = "python3",
                progress: bool = False, log=print, shared: _SharedKernel | None = None) -> Path:
    """Execute one notebook into ``out_dir`` with papermill ``params``; a failure is one :class:`HRankError` line."""
    pm = _papermill()
    out = out_dir / path.name
    start = time.perf_counter()
    log(f"[course] {path.name} ...")
    source, extra = (shared.input_copy(path), {"km": shared.km}) if shared else (path, {})
    try:
        pm.execute_notebook(str(source), str(out), parameters=params, cwd=str(cwd or repo_root()),
                            kernel_name=kernel_name, progress_bar=progress, log_output=False, **extra)
    except pm.PapermillExecutionError as e:
        raise HRankError(f"notebook {path.name} failed in cell {e.exec_count}: {e.ename}: "
                         f"{_first_line(e.evalue)} (executed copy: {out})") from None
    except Exception as e:  # kernel died, kernel not found, ...
        if isinstance(e, HRankError):
            raise
        raise HRankError(f"notebook {path.name} could not run: {type(e).__name__}: {_first_line(e)} "
                         f"(install the kernel with `python -m ipykernel install --user --name python3`)") from None
    log(f"[course] {path.name} done in {time.perf_counter() - start:.0f} s")
    return out
