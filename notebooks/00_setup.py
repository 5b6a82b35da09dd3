# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/hrank-ssd/hrank-ssd/blob/main/notebooks/00_setup.ipynb)
#
# # 0. Setup: data and the two baselines
#
# This course prunes an **SSD object detector** with **HRank** (Lin et al., CVPR 2020). An object detector finds
# the objects in an image and gives each a box and a class; SSD is one kind (explained below), here built on
# **VGG16**, an image-classification network whose convolutions (its **backbone**) compute the features, and
# trained on **PASCAL VOC**, a public set of photos with boxes around objects of 20 classes. **Pruning** removes
# parts of a trained network to make it cheaper; here whole **filters** (a convolution's output channels, each with
# its own weights) are removed. HRank keeps the filters whose output maps have the highest **rank** (notebook 01):
# a filter whose maps have a low rank carries little information. The course compares six models: VGG16-SSD,
# VGG16-SSD pruned at the original project's rate, VGG16-SSD pruned for this machine's clock at two latency
# budgets, MobileNetV1-SSD and MobileNetV1-SSD pruned, in mAP, per-class AP, speed (**latency**: the time to
# process one image; **FPS**: images per second), MACs and parameters (defined below and in the notebooks).
#
# | notebook | what you do |
# |---|---|
# | 00_setup | environment, data, what an SSD is (sources, priors, headers), the two baselines |
# | 01_rank_generation | the rank of a feature map, HRank's rank files, whether ranks depend on the images |
# | 02_hrank_pruning | single weights vs filters, your top_filters, criteria, your sensitivity scan, your rate for a target, your surgery |
# | 03_finetune | recover accuracy by finetuning the pruned detector |
# | 04_eval_map_fps | mAP and per-class AP of the six models and yours, your AP function, what pruning forgets |
# | 05_flops_table | where MACs come from, exact parameters and MACs, the original project's table |
# | 06_video_demo | the pruned detector on a video, and what its FPS counts |
# | 07_latency_pruning | pruning for the clock: each layer timed on this machine, widths chosen for a time budget, dead filters |
# | 08_speed_frontier | latency and FPS, the frontier (the models no other beats in both mAP and speed), why latency falls less than MACs, the report |
#
# **Words used throughout.** A detector's **AP** for one class is the area under its precision-recall curve:
# how many of its detections are right, at every level of how many objects it finds. **mAP** is the mean of the
# 20 classes' APs (VOC2007's 11-point version: notebook 04 computes it step by step); 1.0 is perfect.
# A **compress rate** is the share of filters removed from a layer; **the paper rate** is the one the original
# HRank-SSD project published, `[0.1]*7+[0.5]*9`: 10% of the filters of VGG16's first 7 convs (conv1_1 to
# conv3_3), 50% of the next 7 (conv4_1 to fc6); the list has 16 entries, as published, and the last two are
# unused (fc7 feeds a detection head and stays whole). **MACs** are the multiply-accumulates of one forward pass
# of one image (`y = y + w * x` is one MAC); **FLOPs**, floating-point operations, count the multiplication and the
# addition apart, so FLOPs are about 2 x MACs (notebook 05 counts them). The **MultiBox loss** is SSD's training
# loss: a classification loss for each prior box plus a box-regression loss for the priors that match an object
# (notebook 03 trains with it).
#
# **Profiles.** `offline` (the local default) needs no network: it draws a synthetic VOC-format data set (five
# shape classes, small to large, partly hiding each other, among unlabelled look-alike shapes and clutter) and
# trains small (narrow) models on it, so every step runs on a laptop CPU.
# `full` (the Colab default) downloads VOC2007 trainval and test (never VOC2012, on which the original project
# finetuned: notebook 03) and the original project's published weights and ranks (Google Drive, via `gdown`,
# listed in `weights_manifest.json`); it needs a GPU runtime (the setup cell warns on a CPU). `tiny` is `offline`
# shrunk to seconds, for tests. On Colab, `USE_DRIVE = True` keeps the models, ranks, latency tables, checkpoints
# and results on Google Drive and VOC on the VM's own disk (`DATA_DIR`), downloaded again by each new VM. All work goes through `hrank_ssd.course.steps.Course`: each step writes files and reuses
# what an earlier run made, so you can open any notebook at any time.

