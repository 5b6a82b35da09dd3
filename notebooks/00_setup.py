# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/hrank-ssd/hrank-ssd/blob/main/notebooks/00_setup.ipynb)
#
# # 0. Setup: data and the two baselines
#
# This course prunes an **SSD object detector** (VGG16 backbone, PASCAL VOC classes) with **HRank**
# (Lin et al., CVPR 2020) and compares three detectors: VGG16-SSD, the HRank-pruned VGG16-SSD and
# MobileNetV1-SSD, in mAP, per-class AP, speed, FLOPs and parameters.
#
# | notebook | what you do |
# |---|---|
# | 00_setup | environment, data, the two baselines |
# | 01_rank_generation | the rank of a feature map, and HRank's rank files |
# | 02_hrank_pruning | choose compress rates, cut the network, sensitivity, criteria |
# | 03_finetune | recover accuracy by finetuning the pruned detector |
# | 04_eval_map_fps | mAP, per-class AP, latency and FPS of the three models |
# | 05_flops_table | exact parameters and MACs, and the original project's table |
# | 06_video_demo | the pruned detector on a video |
#
# **Profiles.** `offline` (the local default) needs no network: it draws a synthetic VOC-format data set
# of coloured shapes and trains small (narrow) models on it, so every step runs on a laptop CPU.
# `full` (the Colab default) downloads VOC2007/2012 and the original project's published weights and
# ranks (Google Drive, via `gdown`, listed in `weights_manifest.json`). `tiny` is `offline` shrunk to
# seconds, for tests. All work goes through `hrank_ssd.course.steps.Course`: each step writes files and reuses
# what an earlier run made, so you can open any notebook at any time.

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

# %% [markdown]
# ## Environment
#
# What runs where. A GPU helps training a lot; everything else here also runs on a CPU.

# %%
import platform

import hrank_ssd

print("python", platform.python_version(), "| torch", torch.__version__, "| hrank_ssd", hrank_ssd.__version__)
print("device:", DEVICE, torch.cuda.get_device_name(0) if DEVICE.startswith("cuda") else platform.processor())
settings = course.settings()
course.save_json("settings.json", settings)  # the report reads the profile from here
{k: v for k, v in settings.items() if k != "notes"}

# %% [markdown]
# ## The data set
#
# Detection data in the PASCAL VOC layout: `JPEGImages/<id>.jpg`, `Annotations/<id>.xml` (one box per
# object, with its class), `ImageSets/Main/{trainval,test}.txt`. Offline, `Course.dataset_root()`
# draws that set; in the full profile it downloads VOC.

# %%
root = course.dataset_root()
test = course.test_dataset()
print("training folder:", root)
print(len(test), "test images; classes:", test.class_names)

# %%
import matplotlib.patches as patches
import matplotlib.pyplot as plt

shown = min(3, len(test))  # a small test set may hold fewer images
fig, axes = plt.subplots(1, shown, figsize=(4 * shown, 4), squeeze=False)
for ax, i in zip(axes[0], range(shown)):
    image_id, (boxes, labels, _) = test.get_annotation(i)
    ax.imshow(test.get_image(i))
    for (x1, y1, x2, y2), lab in zip(boxes, labels):
        ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color="yellow", lw=2))
        ax.text(x1, y1, test.class_names[lab], color="black", backgroundcolor="yellow", fontsize=8)
    ax.set_title(image_id)
    ax.axis("off")
plt.show()

# %% [markdown]
# Check: label 0 is the background class, and every box lies inside its image.

# %%
assert test.class_names[0] == "BACKGROUND"
for i in range(min(5, len(test))):
    _, (boxes, labels, _) = test.get_annotation(i)
    h, w = test.get_image(i).shape[:2]
    assert len(boxes) == len(labels) > 0
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
print("data checks passed")

# %% [markdown]
# ## The two baselines
#
# `Course.baseline(net)` gives a trained detector: offline it trains one here (SGD, cosine schedule,
# checkpoints after each epoch, resumable), in the full profile it downloads the original project's
# weights (VGG16-SSD 0.7726 mAP, MobileNetV1-SSD 0.675 mAP on VOC2007 test, as published by them).

# %%
from hrank_ssd.nets.models import count_parameters, load_model

vgg_path = course.baseline("vgg16-ssd")
mb1_path = course.baseline("mb1-ssd")
for path in (vgg_path, mb1_path):
    model = load_model(path)
    print(f"{path.name}: {model.cfg.name}, {count_parameters(model):,} parameters, {model.num_classes} classes")

# %% [markdown]
# The loss curves (trained here only: downloaded weights come without logs).

# %%
from IPython.display import Image, display

from hrank_ssd.course.results import log_name
from hrank_ssd.train.logs import plot_curves

(course.run_dir / "plots").mkdir(parents=True, exist_ok=True)
for key in ("vgg16-ssd", "mb1-ssd"):
    log = course.results / log_name(key)
    if log.is_file():
        print(key)
        display(Image(filename=str(plot_curves(log, course.run_dir / "plots" / f"loss_{key}.png"))))
    else:
        print(f"{key}: no training log (published weights)")

# %% [markdown]
# CLI equivalent (offline data, VGG16-SSD):
#
# ```
# python -m hrank_ssd train --datasets work/offline/data/VOCdevkit/VOC2007 \
#     --validation_dataset work/offline/data/VOCdevkit/VOC2007 --net vgg16-ssd --width 0.125 \
#     --num_epochs 12 --lr 0.01 --scheduler cosine --checkpoint_folder work/offline/checkpoints/vgg16-ssd --resume auto
# ```
