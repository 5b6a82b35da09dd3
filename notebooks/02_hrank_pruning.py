# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/hrank-ssd/hrank-ssd/blob/main/notebooks/02_hrank_pruning.ipynb)
#
# # 2. HRank pruning: which filters, which layers, how many, and the surgery
#
# A **compress rate** says, per prunable layer, which fraction of its filters to remove. The original
# project writes it as `"[0.1]*7+[0.5]*9"`: the first 7 layers lose 10%, the rest 50% (entries past the
# 14th are ignored). A layer with `c` filters keeps `int(c * (1 - rate))` of them: the highest-ranked.
#
# **Physical pruning** means the network really gets smaller: a conv that keeps 57 of 64 filters becomes a
# conv with 57 output channels, and the next conv (and BatchNorm, and the detection heads that read this
# layer) loses the matching input channels. Nothing is masked; the weights are copied into a smaller model.
#
# In this notebook **your code is the pipeline**: your sensitivity scan draws the sensitivity plot, your
# `top_filters` chooses the filters every layer keeps, your `prune_pair` cuts the layers, and notebook 03
# finetunes the model they made at the rate you choose for a target. (Pruning for a CPU's clock, with a latency
# table and a knapsack, is notebook 07.)

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

print(recompute_note(course, "02_hrank_pruning"))

# %% [markdown]
# ## Single weights or whole filters?
#
# HRank removes whole filters. The other classic way is **fine-grained** (unstructured) pruning: set the
# smallest-magnitude weights to zero, wherever they are (Han et al. 2015; MIT efficientml.ai Lab 1). It can choose
# every weight freely, so at the same sparsity it usually loses less accuracy. But the tensors keep their shapes,
# and a dense convolution multiplies by zero as fast as by any other number: the model is no faster (sparse
# kernels pay off only at far higher sparsity, or on hardware built for it). `Course.fine_grained()` zeroes, in
# every weight tensor of the baseline, exactly as many of its smallest weights as HRank's filter pruning at the
# profile's rate removes from that tensor, then evaluates the three models on the same test images (no finetuning)
# and times their forward passes round-robin. Both pruned models take away the same number of weights; the
# fine-grained one still does every MAC (multiply-accumulate) of the unpruned model, the filter-pruned one fewer.
#
# **Question** (after the plot): both pruned models removed the same number of weights. Which runs faster:
# `"fine-grained"` or `"filters"`?

# %%
import matplotlib.pyplot as plt
from IPython.display import display

from hrank_ssd.measure.fine_grained import plot_fine_grained

fine = course.fine_grained()  # writes results/fine_grained.csv
display(fig := plot_fine_grained(fine))
plt.close(fig)
by = fine.set_index("model")
assert by.loc["fine-grained (magnitude)", "pruned_weights"] == by.loc["filters (HRank)", "pruned_weights"]
assert by.loc["fine-grained (magnitude)", "GMACs"] == by.loc["unpruned", "GMACs"] > by.loc["filters (HRank)", "GMACs"]
fine.round(4)

# %% tags=["exercise", "question"]
def faster_pruning():
    """The faster of the two pruned models at the same sparsity, read from the plot's speed bars."""
    # BEGIN SOLUTION
    speed = fine.set_index("model")["speedup"]
    return "filters" if speed["filters (HRank)"] > speed["fine-grained (magnitude)"] else "fine-grained"
    # END SOLUTION


# %% tags=["check"]
from hrank_ssd.course import questions

questions.check_faster_pruning(faster_pruning, fine);

# %% [markdown]
# ## Which filters? Your `top_filters`
#
# HRank scores each filter by the average rank of its feature maps (notebook 01's rank files) and keeps the
# `keep` filters of highest score. Rank files are full of **ties**: each score is an average of whole numbers over
# a few images, so many filters share one. The rule, HRank's: among equal scores the filter of **higher index** is
# kept (a stable sort from lowest to highest score keeps the last `keep`). Write `top_filters(scores, keep)`: the
# indices of the kept filters (`scores`: a NumPy array, one value per filter). Your function then chooses the
# filters of every layer of the model you prune below.

# %% tags=["exercise"]
def top_filters(scores, keep):
    """The indices of the ``keep`` highest ``scores``; among equal scores the higher index is kept."""
    # BEGIN SOLUTION
    import numpy as np

    return sorted(int(i) for i in np.argsort(scores, kind="stable")[len(scores) - keep:])
    # END SOLUTION


# %% tags=["check"]
from hrank_ssd.course import exercises

exercises.check_top_filters(top_filters);

