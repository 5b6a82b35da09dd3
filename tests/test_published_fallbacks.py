"""On the full profile a published artifact that cannot be had never stops the course: the labels give way to the
library's names (said once), a rank folder or pruned model to the student's own, recorded in substitutes.json
(merged across notebooks' kernels, dropped when the published one is had after all)."""

from __future__ import annotations

import json

import pytest
from rehearsal.standin import StandInWorld

from hrank_ssd.data.voc import VOC_CLASSES, read_labels
from hrank_ssd.io.manifest import MANIFEST_ENV


@pytest.fixture
def course(tmp_path, monkeypatch):
    """A full-rehearsal Course whose outside world answers 404 for everything."""
    from hrank_ssd.course.steps import Course

    monkeypatch.delenv(MANIFEST_ENV, raising=False)
    with StandInWorld(tmp_path / "world") as world:
        for name, value in world.environ().items():
            monkeypatch.setenv(name, value)
        yield Course("full-rehearsal", run_dir=tmp_path / "run", work_dir=tmp_path / "work", device="cpu",
                     progress=False), world


def test_label_file_unavailable_the_library_names_said_once(course, capsys):
    c, world = course
    assert c.class_names() == ["BACKGROUND", *VOC_CLASSES]
    assert read_labels(c.label_file()) == ["BACKGROUND", *VOC_CLASSES]
    err = capsys.readouterr().err
    assert err.count("using the library's 20 VOC class names") == 1
    assert sum("voc-model-labels" in r for r in world.requests) == 1  # GCS asked once, then remembered


def test_rank_folder_unavailable_is_recorded_once_and_merged_with_other_kernels(course, capsys, tmp_path):
    c, _ = course
    (tmp_path / "run" / "results" / "substitutes.json").write_text(json.dumps({"vgg16-ssd-pruned": "an earlier one"}))
    assert c.published_ranks() is None and c.published_ranks() is None
    known = json.loads((tmp_path / "run" / "results" / "substitutes.json").read_text())
    assert known["vgg16-ssd-pruned"] == "an earlier one"  # another notebook's record is kept
    assert known["vgg16-ssd-ranks"].startswith("published rank files unavailable: using your own ranks instead")
    assert capsys.readouterr().err.count("published rank files unavailable") == 1
    assert c.rank_comparison().empty  # nothing to compare yours with
    c.published_used("vgg16-ssd-pruned")
    assert set(json.loads((tmp_path / "run" / "results" / "substitutes.json").read_text())) == {"vgg16-ssd-ranks"}


def test_a_failure_is_remembered_until_the_file_is_put_there_by_hand(course, tmp_path):
    c, world = course
    from hrank_ssd.errors import HRankError

    for _ in range(2):
        with pytest.raises(HRankError, match="could not download 'voc-labels'"):
            c.fetch("voc-labels")
    assert sum("voc-model-labels" in r for r in world.requests) == 1  # asked once per kernel
    by_hand = tmp_path / "work" / "models" / "voc-model-labels.txt"
    by_hand.parent.mkdir(parents=True, exist_ok=True)
    by_hand.write_text("BACKGROUND\ncat\n")
    assert c.fetch("voc-labels") == by_hand and c.class_names() == ["BACKGROUND", "cat"]
