# %% [markdown]
# The first cells of every course notebook, in their one copy.
#
# `python notebooks/make_notebooks.py` copies them into every notebook: the badge line on top of the notebook's
# title cell (`{name}` becomes the notebook's name), then the setup, parameters and course cells. Edit them
# here, never in a notebook (the build would put these back). This cell is not copied.
#
# The repository and branch are named here, in the badge and in the setup cell's defaults: a fork changes
# both and rebuilds (`make notebooks`, which also points the README's Colab badges where the badge points; on
# Colab, HRANK_SSD_REPO_URL / HRANK_SSD_BRANCH override them without rebuilding, and HRANK_SSD_REPO_DIR uses a
# copy of the repository on Drive where no clone is possible). docs/course.md, "Running on Colab", has the steps.

# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/hrank-ssd/hrank-ssd/blob/main/notebooks/{name}.ipynb)

# %% cellView="form"
# @title Setup: get the course's code (click to show it; Colab runs it as it is)
# On Colab: get the repository (a clone, or your copy on Drive) and install it (Colab's own torch/torchvision
# are kept). Locally: find the repository root and work from there.
import os
import shutil
import subprocess
import sys
from pathlib import Path

IN_COLAB = "google.colab" in sys.modules
USE_DRIVE = False  # Colab only: models, ranks, latency tables, checkpoints and results on Google Drive; VOC on the VM

if IN_COLAB:
    REPO = Path(os.environ.get("HRANK_SSD_COLAB_DIR", "/content/hrank-ssd"))
    COPY = os.environ.get("HRANK_SSD_REPO_DIR")  # a copy of the repository (e.g. on Drive): used instead of a clone
    if USE_DRIVE or any(str(p).startswith("/content/drive") for p in (REPO, COPY or "")):
        from google.colab import drive

        drive.mount("/content/drive")  # first: the repository itself may be on Drive
    if not REPO.is_dir() and COPY:
        if not (Path(COPY) / "lib" / "hrank_ssd").is_dir():
            raise SystemExit(f"HRANK_SSD_REPO_DIR={COPY} holds no copy of the repository (no lib/hrank_ssd in it): "
                             "upload the repository's folder there, or unset HRANK_SSD_REPO_DIR to clone")
        shutil.copytree(COPY, REPO, ignore=shutil.ignore_patterns(".git", ".venv*", "work", "runs", "__pycache__",
                                                                  "*.egg-info"))  # onto the VM's disk: fast imports
    if not REPO.is_dir():
        url = os.environ.get("HRANK_SSD_REPO_URL", "https://github.com/hrank-ssd/hrank-ssd")
        branch = os.environ.get("HRANK_SSD_BRANCH", "main")
        clone = subprocess.run(["git", "clone", "--depth", "1", "--branch", branch, url, str(REPO)],
                               capture_output=True, text=True, env=dict(os.environ, GIT_TERMINAL_PROMPT="0"))
        if clone.returncode != 0:  # never a password prompt: one line saying what to do
            raise SystemExit(f"could not clone {url} (branch {branch}): set HRANK_SSD_REPO_URL (and HRANK_SSD_BRANCH) "
                             "to a fork that exists, or upload a copy of the repository to your Drive and set "
                             "HRANK_SSD_REPO_DIR=/content/drive/MyDrive/hrank-ssd, with %env in a cell before this "
                             f"one (git: {' '.join(clone.stderr.split())[:200]})")
    os.chdir(REPO)
    # Keep every preinstalled package (torch, torchvision, ipywidgets, matplotlib, pandas...) at Colab's version:
    # pip then installs only what Colab lacks, and our loose ranges accept what it has.
    frozen = subprocess.run([sys.executable, "-m", "pip", "freeze"], capture_output=True, text=True).stdout
    Path("/tmp/keep-colab-packages.txt").write_text("\n".join(x for x in frozen.splitlines() if "==" in x) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", ".[colab]", "-c", "/tmp/keep-colab-packages.txt"],
                   check=True)
    sys.path.insert(0, str(REPO / "lib"))  # the editable install is only seen by new processes
    if USE_DRIVE:
        DRIVE_DIR = Path("/content/drive/MyDrive/hrank-ssd")
        DRIVE_DIR.mkdir(parents=True, exist_ok=True)
else:
    REPO = Path.cwd().resolve()
    while not (REPO / "lib" / "hrank_ssd").is_dir() and REPO != REPO.parent:
        REPO = REPO.parent
    if not (REPO / "lib" / "hrank_ssd").is_dir():
        raise RuntimeError("start Jupyter inside the hrank-ssd checkout (no lib/hrank_ssd found above here)")
    os.chdir(REPO)
print("working in", Path.cwd())

# %% tags=["parameters"]
# Course parameters (papermill adds a cell with its own values right after this one).
PROFILE = "offline"  # offline: synthetic data, small models trained here | tiny: seconds (CI) | full: real VOC
RUN_DIR = "runs/latest"  # this run's results (tables, plots); the course command passes runs/<timestamp>
WORK_DIR = "work"  # reusable artifacts: trained models, ranks, latency tables, checkpoints (per profile)
DATA_DIR = None  # data sets (VOC), per profile: None keeps them in WORK_DIR; Colab with USE_DRIVE: the VM's disk
DEVICE = None  # None: cuda when available, else cpu
COLAB_PROFILE = "full"  # the profile used on Colab unless PROFILE was injected

# %% cellView="form"
# @title The course: its profile, device and folders
import torch  # noqa: F401  (later cells of most notebooks use it)

from hrank_ssd.course.profiles import gpu_warning
from hrank_ssd.course.steps import Course

# On Colab the default is the real thing; values injected by papermill (a "# Parameters" cell) win.
_injected = any(str(src).lstrip().startswith("# Parameters") for src in globals().get("In", [])[:-1])
if IN_COLAB and not _injected:
    PROFILE = COLAB_PROFILE
    if USE_DRIVE:  # artifacts on Drive; VOC's ten thousand small files on the VM's disk (Drive's mount is slow)
        WORK_DIR, RUN_DIR, DATA_DIR = str(DRIVE_DIR / "work"), str(DRIVE_DIR / "runs" / "latest"), "/content/data"
course = Course(PROFILE, run_dir=RUN_DIR, work_dir=WORK_DIR, device=DEVICE, progress=not _injected, data_dir=DATA_DIR)
DEVICE = course.device  # None became cuda when a GPU is visible, else cpu
print(f"profile {course.profile.name}, device {DEVICE}, results in {course.results}, artifacts in {course.work}, "
      f"data in {course.data}")
if gpu_warning(course.profile, DEVICE):  # e.g. full on a CPU runtime: it goes on, for hours
    print(gpu_warning(course.profile, DEVICE), file=sys.stderr)
