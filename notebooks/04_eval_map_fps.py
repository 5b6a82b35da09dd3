# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/hrank-ssd/hrank-ssd/blob/main/notebooks/04_eval_map_fps.ipynb)
#
# # 4. mAP, per-class AP, and what pruning forgets
#
# **mAP** (VOC2007, 11-point): for each class, rank all detections by score, match each to an unmatched
# ground-truth box with IoU > 0.5, draw the precision/recall curve and average the precision at recall
# 0, 0.1, ..., 1; then average over classes. We evaluate the six models of the comparison on the same test set:
# VGG16-SSD, pruned at the paper rate, pruned for this machine's clock at the paper rate's MACs and at a smaller
# latency budget (notebook 07), MobileNetV1-SSD and MobileNetV1-SSD pruned with HRank; and yours, the rate you
# chose in notebook 02 and finetuned in notebook 03. Then we ask what pruning made the models forget. (How fast
# they run, and the mAP-latency frontier: notebook 08.)

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

print(recompute_note(course, "04_eval_map_fps"))

# %%
import matplotlib.pyplot as plt

from hrank_ssd.course import plots, published, report_tables

summary, per_class = course.evaluate()
summary.drop(columns="fair_epochs").assign(
    published_mAP_theirs=summary["model"].map(report_tables.PUBLISHED_MAP),
    published_predict_ms_theirs_T4=summary["model"].map(report_tables.PUBLISHED_PREDICT_MS))

# %% [markdown]
# `published_mAP_theirs` are the **original project's** figures on VOC2007 test, quoted for comparison;
# `published_predict_ms_theirs_T4` their evaluation's average predict time per image on a Colab T4.
# On the offline profile our numbers come from synthetic shapes and small models: compare the ranking of
# the models, not the values. (The latency-pruned and the pruned MobileNetV1-SSD models have no published
# figure.) `note` marks a model finetuned fewer epochs than the paper-rate model (offline: not a fair comparison,
# its mAP would rise with the same finetune) or, on VOC, much less than the original project (a short stand-in).

# %% [markdown]
# **What these numbers say.** Where a number above is surprising (a pruned model above its parent, a large drop,
# two models pruned within one MAC budget in an order the data seed decides, a MobileNetV1-SSD much further
# behind VGG16-SSD than in the published figures), a sentence below, written from this run's numbers
# (`hrank_ssd.course.explain`), says why; notebook 08 adds the ones about speed.

# %%
from hrank_ssd.course import results
from hrank_ssd.course.explain import explanations

for note in explanations(results.load_results(course.run_dir)):
    print("-", note, end="\n\n")

# %% [markdown]
# **Yours.** The rate you chose in notebook 02 (`work/<profile>/choice.json`), finetuned in notebook 03
# (`course.your_model()`), is evaluated above beside the paper-rate model, as `yours (<rate>)`, and stays in every
# table and plot of this notebook. At the profile's rate (offline) your model *is* the paper-rate model: the line
# below says so instead of repeating its row.

# %%
from hrank_ssd.course.report_sections import yours_line

yours = course.load_json("yours.json")
print(yours_line(yours))

# %%
plots.plot_per_class(per_class)
plt.show()
report_tables.per_class_pivot(per_class).round(4)

# %% [markdown]
# **Theirs, per class.** The original project's published per-class APs (VOC2007 test) of its three models, from
# `hrank_ssd.course.published` (the file names its source), with ours beside each where this run evaluated the same
# classes (the full profile); the last row is the mean, their mAP. And one fact from their T4 times:

# %%
print(published.slower_pruned_line())
theirs = report_tables.published_ap_table(per_class)
theirs.round(4)

# %%
mean = theirs.set_index("class").loc["mAP (mean)"]
for key, m in report_tables.PUBLISHED_MAP.items():  # their mAP is the mean of their per-class APs
    assert abs(mean[f"{report_tables.title(key)} (theirs)"] - m) <= 1e-12, key

# %% [markdown]
# One row per model: the classes that have objects in the test set, the ground-truth objects and the detections,
# the final recall and precision averaged over those classes, and the mAP (`results/per_class_ap.csv` holds every
# class of every model).

# %%
report_tables.per_model_summary(per_class).round(4)

# %% [markdown]
# Check: mAP is the mean of the per-class APs, and recall never exceeds 1.

# %%
for key in summary["model"]:
    table = per_class[per_class["model"] == key]
    assert abs(summary.set_index("model").loc[key, "mAP"] - table["ap"].dropna().mean()) < 1e-9
    # a perfect class's 11-point AP sums eleven 1/11 terms, as the devkit does: 1 within float rounding (1e-12)
    assert (table["recall"].dropna() <= 1).all() and (table["ap"].dropna() <= 1 + 1e-12).all()
print("evaluation checks passed")

# %% [markdown]
# ### Exercise: AP from a precision/recall list
#
# Rank one class's detections by score, and after each detection write down the precision (true positives so
# far / detections so far) and the recall (true positives so far / objects of the class). Write
# `voc07_ap(precision, recall)`: VOC2007's 11-point AP of such a list. For each recall point `t` in 0, 0.1, ...,
# 1.0 take the **highest** precision at any recall `>= t` (0 when the recall never gets there); the AP is the mean
# of the 11 values. The check compares your function with the project's (`evaluation.compute_ap`).