# %% [markdown]
# ### Does the criterion matter? HRank vs L1-norm vs random
#
# Same compress rate, three ways to pick the filters: highest average rank (HRank), largest weight
# L1-norm, or at random. Measured right after pruning and, when the profile allows, after the same short
# finetuning. (Why L1 does so badly on the offline models: dead filters, in notebook 07.)
#
# **Question** (after the plot): which criterion keeps the highest mAP right after pruning, before any
# finetuning? Return `"hrank"`, `"l1"` or `"random"`.

# %%
from hrank_ssd.measure import sensitivity

crit = course.criteria()
sensitivity.plot_criteria(crit)
plt.show()
crit

# %% tags=["exercise", "question"]
def best_criterion():
    """The criterion with the highest mAP right after pruning, read from the plot."""
    # BEGIN SOLUTION
    return crit.loc[crit["map_pruned"].idxmax(), "criterion"]
    # END SOLUTION


# %% tags=["check"]
questions.check_best_criterion(best_criterion, crit);

# %% [markdown]
# ## Which layers can lose filters? Your sensitivity scan
#
# Prune **one** layer at a time at a given rate, evaluate without finetuning, and compare with the unpruned mAP.
# Write the scan: `sensitivity_scan(layers, rates, prune_one, evaluate)` returns one row per layer and rate, a dict
# `{"layer": ..., "rate": ..., "map": ...}` (or a DataFrame of those columns). `prune_one(layer, rate)` gives the
# trained model with only that layer pruned; `evaluate(model)` its mAP on a few test images. The check runs your
# loop on stand-in functions; then your scan runs for real over the profile's layers and rates, and its table is
# the course's sensitivity table (the plot below and the report's; the unpruned model's mAP is added as rate 0, the
# dashed line). Flat curves: that layer can be pruned hard. Steep: spare it. (Offline the data set and models are
# small, so the curves are noisy; the method is the point.)
#
# **Question** (after the plot): at the largest rate the scan tried, pruning which layer alone costs the most
# quick mAP? Return its name as the legend shows it.

# %% tags=["exercise"]
def sensitivity_scan(layers, rates, prune_one, evaluate):
    """mAP after pruning one layer at a time: one row (layer, rate, map) per layer and rate."""
    # BEGIN SOLUTION
    return [{"layer": layer, "rate": rate, "map": evaluate(prune_one(layer, rate))}
            for layer in layers for rate in rates]
    # END SOLUTION


# %% tags=["check"]
from hrank_ssd.course import student

student.check_sensitivity_scan(sensitivity_scan);

# %%
sens = course.scan_sensitivity(sensitivity_scan)  # writes results/sensitivity.csv
sensitivity.plot_sensitivity(sens)
plt.show()

# %% tags=["exercise", "question"]
def most_sensitive_layer():
    """The layer whose curve ends lowest at the largest scanned rate."""
    # BEGIN SOLUTION
    at = sens[sens["rate"] == sens["rate"].max()]
    return at.loc[at["map"].idxmin(), "name"]
    # END SOLUTION


# %% tags=["check"]
questions.check_most_sensitive(most_sensitive_layer, sens);

# %% [markdown]
# ## Your rate: meet the target
#
# Choose one rate per VGG stage so that the pruned model, **before finetuning**, meets the target printed below:
# at least that share of the MACs cut, and at most that loss of quick mAP (the mAP on a few test images,
# `quick_map_images`; mAP is defined in notebook 00). The paper's rate `[0.1]*7+[0.5]*9` misses it offline: it
# spares the early layers, which run at the largest maps and hold most MACs. Read the sensitivity curves: push the
# flat layers hard, spare the steep ones. They are this run's: the offline models are trained on your CPU, and
# float rounding that differs between processors compounds over training, so another machine's model (and the
# rates that meet the target on it) can differ. `plan(stage_rates)` shows the kept filters, parameters and MACs of a
# choice (of the full-size detector: 300x300, 21 classes) in no time; the check prunes your choice with HRank's
# ranks, measures its quick mAP and says whether it meets the target and why.

# %%
import pandas as pd

from hrank_ssd.measure import flops
from hrank_ssd.nets.models import build_model, count_parameters, layer_names
from hrank_ssd.nets.registry import get_net

VGG = get_net("vgg16-ssd")  # everything the library knows about the net: lib/hrank_ssd/nets/vgg16_ssd.py
print(f"target: at least {course.profile.target_mac_cut:.0%} of the MACs cut, at most "
      f"{course.profile.target_map_drop:.2f} quick mAP lost before finetuning; stages {dict(VGG.stages)}")
full = build_model("vgg16-ssd", 21)
full_macs = flops.totals(flops.count_exact(full))["MACs"]


