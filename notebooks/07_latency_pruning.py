# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/hrank-ssd/hrank-ssd/blob/main/notebooks/07_latency_pruning.ipynb)
#
# # 7. Pruning for the clock: a latency table, a knapsack, and dead filters
#
# Notebook 02 chose how many filters each layer keeps with fixed rates and a MAC target. MACs are a proxy: this
# notebook measures what the widths cost on *this* machine and chooses them for a time budget instead. The two
# latency-pruned models it explains are already in the comparison: notebook 03 made and finetuned them on demand
# (with the same calls as below) and notebook 08 puts them on the mAP-latency frontier. Last, why L1-norm pruning
# did so badly in notebook 02's criteria table: dead filters.

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

print(recompute_note(course, "07_latency_pruning"))

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
# `latency_budget` of the unpruned forward (the profile's); notebook 08 puts them on the mAP-latency frontier.
#
# Move the slider: the table shows the widths chosen under that budget, the latency this machine's table
# predicts for them and their exact MACs, beside the unpruned model and the paper rate (the reference row).
# Without widgets the table is for `LATENCY_BUDGET`: edit it and re-run the cell. (The course's own model keeps
# the profile's `latency_budget`.)

# %%
import matplotlib.pyplot as plt
from IPython.display import display

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
    display(widgets.VBox([budget, shown]))
except ImportError:
    print("ipywidgets is not installed: edit LATENCY_BUDGET in the cell above and re-run it")

# %% [markdown]
# The course's two latency-pruned models (their widths are chosen now, pruned from the baseline with HRank's
# ranks; notebook 03 finetuned them):

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
# CLI equivalents:
#
# ```
# python -m hrank_ssd latency-table --net vgg16-ssd --width 0.125 --grid 6 --runs 5 --warmup 2 --rounds 1 --num_classes 6 \
#     --out work/offline/latency/table.json
# python -m hrank_ssd prune --base_net work/offline/models/vgg16-ssd.pth --rank_dir work/offline/ranks \
#     --latency_budget 0.55 --latency_table work/offline/latency/table.json --min_keep 0.25 \
#     --output work/offline/models/vgg16-ssd-lat-small-init.pth
# ```

# %% [markdown]
# ## What you learned / try next
#
# - MACs are not milliseconds: kernels work in channel blocks, so 57 of 64 filters cost about as much time as 64;
#   a latency budget chooses the widths on this machine's own latency table instead (HALP's idea, a knapsack).
# - A filter whose ReLU never fires is dead: HRank ranks it last, while L1 keeps it when its weights stayed large.
# - Try next: move the latency-budget slider to 0.3 and note which layers shrink first.