# %% tags=["exercise"]
def voc07_ap(precision, recall):
    """VOC2007's 11-point AP from the cumulative precision and recall lists of a ranked detection list."""
    # BEGIN SOLUTION
    ap = 0.0
    for t in [i / 10 for i in range(11)]:
        reached = [p for p, r in zip(precision, recall) if r >= t]
        ap += (max(reached) if reached else 0.0) / 11
    return ap
    # END SOLUTION


# %% tags=["check"]
from hrank_ssd.course import exercises

exercises.check_voc07_ap(voc07_ap);

# %% [markdown]
# **Your function on a real model.** The evaluation kept every detection it made (`det_test_<class>.txt` in the
# run's `eval/<model>` folder). Below, each class's detections of VGG16-SSD are ranked and matched again, and your
# `voc07_ap` turns each class's precision/recall list into its AP, beside the library's. Both add the same eleven
# numbers, each at most 1/11, so they agree within 1e-12 (float rounding stays far below it) unless a recall lands
# exactly on a recall point: the line below says which.

# %%
from hrank_ssd.course import forgetting
from hrank_ssd.course.measures import eval_dir

test_set = course.test_dataset()
curves = forgetting.class_curves(test_set, eval_dir(course, "vgg16-ssd"))
forgetting.student_ap_table(voc07_ap, curves, per_class[per_class["model"] == "vgg16-ssd"]).round(4)

# %% [markdown]
# ## What pruning forgets
#
# mAP is one number; pruning may cost little of it on average and much on a few classes or a few kinds of object.
# Hooker et al., "What do compressed deep neural networks forget?" (2019), asked this of pruned image classifiers;
# here we ask it of the detectors, comparing each pruned model with its **unpruned parent** (the VGG16-SSD models,
# yours included, with VGG16-SSD; the pruned MobileNetV1-SSD with MobileNetV1-SSD), from the detections the
# evaluation kept (nothing runs again).
#
# **Per class**: each pruned model's AP minus its parent's.

# %%
change = forgetting.ap_change(per_class)
plots.plot_ap_change(change)
plt.show()
print(forgetting.class_sentence(change, per_class))

# %% [markdown]
# **Per object size.** We cut the test set's objects into thirds by box area (small, medium, large), so that each
# size holds as many objects whatever the data (COCO's fixed 32² and 96² pixel limits were set for COCO's images,
# and the offline shapes have few objects that small). Matching follows the VOC devkit (IoU > 0.5, difficult
# objects ignored); for one size, objects of the other sizes are ignored as difficult ones are, and so are
# unmatched detections of another size (as COCO does). The table: each pruned model's mAP on that size minus its
# parent's.

# %%
sizes_bounds = forgetting.size_bounds(test_set)
sizes = forgetting.ap_by_size(test_set, {key: eval_dir(course, key) for key in summary["model"]}, sizes_bounds)
size_change = forgetting.size_change(sizes)
print(forgetting.size_sentence(sizes, size_change, sizes_bounds))
size_change.round(4)

# %% [markdown]
# **Objects the parent finds and the pruned model misses.** At the operating point (a detection counts at score
# 0.5 or more), VGG16-SSD matches an object that the pruned model (yours when it is another model than the paper
# rate's) does not: the parent's surest such finds, one per image. Green: the object; blue, dashed: the parent's
# detection; red, dotted: the pruned model's detections in that image.

# %%
pruned_key = yours.get("model") or "vgg16-ssd-pruned"
gallery = forgetting.forgotten(test_set, eval_dir(course, "vgg16-ssd"), eval_dir(course, pruned_key))
if len(gallery):
    images = [test_set.get_image(test_set.ids.index(i)) for i in gallery["image_id"]]
    plots.plot_gallery(images, gallery, report_tables.title("vgg16-ssd"), report_tables.title(pruned_key))
    plt.show()
else:
    print(f"{report_tables.title(pruned_key)} finds every object VGG16-SSD finds at score >= {forgetting.SCORE}")

# %% [markdown]
# CLI equivalent:
#
# ```
# python -m hrank_ssd eval --dataset work/offline/data/VOCdevkit/VOC2007 \
#     --trained_model work/offline/models/vgg16-ssd-pruned.pth --eval_dir eval_results/pruned
# ```

# %% [markdown]
# ## What you learned / try next
#
# - VOC2007's AP averages, at 11 recall points, the best precision reached at that recall or beyond; mAP is the
#   mean over the classes. On the offline data compare the models' ranking, not the values.
# - What pruning forgets: the AP change per class and per object size against the unpruned parent, and the
#   objects the parent finds that the pruned model misses, read from the detections the evaluation kept.
# - How fast the models run, and the mAP-latency frontier: notebook 08.
# - Try next: call your `voc07_ap` on a detector that finds every object but ranks two false detections first,
#   e.g. `precision = [0, 0, 1/3, 2/4, 3/5]`, `recall = [0, 0, 1/3, 2/3, 1]`: how much does the ranking cost?
