# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/hrank-ssd/hrank-ssd/blob/main/notebooks/01_rank_generation.ipynb)
#
# # 1. HRank: the rank of a feature map
#
# Pruning removes whole **filters** (output channels) of a convolution. Which ones? HRank's answer: a
# filter whose output feature maps have a **high matrix rank** carries more information, and the average
# rank of a filter's maps barely depends on which images you feed in. So a few batches of images are
# enough to score every filter, and the lowest-ranked filters go.

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

print(recompute_note(course, "01_rank_generation"))

# %% [markdown]
# ## Rank of a matrix, in two lines
#
# A feature map is an H x W matrix. Its **rank** is the number of linearly independent rows. An outer product
# (every row a multiple of one row) has rank 1; random noise has full rank; an all-zero map has rank 0. An
# all-zero map comes from a **dead** filter on that image: its output is negative everywhere, and the ReLU after it
# turns all of it into zeros.

# %%
import numpy as np

outer = torch.outer(torch.arange(1.0, 9.0), torch.linspace(-1, 1, 8))  # 8x8, every row a multiple of one
noise = torch.randn(8, 8, generator=torch.Generator().manual_seed(0))
zero = torch.zeros(8, 8)
print([int(torch.linalg.matrix_rank(m)) for m in (outer, noise, zero)])

# %% [markdown]
# How does `matrix_rank` count? With the **singular values** of the matrix (`torch.linalg.svdvals`, largest first):
# the rank is the number of nonzero ones. On paper the outer product has one nonzero singular value and seven
# zeros. In float32 arithmetic the seven come out small, but not zero:

# %%
print(torch.linalg.svdvals(outer))

# %% [markdown]
# So a rank computed in floats needs a **tolerance**: a singular value counts when it stands above rounding noise.
# `matrix_rank` counts the singular values above `max(H, W) · ε · σ_max`, where ε is float32's resolution
# (`torch.finfo(torch.float32).eps`, about 1.2e-7) and σ_max is the largest singular value *of that map*: the
# rounding noise grows with the map's values.
#
# ### Exercise: HRank's score, by hand
#
# HRank ranks every map of every filter on every image: hundreds of thousands of matrices, too many for a Python
# loop over them. Write the two functions below, run the cell, then run the check cell under it (it compares your
# functions with the library's answers on a few made-up maps and says what is wrong, with a hint):
#
# - `map_ranks(maps)`: `maps` holds the maps of B images and C filters, a (B, C, H, W) tensor; return the rank of
#   every (H, W) map, a (B, C) tensor, with no Python loop. `torch.linalg.svdvals(maps)` gives the singular values
#   of every map at once, shape (B, C, min(H, W)). Think about the shape each map's tolerance needs to be compared
#   with all of its singular values, and about what your code does with a dead map.
# - `average_rank(batches)`: HRank's **score** of a filter is its rank averaged over the images. The images come in
#   `batches`, one (B, C, H, W) tensor at a time, as a network produces them: you can go through `batches` once
#   (it is a generator: no `len()`, no second pass), and the last batch may hold fewer images. Return C numbers,
#   ranking the maps with your `map_ranks`.
#
# Further down, your `average_rank` makes one layer's rank file from the trained network's maps.

# %% tags=["exercise"]
def map_ranks(maps):
    """The rank of every (H, W) map of a (B, C, H, W) tensor: a (B, C) tensor, without a Python loop."""
    # BEGIN SOLUTION
    s = torch.linalg.svdvals(maps)  # (B, C, min(H, W)), largest first
    tol = max(maps.shape[-2:]) * torch.finfo(s.dtype).eps * s[..., :1]  # each map's own largest singular value
    return (s > tol).sum(-1)
    # END SOLUTION


def average_rank(batches):
    """Each filter's rank averaged over every image of ``batches`` (one pass over (B, C, H, W) tensors): C numbers."""
    # BEGIN SOLUTION
    total, images = 0, 0
    for maps in batches:
        total = total + map_ranks(maps).sum(0)
        images += maps.shape[0]
    return total / images
    # END SOLUTION


# %% tags=["check"]
from hrank_ssd.course import exercises

exercises.check_map_ranks(map_ranks)
exercises.check_average_rank(average_rank);

