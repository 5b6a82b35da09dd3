"""What pruning forgets, on hand-made detections: the AP change per class (a class lost entirely), per object size
(thirds of the objects by area, COCO's rule for detections of another size), the gallery's choice of images, and
the student's AP function fed the evaluation's curves (equal to the library's; a failing one falls back)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hrank_ssd.course import forgetting, plots
from hrank_ssd.measure import evaluation as ev

CLASSES = ["BACKGROUND", "cat", "dog"]
ANNOTATIONS = {  # image: (box, class, difficult); box areas 100 (small), 1600 (medium), 3600 and 4900 (large)
    "a": [((10, 10, 20, 20), 1, 0), ((0, 0, 60, 60), 2, 0)],
    "b": [((0, 0, 40, 40), 1, 0), ((50, 50, 60, 60), 2, 0)],
    "c": [((0, 0, 70, 70), 1, 0), ((0, 0, 30, 30), 2, 1)],
    "d": [((10, 10, 50, 50), 2, 0)],
}
# the parent finds every object (one false cat first, a difficult dog on top); the pruned model finds no dog,
# the large cat only at 0.3 (below the operating point) and not the medium one
PARENT = {"cat": [("d", 0.99, (0, 0, 5, 5)), ("a", 0.9, (10, 10, 20, 20)), ("b", 0.8, (0, 0, 40, 40)),
                  ("c", 0.7, (0, 0, 70, 70))],
          "dog": [("c", 0.99, (0, 0, 30, 30)), ("a", 0.95, (0, 0, 60, 60)), ("d", 0.85, (10, 10, 50, 50)),
                  ("b", 0.6, (50, 50, 60, 60))]}
PRUNED = {"cat": [("a", 0.9, (10, 10, 20, 20)), ("c", 0.3, (0, 0, 70, 70))], "dog": []}


class Images:
    """The part of ``data.VOCDataset`` the evaluation reads."""

    class_names = CLASSES
    ids = list(ANNOTATIONS)

    def __len__(self):
        return len(self.ids)

    def get_image(self, i):
        return np.full((100, 100, 3), 40 * i, dtype=np.uint8)

    def get_annotation(self, i):
        objects = ANNOTATIONS[self.ids[i]]
        return self.ids[i], (np.array([o[0] for o in objects], dtype=np.float32), np.array([o[1] for o in objects]),
                             np.array([o[2] for o in objects], dtype=np.uint8))


def _write(folder: Path, detections) -> Path:
    for name, dets in detections.items():
        lines = [f"{i} {np.float32(s)} " + " ".join(str(np.float32(v) + np.float32(1)) for v in box)
                 for i, s, box in dets]
        ev.detection_path(folder, name).parent.mkdir(parents=True, exist_ok=True)
        ev.detection_path(folder, name).write_text("".join(line + "\n" for line in lines))
    return folder


@pytest.fixture
def evaluated(tmp_path):
    """The two models' detection folders and their per-class table, as ``course.evaluate`` leaves them."""
    dirs = {"vgg16-ssd": _write(tmp_path / "parent", PARENT), "vgg16-ssd-pruned": _write(tmp_path / "pruned", PRUNED)}
    per_class = pd.concat([ev.evaluate_detections(Images(), d).assign(model=k) for k, d in dirs.items()],
                          ignore_index=True)
    return dirs, per_class


def test_the_ap_change_per_class_names_a_class_lost_entirely(evaluated):
    _, per_class = evaluated
    assert per_class["ap"].tolist() == pytest.approx([0.75, 1.0, 7 / 11, 0.0], abs=1e-12)  # 11 terms of x / 11
    change = forgetting.ap_change(per_class)
    assert list(change.columns) == ["VGG16-SSD pruned (HRank)"] and list(change.index) == ["cat", "dog"]
    assert change["VGG16-SSD pruned (HRank)"].tolist() == pytest.approx([7 / 11 - 0.75, -1.0], abs=1e-12)
    text = forgetting.class_sentence(change, per_class)
    assert "What do compressed deep neural networks forget?" in text
    assert "loses most on average over the 1 pruned models is dog (-1.0000 AP)" in text
    assert "the largest single change is -1.0000 (dog, VGG16-SSD pruned (HRank))" in text
    assert text.endswith("Lost entirely: VGG16-SSD pruned (HRank) finds no dog.")
    fig = plots.plot_ap_change(change)
    assert [round(b.get_height(), 6) for b in fig.axes[0].patches] == [round(7 / 11 - 0.75, 6), -1.0]


