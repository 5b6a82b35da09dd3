"""Colab's folders and time: the repository from a Drive copy, VOC on the VM's disk while artifacts go to Drive,
the full profile's warning on a CPU, and each notebook's note of what it recomputes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hrank_ssd.course.profiles import PROFILES, gpu_warning
from hrank_ssd.course.results import NOTEBOOKS
from hrank_ssd.course.steps import Course
from hrank_ssd.course.upstream import NEEDS, recompute_note

nbformat = pytest.importorskip("nbformat", reason="the setup cell's tests read the notebooks: pip install -e '.[colab]'")
NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"

SETUP_RUNNER = r"""
import json, os, subprocess, sys, types
sys.modules['google.colab'] = types.ModuleType('google.colab')  # what IN_COLAB looks for
calls, real_run = [], subprocess.run

def run(args, *a, **kw):  # pip is recorded, never run (git would run for real)
    calls.append(list(args))
    if 'pip' in args:
        return subprocess.CompletedProcess(args, 0, stdout='torch==2.11.0\n' if 'freeze' in args else '', stderr='')
    return real_run(args, *a, **kw)

subprocess.run = run
exec(compile(sys.argv[1], 'setup-cell', 'exec'))
print(json.dumps({'calls': calls, 'cwd': os.getcwd()}))
"""


def _cells():
    cells = nbformat.read(str(NB_DIR / "00_setup.ipynb"), as_version=4).cells
    return cells[1].source, cells[2].source, cells[3].source


def _setup(tmp_path, **env):
    clone = tmp_path / "content" / "hrank-ssd"
    env = dict({k: v for k, v in os.environ.items() if not k.startswith("HRANK_SSD_")},
               HRANK_SSD_COLAB_DIR=str(clone), **env)
    out = subprocess.run([sys.executable, "-c", SETUP_RUNNER, _cells()[0]], capture_output=True, text=True,
                         timeout=300, stdin=subprocess.DEVNULL, env=env, cwd=tmp_path)
    return out, clone


def test_setup_cell_uses_a_copy_of_the_repository_instead_of_cloning(tmp_path):
    copy = tmp_path / "drive" / "hrank-ssd"  # a copy uploaded to Drive, with a work folder of its own
    (copy / "lib" / "hrank_ssd").mkdir(parents=True)
    (copy / "lib" / "hrank_ssd" / "__init__.py").write_text("")
    (copy / "work" / "full").mkdir(parents=True)
    (copy / ".git").mkdir()
    out, clone = _setup(tmp_path, HRANK_SSD_REPO_DIR=str(copy))
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["cwd"] == str(clone) and not any(c[0] == "git" for c in got["calls"])  # no clone tried
    assert (clone / "lib" / "hrank_ssd" / "__init__.py").is_file()  # copied onto the VM's disk...
    assert not (clone / "work").exists() and not (clone / ".git").exists()  # ...without artifacts or history
    assert got["calls"][-1][:6] == [sys.executable, "-m", "pip", "install", "-q", "-e"]


def test_setup_cell_says_in_one_line_what_to_do_when_neither_clone_nor_copy_works(tmp_path):
    out, clone = _setup(tmp_path, HRANK_SSD_REPO_DIR=str(tmp_path / "empty"))
    lines = out.stderr.strip().splitlines()
    assert out.returncode != 0 and len(lines) == 1 and "Traceback" not in out.stderr
    assert lines[0].startswith(f"HRANK_SSD_REPO_DIR={tmp_path / 'empty'} holds no copy of the repository")
    url = (tmp_path / "no-such-fork").as_uri()
    out, clone = _setup(tmp_path, HRANK_SSD_REPO_URL=url, HRANK_SSD_BRANCH="main")
    lines = out.stderr.strip().splitlines()
    assert out.returncode != 0 and len(lines) == 1 and not clone.exists()
    for what in (f"could not clone {url} (branch main)", "HRANK_SSD_REPO_URL", "fork",
                 "HRANK_SSD_REPO_DIR=/content/drive/MyDrive/hrank-ssd", "%env"):
        assert what in lines[0]


def test_with_drive_artifacts_go_to_drive_and_voc_to_the_vms_disk(tmp_path, capsys):
    """The course cell on Colab with USE_DRIVE: WORK_DIR and RUN_DIR on Drive, DATA_DIR on the VM's local disk;
    the full profile on a CPU runtime warns in one line and goes on."""
    _, params, course_cell = _cells()
    scope = {"IN_COLAB": True, "USE_DRIVE": True, "DRIVE_DIR": tmp_path / "drive", "sys": sys, "In": []}
    exec(compile(params, "params", "exec"), scope)
    scope["DEVICE"] = "cpu"
    exec(compile(course_cell, "course", "exec"), scope)
    course = scope["course"]
    assert course.profile.name == "full" and course.work == tmp_path / "drive" / "work" / "full"
    assert course.run_dir == tmp_path / "drive" / "runs" / "latest"
    assert course.data == Path("/content/data") / "full" / "data"
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [gpu_warning(course.profile, "cpu")]
    assert "hours" in err[0] and "Runtime > Change runtime type" in err[0]


def test_gpu_warning_only_for_a_profile_that_needs_one_without_it():
    assert gpu_warning(PROFILES["full"], "cpu").startswith("WARNING: profile full on cpu")
    assert gpu_warning(PROFILES["full"], "cuda") is None and gpu_warning(PROFILES["full"], "cuda:0") is None
    for name in ("offline", "tiny", "full-rehearsal"):  # the rehearsal runs full's path on a CPU by design
        assert gpu_warning(PROFILES[name], "cpu") is None


def test_data_folder_is_separate_from_the_work_folder(tmp_path):
    course = Course("tiny", tmp_path / "run", tmp_path / "drive-work", progress=False, data_dir=tmp_path / "local")
    root = course.dataset_root()
    assert root == tmp_path / "local" / "tiny" / "data" / "VOCdevkit" / "VOC2007" and (root / "labels.txt").is_file()
    assert not (course.work / "data").exists()
    default = Course("tiny", tmp_path / "run", tmp_path / "work", progress=False)
    assert default.data == default.work / "data"  # without a data folder: inside the work folder, as before


def _full(tmp_path):
    return Course("full", tmp_path / "run", tmp_path / "work", device="cpu", progress=False,
                  data_dir=tmp_path / "local")


def test_recompute_note_says_what_is_missing(tmp_path):
    course = _full(tmp_path)
    lines = recompute_note(course, "08_speed_frontier").splitlines()
    assert lines[0].startswith("What 08_speed_frontier takes from earlier notebooks (profile full")
    assert "- missing 03's finetuned latency-pruned VGG16-SSD at the paper rate's MACs: finetuned here" in lines
    assert "- missing the latency table: measured here" in lines
    assert "- missing 04's evaluation: evaluated here" in lines
    for key in ("vgg16-ssd-lat-paper-macs", "vgg16-ssd-lat-small", "mb1-ssd-pruned"):  # what is there is not listed
        course.path(key).parent.mkdir(parents=True, exist_ok=True)
        course.path(key).write_bytes(b"")
    (course.work / "latency").mkdir()
    (course.work / "latency" / "vgg16-ssd-0123.json").write_text("{}")
    lines = recompute_note(course, "08_speed_frontier").splitlines()
    assert not any("03's finetuned" in line or "latency table" in line for line in lines)
    assert "- missing 00's baselines: downloaded (the published weights)" in lines


def test_recompute_note_for_every_notebook_and_a_synthetic_profile(tmp_path):
    course = _full(tmp_path)
    assert set(NEEDS) == {"00_setup", "01_rank_generation", "02_hrank_pruning", "03_finetune", "04_eval_map_fps",
                          "05_flops_table", "06_video_demo", "07_latency_pruning",
                          "08_speed_frontier"}
    assert "- it uses nothing from the earlier notebooks." in recompute_note(course, "05_flops_table")
    three = recompute_note(course, "03_finetune")
    assert "- missing 02's choice of compress rate: finetunes the profile's rate instead" in three
    assert "- missing VOC2007 trainval: downloaded into this machine's data folder" in three
    tiny = Course("tiny", tmp_path / "run", tmp_path / "work", progress=False)
    tiny.dataset_root()
    note = recompute_note(tiny, "01_rank_generation").splitlines()
    assert note[1:] == ["- missing 00's baselines: trained here"]
    with pytest.raises(Exception, match="unknown notebook"):
        recompute_note(tiny, "07_nope")


def test_notebooks_01_to_06_start_with_their_recompute_note():
    for name in NEEDS:
        if name == "00_setup":
            continue
        cells = nbformat.read(str(NB_DIR / f"{name}.ipynb"), as_version=4).cells
        assert f'print(recompute_note(course, "{name}"))' in cells[4].source, name


def test_a_fork_edits_the_shared_cells_and_the_build_points_the_readme_badges_at_it(tmp_path):
    pytest.importorskip("jupytext", reason="the notebooks' build needs jupytext: pip install -e '.[dev]'")
    folder = tmp_path / "notebooks"
    shutil.copytree(NB_DIR, folder, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    shutil.copy(NB_DIR.parent / "README.md", tmp_path / "README.md")
    shared = folder / "_shared_cells.py"
    shared.write_text(shared.read_text(encoding="utf-8").replace("hrank-ssd/hrank-ssd", "you/fork"), encoding="utf-8")
    build = [sys.executable, str(folder / "make_notebooks.py")]
    check = subprocess.run(build + ["--check"], capture_output=True, text=True, timeout=300)
    assert check.returncode == 1 and "../README.md (its Colab links" in check.stderr
    assert subprocess.run(build, capture_output=True, text=True, timeout=300).returncode == 0
    readme = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert "colab.research.google.com/github/hrank-ssd/" not in readme
    assert readme.count("https://colab.research.google.com/github/you/fork/blob/main/notebooks/") == len(NOTEBOOKS)
    setup = nbformat.read(str(folder / "03_finetune.ipynb"), as_version=4).cells[1].source
    assert '"HRANK_SSD_REPO_URL", "https://github.com/you/fork"' in setup
    assert subprocess.run(build + ["--check"], capture_output=True, text=True, timeout=300).returncode == 0