# %% [markdown]
# The library's `batched_ranks` does the same as your `map_ranks`, and gives the same ranks as HRank's original
# loop, one `matrix_rank` call per map (`ranks_one_at_a_time`). It skips the all-zero maps (rank 0, no SVD needed),
# and on a CPU it splits the maps over `torch.get_num_threads()` workers so that several cores share the SVDs.

# %%
from hrank_ssd.hrank import ranks as R

assert [int(torch.linalg.matrix_rank(m)) for m in (outer, noise, zero)] == [1, 8, 0]
maps = torch.relu(torch.randn(2, 6, 10, 10, generator=torch.Generator().manual_seed(1)))
maps[0, 0] = torch.outer(torch.rand(10), torch.rand(10))  # one low-rank map
assert torch.equal(R.batched_ranks(maps), R.ranks_one_at_a_time(maps))
print(R.batched_ranks(maps))

# %% [markdown]
# ## Feature maps of the trained VGG16-SSD
#
# A forward hook catches the output (after ReLU) of one conv layer for one test image. Left: the maps
# with the highest rank, right: the lowest. Low-rank maps are flat, blank or stripy: little information.

# %%
import matplotlib.pyplot as plt

from hrank_ssd.data.voc import TestTransform
from hrank_ssd.nets.models import layer_names, load_model
from hrank_ssd.nets.registry import get_net

model = load_model(course.baseline("vgg16-ssd")).eval()
LAYER = 4  # 0-based prunable layer: conv3_1
caught = {}
module = dict(model.named_modules())[get_net("vgg16-ssd").activation_key(LAYER)]
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

# %% [markdown]
# ## The rank files
#
# `Course.rank_dir()` averages every filter's rank over `rank_limit` batches of training images and
# writes `rank_conv{i}.npy` for the 14 prunable layers (conv1_1 ... conv5_3 and fc6; fc7 feeds the heads
# directly and is not pruned), the file names of the original HRank code. On the full profile
# `rank_dir()` gives the original project's published rank files (what its pruned model was made from);
# `rank_dir(generate=True)` computes your own, and the comparison below sets the two side by side. When the
# published files cannot be downloaded (Drive refuses the folder), `rank_dir()` says so once and gives your own
# instead: notebooks 01-04 go on with them, the report names the stand-in, and the comparison is empty.
#
# Check: one file per prunable layer, one value per filter, no rank above the map's size.

# %%
import pandas as pd

rank_dir = course.rank_dir()
files = sorted(rank_dir.glob("rank_conv*.npy"), key=lambda p: int(p.stem[len("rank_conv"):]))
print(rank_dir, [p.name for p in files])
ranks = [np.load(p) for p in files]
pd.DataFrame(R.rank_summary(ranks, "vgg16-ssd")).round(2)

# %%
assert len(ranks) == 14
for i, (r, channels) in enumerate(zip(ranks, model.plan.prunable)):
    assert r.shape == (channels,), (i, r.shape, channels)
    assert r.dtype == np.float32 and (r >= 0).all() and r.max() <= model.image_size
print("rank files look right")

fig, axes = plt.subplots(2, 7, figsize=(16, 4.5))
for ax, name, r in zip(axes.flat, layer_names("vgg16-ssd"), ranks):
    ax.hist(r, bins=20)
    ax.set_title(name, fontsize=9)
fig.suptitle("Average rank of each filter, per layer")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Your `average_rank` makes a rank file
#
# `rank_dir()` runs `rank_limit` batches of `rank_batch` training images through the network and averages every
# prunable layer's ranks. Your `average_rank` does the same here for one layer, the one whose feature maps are
# drawn above (`LAYER`), on the same images: `layer_maps` runs the network one batch at a time and hands your
# function that layer's maps (after ReLU) as they come. The result is set against the library's rank file of that layer, made
# from the same images (on the full profile that is your own rank folder, `rank_dir(generate=True)`: the
# published files came from other images).
#
# How close must the two be? Every rank is a whole number, and each value of the file is a mean over the same N
# images: two correct computations differ only by float rounding (sums of whole numbers are exact in float32, and
# the one division rounds by about 1e-5). One map ranked differently would move its filter's mean by 1/N. So the
# comparison allows half of that, 1/(2N): rounding passes, a real difference does not. When your function is not
# written yet, fails or differs, the library's file stands in and the cells below say so.
#
# Then the filters of that layer by their average rank, from the ranks your function made. A filter of average rank 0 is dead on
# every one of the N images: its maps were all zeros, so removing it changes nothing the next layer sees on them.

