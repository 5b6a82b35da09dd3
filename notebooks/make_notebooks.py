"""Write the course notebooks (notebooks/*.ipynb) from the Python source below, without outputs.

The notebooks are generated so that their text stays reviewable in diffs: edit this file, then run
``python notebooks/make_notebooks.py`` and commit both. Every notebook starts with an Open-in-Colab
badge, a setup cell (Colab: clone + install without touching Colab's torch; locally: go to the repo
root), a papermill ``parameters`` cell (PROFILE, RUN_DIR, WORK_DIR, DEVICE) and a cell that builds
the :class:`hrank_ssd.course.steps.Course`. After that the notebook only calls the library.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
# The one place that names the repository and branch (a fork changes these two lines and regenerates;
# on Colab, HRANK_SSD_REPO_URL / HRANK_SSD_BRANCH override them without regenerating).
GITHUB_REPO = "hrank-ssd/hrank-ssd"
BRANCH = "main"
REPO_URL = f"https://github.com/{GITHUB_REPO}"
COLAB = f"https://colab.research.google.com/github/{GITHUB_REPO}/blob/{BRANCH}/notebooks/{{name}}.ipynb"


def md(text: str):
    return new_markdown_cell(text.strip("\n"))


def code(text: str, tags=()):
    cell = new_code_cell(text.strip("\n"))
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


# ------------------------------------------------------------------ the shared first cells

SETUP = f'''
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
        url = os.environ.get("HRANK_SSD_REPO_URL", "{REPO_URL}")
        branch = os.environ.get("HRANK_SSD_BRANCH", "{BRANCH}")
        clone = subprocess.run(["git", "clone", "--depth", "1", "--branch", branch, url, str(REPO)],
                               capture_output=True, text=True, env=dict(os.environ, GIT_TERMINAL_PROMPT="0"))
        if clone.returncode != 0:  # never a password prompt: one line saying what to change
            raise SystemExit(f"could not clone {{url}} (branch {{branch}}): set HRANK_SSD_REPO_URL / HRANK_SSD_BRANCH "
                             f"to your fork, or fix the URL in notebooks/make_notebooks.py (git: {{' '.join(clone.stderr.split())[:200]}})")
    os.chdir(REPO)
    # Keep every preinstalled package (torch, torchvision, ipywidgets, matplotlib, pandas...) at Colab's version:
    # pip then installs only what Colab lacks, and our loose ranges accept what it has.
    frozen = subprocess.run([sys.executable, "-m", "pip", "freeze"], capture_output=True, text=True).stdout
    Path("/tmp/keep-colab-packages.txt").write_text("\\n".join(x for x in frozen.splitlines() if "==" in x) + "\\n")
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
'''

PARAMETERS = '''
# Course parameters (papermill adds a cell with its own values right after this one).
PROFILE = "offline"  # offline: synthetic data, small models trained here | tiny: seconds (CI) | full: real VOC
RUN_DIR = "runs/latest"  # this run's results (tables, plots); the course command passes runs/<timestamp>
WORK_DIR = "work"  # reusable artifacts: datasets, trained models, ranks, checkpoints (per profile)
DEVICE = None  # None: cuda when available, else cpu
COLAB_PROFILE = "full"  # the profile used on Colab unless PROFILE was injected
'''

COURSE = '''
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
'''


def head(name: str, title: str, intro: str):
    badge = (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
             f"({COLAB.format(name=name)})")
    return [md(f"{badge}\n\n# {title}\n\n{intro.strip()}"), code(SETUP), code(PARAMETERS, tags=["parameters"]),
            code(COURSE)]


# ------------------------------------------------------------------ 00 setup

NB00 = head("00_setup", "0. Setup: data and the two baselines", """
This course prunes an **SSD object detector** (VGG16 backbone, PASCAL VOC classes) with **HRank**
(Lin et al., CVPR 2020) and compares three detectors: VGG16-SSD, the HRank-pruned VGG16-SSD and
MobileNetV1-SSD, in mAP, per-class AP, speed, FLOPs and parameters.

| notebook | what you do |
|---|---|
| 00_setup | environment, data, the two baselines |
| 01_rank_generation | the rank of a feature map, and HRank's rank files |
| 02_hrank_pruning | choose compress rates, cut the network, sensitivity, criteria |
| 03_finetune | recover accuracy by finetuning the pruned detector |
| 04_eval_map_fps | mAP, per-class AP, latency and FPS of the three models |
| 05_flops_table | exact parameters and MACs, and the original project's table |
| 06_video_demo | the pruned detector on a video |

**Profiles.** `offline` (the local default) needs no network: it draws a synthetic VOC-format data set
of coloured shapes and trains small (narrow) models on it, so every step runs on a laptop CPU.
`full` (the Colab default) downloads VOC2007/2012 and the original project's published weights and
ranks (Google Drive, via `gdown`, listed in `weights_manifest.json`). `tiny` is `offline` shrunk to
seconds, for tests. All work goes through `hrank_ssd.course.steps.Course`: each step writes files and reuses
what an earlier run made, so you can open any notebook at any time.
""") + [
    md("""
