# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/hrank-ssd/hrank-ssd/blob/main/notebooks/03_finetune.ipynb)
#
# # 3. Finetuning the pruned detector
#
# Right after pruning, the detector has lost the outputs of the removed filters and its mAP drops. The
# remaining weights are still a very good starting point, so a short training run (**finetuning**, small
# learning rate) recovers most of the accuracy. The original project finetuned its pruned VGG16-SSD on VOC2012
# for many GPU epochs; its settings and its published mAP are printed below (`hrank_ssd.course.published`).
#
# How small a learning rate? Below the baseline's starting rate, so the finetune keeps what the baseline learned,
# and high enough that a few epochs take the pruned model most of the way back (`finetune_lr`). At a tenth of it,
# how far two offline epochs get depends on the data seed, and comparing two pruned models would compare the seeds
# more than the pruning. The gap left to the baseline is what the pruned filters cost.

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

print(recompute_note(course, "03_finetune"))

# %%
import pandas as pd

from hrank_ssd.nets.compress import format_compress_rate
from hrank_ssd.nets.models import count_parameters, load_model, read_sidecar

rate, source = course.chosen_compress_rate()  # notebook 02's choice, else the profile's rate
init = course.prune(rate)  # made in notebook 02 when you chose it: work/<profile>/models/vgg16-ssd-pruned-<rate>.pth
info = read_sidecar(init)
print(f"finetuning {format_compress_rate(rate)} ({source})\n{init} | criterion {info.get('criterion')}")

# %% [markdown]
# `course.finetune_choice()` trains the model pruned at the rate chosen in notebook 02 (the profile's when none
# was chosen; at the profile's rate it is also the comparison's paper-rate model, trained once for both). The pruned
# weights are the starting point; every epoch is logged: train and validation loss (regression + classification) and, every few epochs, mAP. While it runs,
# the cell below redraws the training loss of every step in place (`LiveLossCurve`, a training hook), and the
# per-epoch curves are also written to `work/<profile>/checkpoints/<model>/curves.png`. When the model was
# already trained (a re-run), nothing is trained again and the curve stays empty: the logged curves follow.

# %% [markdown]
# On the **full** profile the original project's GPU epochs are out of reach in a notebook: the published pruned
# model stands in for them (notebooks 04-08 evaluate it), and you finetune *your own* pruned model for a short,
# stated budget: `student_finetune_epochs` of VOC2007 trainval at `short_finetune_lr`, meant to keep this notebook
# within about an hour on a Colab GPU. The cell prints
# both budgets; a finetune much shorter than theirs is marked a *short stand-in*, here and in notebook 04's tables.
# Re-running the cell resumes it.

# %%
from hrank_ssd.course.models import fair_epochs
from hrank_ssd.course.published import published_finetune
from hrank_ssd.course.report_tables import PUBLISHED_MAP, finetune_note
from hrank_ssd.data.voc import VOCDataset
from hrank_ssd.errors import HRankError
from hrank_ssd.train.logs import LiveLossCurve

p, theirs = course.profile, published_finetune()
epochs = p.student_finetune_epochs or p.finetune_epochs
images = len(VOCDataset(course.dataset_root(), split="trainval", class_names=course.class_names()))
print(f"the original project: {theirs['num_epochs']} epochs of {theirs['dataset']} at lr {theirs['lr']:g}, batch "
      f"{theirs['batch_size']}: mAP {PUBLISHED_MAP['vgg16-ssd-pruned']:.4f} (theirs, VOC2007 test; unpruned "
      f"{PUBLISHED_MAP['vgg16-ssd']:.4f})")
print(f"yours: {epochs} epoch(s) of {images} training images ({epochs * -(-images // p.batch_size)} steps at batch "
      f"{p.batch_size}) at lr {p.finetune_lr_for(epochs):g}. {finetune_note(epochs, fair_epochs(p))}")
if course.profile.use_published_pruned and not course.profile.synthetic:
    try:
        published = course.finetune("vgg16-ssd-pruned")
        print(f"published pruned model: {published} ({read_sidecar(published).get('compress_rate', 'rate not recorded')}),"
              f" published mAP {PUBLISHED_MAP['vgg16-ssd-pruned']:.4f} (theirs, VOC2007 test, {theirs['num_epochs']} "
              "epochs)")
    except HRankError as e:  # e.g. Drive over quota: the course goes on with your own finetuned model
        print(f"published pruned model unavailable: {e}\nnotebooks 04-08 will use yours (below); retry later with "
              "`python -m hrank_ssd download vgg16-ssd-hrank`")
