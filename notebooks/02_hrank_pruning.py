# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/hrank-ssd/hrank-ssd/blob/main/notebooks/02_hrank_pruning.ipynb)
#
# # 2. HRank pruning: rates, surgery, latency budgets, sensitivity, criteria
#
# A **compress rate** says, per prunable layer, which fraction of its filters to remove. The original
# project writes it as `"[0.1]*7+[0.5]*9"`: the first 7 layers lose 10%, the rest 50% (entries past the
# 14th are ignored). A layer with `c` filters keeps `int(c * (1 - rate))` of them: the highest-ranked.
#
# **Physical pruning** means the network really gets smaller: a conv that keeps 57 of 64 filters becomes a
# conv with 57 output channels, and the next conv (and BatchNorm, and the detection heads that read this
# layer) loses the matching input channels. Nothing is masked; the weights are copied into a smaller model.

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
# ## Choosing the compress rate
#
# One rate per VGG stage: the table shows the parameters, MACs (multiply-accumulates, of the full-size detector:
# 300x300, 21 classes) and the kept filters of the rates in `STAGE_RATES`, the paper's. After the sensitivity scan
# below you choose *your own* rate with a slider per stage, prune with it, estimate its mAP, and notebook 03
# finetunes it.

# %%
import pandas as pd

from hrank_ssd.measure import flops
from hrank_ssd.nets.models import build_model, count_parameters, layer_names
from hrank_ssd.nets.registry import get_net

VGG = get_net("vgg16-ssd")  # everything the library knows about the net: lib/hrank_ssd/nets/vgg16_ssd.py
STAGES = dict(VGG.stages)  # prunable layers per stage: {"conv1": 2, "conv2": 2, "conv3": 3, ...}
STAGE_RATES = {"conv1": 0.1, "conv2": 0.1, "conv3": 0.1, "conv4": 0.5, "conv5": 0.5, "fc6": 0.5}  # = [0.1]*7+[0.5]*9
full = build_model("vgg16-ssd", 21)
full_macs = flops.totals(flops.count_exact(full))["MACs"]


def plan(stage_rates):
    rates = VGG.stage_rates(stage_rates)
    pruned = build_model("vgg16-ssd", 21, compress_rate=rates)
    macs = flops.totals(flops.count_exact(pruned))["MACs"]
    print(f"params {count_parameters(pruned):,} ({count_parameters(pruned) / count_parameters(full):.1%}), "
          f"MACs {macs / 1e9:.2f} G ({macs / full_macs:.1%} of {full_macs / 1e9:.2f} G)")
    return pd.DataFrame({"layer": layer_names("vgg16-ssd"), "rate": rates, "filters": full.plan.prunable,
                         "kept": pruned.plan.prunable})


plan(STAGE_RATES)

# %% [markdown]
# Check: the MAC count of a conv is `out_h * out_w * out_channels * in_channels * k_h * k_w`. The first
# conv of the pruned model keeps `int(64 * 0.9) = 57` filters, so its weight has shape [57, 3, 3, 3].

# %%
from hrank_ssd.nets.compress import PRUNED_RATE, format_compress_rate

paper = build_model("vgg16-ssd", 21, compress_rate=PRUNED_RATE)
assert list(paper.base_net[0].weight.shape) == [57, 3, 3, 3]
assert list(paper.base_net[2].weight.shape) == [57, 57, 3, 3]  # conv1_2 lost output AND input channels
rows = flops.count_exact(paper)
conv1_1 = rows.iloc[0]
assert conv1_1["MACs"] == flops.conv_macs(3, 57, 3, 300, 300) == 300 * 300 * 57 * 3 * 3 * 3
print(conv1_1[["label", "in_channels", "out_channels", "kernel", "out_h", "out_w", "MACs"]].to_dict())

# %% [markdown]
# ### Exercise: which filters a layer keeps
#
# Write the two functions below, run the cell, then the check cell under it:
#
# - `kept_count(channels, rate)`: how many of a layer's `channels` filters it keeps at compress `rate`, HRank's
#   rule `int(c * (1 - rate))`, and never fewer than one (conv1_1: 64 filters at 0.1 keep 57);
# - `top_filters(scores, keep)`: the indices of the `keep` filters of highest score (`scores`: one average rank
#   per filter, a NumPy array as in a rank file), in any order. Hint: `np.argsort`.