def plan(stage_rates):
    rates = VGG.stage_rates(stage_rates)
    pruned = build_model("vgg16-ssd", 21, compress_rate=rates)
    macs = flops.totals(flops.count_exact(pruned))["MACs"]
    print(f"params {count_parameters(pruned):,} ({count_parameters(pruned) / count_parameters(full):.1%}), "
          f"MACs {macs / 1e9:.2f} G ({1 - macs / full_macs:.1%} cut)")
    return pd.DataFrame({"layer": layer_names("vgg16-ssd"), "rate": rates, "filters": full.plan.prunable,
                         "kept": pruned.plan.prunable}).set_index("layer").T


plan({"conv1": 0.1, "conv2": 0.1, "conv3": 0.1, "conv4": 0.5, "conv5": 0.5, "fc6": 0.5})  # the paper's rate

# %% tags=["exercise"]
def your_stage_rates():
    """One compress rate per stage (conv1 ... conv5, fc6) that meets the target."""
    # BEGIN SOLUTION
    # choices read from sensitivity curves (prune where they stay flat), the one that lost least first; the
    # curves differ from one run to another, so each is tried on this run's model and the first that meets the
    # target is kept
    from hrank_ssd.course import student

    choices = [{"conv1": 0.3, "conv2": 0.4, "conv3": 0.5, "conv4": 0.3, "conv5": 0.2, "fc6": 0.2},
               {"conv1": 0.3, "conv2": 0.4, "conv3": 0.5, "conv4": 0.4, "conv5": 0.1, "fc6": 0.1},
               {"conv1": 0.2, "conv2": 0.5, "conv3": 0.5, "conv4": 0.3, "conv5": 0.1, "fc6": 0.1},
               {"conv1": 0.2, "conv2": 0.5, "conv3": 0.5, "conv4": 0.4, "conv5": 0.1, "fc6": 0.1}]
    for choice in choices:
        if student.target(course, course.try_compress_rate(VGG.stage_rates(choice))).startswith("met"):
            return choice
    return choices[-1]
    # END SOLUTION


# %% tags=["check"]
from hrank_ssd.course import student

MY_RATE = student.check_target(course, your_stage_rates) or list(course.profile.compress_rate)

# %% [markdown]
# ## The surgery: your `prune_pair`
#
# Write `prune_pair(conv, bn, next_conv, keep)`: a conv keeps only the filters `keep` (a tensor of indices), so
# its weight loses output channels (dim 0) and its bias the same entries; the BatchNorm normalising its output, when
# there is one (`bn` may be None), keeps the same entries of its weight, bias, running mean and running variance;
# the next conv loses the matching **input** channels (dim 1 of its weight). Return the three layers
# `(conv, bn, next_conv)`, new or changed. The check compares your block with the original whose removed filters
# are zeroed (the pruned block must compute exactly that).

# %% tags=["exercise"]
def prune_pair(conv, bn, next_conv, keep):
    """``conv`` cut to the filters ``keep``, its BatchNorm (or None) to the same channels, ``next_conv``'s inputs."""
    # BEGIN SOLUTION
    import copy

    conv, next_conv = copy.deepcopy(conv), copy.deepcopy(next_conv)
    with torch.no_grad():
        conv.weight = torch.nn.Parameter(conv.weight[keep].clone())
        conv.bias = torch.nn.Parameter(conv.bias[keep].clone())
        conv.out_channels = len(keep)
        next_conv.weight = torch.nn.Parameter(next_conv.weight[:, keep].clone())
        next_conv.in_channels = len(keep)
        if bn is not None:
            bn = copy.deepcopy(bn)
            bn.weight, bn.bias = (torch.nn.Parameter(t[keep].clone()) for t in (bn.weight, bn.bias))
            bn.running_mean, bn.running_var = bn.running_mean[keep].clone(), bn.running_var[keep].clone()
            bn.num_features = len(keep)
    return conv, bn, next_conv
    # END SOLUTION


# %% tags=["check"]
from hrank_ssd.course import student

student.check_prune_pair(prune_pair);

# %% [markdown]
# Now prune the trained VGG16-SSD at your rate with **your** functions: `top_filters` chooses every layer's filters
# from the rank files, `prune_pair` cuts each backbone conv, the BatchNorm on conv4_3 and the next conv (the detection
# heads that read a pruned layer are cut by the library). The result is compared with the library's
# (`pruning.prune_model`): where yours agrees it is the model saved and recorded for notebook 03
# (`work/<profile>/models/vgg16-ssd-pruned-<rate>-yours.pth`; its sidecar `.json` says which of your functions made
# it); where it does not, one line says why and the library's is used. The table lists every parameter that
# changed shape. Last, a check: the small model computes what the original computes with the removed filters zeroed
# (`pruning.masked_copy`). Pruning itself changes nothing but the size; accuracy drops only because those filters'
# outputs are gone, which is what finetuning repairs.