# %%
from hrank_ssd.hrank.ranks import image_batches


def layer_maps(model, layer, batches):
    """The (B, C, H, W) maps (after ReLU) of prunable layer ``layer`` (0-based), one batch of images at a time."""
    caught = []
    module = dict(model.named_modules())[get_net(model.cfg.name).activation_key(layer)]
    handle = module.register_forward_hook(lambda m, i, out: caught.append(out.detach()))
    try:
        for images in batches:
            with torch.no_grad():
                model(images.to(DEVICE))
            yield caught.pop()
    finally:
        handle.remove()


model = model.to(DEVICE)
name = layer_names("vgg16-ssd")[LAYER]
images = image_batches(course.trainval_dataset(model), course.profile.rank_batch, course.profile.rank_limit)
library_file = R.rank_file(course.rank_dir(generate=True), LAYER + 1)
layer_ranks, whose = exercises.compare_rank_file(average_rank, layer_maps(model, LAYER, images), library_file, name)

# %%
dead = int((layer_ranks == 0).sum())
fig, ax = plt.subplots(figsize=(7, 3))
ax.hist(layer_ranks, bins=20)
ax.set(xlabel="average rank", ylabel="filters", title=f"{name}: {len(layer_ranks)} filters, ranks: {whose}")
plt.show()
print(f"{dead} of {len(layer_ranks)} filters of {name} are dead on every rank image (average rank 0; ranks: {whose})")

# %% [markdown]
# ## Do the ranks depend on the images?
#
# HRank's central claim: a filter's average rank is a property of the filter, not of the images it is computed on,
# so a small batch of images is enough to rank the filters (that is why `rank_limit` is small). Test it:
# `Course.rank_stability()` computes the baseline's ranks on two disjoint sets of training images (A and B,
# `stability_images` each) and on only the first `stability_few` images of B, and compares them layer by layer:
#
# - **Spearman's rank correlation** of the two rank lists: 1 when both sets order the filters the same way, 0 when
#   the orders are unrelated (`hrank_ssd.hrank.stability.spearman`: the correlation of the filters' positions in
#   each list, ties averaged);
# - what pruning cares about: of the filters kept at the profile's compress rate, **how many would change**.
#
# A layer whose filters all have the same average rank (every map full rank, or all dead) has no order: its
# correlation is NaN, and nothing changes.
#
# **Question** (after the plot): in the first comparison (two disjoint image sets), which layer's ranks agree
# least between the two sets? Return its name as the plot labels it (e.g. `"conv1_1"`).

# %%
from IPython.display import display

from hrank_ssd.hrank.stability import plot_rank_stability

stability = course.rank_stability()  # writes results/rank_stability.csv
display(fig := plot_rank_stability(stability))
plt.close(fig)
for comparison, part in stability.groupby("comparison", sort=False):
    print(f"{comparison}: median Spearman {part['spearman'].median():.3f}; {part['changed'].sum()} of the "
          f"{part['kept'].sum()} kept filters change ({part['changed'].sum() / part['kept'].sum():.1%})")
stability.round(3)

# %% tags=["exercise", "question"]
def least_stable_layer():
    """The layer with the lowest Spearman correlation between the two disjoint image sets, read from the plot."""
    # BEGIN SOLUTION
    first = stability[stability["comparison"] == stability["comparison"].iloc[0]]
    return first.loc[first["spearman"].idxmin(), "name"]
    # END SOLUTION


# %% tags=["check"]
from hrank_ssd.course import questions

questions.check_least_stable(least_stable_layer, stability);

# %% [markdown]
# Check: the comparison on a toy, counted by hand. The same ranks correlate perfectly and change nothing; swapping
# the best and the worst of 8 filters changes exactly one of the 4 kept.
#
# The filters that change sit at the cut: their average ranks differ from the last kept filter's by less than the
# difference between two image sets. Far from the cut the order holds, which is what HRank relies on. The full
# profile (`PROFILE = "full"`) measures the same on VOC images with the original weights.

# %%
from hrank_ssd.hrank.stability import kept_change, spearman

toy = np.arange(8.0)
swapped = toy.copy()
swapped[[0, 7]] = swapped[[7, 0]]
assert abs(spearman(toy, toy) - 1) < 1e-12 and kept_change(toy, toy, 4) == 0
assert kept_change(toy, swapped, 4) == 1
assert ((stability["changed"] >= 0) & (stability["changed"] <= stability["kept"])).all()
print(f"toy: Spearman {spearman(toy, swapped):.3f} after the swap, 1 of the 4 kept filters changed")

