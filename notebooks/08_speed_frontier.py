# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/hrank-ssd/hrank-ssd/blob/main/notebooks/08_speed_frontier.ipynb)
#
# # 8. Speed: latency, FPS and the mAP-latency frontier
#
# Notebook 04 measured how accurate the models are; this one measures how fast they run on this machine, puts
# both on one plot (the frontier of the best trade-offs), explains the surprising numbers, and shows layer by
# layer why latency falls less than MACs. Last, the report gathers every result of the run.

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

print(recompute_note(course, "08_speed_frontier"))

# %%
import matplotlib.pyplot as plt

from hrank_ssd.course import plots, report_tables, results

if not course.result("map.csv").is_file():  # the frontier needs notebook 04's mAPs
    print("notebook 04's evaluation is not in this run's results: evaluating the models now")
    course.evaluate()
yours = course.load_json("yours.json") or {}  # notebook 04 recorded the student's model

# %% [markdown]
# ## Latency and FPS
#
# `Course.bench()` times the **full-size** detectors (300x300, 21 classes; random weights, since shapes
# decide speed) on this machine: warm-up runs first, the models interleaved, median and 90th percentile of
# many runs. *forward* is the network alone; *predict* adds resizing, box decoding and NMS.

# %%
bench = course.bench()
if yours.get("model") and yours["model"] not in set(bench["model"]):
    print(f"{report_tables.title(yours['model'])} has the paper rate's layers: at full size its speed is that row's")
bench.assign(model=bench["model"].map(report_tables.title)).round(3)

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
x = range(len(bench))
ax.bar([i - 0.2 for i in x], bench["mac_ratio"], 0.4, label="MACs: x fewer than VGG16-SSD")
ax.bar([i + 0.2 for i in x], bench["forward_speedup"], 0.4, label="forward: x faster than VGG16-SSD")
ax.set_xticks(list(x), bench["model"].map(report_tables.label), fontsize=8)
ax.set_yscale("log")
ax.legend(fontsize=8)
plt.show()

# %%
for _, r in bench.iloc[1:].iterrows():
    print(f"{report_tables.title(r['model'])}: {r['mac_ratio']:.2f}x fewer MACs, {r['forward_speedup']:.2f}x faster forward pass")
assert bench["forward_speedup"].iloc[0] == 1.0

# %% [markdown]
# ## The frontier: mAP against latency and MACs, on this machine
#
# `Course.bench()` above timed the full-size detectors. The six models (and yours) *as evaluated* (the profile's
# widths, trained here) are timed by `Course.frontier()` on this machine, interleaved, beside their exact MACs; the
# VGG16-SSDs also get the latency this machine's table predicted. A model is on the **Pareto frontier** when
# no other model is both cheaper (faster, or fewer MACs) and more accurate: the frontier is the set of best
# trade-offs, and pruning for the clock aims to push it left.

# %%
frontier = course.frontier()
table = report_tables.frontier_table(results.load_results(course.run_dir))
table.round(4)

# %%
plots.plot_frontier(table, report_tables.machine_title(course.load_json("frontier_machine.json")))
plt.show()

# %% [markdown]
# **Question.** Which models are on the latency frontier (left plot)? Return a list of them: keys such as
# `"vgg16-ssd"`, or the plot's labels.

# %% tags=["exercise", "question"]
def latency_frontier_models():
    """The models no other model beats on both forward latency and mAP, read from the plot."""
    # BEGIN SOLUTION
    return list(table.loc[table["frontier (latency)"], "model"])
    # END SOLUTION


# %% tags=["check"]
from hrank_ssd.course import questions

questions.check_frontier(latency_frontier_models, table);

# %% [markdown]
# Check: no model on the latency frontier is beaten by another on both axes, and every model off it is.

# %%
for _, r in table.iterrows():
    beaten = ((table["forward ms"] <= r["forward ms"]) & (table["mAP"] >= r["mAP"])
              & ((table["forward ms"] < r["forward ms"]) | (table["mAP"] > r["mAP"]))).any()
    assert beaten != r["frontier (latency)"], r["model"]
print(f"frontier checked: {int(table['frontier (latency)'].sum())} of the {len(table)} models are on it")

# %% [markdown]
# **What these numbers say.** Some numbers above may surprise you: a pruned model no faster than its parent, one
# that scores above it, a large drop, a prediction far from the measurement. Each sentence below is written from
# this run's numbers (`hrank_ssd.course.explain`) and appears only when its case holds.

# %%
from hrank_ssd.course.explain import explanations

