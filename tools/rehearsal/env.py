"""Where the rehearsal's notebooks run: a copy of the checkout, and the kernel's Python.

:func:`colab_env` makes a venv like Colab's GPU runtime from ``colab/colab-gpu-2026-08.txt``: Colab's Python
(the pins file's header names it) found with :func:`find_colab_python`, then every pinned package at Colab's
version, torch and torchvision included, then the notebooks' own install step. Where no such interpreter
exists the venv is made with the current one and what can be installed is, with a warning; the venv's
``colab-env.json`` says which (:func:`kernel_info` reads it into ``rehearsal.json``).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path, PurePosixPath
from typing import Callable, Dict, List, Optional, Tuple

from hrank_ssd.errors import HRankError
from hrank_ssd.io.files import atomic_write_text

COLAB_PINS = Path("colab") / "colab-gpu-2026-08.txt"
ENV_INFO = "colab-env.json"  # in the venv: the Python it was made with, the fallback if any, the pins left out
_VERSION = "import sys; print('%d.%d.%d' % sys.version_info[:3])"


# ------------------------------------------------------------------------------ the checkout


def _ignored(rel: PurePosixPath, is_dir: bool, patterns: List[str]) -> bool:
    """``.gitignore``'s plain rules (``name``, ``*.ext``, ``dir/``, ``/anchored``); ``!`` rules are not read."""
    for pat in patterns:
        if pat.endswith("/") and not is_dir:
            continue
        core = pat.strip("/")
        if fnmatch.fnmatch(str(rel) if "/" in pat.rstrip("/") else rel.name, core):
            return True
    return False


def _tree_files(repo: Path) -> List[str]:
    """Every file under ``repo`` that ``.gitignore`` does not ignore: a tree copied without its ``.git``."""
    gitignore = repo / ".gitignore"
    patterns = [ln.strip() for ln in gitignore.read_text().splitlines()
                if ln.strip() and not ln.startswith(("#", "!"))] if gitignore.is_file() else []
    found = []
    for folder, dirs, files in os.walk(repo):
        here = PurePosixPath(Path(folder).relative_to(repo).as_posix())
        dirs[:] = [d for d in dirs if d != ".git" and not _ignored(here / d if str(here) != "." else
                                                                   PurePosixPath(d), True, patterns)]
        for f in files:
            rel = here / f if str(here) != "." else PurePosixPath(f)
            if not _ignored(rel, False, patterns):
                found.append(str(rel))
    return sorted(found)


def copy_checkout(repo: Path, dest: Path) -> Path:
    """The files a ``git clone`` of this working tree would hold (tracked and new, never ignored ones); a tree
    without its ``.git`` (or with no git installed) gives every file its ``.gitignore`` does not ignore."""
    try:
        listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=repo,
                                capture_output=True)
        files = listed.stdout.decode().split("\0") if listed.returncode == 0 else None
    except FileNotFoundError:
        files = None
    if files is None:
        if not (repo / "lib" / "hrank_ssd").is_dir():
            raise HRankError(f"{repo} is not a checkout of hrank-ssd: rehearse from a clone of the project")
        files = _tree_files(repo)
    for rel in filter(None, files):
        src = repo / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


# ------------------------------------------------------------------------------ Colab's Python


def read_pins(repo: Path) -> List[str]:
    """The pins file's ``name==version`` lines."""
    lines = (repo / COLAB_PINS).read_text().splitlines()
    return [ln.split("#")[0].strip() for ln in lines if ln.split("#")[0].strip()]


def colab_python_version(repo: Path) -> str:
    """Colab's Python (``3.13``), as the pins file's header names it (``... (Python 3.13)``)."""
    for line in (repo / COLAB_PINS).read_text().splitlines():
        found = re.search(r"\bPython (\d+\.\d+)\b", line) if line.startswith("#") else None
        if found:
            return found.group(1)
    raise HRankError(f"{COLAB_PINS} names no Python version: add Colab's to its header, e.g. '# ... (Python 3.13)'")


