# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/hrank-ssd/hrank-ssd/blob/main/notebooks/05_flops_table.ipynb)
#
# # 5. Parameters and MACs, exactly
#
# `hrank_ssd.measure.flops.count_exact` runs one 300x300 image through a detector with a hook on every Conv2d,
# BatchNorm2d and Linear and counts the multiply-accumulates (MACs) each one does; the sum is the whole
# detector (backbone, extras, heads), checked against `thop`. FLOPs are about 2 x MACs.
#
# The original HRank-SSD project printed smaller numbers. `flops.print_seed_table` reproduces its table
# digit for digit with its counting rules, then lists every reason it differs from the exact count.

# %%
# Setup. On Colab: clone the repository and install it (Colab's own torch/torchvision are kept).
# Locally: find the repository root and work from there.
import os
import subprocess
import sys
from pathlib import Path

IN_COLAB = "google.colab" in sys.modules
USE_DRIVE = False  # Colab only: keep work/ (checkpoints, ranks) and runs/ on Google Drive, safe from disconnects

if IN_COLAB:
    REPO = Path(os.environ.get("HRANK_SSD_COLAB_DIR", "/content/hrank-ssd"))
    if not REPO.is_dir():
        url = os.environ.get("HRANK_SSD_REPO_URL", "https://github.com/hrank-ssd/hrank-ssd")
        branch = os.environ.get("HRANK_SSD_BRANCH", "main")
        clone = subprocess.run(["git", "clone", "--depth", "1", "--branch", branch, url, str(REPO)],
                               capture_output=True, text=True, env=dict(os.environ, GIT_TERMINAL_PROMPT="0"))
        if clone.returncode != 0:  # never a password prompt: one line saying what to change
            raise SystemExit(f"could not clone {url} (branch {branch}): set HRANK_SSD_REPO_URL / HRANK_SSD_BRANCH "
                             f"to your fork, or fix the URL in notebooks/_shared_cells.py (git: {' '.join(clone.stderr.split())[:200]})")
    os.chdir(REPO)
    # Keep every preinstalled package (torch, torchvision, ipywidgets, matplotlib, pandas...) at Colab's version:
    # pip then installs only what Colab lacks, and our loose ranges accept what it has.
    frozen = subprocess.run([sys.executable, "-m", "pip", "freeze"], capture_output=True, text=True).stdout
    Path("/tmp/keep-colab-packages.txt").write_text("\n".join(x for x in frozen.splitlines() if "==" in x) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", ".[colab]", "-c", "/tmp/keep-colab-packages.txt"],
                   check=True)
    sys.path.insert(0, str(REPO / "lib"))  # the editable install is only seen by new processes
    if USE_DRIVE:
        from google.colab import drive

        drive.mount("/content/drive")
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
WORK_DIR = "work"  # reusable artifacts: datasets, trained models, ranks, checkpoints (per profile)
DEVICE = None  # None: cuda when available, else cpu
COLAB_PROFILE = "full"  # the profile used on Colab unless PROFILE was injected

# %%
import torch  # noqa: F401  (later cells of most notebooks use it)

from hrank_ssd.course.steps import Course

# On Colab the default is the real thing; values injected by papermill (a "# Parameters" cell) win.
_injected = any(str(src).lstrip().startswith("# Parameters") for src in globals().get("In", [])[:-1])
if IN_COLAB and not _injected:
    PROFILE = COLAB_PROFILE
    if USE_DRIVE:
        WORK_DIR, RUN_DIR = str(DRIVE_DIR / "work"), str(DRIVE_DIR / "runs" / "latest")
course = Course(PROFILE, run_dir=RUN_DIR, work_dir=WORK_DIR, device=DEVICE, progress=not _injected)
DEVICE = course.device  # None became cuda when a GPU is visible, else cpu
print(f"profile {course.profile.name}, device {DEVICE}, results in {course.results}, artifacts in {course.work}")

# %%
from hrank_ssd.measure import flops, seed_flops
from hrank_ssd.nets.compress import PRUNED_RATE

table = course.flops()
print(flops.MAC_NOTE)
table

# %% [markdown]
# Check: the totals are the sums of the per-layer rows, and the parameter count is every weight of the model.

# %%
from hrank_ssd.nets.models import count_parameters

model = flops.build_for_counting("vgg16-ssd", 21, compress_rate=PRUNED_RATE)
rows = flops.count_exact(model)
assert flops.totals(rows)["params"] == count_parameters(model) == table.loc[1, "params"]
assert flops.totals(rows)["MACs"] == rows["MACs"].sum() == table.loc[1, "MACs"]
conv = rows[rows["type"] == "Conv2d"].iloc[3]
assert conv["MACs"] == flops.conv_macs(conv["in_channels"], conv["out_channels"], 3, conv["out_h"], conv["out_w"])
rows.head(8)

# %% [markdown]
# ## The original table: VGG16-SSD, unpruned

# %%
seed_flops.print_seed_table("vgg16-ssd");

# %% [markdown]
# ## VGG16-SSD pruned with `[0.1]*7+[0.5]*9`

# %%
seed_flops.print_seed_table("vgg16-ssd", PRUNED_RATE);

# %% [markdown]
# ## MobileNetV1-SSD

# %%
seed_flops.print_seed_table("mb1-ssd");

# %% [markdown]
# CLI equivalents:
#
# ```
# python -m hrank_ssd flops --net vgg16-ssd --compress_rate "[0.1]*7+[0.5]*9"            # exact, per layer
# python -m hrank_ssd flops --net vgg16-ssd --compress_rate "[0.1]*7+[0.5]*9" --style seed  # the original's
# ```