# %% tags=["exercise"]
def kept_count(channels, rate):
    """How many of a layer's ``channels`` filters it keeps at compress ``rate`` (at least one)."""
    # BEGIN SOLUTION
    return max(1, int(channels * (1 - rate)))
    # END SOLUTION


def top_filters(scores, keep):
    """The indices of the ``keep`` highest ``scores``."""
    # BEGIN SOLUTION
    import numpy as np

    return sorted(int(i) for i in np.argsort(scores)[len(scores) - keep:])
    # END SOLUTION


# %% tags=["check"]
from hrank_ssd.course import exercises

exercises.check_kept_count(kept_count)
exercises.check_top_filters(top_filters);

# %% [markdown]
# ## The surgery, layer by layer
#
# HRank keeps the highest-ranked filters of the trained baseline (`rank_dir` from notebook 1). Every
# parameter whose shape changes is listed: convs lose output filters, the next conv loses input channels,
# biases and the conv4_3 BatchNorm follow, and the detection heads reading conv4_3 and fc7 lose inputs.

# %%
from hrank_ssd.hrank import pruning
from hrank_ssd.nets.models import load_model, read_sidecar

baseline = load_model(course.baseline("vgg16-ssd")).eval()
pruned_path = course.prune()  # the profile's rate, saved once as work/<profile>/models/vgg16-ssd-pruned-<rate>.pth
pruned, kept = load_model(pruned_path), read_sidecar(pruned_path)["kept_indices"]
print(f"compress rate {format_compress_rate(course.profile.compress_rate)}: {count_parameters(baseline):,} -> "
      f"{count_parameters(pruned):,} parameters ({pruned_path.name})")
pd.DataFrame(pruning.describe_surgery(baseline, pruned))

# %% [markdown]
# Check: the small model computes exactly what the original computes with the removed filters
# zeroed out (`pruning.masked_copy`). Pruning itself changes nothing but the size; accuracy drops only
# because those filters' outputs are gone, which is what finetuning repairs.

