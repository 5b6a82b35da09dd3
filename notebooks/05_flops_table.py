# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/hrank-ssd/hrank-ssd/blob/main/notebooks/05_flops_table.ipynb)
#
# # 5. Parameters and MACs, exactly
#
# Two numbers say how big a network is. Its **parameters** are its weights and biases: what it stores. Its
# **MACs** (multiply-accumulates) are the work of one forward pass of one image: `y = y + w * x`, one multiplication
# and one addition, is one MAC. **FLOPs** (floating-point operations) count the multiplication and the addition
# apart, so a network's FLOPs are about 2 x its MACs; papers use both words, not always carefully.
#
# In this notebook you write a counter of a whole network's MACs, check it against the library's exact count
# (`hrank_ssd.measure.flops`), count the course's detectors with it, see which layers the MACs come from, and
# compare your numbers with the ones the original HRank-SSD project published.

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

# %%
# What this notebook takes from the earlier ones, and what it recomputes when their work is not in the work folder
# (a new VM, or this notebook opened first).
from hrank_ssd.course.upstream import recompute_note

print(recompute_note(course, "05_flops_table"))


# %% [markdown]
# ## Where the MACs come from
#
# A convolution (`nn.Conv2d`) with a `k x k` kernel reading `c_in` channels and writing `c_out` channels on an
# `H x W` output map computes each of its `c_out * H * W` output values as a sum of `k * k * c_in` products, so
#
# `MACs = k * k * c_in * c_out * H * W`      and      `weights = k * k * c_in * c_out`.
#
# `H x W` is the size of the conv's **output**: a conv with stride 2 (it moves its window two pixels at a time)
# writes a map half as wide as the one it reads. A **grouped** conv (`groups = g`) splits its channels into `g`
# groups and connects each output channel to the `c_in / g` input channels of its group only: `k * k * c_in / g`
# products per output value. MobileNetV1's **depthwise** convs have `groups = c_in`: one 3x3 filter per channel;
# its **pointwise** convs are 1x1 convs mixing the channels.
#
# Each weight is therefore used `H * W` times per image: the MACs per weight are the map's size. VGG16 doubles the
# channels each time it halves the map, so `c_in * c_out` grows 4x while `H * W` shrinks 4x: its early and late
# convs cost about the same MACs, but the parameters pile up in the late, small maps.
#
# The other layers the library counts: a fully connected layer (`nn.Linear`) does `in_features` MACs per output
# value, and a BatchNorm layer (`nn.BatchNorm2d`, which normalises each channel with a learned scale and shift)
# 1 MAC per element of its output. Not counted: bias additions, ReLU, pooling, reshapes, concatenations.

# %% [markdown]
# ## Exercise: count a whole network
#
# A **forward hook** is a function PyTorch calls each time a module has run:
# `handle = module.register_forward_hook(hook)` makes every forward pass call `hook(module, inputs, output)`, with
# the tensors the module read (a tuple) and wrote, and `handle.remove()` takes the hook off again. One forward
# pass with a hook on every layer therefore sees the real output size of every layer, whatever the strides and
# paddings. `model.modules()` lists every module at every depth; `model.children()` only the top level.
#
# Write `count_macs(model, image_size)`: the MACs of one `image_size x image_size` RGB image through `model`,
# counted as above (Conv2d with its groups, Linear, BatchNorm2d), returned as an int, with your hooks removed
# again (the model is the caller's: leave it as you found it). The detectors further down
# are built on PyTorch's **meta device**: tensors with shapes and no values, so a forward pass costs nothing and
# no memory; make your zero image where the model's weights are (`next(model.parameters()).device`).
# The check runs your function on small networks (plain, strided, depthwise, with a Linear layer, nested) and on
# MobileNetV1-SSD, and compares with the library's `flops.count_exact`.

# %% tags=["exercise"]
from torch import nn


def count_macs(model: nn.Module, image_size: int) -> int:
    """MACs of one image_size x image_size image through model: Conv2d, Linear and BatchNorm2d layers."""
    # BEGIN SOLUTION
    total = []

    def hook(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total.append(output.numel() * (module.in_channels // module.groups) * kh * kw)
        elif isinstance(module, nn.Linear):
            total.append(output.numel() * module.in_features)
        else:  # BatchNorm2d: one scale and shift per element
            total.append(output.numel())

    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d))]
    handles = [m.register_forward_hook(hook) for m in layers]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size, device=next(model.parameters()).device))
    finally:
        for handle in handles:
            handle.remove()
    return sum(total)
    # END SOLUTION


# %% tags=["check"]
from hrank_ssd.course import mac_exercise as exercises

exercises.check_count_macs(count_macs);

# %% [markdown]
# ## Your counter on the course's detectors
#
# `course.flops()` is the library's table of the three detectors at full size (21 classes, 300x300): VGG16-SSD,
# VGG16-SSD pruned at the paper rate `[0.1]*7+[0.5]*9` and MobileNetV1-SSD. `your_counts` counts each of them with
# your `count_macs` and gives each one's parameters and MACs as a share of VGG16-SSD's (if your function fails or
# disagrees with the library, it says so and the library's numbers stand in).

# %%
from hrank_ssd.course.mac_exercise import your_counts
from hrank_ssd.measure import flops, published_flops
from hrank_ssd.nets.compress import PRUNED_RATE

table = course.flops()
counted = your_counts(count_macs, table)
counted