## Environment

What runs where. A GPU helps training a lot; everything else here also runs on a CPU.
"""),
    code("""
import platform

import hrank_ssd

print("python", platform.python_version(), "| torch", torch.__version__, "| hrank_ssd", hrank_ssd.__version__)
print("device:", DEVICE, torch.cuda.get_device_name(0) if DEVICE.startswith("cuda") else platform.processor())
settings = course.settings()
course.save_json("settings.json", settings)  # the report reads the profile from here
{k: v for k, v in settings.items() if k != "notes"}
"""),
    md("""
## The data set

Detection data in the PASCAL VOC layout: `JPEGImages/<id>.jpg`, `Annotations/<id>.xml` (one box per
object, with its class), `ImageSets/Main/{trainval,test}.txt`. Offline, `Course.dataset_root()`
draws that set; in the full profile it downloads VOC.
"""),
    code("""
root = course.dataset_root()
test = course.test_dataset()
print("training folder:", root)
print(len(test), "test images; classes:", test.class_names)
"""),
    code("""
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
"""),
    md("Check: label 0 is the background class, and every box lies inside its image."),
    code("""
assert test.class_names[0] == "BACKGROUND"
for i in range(min(5, len(test))):
    _, (boxes, labels, _) = test.get_annotation(i)
    h, w = test.get_image(i).shape[:2]
    assert len(boxes) == len(labels) > 0
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
print("data checks passed")
"""),
    md("""
## The two baselines

`Course.baseline(net)` gives a trained detector: offline it trains one here (SGD, cosine schedule,
checkpoints after each epoch, resumable), in the full profile it downloads the original project's
weights (VGG16-SSD 0.7726 mAP, MobileNetV1-SSD 0.675 mAP on VOC2007 test, as published by them).
"""),
    code("""
from hrank_ssd.nets.models import count_parameters, load_model

vgg_path = course.baseline("vgg16-ssd")
mb1_path = course.baseline("mb1-ssd")
for path in (vgg_path, mb1_path):
    model = load_model(path)
    print(f"{path.name}: {model.cfg.name}, {count_parameters(model):,} parameters, {model.num_classes} classes")
"""),
    md("The loss curves (trained here only: downloaded weights come without logs)."),
    code("""
from IPython.display import Image, display

from hrank_ssd.train.training import plot_curves

(course.run_dir / "plots").mkdir(parents=True, exist_ok=True)
for key in ("vgg16-ssd", "mb1-ssd"):
    log = course.results / f"log_{key}.csv"
    if log.is_file():
        print(key)
        display(Image(filename=str(plot_curves(log, course.run_dir / "plots" / f"loss_{key}.png"))))
    else:
        print(f"{key}: no training log (published weights)")
"""),
    md("""
CLI equivalent (offline data, VGG16-SSD):

```
python -m hrank_ssd train --datasets work/offline/data/VOCdevkit/VOC2007 \\
    --validation_dataset work/offline/data/VOCdevkit/VOC2007 --net vgg16-ssd --width 0.125 \\
    --num_epochs 12 --lr 0.01 --scheduler cosine --checkpoint_folder work/offline/checkpoints/vgg16-ssd --resume auto
```
"""),
]

# ------------------------------------------------------------------ 01 ranks

NB01 = head("01_rank_generation", "1. HRank: the rank of a feature map", """
Pruning removes whole **filters** (output channels) of a convolution. Which ones? HRank's answer: a
filter whose output feature maps have a **high matrix rank** carries more information, and the average
rank of a filter's maps barely depends on which images you feed in. So a few batches of images are
enough to score every filter, and the lowest-ranked filters go.
""") + [
    md("""
## Rank of a matrix, in two lines

A feature map is an H x W matrix. Its rank is the number of linearly independent rows. An outer
product (every row a multiple of one row) has rank 1; random noise has full rank; an all-zero map
(a dead ReLU) has rank 0.
"""),
    code("""
import numpy as np

from hrank_ssd.hrank import ranks as R

outer = torch.outer(torch.arange(1.0, 9.0), torch.linspace(-1, 1, 8))  # 8x8, every row a multiple of one
noise = torch.randn(8, 8, generator=torch.Generator().manual_seed(0))
zero = torch.zeros(8, 8)
print([int(torch.linalg.matrix_rank(m)) for m in (outer, noise, zero)])
"""),
    md("Check: the batched rank (one SVD call for many maps, what the library uses) equals HRank's "
       "one-map-at-a-time loop. On a CPU the batch is also what lets several cores share the SVDs: "
       "`batched_ranks` splits it over `torch.get_num_threads()` workers (`benchmarks/results.md` times it)."),
    code("""