# %%
masked = pruning.masked_copy(baseline, kept).eval()
x = torch.randn(2, 3, baseline.image_size, baseline.image_size, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    (c1, l1), (c2, l2) = pruned.eval()(x), masked(x)
assert torch.allclose(c1, c2, atol=1e-4, rtol=1e-4) and torch.allclose(l1, l2, atol=1e-4, rtol=1e-4)
print("pruned == masked original; max difference", float((c1 - c2).abs().max()))

# %% [markdown]
# ## Why fixed rates do not make a CPU fast: pruning for the clock
#
# MACs are not milliseconds. CPU convolution kernels process channels in blocks (16 floats per AVX-512
# register, 8 with AVX2; a GPU works in warps of 32), so a conv that keeps 57 of 64 filters does 11% fewer
# multiply-adds but runs about as long as with 64: the block is paid in full. The paper rate `[0.1]*7+...`
# keeps exactly such counts (57, 115, 230) in the early layers, which run at the largest resolutions and hold
# most of the time; pools, memory traffic and the unpruned heads do not shrink with MACs either. The paper rate
# cuts the full-size VGG16-SSD's MACs 1.71x but its CPU forward far less, while widths chosen on a latency table at
# the same MACs run about twice as fast (measured ratios: `benchmarks/latency_frontier.md`; the measurement:
# `docs/latency.md`).
#
# So the widths must be chosen *for the hardware*: a **latency table** times every layer of the net (conv +
# BatchNorm + ReLU + pool, inside whole models) on a grid of kept counts on *this* machine, and a knapsack
# keeps, per layer, the count of largest summed HRank importance whose predicted forward time fits a budget
# (a **knapsack** problem: choose items, here one width per layer, of greatest total value within a total cost;
# solved by dynamic programming over discretised costs). This is the idea of **HALP** (Hardware-Aware Latency
# Pruning, Shen et al., NeurIPS 2022) on HRank's ranks; `docs/pruning-budgets.md`. Every layer keeps at least `min_keep` of its
# filters. The course prunes two such models: one within the paper rate's exact MACs (the fastest widths that keep
# 93% of the most importance those MACs allow: both constraints inside one knapsack), and one at
# `latency_budget` of the unpruned forward (the profile's); notebook 04 puts them on the mAP-latency frontier.
#
# Move the slider: the table shows the widths chosen under that budget, the latency this machine's table
# predicts for them and their exact MACs, beside the unpruned model and the paper rate (the reference row).
# Without widgets the table is for `LATENCY_BUDGET`: edit it and re-run the cell. (The course's own model keeps
# the profile's `latency_budget`.)

# %%
table = course.latency_table()  # measured here once (seconds offline), then reused from work/<profile>/latency/
print(f"latency table: {table.net} at width {table.width:g}, {table.image_size}px, {table.threads} threads on "
      f"{table.machine['device_name']}: unpruned forward {table.full_ms:.2f} ms")
LATENCY_BUDGET = course.profile.latency_budget  # a fraction of the unpruned model's predicted forward
course.budget_table(LATENCY_BUDGET).round(3)

# %%
try:
    import ipywidgets as widgets
    from IPython.display import display

    budget = widgets.FloatSlider(value=LATENCY_BUDGET, min=0.2, max=1.0, step=0.05, description="latency budget",
                                 continuous_update=False, style={"description_width": "initial"})
    shown = widgets.Output()

    def show_budget(_=None):
        with shown:
            shown.clear_output(wait=True)
            display(course.budget_table(budget.value).round(3))  # a budget too small: a note says the least one

    budget.observe(show_budget, names="value")  # the table for the starting value is the cell above's
    display(widgets.VBox([budget, shown]))  # (no redraw while the cell runs: headless runs hang on it)
except ImportError:
    print("ipywidgets is not installed: edit LATENCY_BUDGET in the cell above and re-run it")

# %% [markdown]
# The course's two latency-pruned models (their widths are chosen now, pruned from the baseline with HRank's
# ranks; notebook 03 finetunes them):

# %%
chosen = course.latency_models()
chosen.round(3)

# %% [markdown]
# Check: each latency-pruned model's predicted cost fits the budget it was chosen under (the knapsack rounds
# costs up, never down), and the paper-MACs model never has more MACs than the paper rate. (A `note` says when a
# fallback was needed: e.g. a table measured on a busy machine, whose times barely follow the counts.)

# %%
chosen = chosen.set_index("pruning")
for key in ("vgg16-ssd-lat-paper-macs", "vgg16-ssd-lat-small"):
    row = chosen.loc[key]
    cost = row["predicted ms"] if row["budget unit"] == "ms" else row["MMACs"] * 1e6
    assert cost <= row["budget"] * (1 + 1e-9), (key, cost, row["budget"])
    print(key, "|", row["chosen by"], "|", row["note"] or "no fallback")
assert chosen.loc["vgg16-ssd-lat-paper-macs", "MMACs"] <= chosen.loc["vgg16-ssd-pruned", "MMACs"]
print(f"paper-MACs widths: {chosen.loc['vgg16-ssd-lat-paper-macs', 'MMACs']:.1f} MMACs <= paper rate "
      f"{chosen.loc['vgg16-ssd-pruned', 'MMACs']:.1f} MMACs")

# %% [markdown]
# ## Which layers can lose filters? Sensitivity
#
# Prune **one** layer at a time at a given rate, evaluate without finetuning, and compare with the
# unpruned mAP (dashed). Flat curves: that layer can be pruned hard. Steep: spare it. (Offline the data
# set and models are small, so the curves are noisy; the method is the point.)

# %%
import matplotlib.pyplot as plt

from hrank_ssd.measure import sensitivity

sens = course.sensitivity()
sensitivity.plot_sensitivity(sens)
plt.show()
sens.pivot_table(index="rate", columns="name", values="map").round(4)

# %% [markdown]
# **Question.** At the largest rate the scan tried, pruning which layer alone costs the most quick mAP? Return its
# name as the legend shows it.

# %% tags=["exercise", "question"]
def most_sensitive_layer():
    """The layer whose curve ends lowest at the largest scanned rate."""
    # BEGIN SOLUTION
    at = sens[sens["rate"] == sens["rate"].max()]
    return at.loc[at["map"].idxmin(), "name"]
    # END SOLUTION


# %% tags=["check"]
from hrank_ssd.course import questions

questions.check_most_sensitive(most_sensitive_layer, sens);

# %% [markdown]
# The scan can choose a rate by itself (`suggest_compress_rate`, also the `sensitivity` command's
# `--target_mac_reduction`): allow a growing mAP drop, give every scanned layer the largest rate whose drop stays
# within it, and stop at the smallest drop whose rates remove as many MACs as the target. Here the target is the
# paper rate's MAC cut; the table tries both rates the same way (pruned with HRank's ranks, no finetuning, mAP on
# `quick_map_images` test images). Layers the scan skipped stay unpruned in the suggestion, so it must cut the
# scanned ones harder: scan every layer (`sensitivity_layers`) for a fairer answer.

# %%
suggestion = course.suggested_rate(sens)
suggestion.round(4)

# %% [markdown]
# ## Your rate: prune it, estimate it, finetune it in notebook 03
#
# `course.try_compress_rate(rate)` prunes the trained VGG16-SSD with HRank's ranks at `rate` (`course.prune(rate)`:
# saved once as `work/<profile>/models/vgg16-ssd-pruned-<rate>.pth`, reused by every later call) and measures it
# without finetuning: the kept filters, parameters, MACs (of this profile's model) and a quick mAP on a handful of
# test images. `course.choose_compress_rate(rate)` records the rate and its pruned file in
# `work/<profile>/choice.json`: **notebook 03 finetunes the rate chosen last**. The cell below does both for
# `STAGE_RATES` (the paper's unless you change it).

# %%
MY_RATE = VGG.stage_rates(STAGE_RATES)  # one rate per stage -> one per prunable layer
trial = course.try_compress_rate(MY_RATE)
print(trial.summary())
print("notebook 03 will finetune", course.choose_compress_rate(MY_RATE))
trial.layers.set_index("layer").T

# %% [markdown]
# With widgets: move the sliders (the table of kept filters, parameters and MACs follows), then press the button to
# prune at that rate, estimate its mAP (a few seconds) and record it for notebook 03. Without widgets, edit
# `STAGE_RATES` and re-run the cells from the first table on.

# %%
try:
    import ipywidgets as widgets
    from IPython.display import display

    sliders = {s: widgets.FloatSlider(value=r, min=0.0, max=0.9, step=0.05, description=s, continuous_update=False)
               for s, r in STAGE_RATES.items()}
    use_it = widgets.Button(description="prune, estimate mAP, use in notebook 03", layout={"width": "auto"})
    shapes, estimate = widgets.Output(), widgets.Output()

    def stage_values():
        return {s: w.value for s, w in sliders.items()}

    def show_plan(_=None):
        with shapes:
            shapes.clear_output(wait=True)
            display(plan(stage_values()).T)

    def prune_and_choose(_=None):
        global trial  # the check below looks at the rate tried last
        with estimate:
            estimate.clear_output(wait=True)
            rates = VGG.stage_rates(stage_values())
            trial = course.try_compress_rate(rates)
            print(trial.summary())
            print("notebook 03 will finetune", course.choose_compress_rate(rates))

    for w in sliders.values():
        w.observe(show_plan, names="value")
    use_it.on_click(prune_and_choose)
    # nothing is drawn while this cell runs (headless runs hang on it): the cells above show the starting rate
    display(widgets.VBox([widgets.HBox(list(sliders.values())[:3]), widgets.HBox(list(sliders.values())[3:]),
                          shapes, use_it, estimate]))
except ImportError:
    print("ipywidgets is not installed: edit STAGE_RATES in the first table's cell and re-run the cells from there")

# %% [markdown]
# Check: the rate notebook 03 will finetune is the one recorded last, and every layer of the pruned model keeps
# `int(c * (1 - rate))` of its `c` filters.

# %%
chosen, source = course.chosen_compress_rate()
assert chosen == trial.layers["rate"].tolist() and source.startswith("chosen in notebook 02"), (chosen, source)
print("notebook 03 finetunes", format_compress_rate(chosen), "|", source)
assert (trial.layers["kept"] == [max(1, int(c * (1 - r))) for c, r in zip(trial.layers["filters"],
                                                                           trial.layers["rate"])]).all()

# %% [markdown]
# ## Does the criterion matter? HRank vs L1-norm vs random
#
# Same compress rate, three ways to pick the filters: highest average rank (HRank), largest weight
# L1-norm, or at random. Measured right after pruning and, when the profile allows, after the same short
# finetuning.

# %%
crit = course.criteria()
sensitivity.plot_criteria(crit)
plt.show()
crit

# %% [markdown]
# **Question.** Which criterion keeps the highest mAP right after pruning, before any finetuning? Return
# `"hrank"`, `"l1"` or `"random"`.

# %% tags=["exercise", "question"]
def best_criterion():
    """The criterion with the highest mAP right after pruning, read from the plot."""
    # BEGIN SOLUTION
    return crit.loc[crit["map_pruned"].idxmax(), "criterion"]
    # END SOLUTION


# %% tags=["check"]
questions.check_best_criterion(best_criterion, crit);

# %% [markdown]
# ## Why L1 loses so badly here
#
# On the offline models HRank beats L1 by far right after pruning, much more than papers report on real data. The
# reason is in how these small models were trained. A filter whose ReLU output is zero on nearly every image is
# dead: its average rank is near 0, and HRank drops it first. Its weights get no gradient (a ReLU that never fires
# passes none back), so they stay as large as they were initialised: Adam without weight decay (the offline
# profile's optimizer) never shrinks them. L1 looks only at the weights, so it keeps such dead filters and drops
# working ones instead. `Course.dead_filters()` counts, per layer, the near-dead filters (average rank below 1) and
# how many of them each criterion keeps at the profile's compress rate.

# %%
from IPython.display import display

from hrank_ssd.hrank.stability import plot_dead_filters

dead = course.dead_filters()  # writes results/dead_filters.csv
display(fig := plot_dead_filters(dead))
plt.close(fig)
print(f"L1 keeps {dead['l1_keeps_dead'].sum()} near-dead filters among the {dead['kept'].sum()} it keeps, HRank "
      f"{dead['hrank_keeps_dead'].sum()}; where a layer has near-dead filters, their weights' L1 norm is "
      f"{dead['dead_l1_ratio'].median():.2f}x the working filters' (median over those layers)")
dead

# %% [markdown]
# Check: HRank keeps a near-dead filter only where a layer keeps more filters than it has working ones (every
# near-dead filter ranks below every working one), and then exactly the difference.

# %%
working = dead["filters"] - dead["near_dead"]
assert (dead["hrank_keeps_dead"] == (dead["kept"] - working).clip(lower=0)).all()
assert (dead["l1_keeps_dead"] <= dead[["near_dead", "kept"]].min(axis=1)).all()

# %% [markdown]
# What to expect on real weights: the original VGG16-SSD was trained with SGD and weight decay (`5e-4`), which pulls
# the weights of a filter that never fires towards zero, so L1 drops it too and the two criteria choose much more
# alike; the literature reports HRank ahead of L1 by small margins, not by the gap seen here. The full profile
# (`PROFILE = "full"`) computes this same table for the published weights and ranks.

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
# and times their forward passes round-robin.

# %%
from IPython.display import display

from hrank_ssd.measure.fine_grained import plot_fine_grained

fine = course.fine_grained()  # writes results/fine_grained.csv
display(fig := plot_fine_grained(fine))
plt.close(fig)
fine.round(4)

# %% [markdown]
# **Question.** Both pruned models removed the same number of weights. Which runs faster: `"fine-grained"` or
# `"filters"`?

# %% tags=["exercise", "question"]
def faster_pruning():
    """The faster of the two pruned models at the same sparsity, read from the plot's speed bars."""
    # BEGIN SOLUTION
    speed = fine.set_index("model")["speedup"]
    return "filters" if speed["filters (HRank)"] > speed["fine-grained (magnitude)"] else "fine-grained"
    # END SOLUTION


# %% tags=["check"]
questions.check_faster_pruning(faster_pruning, fine);

# %% [markdown]
# Check: both pruned models take away the same number of weights; the fine-grained one still does every MAC of
# the unpruned model (its zeros are multiplied too), the filter-pruned one fewer.

# %%
by = fine.set_index("model")
assert by.loc["fine-grained (magnitude)", "pruned_weights"] == by.loc["filters (HRank)", "pruned_weights"]
assert by.loc["fine-grained (magnitude)", "GMACs"] == by.loc["unpruned", "GMACs"] > by.loc["filters (HRank)", "GMACs"]
print(f"same sparsity ({by.loc['filters (HRank)', 'sparsity']:.1%} of the weights): fine-grained runs at "
      f"{by.loc['fine-grained (magnitude)', 'speedup']:.2f}x, filter pruning at {by.loc['filters (HRank)', 'speedup']:.2f}x "
      f"the unpruned model's speed")

# %% [markdown]
# CLI equivalents:
#
# ```
# python -m hrank_ssd flops --net vgg16-ssd --compress_rate "[0.1]*7+[0.5]*9"
# python -m hrank_ssd prune --base_net work/offline/models/vgg16-ssd.pth --rank_dir work/offline/ranks \
#     --compress_rate "[0.1]*7+[0.5]*9" --criterion hrank --output work/offline/models/vgg16-ssd-pruned-0.1x7_0.5x7.pth
# python -m hrank_ssd sensitivity --dataset work/offline/data/VOCdevkit/VOC2007 \
#     --trained_model work/offline/models/vgg16-ssd.pth --rank_dir work/offline/ranks --layers 1,4,7,10,13,14 \
#     --rates 0.3,0.6,0.9 --target_mac_reduction 0.5
# python -m hrank_ssd latency-table --net vgg16-ssd --width 0.125 --grid 6 --runs 5 --warmup 2 --rounds 1 --num_classes 6 \
#     --out work/offline/latency/table.json
# python -m hrank_ssd prune --base_net work/offline/models/vgg16-ssd.pth --rank_dir work/offline/ranks \
#     --latency_budget 0.55 --latency_table work/offline/latency/table.json --min_keep 0.25 \
#     --output work/offline/models/vgg16-ssd-lat-small-init.pth
# ```

# %% [markdown]
# ## What you learned / try next
#
# - A layer with `c` filters keeps `int(c * (1 - rate))` of them, its highest-ranked; pruning copies them into a
#   smaller model (the next layer loses the matching input channels) that computes exactly what the masked
#   original computes.
# - MACs are not milliseconds: kernels work in channel blocks, so 57 of 64 filters cost about as much time as 64;
#   a latency budget chooses the widths on this machine's own latency table instead.
# - Sensitivity (one layer at a time) shows which layers can lose filters; the criteria table compares HRank's
#   ranks with L1 norms and random choice at the same rate.
# - The sensitivity scan can suggest a rate for a MAC target; `try_compress_rate` prunes and estimates any rate in
#   seconds, and the rate you choose here is the one notebook 03 finetunes.
# - Try next: set `STAGE_RATES["conv1"] = 0.75` (16 of 64 filters kept) in the first table's cell and see how much
#   of the MACs the two 300x300 layers hold; move the latency-budget slider to 0.3 and note which layers shrink
#   first.
# - Try next: choose the scan's suggestion (`course.choose_compress_rate(suggestion.loc["suggested by the scan",
#   "compress_rate"])`), or press the slider's button with harder conv4/conv5 rates, then run notebook 03 and
#   compare its finetuned mAP with the paper rate's in notebook 04.
