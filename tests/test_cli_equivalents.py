"""The CLI equivalents that notebook 00 and docs/course.md print for the offline baseline train what the course
trains: parsed by the real parser, they give the course's own training settings (a profile change that the text
does not follow fails here)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from hrank_ssd.cli.main import build_parser
from hrank_ssd.course.steps import Course
from hrank_ssd.train.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]
VOC = "work/offline/data/VOCdevkit/VOC2007"
# what a training run's result depends on (paths and progress aside)
SETTINGS = ("net", "width", "batch_size", "num_epochs", "lr", "optimizer", "augment", "init", "scheduler",
            "t_max", "seed", "channels_last", "weight_decay", "momentum")


def _baseline_command(path: Path) -> list:
    """The first ``python -m hrank_ssd train ... --net vgg16-ssd`` command of ``path``, as argv."""
    lines = [re.sub(r"^#\s?", "", line) if path.suffix == ".py" else line for line in path.read_text().splitlines()]
    for i, line in enumerate(lines):
        if "python -m hrank_ssd train" in line:
            text = line
            while text.rstrip().endswith("\\"):
                i += 1
                text = text.rstrip()[:-1] + " " + lines[i].strip()
            if "--net vgg16-ssd" in text and "--base_net" not in text:
                text = text.replace("$VOC", VOC).replace("$W", "work/offline")
                return shlex.split(text.split("python -m hrank_ssd", 1)[1])
    raise AssertionError(f"{path.name} has no baseline train command")


@pytest.mark.parametrize("where", ["notebooks/00_setup.py", "docs/course.md"])
def test_the_printed_baseline_command_trains_as_the_course_does(where, tmp_path, monkeypatch):
    args = build_parser().parse_args(_baseline_command(REPO / where))
    printed = TrainConfig.from_namespace(args)
    for name in ("dataset_root", "test_root", "label_file"):  # no data is made: only the settings are compared
        monkeypatch.setattr(Course, name, lambda self: Path(VOC))
    course = Course("offline", run_dir=tmp_path / "run", work_dir=tmp_path / "work", device="cpu")
    p = course.profile
    ours = course.train_config("vgg16-ssd", p.train_epochs, p.lr, p.vgg_width, tmp_path / "ck")
    differ = {k: (getattr(printed, k), getattr(ours, k)) for k in SETTINGS if getattr(printed, k) != getattr(ours, k)}
    assert not differ, f"{where}'s command differs from the course's training (printed, course): {differ}"