assert [int(torch.linalg.matrix_rank(m)) for m in (outer, noise, zero)] == [1, 8, 0]
maps = torch.relu(torch.randn(2, 6, 10, 10, generator=torch.Generator().manual_seed(1)))
maps[0, 0] = torch.outer(torch.rand(10), torch.rand(10))  # one low-rank map
assert torch.equal(R.batched_ranks(maps), R.ranks_one_at_a_time(maps))
print(R.batched_ranks(maps))
"""),
    md("""
## Feature maps of the trained VGG16-SSD

A forward hook catches the output (after ReLU) of one conv layer for one test image. Left: the maps
with the highest rank, right: the lowest. Low-rank maps are flat, blank or stripy: little information.
"""),
    code("""
import matplotlib.pyplot as plt

from hrank_ssd.data.voc import TestTransform
from hrank_ssd.nets.models import load_model
from hrank_ssd.hrank.pruning import activation_key, layer_names

model = load_model(course.baseline("vgg16-ssd")).eval()
LAYER = 4  # 0-based prunable layer: conv3_1
caught = {}
module = dict(model.named_modules())[activation_key("vgg16-ssd", LAYER)]
handle = module.register_forward_hook(lambda m, i, out: caught.update(maps=out.detach()))
transform = TestTransform(model.image_size, model.cfg.image_mean, model.cfg.image_std)
image = transform(course.test_dataset().get_image(0))[0]
with torch.no_grad():
    model(image.unsqueeze(0))
handle.remove()
fmaps = caught["maps"][0]
rank = R.batched_ranks(fmaps.unsqueeze(0))[0]
order = torch.argsort(rank, descending=True)
show = order[:4].tolist() + order[-4:].tolist()
fig, axes = plt.subplots(1, 8, figsize=(16, 2.4))
for ax, c in zip(axes, show):
    ax.imshow(fmaps[c], cmap="viridis")
    ax.set_title(f"filter {c}: rank {int(rank[c])}", fontsize=8)
    ax.axis("off")
fig.suptitle(f"{layer_names('vgg16-ssd')[LAYER]} ({fmaps.shape[1]}x{fmaps.shape[2]} maps): 4 highest, 4 lowest rank")
plt.show()
"""),
    md("""
## The rank files

`Course.rank_dir()` averages every filter's rank over `rank_limit` batches of training images and
writes `rank_conv{i}.npy` for the 14 prunable layers (conv1_1 ... conv5_3 and fc6; fc7 feeds the heads
directly and is not pruned), the file names of the original HRank code. On the full profile
`rank_dir()` gives the original project's published rank files (what its pruned model was made from);
`rank_dir(generate=True)` computes your own, and the comparison below sets the two side by side.
"""),
    code("""
import pandas as pd

rank_dir = course.rank_dir()
files = sorted(rank_dir.glob("rank_conv*.npy"), key=lambda p: int(p.stem[len("rank_conv"):]))
print(rank_dir, [p.name for p in files])
ranks = [np.load(p) for p in files]
pd.DataFrame(R.rank_summary(ranks, "vgg16-ssd")).round(2)
"""),
    md("Check: one file per prunable layer, one value per filter, no rank above the map's size."),
    code("""
assert len(ranks) == 14
for i, (r, channels) in enumerate(zip(ranks, model.plan.prunable)):
    assert r.shape == (channels,), (i, r.shape, channels)
    assert r.dtype == np.float32 and (r >= 0).all() and r.max() <= model.image_size
print("rank files look right")
"""),
    code("""
fig, axes = plt.subplots(2, 7, figsize=(16, 4.5))
for ax, name, r in zip(axes.flat, layer_names("vgg16-ssd"), ranks):
    ax.hist(r, bins=20)
    ax.set_title(name, fontsize=9)
fig.suptitle("Average rank of each filter, per layer")
fig.tight_layout()
plt.show()
"""),
    md("""
## Your ranks against the published ones (full profile)

Ranks depend on the images and on the machine: a filter whose singular value sits right at the rank
tolerance counts on one CPU and not on another (float rounding differs between AVX2, AVX-512 and GPUs),
and the published ranks came from other images on another machine. What matters is the kept set: per
layer, how many of the filters kept at this compress rate both rank files keep.
"""),
    code("""
if not course.profile.synthetic:
    display(course.rank_comparison().round(3))
else:
    print("offline profile: no published ranks to compare with (run with PROFILE='full')")
"""),
    md("""
CLI equivalent (the original `rank_generation.py`):

```
python -m hrank_ssd rank --dataset work/offline/data/VOCdevkit/VOC2007 \\
    --base_net work/offline/models/vgg16-ssd.pth --limit 4 --batch_size 16 --rank_dir work/offline/ranks
```
"""),
]

# ------------------------------------------------------------------ 02 pruning

NB02 = head("02_hrank_pruning", "2. HRank pruning: rates, surgery, sensitivity, criteria", """
A **compress rate** says, per prunable layer, which fraction of its filters to remove. The original
project writes it as `"[0.1]*7+[0.5]*9"`: the first 7 layers lose 10%, the rest 50% (entries past the
14th are ignored). A layer with `c` filters keeps `int(c * (1 - rate))` of them: the highest-ranked.

