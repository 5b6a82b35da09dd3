"""The CLI equivalents that notebook 00 and docs/course.md print for the offline baseline (and docs/course.md for
the paper-rate finetune) train what the course trains: parsed by the real parser, they give the course's own
training settings (a profile change that the text does not follow fails here)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from hrank_ssd.cli.main import build_parser
from hrank_ssd.course.making import rates_of
from hrank_ssd.course.models import rate_name
from hrank_ssd.course.steps import Course
from hrank_ssd.train.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]
VOC = "work/offline/data/VOCdevkit/VOC2007"
# what a training run's result depends on (paths and progress aside)
SETTINGS = ("net", "width", "batch_size", "num_epochs", "lr", "optimizer", "augment", "init", "scheduler",
            "t_max", "seed", "channels_last", "weight_decay", "momentum", "base_net", "compress_rate")


def _train_command(path: Path, finetune: bool = False) -> list:
    """The first ``python -m hrank_ssd train ... --net vgg16-ssd`` command of ``path`` without (with) a
    ``--base_net``, as argv."""
    lines = [re.sub(r"^#\s?", "", line) if path.suffix == ".py" else line for line in path.read_text().splitlines()]
    for i, line in enumerate(lines):
        if "python -m hrank_ssd train" in line:
            text = line
            while text.rstrip().endswith("\\"):
                i += 1
                text = text.rstrip()[:-1] + " " + lines[i].strip()
            if "--net vgg16-ssd" in text and ("--base_net" in text) == finetune:
                text = text.replace("$VOC", VOC).replace("$W", "work/offline")
                return shlex.split(text.split("python -m hrank_ssd", 1)[1])
    raise AssertionError(f"{path.name} has no {'finetune' if finetune else 'baseline'} train command")


def _course(tmp_path, monkeypatch) -> Course:
    for name in ("dataset_root", "test_root", "label_file"):  # no data is made: only the settings are compared
        monkeypatch.setattr(Course, name, lambda self: Path(VOC))
    return Course("offline", run_dir=tmp_path / "run", work_dir=tmp_path / "work", device="cpu")


def _differ(printed: TrainConfig, ours: TrainConfig) -> dict:
    return {k: (getattr(printed, k), getattr(ours, k)) for k in SETTINGS if getattr(printed, k) != getattr(ours, k)}


@pytest.mark.parametrize("where", ["notebooks/00_setup.py", "docs/course.md"])
def test_the_printed_baseline_command_trains_as_the_course_does(where, tmp_path, monkeypatch):
    printed = TrainConfig.from_namespace(build_parser().parse_args(_train_command(REPO / where)))
    course = _course(tmp_path, monkeypatch)
    p = course.profile
    ours = course.train_config("vgg16-ssd", p.train_epochs, p.lr, p.vgg_width, tmp_path / "ck")
    differ = _differ(printed, ours)
    assert not differ, f"{where}'s command differs from the course's training (printed, course): {differ}"


def test_the_printed_finetune_command_finetunes_the_paper_rate_model_as_the_course_does(tmp_path, monkeypatch):
    args = _train_command(REPO / "docs/course.md", finetune=True)
    printed = TrainConfig.from_namespace(build_parser().parse_args(args))
    course = _course(tmp_path, monkeypatch)
    p = course.profile
    pruned = f"work/offline/models/vgg16-ssd-pruned-{rate_name(rates_of(course))}.pth"  # course.prune()'s file
    ours = course.train_config("vgg16-ssd", p.finetune_epochs, p.finetune_lr_for(p.finetune_epochs), p.vgg_width,
                               tmp_path / "ck", base_net=pruned)
    differ = _differ(printed, ours)
    assert not differ, f"docs/course.md's finetune differs from the course's (printed, course): {differ}"