for note in explanations(results.load_results(course.run_dir)):
    print("-", note, end="\n\n")

# %% [markdown]
# **Theirs, on their own axes.** The original project's published mAPs (VOC2007 test) belong to full-size
# detectors trained on real data: they are not comparable with our synthetic-data mAPs, so they get their own
# plot, against the exact MACs of the full-size detectors (computed, notebook 05).

# %%
plots.plot_published(report_tables.published_points(course.flops()))
plt.show()

# %% [markdown]
# ## Why latency falls less than MACs
#
# Removing filters removes multiply-adds, but a forward pass costs more than multiply-adds: reading and
# writing every feature map, the parts that were not pruned (fc7, extras, the detection heads) and the
# post-processing. MobileNetV1 shows the extreme case: depthwise convolutions do very few MACs per byte they
# move, so twenty times fewer MACs buy only a few times the speed.
#
# For the pruned VGG16-SSD there is a sharper reason, visible layer by layer. CPU (and GPU) convolution
# kernels process channels in fixed blocks - 16 floats per AVX-512 register - so a layer with 57 channels
# costs about as much as one with 64. HRank's `[0.1]*7+...` keeps 57, 115 and 230 of 64, 128 and 256
# filters in conv1_1 ... conv3_3: those layers lose a fifth of their MACs but hardly any time, and they run
# at the largest resolutions. Below, every layer of both full-size models is timed with hooks (CPU, random
# weights), next to its MACs.

# %%
layers, groups, ceiling = course.layer_speed()
groups.round(2)

# %%
from hrank_ssd.measure.layer_times import conv_speedups
from hrank_ssd.nets.registry import get_net

readable = get_net("vgg16-ssd").module_label  # base_net.0 -> conv1_1, ...
conv = conv_speedups(layers)
conv = conv[conv["full/pruned MACs"] > 1]  # the layers pruning touched
x = range(len(conv))
fig, ax = plt.subplots(figsize=(9, 3))
ax.bar([i - 0.2 for i in x], conv["full/pruned MACs"], 0.4, label="MACs: full / pruned")
ax.bar([i + 0.2 for i in x], conv["full/pruned time"], 0.4, label="time: full / pruned")
ax.axhline(1, color="grey", lw=0.8)
ax.set_xticks(list(x), [readable(n) or n for n in conv["name"]], rotation=60, fontsize=7)
ax.set_ylabel("x less in the pruned model")
ax.legend(fontsize=8)
plt.show()
print(f"Measured: the pruned model's layers take {ceiling['measured_speedup']:.2f}x less time than the full "
      f"ones. If time fell exactly with MACs in every group it would be {ceiling['mac_proportional_speedup']:.2f}x.")

# %% [markdown]
# Check: the per-layer MACs add up to the whole model's count (notebook 5 explains the counter). The lesson
# for pruning: choose kept counts on the hardware's block boundaries (multiples of 16 here) or prune the
# early layers harder; `benchmarks/bench_inference_options.md` times each pruning group and layout.

# %%
from hrank_ssd.measure.flops import macs
from hrank_ssd.nets.models import build_model

full_macs = macs(build_model("vgg16-ssd", 21))
assert abs(layers["full_MMACs"].sum() * 1e6 - full_macs) <= 1e-6 * full_macs

# %% [markdown]
# ## The report
#
# Notebook 06 wrote the run's report (`report.md` and `report.html` in the run folder); it is written again here,
# with the speed and frontier tables of this notebook and the latency models of notebook 07.

# %%
from hrank_ssd.course.report import write_report

report_md, report_html = write_report(course.run_dir)
print("report:", report_md, "and", report_html)

# %% [markdown]
# CLI equivalent:
#
# ```
# python -m hrank_ssd bench --nets vgg16-ssd,vgg16-ssd-pruned,mb1-ssd --compress_rate "[0.1]*7+[0.5]*9" \
#     --warmup 5 --runs 20
# ```

# %% [markdown]
# ## What you learned / try next
#
# - Latency is measured, not computed: warm-up, interleaved models, median of many runs; the forward pass and the
#   whole prediction (with decoding and NMS) are different numbers.
# - The Pareto frontier keeps the models no other model beats on both cost and mAP; latency falls less than MACs
#   because of channel blocks, memory traffic and the layers pruning leaves alone.
# - The report gathers every result of the run into `report.md` and `report.html`.
# - Try next: in the per-layer chart, find the layers whose time barely moved although their MACs fell, and
#   compare their kept counts with multiples of 16.
