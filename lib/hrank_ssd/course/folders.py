"""Where course runs live: the checkout, ``runs/<timestamp>/`` folders and the ``runs/latest`` pointer."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional

LATEST_LINK, LATEST_FILE = "latest", "LATEST"  # runs/latest -> the newest run; runs/LATEST holds its name


def repo_root() -> Path:
    """The checkout holding notebooks/ and lib/hrank_ssd (found from this file, else the working folder)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "lib" / "hrank_ssd").is_dir():
            return parent
    return Path.cwd()


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
    latest = runs / LATEST_LINK
    (runs / LATEST_FILE).write_text(run_dir.name + "\n")
    if latest.is_symlink():
        latest.unlink()
    if not latest.exists():
        try:
            os.symlink(run_dir.name, latest, target_is_directory=True)
            return latest
        except OSError:
            pass
    return runs / LATEST_FILE


def open_run_dir(runs, run_dir: Optional[Path] = None) -> Path:
    """``run_dir`` (created) when given, else a new ``runs/<timestamp>`` that ``runs/latest`` points to."""
    if run_dir is not None:
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir
    run_dir = new_run_dir(runs)
    point_latest(runs, run_dir)
    return run_dir
