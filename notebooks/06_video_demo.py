# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/hrank-ssd/hrank-ssd/blob/main/notebooks/06_video_demo.ipynb)
#
# # 6. The pruned detector on a video
#
# Every frame goes through the same predictor as evaluation (resize, forward, decode, NMS); boxes,
# class names, scores and the running FPS are drawn on it and the frames are written to an mp4.

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

print(recompute_note(course, "06_video_demo"))

# %% [markdown]
# The clip: the street scene `../shared/data/video/vtest.mp4` when it is next to the checkout (the
# development setup); on the full profile (Colab) the same clip downloaded through the manifest
# (`street-clip`, checksum-verified); else a synthetic clip panning over the test images. `info["source"]`
# below says which one was used. Honest warning: the **offline** models have only
# ever seen coloured shapes, so on a real street they detect nothing meaningful (at most a few spurious
# boxes); on the synthetic clip they find their shapes. In the **full** profile (trained on VOC) the
# detector finds persons and cars on the street clip.

# %%
from hrank_ssd.course import video

info = course.video()  # writes results/video.json
print("input:", info["source"], info["input"], video.video_info(info["input"]))
info

# %%
import matplotlib.pyplot as plt

frames = video.sample_frames(info["out_path"], 3)
fig, axes = plt.subplots(1, len(frames), figsize=(15, 4))
for ax, f in zip(list(axes) if len(frames) > 1 else [axes], frames):
    ax.imshow(f)
    ax.axis("off")
plt.show()

# %% [markdown]
# Check: the output keeps the frame rate and has exactly the frames that were processed.

# %%
out = video.video_info(info["out_path"])
assert out["frames"] == info["frames"] and abs(out["fps"] - info["fps_in"]) < 0.5
print(out)

# %% [markdown]
# ## What the FPS on the frames measures, and what it leaves out
#
# The number drawn on each frame is the speed of `Predictor.predict` alone, averaged over the last 10 frames
# (`video.FPS_WINDOW`); `info["avg_fps"]` (in `video.json`) is the same over the whole clip, the first, slow
# frames included (no warm-up). `predict` does three things:
#
# 1. **preprocess** on the CPU: resize the frame to 300x300, subtract the mean, copy it to the device;
# 2. **forward**: the network (on a GPU, `predict` waits for it when it copies the outputs back);
# 3. **postprocess** on the CPU: softmax, decode every prior's offsets into a box, per-class NMS, top-k.
#
# It leaves out everything else the demo does for each frame: **decoding** it from the video file, converting it
# from OpenCV's BGR to RGB, **drawing** the boxes and labels, and **encoding** it into the output mp4. Those are
# real costs of a video pipeline that pruning does not touch, and so is the CPU-side resize and NMS: a pruned
# network speeds up only the forward step. Below, every stage is timed on a few frames of the same clip (median
# ms per frame); the overlay's FPS is one over the first three stages, the whole loop's FPS one over all of them.

# %%
from hrank_ssd.course.video_timing import frame_stage_times, overlay_and_loop_fps
from hrank_ssd.nets.models import load_model
from hrank_ssd.nets.predictor import Predictor

predictor = Predictor(load_model(course.model("vgg16-ssd-pruned")), DEVICE)
stages = frame_stage_times(predictor, course.class_names(), info["input"], frames=20)
fps = overlay_and_loop_fps(stages)
print(f"overlay (predict only): {fps['overlay_fps']:.1f} FPS | the whole loop: {fps['loop_fps']:.1f} FPS | "
      f"video.json avg_fps (predict, all frames): {info['avg_fps']:.1f}")
print(f"the forward pass, all that pruning speeds up, is {stages.set_index('stage').loc['forward', 'share']:.0%} "
      f"of the loop's time")
stages.round(3)

# %% [markdown]
# Check: the overlay counts exactly the three stages of `predict`, so its FPS is never below the whole loop's.

# %%
assert stages.loc[stages["in_fps_overlay"], "stage"].tolist() == ["preprocess", "forward",
                                                                   "postprocess (decode boxes, NMS)"]
assert fps["overlay_fps"] >= fps["loop_fps"]

# %% [markdown]
# Notebook 04's `forward FPS` is faster still: it times the forward pass alone, on a fixed input, after a warm-up.
# Three numbers, three questions: how fast is the network (04), how fast is detection on one image (the overlay),
# how fast does the demo run (the whole loop).

# %% [markdown]
# On Colab, download the video from the file browser (`runs/.../video/demo_pruned.mp4`). CLI equivalent:
#
# ```
# python -m hrank_ssd video vgg16-ssd work/offline/models/vgg16-ssd-pruned.pth \
#     work/offline/data/VOCdevkit/VOC2007/labels.txt ../shared/data/video/vtest.mp4 demo_pruned.mp4 --max_frames 60
# ```

# %% [markdown]
# ## The report
#
# The last step gathers every result of this run (notebooks 00-06) into `report.md` and `report.html` in the run
# folder: the comparison table with the machine beside every latency, per-class AP, FLOPs, and which model stood
# in for which. On Colab it is written too: download it from the file browser, or keep it on Drive
# (`USE_DRIVE = True`).

# %%
from hrank_ssd.course.report import write_report

report_md, report_html = write_report(course.run_dir)
print("report:", report_md, "and", report_html)

# %% [markdown]
# ## What you learned / try next
#
# - The pruned detector runs on a video through the same predictor as the evaluation: resize, forward, decode, NMS.
# - The FPS on the frames counts `predict` only; decoding, drawing and encoding the video are left out, and the
#   CPU-side resize and NMS stay whatever the network's width: pruning speeds up the forward pass alone.
# - The report gathers every result of the run (notebooks 00-06) into `report.md` and `report.html`.
#
# Try next: time the stages of the unpruned baseline (`Predictor(load_model(course.baseline("vgg16-ssd")), DEVICE)`
# in `frame_stage_times`) and compare: which stage changes? Time them on a GPU runtime (Colab): the forward step
# shrinks, the CPU stages do not, so they take a larger share of every frame. Record
# your own clip and pass it as `course.video(clip="my_clip.mp4")`.
