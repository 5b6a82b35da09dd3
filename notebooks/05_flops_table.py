# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/hrank-ssd/hrank-ssd/blob/main/notebooks/05_flops_table.ipynb)
#
# # 5. Parameters and MACs, exactly
#
# `hrank_ssd.measure.flops.count_exact` runs one 300x300 image through a detector with a hook on every Conv2d,
# BatchNorm2d and Linear and counts the multiply-accumulates (MACs) each one does; the sum is the whole
# detector (backbone, extras, heads), checked against `thop`. FLOPs are about 2 x MACs.
#
# The original HRank-SSD project printed smaller numbers. `published_flops.print_published_table` reproduces its table
# digit for digit with its counting rules, then lists every reason it differs from the exact count.

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

# %%
from hrank_ssd.measure import flops, published_flops
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
# ## Where the MACs come from
#
# A convolution with a `k x k` kernel reading `c_in` channels and writing `c_out` channels on an `H x W` map computes
# every one of its `c_out * H * W` outputs as a sum of `k * k * c_in` products, so
#
# `MACs = k * k * c_in * c_out * H * W`      and      `weights = k * k * c_in * c_out`.
#
# Each weight is therefore used `H * W` times per image: the MACs per weight are the map's size. A weight of
# conv1_2 (300x300 output) costs 90,000 MACs, a weight of conv5_3 (19x19) 361. VGG16 doubles the channels each time
# it halves the map, so `c_in * c_out` grows 4x while `H * W` shrinks 4x: conv1_2, conv2_2, conv3_x and conv4_x
# cost about the same MACs each (the table shows it), but the parameters pile up in the late, small maps.
# (MobileNetV1's depthwise convs have `groups = c_in`: `k * k * H * W` MACs per channel, and its 1x1 pointwise convs
# `c_in * c_out * H * W`, nine times fewer than a 3x3 conv's: that is why it is so much cheaper.) The table and the
# plot below lay out the full-size VGG16-SSD convolution by convolution.

# %%
import matplotlib.pyplot as plt

from hrank_ssd.measure.flops import mac_anatomy, plot_mac_anatomy

anatomy = mac_anatomy(flops.count_exact(flops.build_for_counting("vgg16-ssd", 21)))
plot_mac_anatomy(anatomy, "VGG16-SSD (300x300, 21 classes): share of MACs and of parameters per convolution")
plt.show()
early = anatomy["positions"] >= 75 * 75
print(f"the {int(early.sum())} convolutions writing maps of 75x75 or more do {anatomy.loc[early, 'MAC_share'].sum():.0%} "
      f"of the MACs with {anatomy.loc[early, 'param_share'].sum():.1%} of the parameters")
anatomy[["label", "kernel", "kernel_inputs", "out_channels", "out_h", "out_w", "MACs", "MACs_per_weight",
         "MAC_share", "param_share"]].round(4)

# %% [markdown]
# Check: every convolution's MACs are `k*k*c_in/groups * c_out * H * W`, i.e. each weight is used `H * W` times.

# %%
assert (anatomy["MACs"] == anatomy["kernel_inputs"] * anatomy["out_channels"] * anatomy["out_h"] * anatomy["out_w"]).all()
assert (anatomy["MACs_per_weight"] == anatomy["out_h"] * anatomy["out_w"]).all()

# %% [markdown]
# What it means for pruning: the paper rate `[0.1]*7+[0.5]*9` prunes the seven early layers (conv1_1 to conv3_3,
# on the large maps) by 10% only, because they are sensitive (notebook 02), and the late ones by half. Halving a
# late layer removes many parameters but few MACs; removing a tenth of an early one removes few parameters but
# many MACs. So the pruned model keeps a smaller share of its parameters than of its MACs:

# %%
pruned_row = table.loc[1]
print(f"{pruned_row['model']}: {pruned_row['params_ratio']:.0%} of the parameters, "
      f"{pruned_row['MACs_ratio']:.0%} of the MACs of VGG16-SSD")

# %% [markdown]
# ## The original table: VGG16-SSD, unpruned

# %%
published_flops.print_published_table("vgg16-ssd");

# %% [markdown]
# ## VGG16-SSD pruned with `[0.1]*7+[0.5]*9`

# %%
published_flops.print_published_table("vgg16-ssd", PRUNED_RATE);

# %% [markdown]
# ## MobileNetV1-SSD

# %%
published_flops.print_published_table("mb1-ssd");

# %% tags=["exercise"]
# Exercise: a conv's MACs. Write conv_macs: the multiply-accumulates of one Conv2d, from its input and output
# channels, kernel size k (k x k), output size out_h x out_w and groups (MobileNet's depthwise convs: groups =
# in_c = out_c). Run this cell, then the check under it (it compares with flops.conv_macs on VGG and MobileNet convs).
def conv_macs(in_c, out_c, k, out_h, out_w, groups=1):
    """MACs of one Conv2d with a k x k kernel."""
    # BEGIN SOLUTION
    return out_h * out_w * out_c * (in_c // groups) * k * k
    # END SOLUTION


# %% tags=["check"]
from hrank_ssd.course import exercises

exercises.check_conv_macs(conv_macs);

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
# - A convolution's MACs are `k*k*c_in/groups * c_out * H * W`: each weight is used once per output position, so a
#   layer's cost follows its map size and its parameter count does not. Early layers on large maps hold few
#   parameters and many MACs; late layers on small maps hold most parameters and fewer MACs.
# - Pruning a filter removes MACs in its own layer and in the next one (its input channel). Fixed rates that spare
#   the early layers therefore cut parameters much more than MACs, and MACs more than latency (notebook 04).
# - The exact count (every Conv2d, BatchNorm and Linear, heads included) against the original project's table,
#   reproduced with its rules, and every difference explained.
#
# Try next: `mac_anatomy(flops.count_exact(flops.build_for_counting("mb1-ssd", 21)))`: where do MobileNetV1-SSD's
# MACs go, depthwise or pointwise? Count a pruned model with your own compress rate
# (`flops.build_for_counting("vgg16-ssd", 21, compress_rate=[...])`) and find the rate that halves the MACs with
# the fewest filters removed.