# %%
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

# %%
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

# %% [markdown]
# ## Environment
#
# What runs where (a GPU helps training a lot; everything else here also runs on a CPU), and the profile's main
# settings.

# %%
import platform

import pandas as pd

import hrank_ssd

print("python", platform.python_version(), "| torch", torch.__version__, "| hrank_ssd", hrank_ssd.__version__)
print("device:", DEVICE, torch.cuda.get_device_name(0) if DEVICE.startswith("cuda") else platform.processor())
settings = course.settings()
saved = course.save_json("settings.json", settings)  # the report reads the profile from here
p = course.profile
data = f"synthetic: {p.num_train} training / {p.num_test} test images" if p.synthetic else "VOC2007 trainval / test"
print(f"the main settings (all {len(settings)} are in {saved}):")
pd.DataFrame([
    ("profile", p.name, "which course runs: offline, full or tiny"),
    ("device", DEVICE, "where the models train and run"),
    ("data", data, "the images (below)"),
    ("image size", f"{p.image_size}x{p.image_size}", "every image is resized to this square"),
    ("widths", f"VGG16-SSD {p.vgg_width}, MobileNetV1-SSD {p.mb1_width}",
     "share of the published channels in each layer"),
    ("batch size", p.batch_size, "images per training step"),
    ("baseline epochs", f"VGG16-SSD {p.train_epochs}, MobileNetV1-SSD {p.mb1_epochs}",
     "passes over the training images (baselines)"),
    ("finetune epochs", p.finetune_epochs, "passes when the pruned model is finetuned"),
    ("VGG16-SSD compress rate", settings["compress_rate"], "share of the filters removed, per layer"),
    ("MobileNetV1-SSD compress rate", settings["mb1_compress_rate"], "the same, for MobileNetV1-SSD"),
    ("seed", p.seed, "random seed: data, initial weights, image order"),
], columns=["setting", "value", "what it sets"]).set_index("setting")

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

shown = min(3, len(test))
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
# `Course.baseline(net)` gives a trained detector: offline it trains one here, in the full profile it downloads the
# original project's weights (their published VOC2007 test mAPs are printed below, from `hrank_ssd.course.published`).
# Training here uses Adam (an optimiser that adapts the step size of each weight) with a cosine schedule (the
# learning rate falls along half a cosine wave to zero) and saves a **checkpoint** (the weights and the training
# state) after each epoch, so a training that stops resumes where it was; `course.profile` holds every setting.

# %%
from hrank_ssd.course.published import published_map
from hrank_ssd.nets.models import count_parameters, load_model

vgg_path = course.baseline("vgg16-ssd")
mb1_path = course.baseline("mb1-ssd")
for path in (vgg_path, mb1_path):
    model = load_model(path)
    print(f"{path.name}: {model.cfg.name}, {count_parameters(model):,} parameters, {model.num_classes} classes")
if not course.profile.synthetic:
    print("their published mAP (VOC2007 test):", {k: round(v, 4) for k, v in published_map().items()})