def test_the_parents_of_the_compared_models():
    assert forgetting.parent("vgg16-ssd-lat-small") == "vgg16-ssd" and forgetting.parent("mb1-ssd-pruned") == "mb1-ssd"
    assert forgetting.parent("yours-0.3x14") == "vgg16-ssd"
    assert forgetting.parent("vgg16-ssd") is None and forgetting.parent("something else") is None


def test_ap_per_size_ignores_the_other_sizes_objects_and_detections(evaluated):
    dirs, _ = evaluated
    bounds = forgetting.size_bounds(Images())
    # six objects (the difficult dog aside): 100, 100, 1600, 1600, 3600, 4900 -> numpy's linear quantiles
    assert bounds == (pytest.approx(1100.0), pytest.approx(1600 + 2000 / 3))
    sizes = forgetting.ap_by_size(Images(), dirs, bounds)
    assert sizes["objects"].tolist() == [2, 2, 2, 2, 2, 2]
    # parent, small: the false 5x5 cat ranks first (cat AP 0.5), the dog is found (1); medium, large: the false
    # cat is small, so it is ignored there (1, 1). Pruned: small cat 1, dog 0; medium nothing; large cat (0.3) 1
    assert sizes["mAP"].tolist() == pytest.approx([0.75, 1.0, 1.0, 0.5, 0.0, 0.5], abs=1e-12)
    change = forgetting.size_change(sizes)
    assert change.loc["VGG16-SSD pruned (HRank)"].tolist() == pytest.approx([-0.25, -1.0, -0.5], abs=1e-12)
    text = forgetting.size_sentence(sizes, change, bounds)
    assert text.startswith("By size (the test set's objects cut into thirds by box area: 2 small below 33² px, 2 "
                           "medium, 2 large from 48² px), the pruned models lose most on medium objects (-1.0000")
    assert text.endswith("small -0.2500, medium -1.0000, large -0.5000).")


def test_the_gallery_shows_the_parents_surest_finds_the_pruned_model_misses_one_per_image(evaluated):
    dirs, _ = evaluated
    gallery = forgetting.forgotten(Images(), dirs["vgg16-ssd"], dirs["vgg16-ssd-pruned"])
    # missed at score >= 0.5: dog a (0.95), dog d (0.85), cat b (0.8), cat c (0.7: the pruned model's 0.3 does
    # not count), dog b (0.6: image b is shown already); the difficult dog (0.99) is nobody's find
    assert gallery["image_id"].tolist() == ["a", "d", "b", "c"]
    assert gallery["class"].tolist() == ["dog", "dog", "cat", "cat"]
    assert gallery["score"].tolist() == [pytest.approx(s) for s in (0.95, 0.85, 0.8, 0.7)]
    assert gallery["object"].map(list).tolist() == [[0, 0, 60, 60], [10, 10, 50, 50], [0, 0, 40, 40], [0, 0, 70, 70]]
    assert [[(n, round(s, 6), list(b)) for n, s, b in p] for p in gallery["pruned"]] == [
        [("cat", 0.9, [10, 10, 20, 20])], [], [], []]  # its detections at the operating point
    assert forgetting.forgotten(Images(), dirs["vgg16-ssd"], dirs["vgg16-ssd-pruned"], n=2)["image_id"].tolist() == \
        ["a", "d"]
    assert forgetting.forgotten(Images(), dirs["vgg16-ssd"], dirs["vgg16-ssd"]).empty  # nothing forgotten
    images = [Images().get_image(Images.ids.index(i)) for i in gallery["image_id"]]
    fig = plots.plot_gallery(images, gallery, "VGG16-SSD", "pruned")
    assert [len(ax.patches) for ax in fig.axes] == [3, 2, 2, 2]  # object, parent's hit, the pruned model's


def voc07_ap(precision, recall):
    """The notebook's solution: recall points written as i / 10."""
    ap = 0.0
    for t in [i / 10 for i in range(11)]:
        reached = [p for p, r in zip(precision, recall) if r >= t]
        ap += (max(reached) if reached else 0.0) / 11
    return ap