def python_version(python) -> Optional[str]:
    """``3.13.0`` for an interpreter that runs, None for one that does not (a pyenv shim with no version set)."""
    try:
        done = subprocess.run([str(python), "-c", _VERSION], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def _pyenv_pythons(wanted: str) -> List[Path]:
    """pyenv's installs of ``wanted`` (``3.13.0``, ``3.13.2``...), newest first."""
    pyenv = shutil.which("pyenv")
    if not pyenv:
        return []
    try:
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return []
    folders = [p for p in (Path(root) / "versions").glob(f"{wanted}.*") if re.fullmatch(r"\d+\.\d+\.\d+", p.name)]
    folders.sort(key=lambda p: [int(x) for x in p.name.split(".")], reverse=True)
    return [p / "bin" / f"python{wanted}" for p in folders]


def find_colab_python(wanted: str, explicit: Optional[str] = None) -> Tuple[Optional[Path], str]:
    """An interpreter of Colab's Python ``wanted`` and its version: ``explicit`` (``--python``, ``COLAB_PYTHON``),
    else ``python3.13`` on PATH, else pyenv's versions folder. ``(None, where it looked)`` when there is none."""
    if explicit:
        exe = shutil.which(explicit) or explicit
        found = python_version(exe)
        if found is None:
            raise HRankError(f"--python {explicit} does not run: pass a Python {wanted} interpreter, or leave it out")
        if not found.startswith(f"{wanted}."):
            raise HRankError(f"--python {explicit} is Python {found}, not Colab's {wanted}: pass a Python {wanted} "
                             f"interpreter, or leave it out")
        return Path(exe), found
    on_path = shutil.which(f"python{wanted}")
    for exe in ([Path(on_path)] if on_path else []) + _pyenv_pythons(wanted):
        found = python_version(exe)
        if found and found.startswith(f"{wanted}."):
            return exe, found
    return None, f"no python{wanted} that runs on PATH nor in pyenv's versions folder"


# ------------------------------------------------------------------------------ the venv


def _pip(python: Path, venv: Path, log: Callable[[str], None], *args: str) -> Optional[str]:
    """``pip install`` into the venv with the machine's pip constraint lifted (Colab's pins are the only ones);
    None when it worked, else pip's last words."""
    log(f"[rehearse] {venv}: pip install {' '.join(args)[:120]}")
    env = dict(os.environ, PIP_CONSTRAINT=os.devnull)
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", *args], capture_output=True, text=True, env=env)
    return None if done.returncode == 0 else " ".join(done.stderr.split())[-300:]


def _make_venv(venv: Path, base: Path, version: str) -> Path:
    """``venv`` made with ``base``; made again when it holds another Python."""
    python = venv / "bin" / "python"
    if python.exists() and python_version(python) == version:
        return python
    if venv.exists() and any(venv.iterdir()) and not (venv / "pyvenv.cfg").is_file():
        raise HRankError(f"{venv} exists and is not a venv: pass another --colab_env folder")
    subprocess.run([str(base), "-m", "venv", "--clear", str(venv)], check=True)
    return python


def _install_pins(python: Path, venv: Path, pins: List[str], fallback: bool, log) -> List[str]:
    """Colab's torch pair, then the other pins. With Colab's Python a failure is an error; in the fallback
    what can be installed is (the local torch when Colab's has no wheel for this Python): the pins left out."""
    torch = [p for p in pins if p.startswith(("torch==", "torchvision=="))]
    rest = [p for p in pins if p not in torch]
    left_out: List[str] = []
    for group in (torch, rest):
        failed = _pip(python, venv, log, *group) if group else None
        if failed and not fallback:
            raise HRankError(f"could not build the Colab-like environment {venv}: pip install {group[0]} ... failed "
                             f"({failed}); delete {venv} and rerun, or rehearse without --colab_env")
        if failed and group is torch:
            local = [f"torch=={version('torch')}", f"torchvision=={version('torchvision')}"]
            log(f"[rehearse] WARNING: {' '.join(torch)} would not install here; the local {' '.join(local)} instead")
            left_out += torch
            if _pip(python, venv, log, *local):
                raise HRankError(f"could not install torch in {venv}: delete it and rerun, or rehearse without "
                                 f"--colab_env")
        elif failed:
            left_out += [p for p in group if _pip(python, venv, log, p)]
    return left_out


def colab_env(venv: Path, repo: Path, log: Callable[[str], None] = print, python: Optional[str] = None) -> Path:
    """A venv like Colab's GPU runtime: Colab's Python (``python``, else found by :func:`find_colab_python`),
    every package of ``colab/colab-gpu-2026-08.txt`` at Colab's version, then the notebooks' own install step
    (``pip install -e .[colab]`` constrained to what is installed, as the setup cell does on Colab). Without
    Colab's Python it is made with this one, with a warning. Made once; its Python path is returned."""
    venv, pins, wanted = Path(venv), read_pins(repo), colab_python_version(repo)
    base, found = find_colab_python(wanted, python)
    fallback = None
    if base is None:
        fallback = f"{found}; the kernel runs this Python, {python_version(sys.executable)}"
        base, found = Path(sys.executable), python_version(sys.executable) or "?"
        log(f"[rehearse] WARNING: Colab's Python {wanted} not found ({fallback}): pass --python (make rehearse "
            f"COLAB_PYTHON=...) to rehearse with it")
    marker = venv / ".colab-installed"
    stamp = "\n".join([str(base), found] + pins + [(repo / "pyproject.toml").read_text()])
    if marker.is_file() and marker.read_text() == stamp:
        return venv / "bin" / "python"
    kernel = _make_venv(venv, base, found)
    left_out = _install_pins(kernel, venv, pins, fallback is not None, log)
    frozen = subprocess.run([str(kernel), "-m", "pip", "freeze"], capture_output=True, text=True).stdout
    keep = venv / "keep-colab-packages.txt"
    keep.write_text("\n".join(x for x in frozen.splitlines() if "==" in x) + "\n")
    failed = _pip(kernel, venv, log, "-e", f"{repo}[colab]", "-c", str(keep))  # the setup cell's own command
    if failed:
        raise HRankError(f"could not build the Colab-like environment {venv}: the setup cell's pip install -e "
                         f".[colab] failed ({failed}); delete {venv} and rerun, or rehearse without --colab_env")
    atomic_write_text(venv / ENV_INFO, json.dumps({"python": found, "base": str(base), "colab_python": wanted,
                                                   "fallback": fallback, "pins_left_out": left_out}, indent=1))
    marker.write_text(stamp)
    return kernel


def kernel_info(python: Path) -> Dict[str, object]:
    """The kernel's interpreter, its Python version, and its venv's ``colab-env.json`` (None outside one)."""
    info_file = Path(python).parent.parent / ENV_INFO
    return {"python": str(python), "python_version": python_version(python),
            "colab_env": json.loads(info_file.read_text()) if info_file.is_file() else None}