# %% [markdown]
# Check: the library's totals are the sums of its per-layer rows (`flops.count_exact`, one row per layer call),
# and its parameter count is every weight of the model.

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
# ## Which convolutions do the work
#
# The plot lays out the full-size VGG16-SSD convolution by convolution: its share of the MACs, its share of the
# parameters, and the size of the map it writes. The table below it groups the convolutions by that size.

# %%
import matplotlib.pyplot as plt

from hrank_ssd.measure.flops import mac_anatomy, plot_mac_anatomy

anatomy = mac_anatomy(flops.count_exact(flops.build_for_counting("vgg16-ssd", 21)))
plot_mac_anatomy(anatomy, "VGG16-SSD (300x300, 21 classes): share of MACs and of parameters per convolution")
plt.show()
anatomy.assign(output=anatomy["out_h"].astype(str) + "x" + anatomy["out_w"].astype(str)).groupby(
    "output", sort=False).agg(convolutions=("label", "size"), MACs_per_weight=("MACs_per_weight", "first"),
                              MAC_share=("MAC_share", "sum"), param_share=("param_share", "sum")).round(3)

# %% [markdown]
# Check: every convolution's MACs are `k*k*c_in/groups * c_out * H * W`, i.e. each weight is used `H * W` times.

# %%
assert (anatomy["MACs"] == anatomy["kernel_inputs"] * anatomy["out_channels"] * anatomy["out_h"] * anatomy["out_w"]).all()
assert (anatomy["MACs_per_weight"] == anatomy["out_h"] * anatomy["out_w"]).all()
early = anatomy["positions"] >= 75 * 75
print(f"the {int(early.sum())} convolutions writing maps of 75x75 or more do {anatomy.loc[early, 'MAC_share'].sum():.0%} "
      f"of the MACs with {anatomy.loc[early, 'param_share'].sum():.1%} of the parameters")

# %% [markdown]
# What it means for pruning: the paper rate `[0.1]*7+[0.5]*9` prunes the seven early layers (conv1_1 to conv3_3,
# on the large maps) by 10% only, because they are sensitive (notebook 02), and the late ones by half. Halving a
# late layer removes many parameters but few MACs; removing a tenth of an early one removes few parameters but
# many MACs. So the pruned model keeps a smaller share of its parameters than of its MACs (your count):

# %%
pruned = counted.loc[1]
print(f"{pruned['model']}: {pruned['params_ratio']:.0%} of the parameters, {pruned['MACs_ratio']:.0%} of the MACs "
      f"of VGG16-SSD (MACs counted by {pruned['counted_by']})")

# %% [markdown]
# ## The original project's figures
#
# The original HRank-SSD project published other numbers (its "Flops" are MACs too), counted with `thop`, a package
# that counts a network's operations, and with its own script. The library reproduces them digit for digit with
# the original's counting rules (`published_flops.published_count`); the table puts them beside your exact counts:
# `reproduced` says the original's rules give exactly the published figures, `MACs_per_published` is your count
# over theirs, and `why` names, in short, what their count leaves out or gets wrong. Two words it uses: VGG16-SSD's
# `fc6` is a **dilated** conv, whose 3x3 kernel reads pixels 6 apart (a wide view at no extra cost), and
# **ImageNet** is the 1000-class image-classification data set on which the backbones were first trained.

# %%
import pandas as pd
from IPython.display import display

comparison = published_flops.comparison(table.assign(MACs=counted["MACs"]))
assert comparison["reproduced"].all()
with pd.option_context("display.max_colwidth", None):
    display(comparison.round(3))

# %% [markdown]
# CLI equivalents:
#
# ```
# python -m hrank_ssd flops --net vgg16-ssd --compress_rate "[0.1]*7+[0.5]*9"            # exact, per layer
# python -m hrank_ssd flops --net vgg16-ssd --compress_rate "[0.1]*7+[0.5]*9" --style published  # the original's
# ```

# %% [markdown]
# ## What you learned / try next
#
# - MACs are the multiply-accumulates of one forward pass (FLOPs about twice as many). A convolution's MACs are
#   `k*k*c_in/groups * c_out * H * W` with `H x W` its output's size: each weight is used once per output
#   position, so a layer's cost follows its map size and its parameter count does not.
# - A whole network's count: a forward hook on every Conv2d, Linear and BatchNorm2d at every depth, one forward
#   pass of one image (on the meta device it costs nothing), the hooks removed afterwards.
# - Early layers on large maps hold few parameters and many MACs; late layers on small maps hold most parameters
#   and fewer MACs. Pruning a filter removes MACs in its own layer and in the next one (its input channel), so rates
#   that spare the early layers cut parameters much more than MACs, and MACs more than latency (notebook 08).
# - The original project's figures, reproduced with its rules, count only part of the detector (or another
#   network): compare MACs only when you know what was counted.
#
# Try next: `published_flops.print_published_table("vgg16-ssd", PRUNED_RATE)` prints the original's whole listing,
# layer by layer, and every reason it differs, with its numbers. Make a copy of your `count_macs` that adds up
# depthwise and pointwise convs apart and run it on `flops.build_for_counting("mb1-ssd", 21)`: where do
# MobileNetV1-SSD's MACs go? Count a
# pruned model with your own compress rate (`flops.build_for_counting("vgg16-ssd", 21, compress_rate=[...])`) and
# find the rate that halves the MACs with the fewest filters removed.