def test_the_students_ap_drives_a_table_equal_to_the_librarys(evaluated, capsys):
    dirs, per_class = evaluated
    curves = forgetting.class_curves(Images(), dirs["vgg16-ssd"])
    # cat: a false detection, then three hits; dog: the difficult match first has no precision (left out)
    assert curves == {"cat": (3, [0.0, 0.5, 2 / 3, 0.75], [0.0, 1 / 3, 2 / 3, 1.0]),
                      "dog": (3, [1.0, 1.0, 1.0], [1 / 3, 2 / 3, 1.0])}
    library = per_class[per_class["model"] == "vgg16-ssd"]
    table = forgetting.student_ap_table(voc07_ap, curves, library)
    assert table["AP (yours)"].tolist() == table["AP (library)"].tolist() == pytest.approx([0.75, 1.0], abs=1e-12)
    assert table["objects"].tolist() == [3, 3] and (table["difference"] == 0).all()
    assert capsys.readouterr().out == "your AP equals the library's in all 2 classes (within 1e-12)\n"


@pytest.mark.parametrize("fn, line", [
    (lambda p, r: (_ for _ in ()).throw(NotImplementedError("exercise")), "your voc07_ap is still blank"),
    (lambda p, r: 1 / 0, "your voc07_ap raised ZeroDivisionError: division by zero"),
    (lambda p, r: None, "your voc07_ap raised TypeError: float() argument must be"),
])
def test_a_blank_or_failing_student_function_falls_back_in_one_line(evaluated, capsys, fn, line):
    dirs, per_class = evaluated
    curves = forgetting.class_curves(Images(), dirs["vgg16-ssd"])
    table = forgetting.student_ap_table(fn, curves, per_class[per_class["model"] == "vgg16-ssd"])
    out = capsys.readouterr().out
    assert out.startswith(line) and out.count("\n") == 1
    assert out.endswith("; this table uses the library's AP (evaluation.compute_ap)\n")
    assert table["AP (yours)"].tolist() == table["AP (library)"].tolist() == pytest.approx([0.75, 1.0], abs=1e-12)


def test_a_recall_on_a_recall_point_is_named_when_the_two_differ():
    # 3 hits of 10 objects, then 2 false detections: recall stops exactly at 0.3, which np.arange writes
    # as 0.30000000000000004, so the library leaves that point out (3/11) and i / 10 keeps it (4/11)
    precision, recall = [1.0, 1.0, 1.0, 0.75, 0.6], [0.1, 0.2, 0.3, 0.3, 0.3]
    library = pd.DataFrame({"class": ["x"], "ap": [ev.compute_ap(precision, recall)]})
    assert library["ap"][0] == pytest.approx(3 / 11, abs=1e-12) and voc07_ap(precision, recall) == pytest.approx(4 / 11)
    table = forgetting.student_ap_table(voc07_ap, {"x": (10, precision, recall)}, library)
    assert table["difference"].tolist() == [pytest.approx(1 / 11, abs=1e-12)]
    assert forgetting.agreement(table, {"x": (10, precision, recall)}) == (
        "your AP differs from the library's (by more than 1e-12) in 1 of 1 classes: x (its recall is exactly 0.3, a "
        "recall point the library writes as 0.30000000000000004)")
    table.loc[0, "AP (yours)"] = float("nan")  # a student's NaN differs too; a class without the edge is named alone
    table["difference"] = table["AP (yours)"] - table["AP (library)"]
    assert forgetting.agreement(table, {"x": (10, [1.0], [0.5])}).endswith("in 1 of 1 classes: x")


def test_notebook_04_gives_no_library_ap_before_its_exercise(repo_root):
    """The student writes voc07_ap with nothing above it that computes an AP for them."""
    source = (repo_root / "notebooks" / "04_eval_map_fps.py").read_text()
    before = source[:source.index('# %% tags=["exercise"]')]
    imports = re.findall(r"^\s*(?:from\s+\S+\s+)?import\s+.+$", before, flags=re.M)
    assert imports and not [i for i in imports if re.search(r"evaluation|compute_ap|forgetting|sensitivity", i)]
    assert not math.isnan(forgetting.AGREE)