# %%
from hrank_ssd.hrank import pruning
from hrank_ssd.nets.compress import format_compress_rate
from hrank_ssd.nets.models import load_model, read_sidecar

yours = course.prune_yours(MY_RATE, top_filters, prune_pair)
print(yours.summary())
baseline = load_model(course.baseline("vgg16-ssd")).eval()
pruned, kept = load_model(yours.path).eval(), read_sidecar(yours.path)["kept_indices"]
print(f"{count_parameters(baseline):,} -> {count_parameters(pruned):,} parameters; notebook 03 finetunes "
      f"{format_compress_rate(course.chosen_compress_rate()[0])}")
display(pd.DataFrame(pruning.describe_surgery(baseline, pruned)))
masked = pruning.masked_copy(baseline, kept).eval()
x = torch.randn(2, 3, baseline.image_size, baseline.image_size, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    (c1, l1), (c2, l2) = pruned(x), masked(x)
assert torch.allclose(c1, c2, atol=1e-4, rtol=1e-4) and torch.allclose(l1, l2, atol=1e-4, rtol=1e-4)
print("pruned == masked original; max difference", float((c1 - c2).abs().max()))

# %% [markdown]
# With widgets: move a slider per stage (the table of kept filters, parameters and MACs follows), then press the
# button to check the target and prune with your functions for notebook 03. Without widgets, edit
# `your_stage_rates` and re-run the cells from its check on.

# %%
try:
    import ipywidgets as widgets

    first, start = {}, 0  # each stage's slider starts at your rate's value for its first layer
    for stage, count in VGG.stages:
        first[stage], start = MY_RATE[start], start + count
    sliders = {s: widgets.FloatSlider(value=r, min=0.0, max=0.9, step=0.05, description=s, continuous_update=False)
               for s, r in first.items()}
    use_it = widgets.Button(description="check the target, prune with my functions", layout={"width": "auto"})
    shapes, verdict = widgets.Output(), widgets.Output()

    def show_plan(_=None):
        with shapes:
            shapes.clear_output(wait=True)
            display(plan({s: w.value for s, w in sliders.items()}))

    def prune_and_choose(_=None):
        with verdict:
            verdict.clear_output(wait=True)
            rate = student.check_target(course, lambda: {s: w.value for s, w in sliders.items()})
            if rate is not None:
                print(course.prune_yours(rate, top_filters, prune_pair).summary())

    for w in sliders.values():
        w.observe(show_plan, names="value")
    use_it.on_click(prune_and_choose)
    display(widgets.VBox([widgets.HBox(list(sliders.values())[:3]), widgets.HBox(list(sliders.values())[3:]),
                          shapes, use_it, verdict]))
except ImportError:
    print("ipywidgets is not installed: edit your_stage_rates and re-run the cells from its check on")

# %% [markdown]
# ## What you learned / try next
#
# - Fine-grained pruning zeroes weights but keeps every MAC; filter pruning removes MACs, so it can run faster.
# - HRank keeps each layer's highest-ranked filters (ties: the higher index); L1 norms and random choice lose more.
# - Sensitivity (one layer at a time) shows which layers can lose filters; a rate that prunes the flat layers hard
#   meets a MAC target that the paper's rate misses.
# - Pruning a filter cuts its conv's output, its BatchNorm's entries and the next conv's input; the smaller model
#   computes exactly what the masked original computes. The model notebook 03 finetunes was made by your functions.
# - Try next: `course.suggested_rate(sens)` lets the scan choose a rate for the paper rate's MAC cut; set `conv1`
#   to 0.75 in the sliders and see how much of the MACs the two 300x300 layers hold.
#
# CLI equivalents:
#
# ```
# python -m hrank_ssd flops --net vgg16-ssd --compress_rate "[0.1]*7+[0.5]*9"
# python -m hrank_ssd prune --base_net work/offline/models/vgg16-ssd.pth --rank_dir work/offline/ranks \
#     --compress_rate "[0.1]*7+[0.5]*9" --criterion hrank --output work/offline/models/vgg16-ssd-pruned-0.1x7_0.5x7.pth
# python -m hrank_ssd sensitivity --dataset work/offline/data/VOCdevkit/VOC2007 \
#     --trained_model work/offline/models/vgg16-ssd.pth --rank_dir work/offline/ranks --layers 1,4,7,10,13,14 \
#     --rates 0.3,0.6,0.9 --target_mac_reduction 0.5
# ```