# %% [markdown]
# ## Your ranks against the published ones (full profile)
#
# Ranks depend on the images and on the machine: a filter whose singular value sits right at the rank
# tolerance counts on one CPU and not on another (float rounding differs between AVX2, AVX-512 and GPUs),
# and the published ranks came from other images on another machine: the original project ranked VOC2012
# (`python HR_rank_generation.py --dataset VOCdevkit/VOC2012/`), the course ranks VOC2007 trainval, the only
# training set it downloads. What matters is the kept set: per layer, how many of the filters kept at this
# compress rate both rank files keep.

# %%
from IPython.display import display

if not course.profile.synthetic:
    display(course.rank_comparison().round(3))
else:
    print("offline profile: no published ranks to compare with (run with PROFILE='full')")

# %% [markdown]
# ## The same for MobileNetV1-SSD
#
# Nothing above is VGG-specific: the net's file (`lib/hrank_ssd/nets/mb1_ssd.py`) names the layers whose ReLU
# outputs are ranked. MobileNetV1-SSD's prunable layers are its first conv and the 13 pointwise (1x1) convs; a
# depthwise conv has no rank file of its own, because it keeps exactly its producer's filters when pruned. The
# course prunes it too (notebook 03) and puts it on the frontier (notebook 08).

# %%
mb1_ranks = course.rank_dir(net="mb1-ssd")  # computed here (no published ranks): work/<profile>/ranks-mb1-ssd
mb1 = [np.load(R.rank_file(mb1_ranks, i)) for i in range(1, len(layer_names("mb1-ssd")) + 1)]
pd.DataFrame(R.rank_summary(mb1, "mb1-ssd")).round(2)

# %% [markdown]
# ## What you learned / try next
#
# - A filter's HRank score is the matrix rank of its output maps (after ReLU), averaged over images: flat, blank
#   or stripy maps have low rank, a dead filter's all-zero map has rank 0.
# - In floats a rank counts the singular values above a tolerance that scales with each map's largest one; your
#   `map_ranks` and the library's `batched_ranks` rank a whole batch of maps in one call.
# - `Course.rank_dir()` writes one `rank_conv{i}.npy` per prunable layer, one average per filter (14 layers for
#   VGG16-SSD, MobileNetV1-SSD its own); your `average_rank` made one of them, equal up to float rounding.
# - Try next: set `LAYER = 0` (conv1_1) or `LAYER = 12` (conv5_3) in the feature-map cell and compare the highest
#   and lowest-rank maps: deep layers' maps are small (19x19 at 300 px), so their ranks are capped lower.
# - Try next: compute ranks from fewer images (`python -m hrank_ssd rank ... --limit 1 --rank_dir /tmp/r1`) and
#   compare each layer with `np.corrcoef(ranks[i], np.load(f"/tmp/r1/rank_conv{i + 1}.npy"))`: HRank's claim is
#   that the averages barely depend on which images you use.
#
# CLI equivalent (the original project's `HR_rank_generation.py`), offline:
#
# ```
# python -m hrank_ssd rank --dataset work/offline/data/VOCdevkit/VOC2007 \
#     --base_net work/offline/models/vgg16-ssd.pth --limit 4 --batch_size 16 --rank_dir work/offline/ranks
# python -m hrank_ssd rank --net mb1-ssd --dataset work/offline/data/VOCdevkit/VOC2007 \
#     --base_net work/offline/models/mb1-ssd.pth --limit 2 --batch_size 16 --rank_dir work/offline/ranks-mb1-ssd
# ```
#
# As the original project (`python HR_rank_generation.py --dataset VOCdevkit/VOC2012/`): on VOC2012, which the
# course itself never downloads:
#
# ```
# python data_scripts/download_voc.py --dest data --sets 2012-trainval
# python -m hrank_ssd download vgg16-ssd voc-labels --dest .
# python -m hrank_ssd rank --dataset data/VOCdevkit/VOC2012 --base_net models/vgg16-ssd-mp-0_7726.pth \
#     --label_file models/voc-model-labels.txt --limit 5 --batch_size 128 --rank_dir rank_conv/vgg-16-limitbatch5
# ```