**Physical pruning** means the network really gets smaller: a conv that keeps 57 of 64 filters becomes a
conv with 57 output channels, and the next conv (and BatchNorm, and the detection heads that read this
layer) loses the matching input channels. Nothing is masked; the weights are copied into a smaller model.
""") + [
    md("""
## Choosing the compress rate

Move a slider per VGG stage and watch parameters, MACs (multiply-accumulates, of the full-size
detector: 300x300, 21 classes) and the kept filters change. Without widgets (or in a static copy of this
notebook) the table below is for the rates in `STAGE_RATES`: edit them and re-run the cell.
"""),
    code("""
import pandas as pd

from hrank_ssd.measure import flops
from hrank_ssd.nets.models import build_model, count_parameters
from hrank_ssd.hrank.pruning import layer_names

STAGES = {"conv1": 2, "conv2": 2, "conv3": 3, "conv4": 3, "conv5": 3, "fc6": 1}  # prunable layers per stage
STAGE_RATES = {"conv1": 0.1, "conv2": 0.1, "conv3": 0.1, "conv4": 0.5, "conv5": 0.5, "fc6": 0.5}  # = [0.1]*7+[0.5]*9
full = build_model("vgg16-ssd", 21)
full_macs = flops.totals(flops.count_exact(full))["MACs"]


def plan(stage_rates):
    rates = [stage_rates[s] for s, n in STAGES.items() for _ in range(n)]
    pruned = build_model("vgg16-ssd", 21, compress_rate=rates)
    macs = flops.totals(flops.count_exact(pruned))["MACs"]
    print(f"params {count_parameters(pruned):,} ({count_parameters(pruned) / count_parameters(full):.1%}), "
          f"MACs {macs / 1e9:.2f} G ({macs / full_macs:.1%} of {full_macs / 1e9:.2f} G)")
    return pd.DataFrame({"layer": layer_names("vgg16-ssd"), "rate": rates, "filters": full.plan.prunable,
                         "kept": pruned.plan.prunable})


plan(STAGE_RATES)
"""),
    code("""
try:
    import ipywidgets as widgets
    from IPython.display import display

    sliders = {s: widgets.FloatSlider(value=r, min=0.0, max=0.9, step=0.05, description=s, continuous_update=False)
               for s, r in STAGE_RATES.items()}
    out = widgets.Output()

    def redraw(_=None):
        with out:
            out.clear_output(wait=True)
            display(plan({s: w.value for s, w in sliders.items()}).T)

    for w in sliders.values():
        w.observe(redraw, names="value")
    display(widgets.VBox([widgets.HBox(list(sliders.values())[:3]), widgets.HBox(list(sliders.values())[3:]), out]))
except ImportError:
    print("ipywidgets is not installed: edit STAGE_RATES in the cell above and re-run it")
"""),
    md("""
Check: the MAC count of a conv is `out_h * out_w * out_channels * in_channels * k_h * k_w`. The first
conv of the pruned model keeps `int(64 * 0.9) = 57` filters, so its weight has shape [57, 3, 3, 3].
"""),
    code("""
seed = build_model("vgg16-ssd", 21, compress_rate="[0.1]*7+[0.5]*9")
assert list(seed.base_net[0].weight.shape) == [57, 3, 3, 3]
assert list(seed.base_net[2].weight.shape) == [57, 57, 3, 3]  # conv1_2 lost output AND input channels
rows = flops.count_exact(seed)
conv1_1 = rows.iloc[0]
assert conv1_1["MACs"] == flops.conv_macs(3, 57, 3, 300, 300) == 300 * 300 * 57 * 3 * 3 * 3
print(conv1_1[["label", "in_channels", "out_channels", "kernel", "out_h", "out_w", "MACs"]].to_dict())
"""),
    md("""
## The surgery, layer by layer

HRank keeps the highest-ranked filters of the trained baseline (`rank_dir` from notebook 1). Every
parameter whose shape changes is listed: convs lose output filters, the next conv loses input channels,
biases and the conv4_3 BatchNorm follow, and the detection heads reading conv4_3 and fc7 lose inputs.
"""),
    code("""
from hrank_ssd.hrank import pruning
from hrank_ssd.nets.models import load_model

baseline = load_model(course.baseline("vgg16-ssd")).eval()
pruned, kept = pruning.prune_model(baseline, course.profile.compress_rate, "hrank", course.rank_dir())
print(f"compress rate {course.profile.compress_rate}: {count_parameters(baseline):,} -> "
      f"{count_parameters(pruned):,} parameters")
pd.DataFrame(pruning.describe_surgery(baseline, pruned))
"""),
    md("""