# %% [markdown]
# ## What an SSD is
#
# An SSD (*Single Shot MultiBox Detector*, Liu et al. 2016) finds every object in one forward pass. The VGG16
# backbone turns the 300x300 image into feature maps of falling resolution, and SSD reads six of them, the
# **sources**: 38x38 (conv4_3), 19x19 (fc7), then 10x10, 5x5, 3x3 and 1x1 from a few small extra layers. Every
# cell of a source map carries a few **priors** (default boxes): fixed boxes of a few sizes and aspect ratios,
# centred on the cell (4 or 6 per cell). A large map holds many small priors, for small objects; a small map a few
# large ones. For every prior, two 3x3 convolutions, the **headers**, predict
#
# - `num_classes` **class scores**: the 20 VOC classes plus background, 21 (offline: 5 shapes plus background, 6);
# - 4 **box offsets**: how far to move the prior's centre and how much to stretch its width and height to fit the
#   object (`hrank_ssd.nets.priors.decode`).
#
# In training every ground-truth box is matched to the priors that overlap it most, and those priors learn its
# class and offsets; the others learn "background". At test time the scores go through a softmax (which turns a
# prior's scores into probabilities that sum to 1), the offsets are decoded into boxes, and the overlapping boxes
# of each class are merged by non-maximum suppression (NMS). The table lists the six sources of the VGG16-SSD
# baseline you just loaded (`channels`: what the headers read; `class_scores` and `box_offsets`: the headers'
# outputs per cell).

# %%
from hrank_ssd.course.ssd_picture import plot_priors, source_table

vgg = load_model(vgg_path).eval()
sources = source_table(vgg)
print("source feature map sizes:", vgg.feature_map_sizes(vgg.image_size), "| priors:", tuple(vgg.priors.shape))
sources

# %% [markdown]
# The priors of two sources on a test image, as the network sees it (squeezed to a square). Each dot is the centre
# of a cell of the map; the coloured boxes are the priors of the cell nearest to the first object's centre. The
# 38x38 map (left) tiles the image with small priors, the 3x3 map (right) with large ones. Pruning (notebook 02)
# narrows the backbone, the layers that compute these maps; the sources, priors and headers keep their sizes.

# %%
from IPython.display import display

image = test.get_image(0)
_, (boxes, _, _) = test.get_annotation(0)
x1, y1, x2, y2 = boxes[0]
centre = ((x1 + x2) / 2 / image.shape[1], (y1 + y2) / 2 / image.shape[0])
fig = plot_priors(vgg, image, sources=(1, 5), point=centre)
display(fig)
plt.close(fig)

# %% [markdown]
# Check: each source contributes boxes-per-location x H x W priors, and the headers give every prior `num_classes`
# scores and 4 offsets.

# %%
assert (sources["priors"] == sources["boxes_per_location"] * sources["H"] * sources["W"]).all()
assert sources["priors"].sum() == vgg.priors.shape[0]
with torch.no_grad():
    scores, offsets = vgg(torch.zeros(1, 3, vgg.image_size, vgg.image_size))
assert scores.shape == (1, vgg.priors.shape[0], vgg.num_classes) and offsets.shape == (1, vgg.priors.shape[0], 4)
print(f"{vgg.priors.shape[0]} priors x ({vgg.num_classes} class scores + 4 box offsets) per image")

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
#     --batch_size 4 --num_epochs 16 --lr 1e-3 --optimizer adam --augment light --init lsuv --scheduler cosine \
#     --seed 0 --channels_last --checkpoint_folder work/offline/checkpoints/vgg16-ssd --resume auto
# ```

# %% [markdown]
# ## What you learned / try next
#
# - A detection data set in the VOC layout: images, one XML file of boxes and classes per image, split files.
# - What an SSD is: six source feature maps, a few priors on every cell of each, and two headers that give every
#   prior `num_classes` class scores and 4 box offsets; NMS merges what is left.
# - The two baselines the course prunes (VGG16-SSD) and compares with (MobileNetV1-SSD), and their loss curves.
#
# Try next: draw the priors of the other sources (`sources=(2, 3, 4, 6)`) or at another point; build
# `build_model("vgg16-ssd", 21, image_size=512)` and see how the source sizes and the prior count change
# (`source_table`); compare the two baselines' parameter counts with their MACs in notebook 05.
# Then open notebook 01: which of the backbone's filters matter?
