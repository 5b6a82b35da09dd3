"""Atomic files (write beside, then rename); torch, numpy and matplotlib load only in the functions that need them."""

from __future__ import annotations

import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def _staged(path, suffix: str = ""):
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on failure it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with _staged(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_save(obj, path) -> None:
    """``torch.save`` atomically."""
    import torch

    with _staged(path) as tmp:
        torch.save(obj, tmp)


def atomic_save_npy(array, path) -> None:
    """``numpy.save`` atomically (through an open file, so numpy adds no second ``.npy`` suffix)."""
    import numpy as np

    with _staged(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


def pyplot():
    """``matplotlib.pyplot``; Agg for a script with no backend chosen, a notebook's (IPython's) backend left alone."""
    import matplotlib

    if not ({"matplotlib.pyplot", "IPython"} & set(sys.modules) or os.environ.get("MPLBACKEND")):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def atomic_savefig(fig, path, dpi: int = 100) -> Path:
    """Save a matplotlib figure atomically (the temporary name keeps the suffix matplotlib reads) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        with _staged(path, path.suffix) as tmp:
            fig.savefig(tmp, dpi=dpi)
    finally:
        plt.close(fig)
    return path


def remove_path(path: Path) -> None:
    """Remove a file, a link or a whole folder; nothing there is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def install_staged(staged: Path, target: Path) -> None:
    """Put ``staged`` (file or folder) at ``target`` by renames; the old ``target`` goes once the new one is in."""
    target.parent.mkdir(parents=True, exist_ok=True)
    old = target.with_name(f".{target.name}.old{os.getpid()}")
    if staged.is_dir() and target.exists():  # a folder cannot be renamed over another
        os.replace(target, old)
    try:
        os.replace(staged, target)
    except OSError:
        if old.exists():
            os.replace(old, target)
        raise
    remove_path(old)