finetuned = course.finetune_choice(hooks=LiveLossCurve(every=5, title="your finetuning"))
print(f"your finetuned model: {finetuned} ({epochs} epochs)")
log = pd.read_csv(course.log_file(finetuned))
log

# %%
from IPython.display import Image, display

from hrank_ssd.train.logs import plot_curves

(course.run_dir / "plots").mkdir(parents=True, exist_ok=True)
display(Image(filename=str(plot_curves(course.log_file(finetuned),
                                       course.run_dir / "plots" / f"loss_{finetuned.stem}.png"))))

# %% [markdown]
# Check: finetuning changes the weights, never the shapes: the finetuned model has the pruned plan, the one of the
# rate chosen in notebook 02.

# %%
a, b = load_model(init), load_model(finetuned)
assert a.plan.base == b.plan.base and count_parameters(a) == count_parameters(b)
assert b.plan.prunable == [max(1, int(c * (1 - r))) for c, r in zip(load_model(course.baseline()).plan.prunable,
                                                                    rate)], "not the rate chosen in notebook 02"
assert any(not torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
print(f"{count_parameters(b):,} parameters, plan {b.plan.prunable}")

# %% [markdown]
# ## The other pruned models of the comparison
#
# Notebook 04 compares six models. Three more pruned ones are finetuned here (each resumable, each logged like
# the one above): VGG16-SSD pruned for this machine's clock at the paper rate's MACs, finetuned **exactly** as the
# paper-rate model (same epochs, same learning rate: their mAPs are compared); VGG16-SSD at the smaller latency
# budget; and MobileNetV1-SSD pruned with its own HRank ranks (`mb1_compress_rate`). The last two get
# `small_finetune_epochs` (offline: as many as the paper-rate model, a fair comparison; full: as many as yours).
# *note* marks, offline, a finetune shorter than the paper-rate model's (not a fair comparison) and, on VOC, one
# much shorter than the original project's (a short stand-in for it).

# %%
from hrank_ssd.course.models import FINETUNED

extra = {key: course.finetune(key) for key in FINETUNED if key != "vgg16-ssd-pruned"}  # course.models.MODELS
pd.DataFrame([{"model": key, "finetune epochs": course.model_epochs(key), "checkpoint": str(path),
               "parameters": count_parameters(load_model(path)),
               "note": finetune_note(course.model_epochs(key), fair_epochs(p))} for key, path in extra.items()])

# %% [markdown]
# ## Beyond the original: distillation
#
# **Distillation** trains a model, the *student* (here the pruned one), to reproduce the outputs of another, the
# *teacher* (here the unpruned one). For every prior the teacher's class scores become extra targets in the
# MultiBox loss (`--distill_from`): they say not only which class the box holds but how much it looks like each of
# the others. Dividing the scores by a **temperature** `T` > 1 before the softmax flattens those probabilities, so
# that the teacher's second choices weigh in. Same finetuning budget, with and without the teacher; whichever wins
# on this data is what the table shows.

# %%
kd = course.distillation()
kd

# %% [markdown]
# ### Exercise: the distillation term
#
# The distance between the teacher's probabilities `q` and the student's `p` (both over the classes of one prior) is
# the **Kullback-Leibler divergence** `KL(q ‖ p) = Σ q · log(q / p)`, summed over the classes: 0 when the two agree,
# larger the more the student puts its probability where the teacher does not. Softening with `T` shrinks the
# gradients of this term by `1 / T²`; multiplying it by `T²` keeps them as large as those of the loss on the true
# labels, whatever `T` is (Hinton et al., 2015).
#
# Write `distillation_loss(student, teacher, T)`: `student` and `teacher` are the two models' class scores for the
# same priors (tensors of shape priors x classes, before any softmax). Return one number,
# `T² · Σ KL(softmax(teacher / T) ‖ softmax(student / T))`, summed over the priors. Run the cell, then the check.

# %% tags=["exercise"]
def distillation_loss(student, teacher, T):
    """Summed T^2 * KL(softmax(teacher / T) || softmax(student / T)) over the priors (rows)."""
    # BEGIN SOLUTION
    log_p = torch.log_softmax(student / T, dim=-1)
    log_q = torch.log_softmax(teacher / T, dim=-1)
    return (log_q.exp() * (log_q - log_p)).sum() * T * T
    # END SOLUTION


# %% tags=["check"]
from hrank_ssd.course import exercises

exercises.check_distillation_loss(distillation_loss);

# %% [markdown]
# ## Disconnected? Resume
#
# Training writes a checkpoint `model_best.pth-<epoch>.tar` into its checkpoint folder after every epoch
# (atomically: a crash never leaves half a file). It holds the model, the optimiser, the scheduler, the
# random-number state, the epoch and (with `checkpoint_every_steps`) the step within it, so `resume="auto"`
# continues from the newest one exactly where it stopped. `Course` always trains with `resume="auto"`: just re-run
# the cell. On Colab set `USE_DRIVE = True` in the first cell so the checkpoints live on Google Drive and survive a
# disconnected runtime.
#
# See it happen: `course.resume_lesson()` finetunes the pruned model for two short epochs on a few training images
# twice, once straight through and once **stopped in the middle of the second epoch** (an exception stands for the
# lost runtime) and then resumed from its newest checkpoint. It returns every step's training loss of both runs.

# %%
import matplotlib.pyplot as plt
from IPython.display import display

from hrank_ssd.train.resume_check import plot_resume

resume = course.resume_lesson()  # writes results/resume.csv; seconds offline
display(fig := plot_resume(resume))
plt.close(fig)
resume

# %% [markdown]
# Check: the resumed run continues at the step after the stop, and both runs see the same loss at every step and
# end with the same weights. On a CPU the numbers are identical (the same operations in the same order give the
# same bits); a GPU may add gradients in a varying order, so there they agree to `resume_tolerance` (1e-3).

# %%
from hrank_ssd.train.resume_check import resume_tolerance

stopped = resume["stopped"].notna()
assert stopped.any() and resume["resumed"].notna().sum() == len(resume) - stopped.sum()
ran, tol = resume["stopped"].fillna(resume["resumed"]), resume_tolerance(DEVICE)
assert ((ran - resume["straight"]).abs() <= tol * resume["straight"].abs()).all(), resume
assert resume.attrs["weight_diff"] <= tol
print(f"stopped after step {stopped.sum()} of {len(resume)}, resumed: the same loss at every step, "
      f"largest weight difference {resume.attrs['weight_diff']:.1g}")

# %% [markdown]
# The same finetuning from the command line, as the original project ran it: on VOC2012 alone, which the course
# itself never downloads (its full profile finetunes on VOC2007 trainval). Their command (`published_finetune()`
# quotes it) was `python train_ssd_prune_eval.py --datasets VOCdevkit/VOC2012/ --validation_dataset
# VOCdevkit/VOC2007-test/ --base_net models/vgg16-ssd-mp-0_7726.pth --batch_size 8 --num_epochs 120 --lr 1e-5
# --scheduler cosine --label_file models/voc-model-labels.txt --compress_rate [0.1]*7+[0.5]*9`; here:
#
# ```
# python data_scripts/download_voc.py --dest data --sets 2012-trainval,2007-test
# python -m hrank_ssd download vgg16-ssd voc-labels vgg16-ssd-ranks --dest .
# python -m hrank_ssd train --datasets data/VOCdevkit/VOC2012 --validation_dataset data/VOCdevkit/VOC2007-test \
#     --net vgg16-ssd --base_net models/vgg16-ssd-mp-0_7726.pth --label_file models/voc-model-labels.txt \
#     --rank_dir models/rank_conv/vgg-16-limitbatch5 --compress_rate "[0.1]*7+[0.5]*9" --criterion hrank \
#     --batch_size 8 --num_epochs 120 --lr 1e-5 --scheduler cosine \
#     --checkpoint_folder /content/drive/MyDrive/hrank-ssd/checkpoints/vgg16-ssd-pruned --resume auto
# ```
#
# Run it again after a disconnect and it picks up at the last finished epoch (`--checkpoint_every_steps N`
# also saves inside an epoch; `--max_images N` trains on the first N images only, for quick trials like the one
# above).

# %% [markdown]
# ## What you learned / try next
#
# - Finetuning starts from the pruned weights with a small learning rate and recovers most of the mAP pruning
#   lost; it changes the weights, never the shapes.
# - Every epoch ends in a complete checkpoint (model, optimiser, scheduler, random state): `resume="auto"`
#   continues exactly where a disconnected run stopped; the resume lesson showed the same loss at every step.
# - The rate you chose in notebook 02 is the one finetuned here.
# - Distillation adds the unpruned model's softened class scores as targets, `T²`-scaled.
# - Try next: interrupt the kernel during `course.finetune_choice(...)` and run the cell again: training resumes
#   from the last `model_best.pth-<epoch>.tar` in `work/<profile>/checkpoints/`.
# - Try next: call your `distillation_loss` with `T = 1` and `T = 8` on a row of scores: a higher `T` flattens
#   the teacher's probabilities, so the student also learns which wrong classes the teacher finds likely.