Check: the small model computes exactly what the original computes with the removed filters
zeroed out (`pruning.masked_copy`). Pruning itself changes nothing but the size; accuracy drops only
because those filters' outputs are gone, which is what finetuning repairs.
"""),
    code("""
masked = pruning.masked_copy(baseline, kept).eval()
x = torch.randn(2, 3, baseline.image_size, baseline.image_size, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    (c1, l1), (c2, l2) = pruned.eval()(x), masked(x)
assert torch.allclose(c1, c2, atol=1e-4, rtol=1e-4) and torch.allclose(l1, l2, atol=1e-4, rtol=1e-4)
print("pruned == masked original; max difference", float((c1 - c2).abs().max()))
"""),
    md("""
## Which layers can lose filters? Sensitivity

Prune **one** layer at a time at a given rate, evaluate without finetuning, and compare with the
unpruned mAP (dashed). Flat curves: that layer can be pruned hard. Steep: spare it. (Offline the data
set and models are small, so the curves are noisy; the method is the point.)
"""),
    code("""
import matplotlib.pyplot as plt

from hrank_ssd.measure import sensitivity

sens = course.sensitivity()
sensitivity.plot_sensitivity(sens)
plt.show()
sens.pivot_table(index="rate", columns="name", values="map").round(4)
"""),
    md("""
## Does the criterion matter? HRank vs L1-norm vs random

Same compress rate, three ways to pick the filters: highest average rank (HRank), largest weight
L1-norm, or at random. Measured right after pruning and, when the profile allows, after the same short
finetuning.
"""),
    code("""
crit = course.criteria()
sensitivity.plot_criteria(crit)
plt.show()
crit
"""),
    md("""
CLI equivalents:

```
python -m hrank_ssd flops --net vgg16-ssd --compress_rate "[0.1]*7+[0.5]*9"
python -m hrank_ssd prune --base_net work/offline/models/vgg16-ssd.pth --rank_dir work/offline/ranks \\
    --compress_rate "[0.1]*7+[0.5]*9" --criterion hrank --output work/offline/models/vgg16-ssd-hrank-init.pth
python -m hrank_ssd sensitivity --dataset work/offline/data/VOCdevkit/VOC2007 \\
    --trained_model work/offline/models/vgg16-ssd.pth --rank_dir work/offline/ranks --layers 1,4,7,10,13,14 \\
    --rates 0.3,0.6,0.9 --target_mac_reduction 0.5
```
"""),
]

# ------------------------------------------------------------------ 03 finetune

NB03 = head("03_finetune", "3. Finetuning the pruned detector", """
Right after pruning, the detector has lost the outputs of the removed filters and its mAP drops. The
remaining weights are still a very good starting point, so a short training run (**finetuning**, small
learning rate) recovers most of the accuracy. The original project finetuned its pruned VGG16-SSD for
120 epochs at lr 1e-5 and reached 0.6953 mAP (their figure, VOC2007 test, vs 0.7731 unpruned).
""") + [
    code("""
import pandas as pd

from hrank_ssd.nets.models import count_parameters, load_model, read_sidecar

init = course.pruned()
info = read_sidecar(init)
print(init, "| criterion", info.get("criterion"), "| rates", info.get("compress_rate"))
"""),
    md("""
`Course.finetuned()` trains the pruned model (the pruned weights are the starting point) and logs every
epoch: train and validation loss (regression + classification) and, every few epochs, mAP. While it runs,
the cell below redraws the training loss of every step in place (`LiveLossCurve`, a training hook), and the
per-epoch curves are also written to `work/<profile>/checkpoints/<model>/curves.png`. When the model was
already trained (a re-run), nothing is trained again and the curve stays empty: the logged curves follow.
"""),
    md("""
On the **full** profile the original 120 GPU epochs are out of reach in a notebook: the published pruned
model stands in for them (notebooks 04-06 evaluate it), and you finetune *your own* pruned model for a
short, stated budget (`student_finetune_epochs`, 1 epoch of VOC2007 trainval: about 600 iterations at
batch 8; the README's "time on a Colab T4" table estimates this notebook's minutes). Re-running the cell
resumes it.
"""),
    code("""
from hrank_ssd.course.report import PUBLISHED_MAP

from hrank_ssd.errors import HRankError

if course.profile.use_published_pruned and not course.profile.synthetic:
    try:
        published = course.finetuned()
        print(f"published pruned model: {published} ({read_sidecar(published).get('compress_rate', 'rate not recorded')}),"
              f" published mAP {PUBLISHED_MAP['vgg16-ssd-pruned']} (theirs, VOC2007 test, 120 epochs)")
    except HRankError as e:  # e.g. Drive over quota: the course goes on with your own finetuned model
        print(f"published pruned model unavailable: {e}\\nnotebooks 04-06 will use yours (below); retry later with "
              "`python -m hrank_ssd download vgg16-ssd-hrank`")
from hrank_ssd.train.live_plot import LiveLossCurve

finetuned = course.student_finetuned(hooks=LiveLossCurve(every=5, title="your finetuning"))
print(f"your finetuned model: {finetuned} ({course.profile.student_finetune_epochs or course.profile.finetune_epochs} epochs)")
log = pd.read_csv(course.log_file(finetuned))
log
"""),
    code("""
from IPython.display import Image, display

from hrank_ssd.train.training import plot_curves

(course.run_dir / "plots").mkdir(parents=True, exist_ok=True)
display(Image(filename=str(plot_curves(course.log_file(finetuned),
                                       course.run_dir / "plots" / f"loss_{finetuned.stem}.png"))))
"""),
    md("Check: finetuning changes the weights, never the shapes: the finetuned model has the pruned plan."),
    code("""
a, b = load_model(init), load_model(finetuned)
assert a.plan.base == b.plan.base and count_parameters(a) == count_parameters(b)
assert any(not torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
print(f"{count_parameters(b):,} parameters, plan {b.plan.prunable}")
"""),
    md("""
## Beyond the original: distillation

The unpruned model can teach the pruned one: its class scores, softened with a temperature, become
extra soft targets in the MultiBox loss (`--distill_from`). Same finetuning budget, with and without
the teacher; whichever wins on this data is what the table shows.
"""),
    code("""
kd = course.distillation()
kd
"""),
    md("""
## Disconnected? Resume

Training writes a checkpoint `model_best.pth-<epoch>.tar` into its checkpoint folder after every epoch
(atomically: a crash never leaves half a file). It holds the model, the optimiser, the scheduler, the
random-number state and the epoch, so `--resume auto` continues from the newest one exactly where it
stopped. `Course` always trains with `resume="auto"`: just re-run the cell. On Colab set
`USE_DRIVE = True` in the first cell so the checkpoints live on Google Drive and survive a
disconnected runtime. The same finetuning from the command line (full profile, as the original project):

```
python -m hrank_ssd train --datasets data/VOCdevkit/VOC2007 data/VOCdevkit/VOC2012 \\
    --validation_dataset data/VOCdevkit/VOC2007-test --net vgg16-ssd \\
    --base_net models/vgg16-ssd-mp-0_7726.pth --rank_dir models/rank_conv/vgg-16-limitbatch5 \\
    --compress_rate "[0.1]*7+[0.5]*9" --criterion hrank --lr 1e-5 --num_epochs 120 \\
    --checkpoint_folder /content/drive/MyDrive/hrank-ssd/checkpoints/vgg16-ssd-pruned --resume auto
```

Run it again after a disconnect and it picks up at the last finished epoch (`--checkpoint_every_steps N`
also saves inside an epoch).
"""),
]

# ------------------------------------------------------------------ 04 eval

NB04 = head("04_eval_map_fps", "4. mAP, per-class AP, latency and FPS", """
**mAP** (VOC2007, 11-point): for each class, rank all detections by score, match each to an unmatched
ground-truth box with IoU > 0.5, draw the precision/recall curve and average the precision at recall
0, 0.1, ..., 1; then average over classes. We evaluate the three detectors on the same test set.
""") + [
    code("""
import matplotlib.pyplot as plt

from hrank_ssd.course import report

summary, per_class = course.evaluate()
summary.assign(published_mAP_theirs=summary["model"].map(report.PUBLISHED_MAP))
"""),
    md("""
`published_mAP_theirs` are the **original project's** figures on VOC2007 test, quoted for comparison.
On the offline profile our numbers come from synthetic shapes and small models: compare the ranking of
the three models, not the values.
"""),
    code("""
report.plot_per_class(per_class)
plt.show()
report.per_class_pivot(per_class).round(4)
"""),
    md("Per class: ground-truth objects, detections, final recall and precision, AP."),
    code("""
from IPython.display import display

for key, table in per_class.groupby("model", sort=False):
    print(key)
    display(table.drop(columns="model").round(4))
"""),
    md("Check: mAP is the mean of the per-class APs, and recall never exceeds 1."),
    code("""
for key in summary["model"]:
    table = per_class[per_class["model"] == key]
    assert abs(summary.set_index("model").loc[key, "mAP"] - table["ap"].dropna().mean()) < 1e-9
    # a perfect class's 11-point AP sums eleven 1/11 terms, as the devkit does: 1 within float rounding (1e-12)
    assert (table["recall"].dropna() <= 1).all() and (table["ap"].dropna() <= 1 + 1e-12).all()
print("evaluation checks passed")
"""),
    md("""
## Latency and FPS

`Course.bench()` times the **full-size** detectors (300x300, 21 classes; random weights, since shapes
decide speed) on this machine: warm-up runs first, the models interleaved, median and 90th percentile of
many runs. *forward* is the network alone; *predict* adds resizing, box decoding and NMS.
"""),
    code("""
bench = course.bench()
bench.round(3)
"""),
    code("""
fig, ax = plt.subplots(figsize=(6, 3.5))
x = range(len(bench))
ax.bar([i - 0.2 for i in x], bench["mac_ratio"], 0.4, label="MACs: x fewer than VGG16-SSD")
ax.bar([i + 0.2 for i in x], bench["forward_speedup"], 0.4, label="forward: x faster than VGG16-SSD")
ax.set_xticks(list(x), bench["model"])
ax.set_yscale("log")
ax.legend(fontsize=8)
plt.show()
"""),
    code("""
for _, r in bench.iloc[1:].iterrows():
    print(f"{r['model']}: {r['mac_ratio']:.2f}x fewer MACs, {r['forward_speedup']:.2f}x faster forward pass")
assert bench["forward_speedup"].iloc[0] == 1.0
"""),
    md("""
## Why latency falls less than MACs

Removing filters removes multiply-adds, but a forward pass costs more than multiply-adds: reading and
writing every feature map, the parts that were not pruned (fc7, extras, the detection heads) and the
post-processing. MobileNetV1 shows the extreme case: depthwise convolutions do very few MACs per byte they
move, so twenty times fewer MACs buy only a few times the speed.

For the pruned VGG16-SSD there is a sharper reason, visible layer by layer. CPU (and GPU) convolution
kernels process channels in fixed blocks - 16 floats per AVX-512 register - so a layer with 57 channels
costs about as much as one with 64. HRank's `[0.1]*7+...` keeps 57, 115 and 230 of 64, 128 and 256
filters in conv1_1 ... conv3_3: those layers lose a fifth of their MACs but hardly any time, and they run
at the largest resolutions. Below, every layer of both full-size models is timed with hooks (CPU, random
weights), next to its MACs.
"""),
    code("""
layers, groups, ceiling = course.layer_speed()
groups.round(2)
"""),
    code("""
from hrank_ssd.measure.bench import conv_speedups
from hrank_ssd.nets.models import VGG_CONV_INDEXES, VGG_LAYER_NAMES

readable = {f"base_net.{i}": n for i, n in zip(VGG_CONV_INDEXES, VGG_LAYER_NAMES)}
conv = conv_speedups(layers)
conv = conv[conv["full/pruned MACs"] > 1]  # the layers pruning touched
x = range(len(conv))
fig, ax = plt.subplots(figsize=(9, 3))
ax.bar([i - 0.2 for i in x], conv["full/pruned MACs"], 0.4, label="MACs: full / pruned")
ax.bar([i + 0.2 for i in x], conv["full/pruned time"], 0.4, label="time: full / pruned")
ax.axhline(1, color="grey", lw=0.8)
ax.set_xticks(list(x), [readable.get(n, n) for n in conv["name"]], rotation=60, fontsize=7)
ax.set_ylabel("x less in the pruned model")
ax.legend(fontsize=8)
plt.show()
print(f"Measured: the pruned model's layers take {ceiling['measured_speedup']:.2f}x less time than the full "
      f"ones. If time fell exactly with MACs in every group it would be {ceiling['mac_proportional_speedup']:.2f}x.")
"""),
    md("""
Check: the per-layer MACs add up to the whole model's count (notebook 5 explains the counter). The lesson
for pruning: choose kept counts on the hardware's block boundaries (multiples of 16 here) or prune the
early layers harder; `benchmarks/results.md` has the full analysis, including the channels_last layout.
"""),
    code("""
from hrank_ssd.measure.bench import count_macs
from hrank_ssd.nets.models import build_model

full_macs = count_macs(build_model("vgg16-ssd", 21))
assert abs(layers["full_MMACs"].sum() * 1e6 - full_macs) <= 1e-6 * full_macs
"""),
    md("""
CLI equivalents:

```
python -m hrank_ssd eval --dataset work/offline/data/VOCdevkit/VOC2007 \\
    --trained_model work/offline/models/vgg16-ssd-pruned.pth --eval_dir eval_results/pruned
python -m hrank_ssd bench --nets vgg16-ssd,vgg16-ssd-pruned,mb1-ssd --compress_rate "[0.1]*7+[0.5]*9" \\
    --warmup 5 --runs 20
```
"""),
]

# ------------------------------------------------------------------ 05 flops

NB05 = head("05_flops_table", "5. Parameters and MACs, exactly", """
`hrank_ssd.measure.flops.count_exact` runs one 300x300 image through a detector with a hook on every Conv2d,
BatchNorm2d and Linear and counts the multiply-accumulates (MACs) each one does; the sum is the whole
detector (backbone, extras, heads), checked against `thop`. FLOPs are about 2 x MACs.

The original HRank-SSD project printed smaller numbers. `flops.print_seed_table` reproduces its table
digit for digit with its counting rules, then lists every reason it differs from the exact count.
""") + [
    code("""
from hrank_ssd.measure import flops

table = course.flops()
print(flops.MAC_NOTE)
table
"""),
    md("Check: the totals are the sums of the per-layer rows, and the parameter count is every weight of the model."),
    code("""
from hrank_ssd.nets.models import count_parameters

model = flops.build_for_counting("vgg16-ssd", 21, compress_rate=flops.PRUNED_RATE)
rows = flops.count_exact(model)
assert flops.totals(rows)["params"] == count_parameters(model) == table.loc[1, "params"]
assert flops.totals(rows)["MACs"] == rows["MACs"].sum() == table.loc[1, "MACs"]
conv = rows[rows["type"] == "Conv2d"].iloc[3]
assert conv["MACs"] == flops.conv_macs(conv["in_channels"], conv["out_channels"], 3, conv["out_h"], conv["out_w"])
rows.head(8)
"""),
    md("## The original table: VGG16-SSD, unpruned"),
    code('flops.print_seed_table("vgg16-ssd");'),
    md("## VGG16-SSD pruned with `[0.1]*7+[0.5]*9`"),
    code('flops.print_seed_table("vgg16-ssd", flops.PRUNED_RATE);'),
    md("## MobileNetV1-SSD"),
    code('flops.print_seed_table("mb1-ssd");'),
    md("""
CLI equivalents:

```
python -m hrank_ssd flops --net vgg16-ssd --compress_rate "[0.1]*7+[0.5]*9"            # exact, per layer
python -m hrank_ssd flops --net vgg16-ssd --compress_rate "[0.1]*7+[0.5]*9" --style seed  # the original's
```
"""),
]

# ------------------------------------------------------------------ 06 video

NB06 = head("06_video_demo", "6. The pruned detector on a video", """
Every frame goes through the same predictor as evaluation (resize, forward, decode, NMS); boxes,
class names, scores and the running FPS are drawn on it and the frames are written to an mp4.
""") + [
    md("""
The clip: the street scene `../shared/data/video/vtest.mp4` when it is next to the checkout (the
development setup); on the full profile (Colab) the same clip downloaded through the manifest
(`street-clip`, checksum-verified); else a synthetic clip panning over the test images. `info["source"]`
below says which one was used. Honest warning: the **offline** models have only
ever seen coloured shapes, so on a real street they detect nothing meaningful (at most a few spurious
boxes); on the synthetic clip they find their shapes. In the **full** profile (trained on VOC) the
detector finds persons and cars on the street clip.
"""),
    code("""
from hrank_ssd.course import video

info = course.video()  # writes results/video.json
print("input:", info["source"], info["input"], video.video_info(info["input"]))
info
"""),
    code("""
import matplotlib.pyplot as plt

frames = video.sample_frames(info["out_path"], 3)
fig, axes = plt.subplots(1, len(frames), figsize=(15, 4))
for ax, f in zip(list(axes) if len(frames) > 1 else [axes], frames):
    ax.imshow(f)
    ax.axis("off")
plt.show()
"""),
    md("Check: the output keeps the frame rate and has exactly the frames that were processed."),
    code("""
out = video.video_info(info["out_path"])
assert out["frames"] == info["frames"] and abs(out["fps"] - info["fps_in"]) < 0.5
print(out)
"""),
    md("""
On Colab, download the video from the file browser (`runs/.../video/demo_pruned.mp4`). CLI equivalent:

```
python -m hrank_ssd video vgg16-ssd work/offline/models/vgg16-ssd-pruned.pth \\
    work/offline/data/VOCdevkit/VOC2007/labels.txt ../shared/data/video/vtest.mp4 demo_pruned.mp4 --max_frames 60
```
"""),
    md("""
## The report

The last step gathers every result of this run (notebooks 00-06) into `report.md` and `report.html` in the run
folder: the comparison table with the machine beside every latency, per-class AP, FLOPs, and which model stood
in for which. On Colab it is written too: download it from the file browser, or keep it on Drive
(`USE_DRIVE = True`).
"""),
    code("""
from hrank_ssd.course.report import write_report

report_md, report_html = write_report(course.run_dir)
print("report:", report_md, "and", report_html)
"""),
]

NOTEBOOKS = {
    "00_setup": NB00,
    "01_rank_generation": NB01,
    "02_hrank_pruning": NB02,
    "03_finetune": NB03,
    "04_eval_map_fps": NB04,
    "05_flops_table": NB05,
    "06_video_demo": NB06,
}


def build(name: str, cells) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["colab"] = {"provenance": [], "toc_visible": True}
    nb.metadata["accelerator"] = "GPU"
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{name[:2]}-{i:02d}"  # stable ids: regenerating gives identical files
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.validate(nb)
    return nb


def main(out_dir=HERE) -> int:
    out_dir = Path(out_dir)
    for name, cells in NOTEBOOKS.items():
        nbformat.write(build(name, cells), str(out_dir / f"{name}.ipynb"))
        print(f"wrote {out_dir / f'{name}.ipynb'} ({len(cells)} cells)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else HERE))
