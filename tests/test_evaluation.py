"""VOC metric: hand-made AP cases, the devkit edge cases, det-file round trip, an independent reference
implementation on random data, and the ``eval`` command."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hrank_ssd.cli import main
from hrank_ssd.measure import evaluation as ev

CLASSES = ["BACKGROUND", "cat", "dog", "bird"]


class FakeDataset:
    """The part of ``data.VOCDataset`` evaluation uses. ``annotations``: (id, boxes, labels, difficult)."""

    def __init__(self, annotations, class_names=CLASSES):
        self._ann = annotations
        self.ids = [a[0] for a in annotations]
        self.class_names = list(class_names)

    def __len__(self):
        return len(self._ann)

    def get_image(self, i):
        return np.zeros((40, 60, 3), dtype=np.uint8)

    def get_annotation(self, i):
        image_id, boxes, labels, difficult = self._ann[i]
        return image_id, (np.asarray(boxes, dtype=np.float32).reshape(-1, 4), np.asarray(labels, dtype=np.int64),
                          np.asarray(difficult, dtype=np.uint8))


def write_dets(eval_dir: Path, class_name: str, dets) -> Path:
    """dets: (image_id, score, 0-based box) -> a det file with 1-based boxes, like pytorch-ssd writes."""
    path = ev.detection_path(eval_dir, class_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for image_id, score, box in dets:
            vals = [np.float32(score)] + [np.float32(v) + np.float32(1.0) for v in box]
            f.write(image_id + " " + " ".join(str(v) for v in vals) + "\n")
    return path


def run_class(tmp_path, annotations, dets, class_index=1, **kw) -> ev.ClassResult:
    npos, gt, diff = ev.group_annotations(FakeDataset(annotations))
    path = write_dets(tmp_path, CLASSES[class_index], dets)
    return ev.evaluate_class(npos.get(class_index, 0), gt.get(class_index, {}), diff.get(class_index, {}), path, **kw)


# ---------------------------------------------------------------- compute_ap on known curves

def test_perfect_detections_ap_is_one():
    prec, rec = np.array([1.0, 1.0, 1.0]), np.array([1 / 3, 2 / 3, 1.0])
    assert ev.compute_ap(prec, rec, True) == pytest.approx(1.0, abs=1e-12)
    assert ev.compute_ap(prec, rec, False) == pytest.approx(1.0, abs=1e-12)


def test_false_positive_first_then_two_true_positives():
    # ranked FP, TP, TP with 2 gts: precision [0, 1/2, 2/3], recall [0, 1/2, 1]
    prec, rec = np.array([0.0, 1 / 2, 2 / 3]), np.array([0.0, 0.5, 1.0])
    # 11-point: t = 0..0.5 (6 points) best precision at recall >= t is 2/3; t = 0.6..1.0 (5 points) also 2/3
    assert ev.compute_ap(prec, rec, True) == pytest.approx((6 * (2 / 3) + 5 * (2 / 3)) / 11, abs=1e-12)
    # area: envelope 2/3 over recall [0, 0.5] and [0.5, 1]
    assert ev.compute_ap(prec, rec, False) == pytest.approx(0.5 * 2 / 3 + 0.5 * 2 / 3, abs=1e-12)


def test_area_metric_differs_from_11_point_on_known_case():
    # ranked TP, FP, TP with 2 gts: precision [1, 1/2, 2/3], recall [1/2, 1/2, 1]
    prec, rec = np.array([1.0, 0.5, 2 / 3]), np.array([0.5, 0.5, 1.0])
    # 11-point: t = 0..0.5 -> 1 (6 points), t = 0.6..1.0 -> 2/3 (5 points) = 28/33
    assert ev.compute_ap(prec, rec, True) == pytest.approx((6 * 1 + 5 * (2 / 3)) / 11, abs=1e-12)
    assert ev.compute_ap(prec, rec, True) == pytest.approx(28 / 33, abs=1e-12)
    # area: 0.5 * 1 + 0.5 * 2/3 = 5/6
    assert ev.compute_ap(prec, rec, False) == pytest.approx(5 / 6, abs=1e-12)


def test_11_point_thresholds_are_numpy_arange():
    # recall 0.3 exactly is NOT >= np.arange's third-from-zero threshold 0.30000000000000004
    prec, rec = np.array([1.0]), np.array([0.3])
    assert ev.compute_ap(prec, rec, True) == pytest.approx(3 / 11, abs=1e-12)  # t = 0, 0.1, 0.2 only


# ---------------------------------------------------------------- matching rules, through det files

GT2 = [("a", [[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1], [0, 0])]


def test_perfect_detections_through_files(tmp_path):
    r = run_class(tmp_path, GT2, [("a", 0.9, [0, 0, 10, 10]), ("a", 0.8, [20, 20, 30, 30])])
    assert (r.gts, r.dets, r.tp, r.fp, r.recall, r.precision) == (2, 2, 2, 0, 1.0, 1.0)
    assert r.ap == pytest.approx(1.0, abs=1e-12)


def test_false_positive_ranked_first_through_files(tmp_path):
    dets = [("a", 0.95, [40, 40, 50, 50]), ("a", 0.9, [0, 0, 10, 10]), ("a", 0.8, [20, 20, 30, 30])]
    r = run_class(tmp_path, GT2, dets)
    assert (r.tp, r.fp) == (2, 1)
    assert r.precision == pytest.approx(2 / 3)
    assert r.ap == pytest.approx((6 * (2 / 3) + 5 * (2 / 3)) / 11, abs=1e-12)
    r = run_class(tmp_path, GT2, dets, use_2007_metric=False)
    assert r.ap == pytest.approx(2 / 3, abs=1e-12)


def test_duplicate_detection_of_one_gt_is_false_positive(tmp_path):
    gt = [("a", [[0, 0, 10, 10]], [1], [0])]
    r = run_class(tmp_path, gt, [("a", 0.9, [0, 0, 10, 10]), ("a", 0.8, [0, 0, 10, 10.5])])
    assert (r.tp, r.fp, r.precision, r.recall) == (1, 1, 0.5, 1.0)
    assert r.ap == pytest.approx(1.0, abs=1e-12)  # the duplicate ranks after full recall


def test_iou_exactly_half_is_not_a_match(tmp_path):
    # gt area 1024, det area 2048, intersection 1024: in float32 1024 / (2048 + 1e-5) == 0.5 exactly
    gt = [("a", [[0, 0, 32, 32]], [1], [0])]
    iou = ev._iou(np.array([0, 0, 32, 64], np.float32), np.array([[0, 0, 32, 32]], np.float32))
    assert iou[0] == 0.5
    r = run_class(tmp_path, gt, [("a", 0.9, [0, 0, 32, 64])])
    assert (r.tp, r.fp, r.ap) == (0, 1, 0.0)
    r = run_class(tmp_path, gt, [("a", 0.9, [0, 0, 32, 64])], iou_threshold=0.49)
    assert (r.tp, r.fp) == (1, 0)
    assert r.ap == pytest.approx(1.0, abs=1e-12)


def test_detection_on_image_not_in_dataset_is_false_positive(tmp_path):
    r = run_class(tmp_path, GT2, [("zzz", 0.99, [0, 0, 10, 10]), ("a", 0.9, [0, 0, 10, 10])])
    assert (r.tp, r.fp) == (1, 1)
    # precision [0, 1/2], recall [0, 1/2]: t = 0..0.5 -> 1/2 (6 points), t > 0.5 -> 0
    assert r.ap == pytest.approx(6 * 0.5 / 11, abs=1e-12)


def test_detection_on_image_without_that_class_is_false_positive(tmp_path):
    anns = GT2 + [("b", [[0, 0, 10, 10]], [2], [0])]  # image b has only a dog
    r = run_class(tmp_path, anns, [("b", 0.9, [0, 0, 10, 10])])
    assert (r.tp, r.fp, r.ap) == (0, 1, 0.0)


def pytorch_ssd_voc2007(precision, recall):
    """pytorch-ssd's measurements.compute_voc2007_average_precision, literally (np.max keeps NaN)."""
    ap = 0.0
    for t in np.arange(0.0, 1.1, 0.1):
        p = 0 if np.sum(recall >= t) == 0 else np.max(precision[recall >= t])
        ap = ap + p / 11.0
    return ap


def test_difficult_match_ranked_first_is_ignored_and_ap_finite(tmp_path):
    # image a: one difficult cat and one normal cat; top detection hits the difficult one
    anns = [("a", [[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1], [1, 0])]
    dets = [("a", 0.9, [0, 0, 10, 10]), ("a", 0.8, [20, 20, 30, 30]), ("a", 0.7, [50, 50, 60, 60])]
    r = run_class(tmp_path, anns, dets)
    assert (r.gts, r.dets, r.tp, r.fp) == (1, 3, 1, 1)
    # cumulative precision [0/0, 1, 1/2], recall [0, 1, 1]. pytorch-ssd: NaN. MATLAB max ignores NaN -> 1
    with np.errstate(invalid="ignore"):
        prec = np.array([0.0, 1.0, 1.0]) / np.array([0.0, 1.0, 2.0])
    rec = np.array([0.0, 1.0, 1.0])
    assert math.isnan(pytorch_ssd_voc2007(prec, rec))
    assert r.ap == pytest.approx(1.0, abs=1e-12)
    # MATLAB VOCap: mpre [0 NaN 1 .5 0] -> envelope [1 1 1 .5 0], mrec [0 0 1 1 1] -> 1 * 1
    assert run_class(tmp_path, anns, dets, use_2007_metric=False).ap == pytest.approx(1.0, abs=1e-12)


def test_only_difficult_matches_give_ap_zero(tmp_path):
    anns = [("a", [[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1], [1, 0])]
    r = run_class(tmp_path, anns, [("a", 0.9, [0, 0, 10, 10])])
    assert (r.tp, r.fp, r.ap, r.recall) == (0, 0, 0.0, 0.0)
    assert math.isnan(r.precision)


def test_class_without_detections_has_ap_zero(tmp_path):
    r = run_class(tmp_path, GT2, [])
    assert (r.gts, r.dets, r.tp, r.fp, r.ap, r.recall) == (2, 0, 0, 0, 0.0, 0.0)


def test_class_without_ground_truth_is_nan_and_left_out_of_map(tmp_path):
    ds = FakeDataset(GT2)  # only cats
    write_dets(tmp_path, "cat", [("a", 0.9, [0, 0, 10, 10]), ("a", 0.8, [40, 40, 50, 50])])
    write_dets(tmp_path, "dog", [("a", 0.9, [0, 0, 10, 10])])
    write_dets(tmp_path, "bird", [])
    table = ev.evaluate_detections(ds, tmp_path, CLASSES)
    assert list(table.columns) == ["class", "gts", "dets", "recall", "precision", "ap"]
    assert list(table["class"]) == ["cat", "dog", "bird"]
    cat_ap = 6 * 1.0 / 11  # precision [1, 1/2], recall [1/2, 1/2]
    assert table["ap"][0] == pytest.approx(cat_ap, abs=1e-12)
    assert math.isnan(table["ap"][1]) and math.isnan(table["ap"][2])
    assert ev.mean_ap(table) == pytest.approx(cat_ap, abs=1e-12)
    text = ev.format_report(table, 0.25)
    assert text.splitlines() == ["Avg predictime : 0.25", "", "", "Average Precision Per-class:",
                                 f"cat: {float(table['ap'][0])}", "dog: nan", "bird: nan", "",
                                 f"Average Precision Across All Classes:{float(table['ap'][0])}"]


def test_class_with_only_difficult_objects_is_zero_and_counted_like_the_devkit(tmp_path):
    """Recall 0/0 = NaN reaches no 11-point threshold: AP 0, in the mean; the area metric stays NaN."""
    anns = GT2 + [("b", [[60, 60, 80, 80]], [2], [1])]  # the only dog is difficult
    write_dets(tmp_path, "cat", [("a", 0.9, [0, 0, 10, 10]), ("a", 0.8, [40, 40, 50, 50])])
    write_dets(tmp_path, "dog", [("b", 0.9, [60, 60, 80, 80]), ("a", 0.5, [0, 0, 10, 10])])
    write_dets(tmp_path, "bird", [])
    table = ev.evaluate_detections(FakeDataset(anns), tmp_path, CLASSES)
    cat_ap = 6 * 1.0 / 11
    assert table["ap"][1] == 0.0 and table["gts"][1] == 0 and math.isnan(table["ap"][2])
    assert ev.mean_ap(table) == pytest.approx(cat_ap / 2, abs=1e-12)
    area = ev.evaluate_detections(FakeDataset(anns), tmp_path, CLASSES, use_2007_metric=False)
    assert math.isnan(area["ap"][1]) and ev.mean_ap(area) == pytest.approx(float(area["ap"][0]), abs=1e-12)


def test_missing_detection_file_is_a_clear_error(tmp_path):
    write_dets(tmp_path, "cat", [])
    with pytest.raises(ev.HRankError, match="det_test_dog.txt"):
        ev.evaluate_detections(FakeDataset(GT2), tmp_path, CLASSES)


def test_group_annotations_counts_non_difficult():
    anns = [("a", [[0, 0, 10, 10], [1, 1, 5, 5], [2, 2, 8, 8]], [1, 1, 2], [0, 1, 1]),
            ("b", [[3, 3, 9, 9]], [1], [0]), ("c", np.zeros((0, 4)), [], [])]
    npos, gt, diff = ev.group_annotations(FakeDataset(anns))
    assert npos == {1: 2}  # dog only has a difficult object
    assert sorted(gt) == [1, 2] and sorted(gt[1]) == ["a", "b"]
    assert gt[1]["a"].dtype == np.float32 and gt[1]["a"].shape == (2, 4)
    assert diff[1]["a"].tolist() == [False, True] and diff[2]["a"].tolist() == [True]


# ---------------------------------------------------------------- det files

def test_detection_files_round_trip(tmp_path):
    boxes = torch.tensor([[10.3, 20.7, 30.1, 40.9], [0.0, 0.0, 5.0, 5.0], [1.5, 2.5, 3.5, 4.5]])
    results = [(boxes, torch.tensor([1, 2, 1]), torch.tensor([0.9, 0.8, 0.123456789])),
               (torch.zeros((0, 4)), torch.zeros(0, dtype=torch.int64), torch.zeros(0))]
    paths = ev.write_detection_files(results, ["img1", "img2"], CLASSES, tmp_path)
    assert [p.name for p in paths] == ["det_test_cat.txt", "det_test_dog.txt", "det_test_bird.txt"]
    cat = (tmp_path / "det_test_cat.txt").read_text().splitlines()
    assert cat[0] == "img1 0.9 11.3 21.7 31.1 41.9"  # 1-based, float32 reprs
    assert cat[1] == "img1 0.12345679 2.5 3.5 4.5 5.5"
    assert (tmp_path / "det_test_bird.txt").read_text() == ""
    ids, scores, read = ev.read_detection_file(tmp_path / "det_test_cat.txt")
    assert ids == ["img1", "img1"]
    assert scores.dtype == np.float64 and scores.tolist() == [0.9, 0.12345679]
    expected = (boxes[[0, 2]].numpy() + np.float32(1)) - np.float32(1)  # float32 +1 then -1
    np.testing.assert_array_equal(read, expected)
    np.testing.assert_allclose(read, boxes[[0, 2]].numpy(), atol=2e-6)
    assert ev.read_detection_file(tmp_path / "det_test_bird.txt")[2].shape == (0, 4)


def test_bad_detection_line_is_a_clear_error(tmp_path):
    (tmp_path / "det_test_cat.txt").write_text("img1 0.5 1 2 3\n")
    with pytest.raises(ev.HRankError, match="image_id score x1 y1 x2 y2"):
        ev.read_detection_file(tmp_path / "det_test_cat.txt")


# ---------------------------------------------------------------- independent reference on random data

def reference_class_ap(dataset, det_file, class_index, iou_threshold=0.5, use_2007_metric=True):
    """Plain loops in pytorch-ssd's arithmetic (torch float32 IoU), with MATLAB's NaN-ignoring max."""
    npos, gts, diffs = 0, {}, {}
    for i in range(len(dataset)):
        image_id, (boxes, labels, difficult) = dataset.get_annotation(i)
        for b, lab, d in zip(boxes, labels, difficult):
            if int(lab) == class_index:
                npos += 0 if d else 1
                gts.setdefault(image_id, []).append(torch.tensor(b, dtype=torch.float32))
                diffs.setdefault(image_id, []).append(int(d))
    ids, scores, dboxes = [], [], []
    with open(det_file) as f:
        for line in f:
            t = line.rstrip().split(" ")
            ids.append(t[0])
            scores.append(float(t[1]))
            box = torch.tensor([float(v) for v in t[2:]])
            box -= 1.0
            dboxes.append(box)
    order = np.argsort(-np.array(scores))
    tp, fp, matched = [], [], set()
    for k in order:
        image_id, box = ids[k], dboxes[k]
        if image_id not in gts:
            tp.append(0)
            fp.append(1)
            continue
        ious = []
        for g in gts[image_id]:
            iw = torch.clamp(torch.min(box[2], g[2]) - torch.max(box[0], g[0]), min=0.0)
            ih = torch.clamp(torch.min(box[3], g[3]) - torch.max(box[1], g[1]), min=0.0)
            inter = iw * ih
            area_d = torch.clamp(box[2] - box[0], min=0.0) * torch.clamp(box[3] - box[1], min=0.0)
            area_g = torch.clamp(g[2] - g[0], min=0.0) * torch.clamp(g[3] - g[1], min=0.0)
            ious.append((inter / (area_d + area_g - inter + 1e-5)).item())
        best = 0
        for j in range(len(ious)):
            if ious[j] > ious[best]:
                best = j
        if ious[best] > iou_threshold:
            if diffs[image_id][best]:
                tp.append(0)
                fp.append(0)
            elif (image_id, best) in matched:
                tp.append(0)
                fp.append(1)
            else:
                tp.append(1)
                fp.append(0)
                matched.add((image_id, best))
        else:
            tp.append(0)
            fp.append(1)
    prec, rec, ctp, cfp = [], [], 0, 0
    for a, b in zip(tp, fp):
        ctp, cfp = ctp + a, cfp + b
        prec.append(ctp / (ctp + cfp) if ctp + cfp else math.nan)
        rec.append(ctp / npos)
    if use_2007_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            cands = [p for p, r in zip(prec, rec) if r >= t and not math.isnan(p)]
            ap = ap + (max(cands) if cands else 0) / 11.0
        return ap, any(math.isnan(p) for p in prec)
    mpre, mrec = [0.0] + prec + [0.0], [0.0] + rec + [1.0]
    for i in range(len(mpre) - 2, -1, -1):
        if math.isnan(mpre[i]) or mpre[i + 1] > mpre[i]:
            mpre[i] = mpre[i + 1]
    ap = 0.0
    for i in range(1, len(mrec)):
        if mrec[i] != mrec[i - 1]:
            ap += (mrec[i] - mrec[i - 1]) * mpre[i]
    return ap, any(math.isnan(p) for p in prec)


def random_case(seed, n_images=30):
    rng = np.random.default_rng(seed)
    anns, results, ids = [], [], []
    for i in range(n_images):
        image_id = f"{2007000000 + i:010d}"
        n = int(rng.integers(0, 5))
        xy = rng.uniform(0, 200, (n, 2))
        wh = rng.uniform(5, 120, (n, 2))
        boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
        labels = rng.integers(1, 4, n)
        difficult = (rng.random(n) < 0.2).astype(np.uint8)
        anns.append((image_id, boxes, labels, difficult))
        ids.append(image_id)
        det_boxes, det_labels, det_scores = [], [], []
        for b, lab in zip(boxes, labels):
            for _ in range(int(rng.integers(0, 3))):  # 0-2 jittered hits, duplicates included
                size = np.r_[b[2:] - b[:2], b[2:] - b[:2]]
                det_boxes.append(b + rng.normal(0, 0.12, 4) * size)
                det_labels.append(lab if rng.random() < 0.9 else rng.integers(1, 4))
                det_scores.append(rng.random())
        for _ in range(int(rng.integers(0, 4))):  # background false positives
            xy0 = rng.uniform(0, 250, 2)
            det_boxes.append(np.r_[xy0, xy0 + rng.uniform(5, 80, 2)])
            det_labels.append(rng.integers(1, 4))
            det_scores.append(rng.random())
        scores = np.asarray(det_scores, dtype=np.float32)
        if len(scores):
            scores[rng.random(len(scores)) < 0.3] = np.float32(0.5)  # ties
        results.append((torch.tensor(np.asarray(det_boxes, np.float32).reshape(-1, 4)),
                        torch.tensor(np.asarray(det_labels, np.int64)), torch.from_numpy(scores)))
    # detections on images the dataset does not know
    results.append((torch.tensor([[0.0, 0.0, 50.0, 50.0]]), torch.tensor([1]), torch.tensor([0.99])))
    ids.append("unknown_image")
    return FakeDataset(anns), results, ids


@pytest.mark.parametrize("seed", range(6))
def test_matches_independent_reference_on_random_data(tmp_path, seed):
    ds, results, ids = random_case(seed)
    ev.write_detection_files(results, ids, CLASSES, tmp_path)
    compared_plain = 0
    for use_2007 in (True, False):
        table = ev.evaluate_detections(ds, tmp_path, CLASSES, use_2007_metric=use_2007)
        for c, name in enumerate(CLASSES[1:], 1):
            ref, had_nan = reference_class_ap(ds, tmp_path / f"det_test_{name}.txt", c, use_2007_metric=use_2007)
            assert table["ap"][c - 1] == pytest.approx(ref, abs=1e-12), (seed, name, use_2007)
            compared_plain += not had_nan
        aps = list(table["ap"])
        assert ev.mean_ap(table) == pytest.approx(sum(aps) / len(aps), abs=1e-15)
    assert compared_plain > 0


def test_random_data_has_ties_difficult_and_duplicates(tmp_path):
    """The random cases really exercise the rules (otherwise the comparison above proves little)."""
    ds, results, ids = random_case(0)
    ev.write_detection_files(results, ids, CLASSES, tmp_path)
    npos, gt, diff = ev.group_annotations(ds)
    ignored = fp = tp = 0
    for c, name in enumerate(CLASSES[1:], 1):
        i, s, b = ev.read_detection_file(tmp_path / f"det_test_{name}.txt")
        _, t, f, _ = ev.match_ranked(i, s, b, gt.get(c, {}), diff.get(c, {}))
        ignored += int(((t == 0) & (f == 0)).sum())
        tp, fp = tp + int(t.sum()), fp + int(f.sum())
        assert len(set(s.tolist())) < len(s)  # ties
    assert ignored > 0 and tp > 10 and fp > 10


# ---------------------------------------------------------------- table, report

def test_save_table_and_report_without_timing(tmp_path):
    table = pd.DataFrame([{"class": "cat", "gts": 2, "dets": 3, "recall": 1.0, "precision": 2 / 3, "ap": 0.5},
                          {"class": "dog", "gts": 1, "dets": 0, "recall": 0.0, "precision": math.nan, "ap": 0.0}])
    path = ev.save_table(table, tmp_path / "sub" / "ap.csv")
    back = pd.read_csv(path)
    assert list(back.columns) == ["class", "gts", "dets", "recall", "precision", "ap"]
    assert back["precision"][0] == 2 / 3 and math.isnan(back["precision"][1])
    assert ev.format_report(table).splitlines() == ["Average Precision Per-class:", "cat: 0.5", "dog: 0.0", "",
                                                    "Average Precision Across All Classes:0.25"]


class FakePredictor:
    device = torch.device("cpu")

    def __init__(self):
        self.calls = 0

    def predict(self, image):
        self.calls += 1
        return torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.tensor([1]), torch.tensor([0.5])


def test_predict_dataset_warms_up_and_averages():
    ds = FakeDataset(GT2 + [("b", [[0, 0, 1, 1]], [2], [0])])
    pred = FakePredictor()
    results, avg = ev.predict_dataset(pred, ds, progress=False)
    assert pred.calls == 3 and len(results) == 2  # one warm-up call, not in the results
    assert avg >= 0.0


# ---------------------------------------------------------------- the eval command

def test_cli_missing_dataset_is_one_error_line(tmp_path, capsys):
    rc = main(["eval", "--dataset", str(tmp_path / "missing"), "--trained_model", str(tmp_path / "m.pth")])
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("error:") and "Traceback" not in err


def test_cli_missing_label_file_is_one_error_line(tmp_path, capsys):
    rc = main(["eval", "--dataset", str(tmp_path), "--trained_model", "m.pth",
               "--label_file", str(tmp_path / "labels.txt")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "label file" in err


def test_cli_model_and_detections_are_exclusive(tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["eval", "--dataset", str(tmp_path), "--trained_model", "m.pth", "--detections", str(tmp_path)])
    assert e.value.code == 2


def test_cli_evaluates_existing_detections(tmp_path, capsys, monkeypatch):
    from hrank_ssd.data import voc as data

    ds = FakeDataset(GT2)
    monkeypatch.setattr(data, "VOCDataset", lambda root, split=None, is_test=True, class_names=None: ds,
                        raising=False)
    dets = tmp_path / "dets"
    write_dets(dets, "cat", [("a", 0.95, [40, 40, 50, 50]), ("a", 0.9, [0, 0, 10, 10]),
                             ("a", 0.8, [20, 20, 30, 30])])
    write_dets(dets, "dog", [])
    write_dets(dets, "bird", [])
    out = tmp_path / "out"
    rc = main(["eval", "--dataset", str(tmp_path), "--detections", str(dets), "--eval_dir", str(out),
               "--use_2007_metric", "false", "--nms_method", "hard"])
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Average Precision Per-class:"
    assert float(lines[1].split(": ")[1]) == pytest.approx(2 / 3, abs=1e-12)
    assert lines[2:4] == ["dog: nan", "bird: nan"]
    assert lines[-1].startswith("Average Precision Across All Classes:")
    assert float(lines[-1].split(":")[1]) == pytest.approx(2 / 3, abs=1e-12)
    assert pd.read_csv(out / "ap.csv")["class"].tolist() == ["cat", "dog", "bird"]


# ---------------------------------------------------------------- end to end, on VOC folders

def test_cli_end_to_end_on_synthetic_voc(synthetic_voc, tmp_path, capsys):
    from hrank_ssd.data import voc as data
    from hrank_ssd.nets import models

    names = data.read_labels(synthetic_voc / "labels.txt")
    torch.manual_seed(0)
    model = models.build_model("vgg16-ssd", len(names), width=0.125)
    models.save_model(model, tmp_path / "tiny.pth")
    out = tmp_path / "eval"
    rc = main(["eval", "--dataset", str(synthetic_voc), "--trained_model", str(tmp_path / "tiny.pth"),
               "--eval_dir", str(out), "--device", "cpu", "--no_progress", "--net", "vgg16-ssd"])
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Avg predictime : ") and float(lines[0].split(" : ")[1]) > 0
    assert lines[1:4] == ["", "", "Average Precision Per-class:"]
    per_class = lines[4:4 + len(names) - 1]
    assert [line.split(": ")[0] for line in per_class] == names[1:]
    assert lines[-2] == "" and lines[-1].startswith("Average Precision Across All Classes:")
    for name in names[1:]:
        assert (out / f"det_test_{name}.txt").is_file()
    table = pd.read_csv(out / "ap.csv")
    assert table["class"].tolist() == names[1:]
    assert [float(line.split(": ")[1]) for line in per_class] == pytest.approx(table["ap"].tolist(), nan_ok=True)
    assert float(lines[-1].split(":")[1]) == pytest.approx(ev.mean_ap(table))
    # re-evaluating the written files gives the same report (apart from the timing)
    rc = main(["eval", "--dataset", str(synthetic_voc), "--detections", str(out), "--eval_dir", str(tmp_path / "e2")])
    assert rc == 0 and capsys.readouterr().out.splitlines() == lines[3:]


def test_cli_bad_checkpoint_is_one_error_line(synthetic_voc, tmp_path, capsys):
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    rc = main(["eval", "--dataset", str(synthetic_voc), "--trained_model", str(tmp_path / "bad.pth")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error:")


def test_ground_truth_as_detections_on_real_voc_sample(shared_data, tmp_path):
    """Oracle detections (every gt, difficult ones included) on real VOC2007 images: AP 1 for every class
    with ground truth, NaN for the rest, and the difficult hits are ignored rather than counted."""
    root = shared_data / "voc2007_sample" / "VOC2007" if shared_data else None
    if root is None or not (root / "ImageSets" / "Main" / "test.txt").is_file():
        pytest.skip("no ../shared/data/voc2007_sample")
    from hrank_ssd.data import voc as data

    ds = data.VOCDataset(root, split="test", is_test=True)
    results = []
    for i in range(len(ds)):
        _, (boxes, labels, _) = ds.get_annotation(i)
        results.append((torch.from_numpy(boxes), torch.from_numpy(labels), torch.linspace(0.9, 0.5, len(labels))))
    ev.write_detection_files(results, ds.ids, ds.class_names, tmp_path)
    table = ev.evaluate_detections(ds, tmp_path, ds.class_names)
    npos, _, _ = ev.group_annotations(ds)
    for c, row in enumerate(table.itertuples(), 1):
        if c in npos:
            assert row.ap == pytest.approx(1.0, abs=1e-12) and row.recall == 1.0 and row.gts == npos[c]
        else:
            assert math.isnan(row.ap)
    assert ev.mean_ap(table) == pytest.approx(1.0, abs=1e-12)


# ---------------------------------------------------------------- defaults and arguments users never pass

TP_FP_TP = [("a", 0.9, [0, 0, 10, 10]), ("a", 0.8, [40, 40, 50, 50]), ("a", 0.7, [20, 20, 30, 30])]
ELEVEN_POINT, AREA = 28 / 33, 5 / 6  # ranked TP, FP, TP over 2 gts (test_area_metric_differs_from_11_point...)


def tp_fp_tp_prediction():
    """TP_FP_TP as one image's ``Predictor.predict`` output: (boxes, labels, scores) tensors, all cats."""
    boxes = torch.tensor([d[2] for d in TP_FP_TP], dtype=torch.float32)
    return boxes, torch.tensor([1, 1, 1]), torch.tensor([d[1] for d in TP_FP_TP])


def test_the_default_metric_is_the_11_point_one_everywhere(tmp_path):
    """The reference mAPs (0.7731, 0.6953, 0.6759) are VOC2007 11-point APs: every entry point defaults to it."""
    assert ev.compute_ap([1.0, 0.5, 2 / 3], [0.5, 0.5, 1.0]) == pytest.approx(ELEVEN_POINT, abs=1e-12)
    assert run_class(tmp_path / "c", GT2, TP_FP_TP).ap == pytest.approx(ELEVEN_POINT, abs=1e-12)
    assert run_class(tmp_path / "d", GT2, TP_FP_TP, use_2007_metric=False).ap == pytest.approx(AREA, abs=1e-12)
    ds = FakeDataset(GT2)
    results = [tp_fp_tp_prediction()]
    assert ev.score_results(results, ds, tmp_path / "s")["ap"][0] == pytest.approx(ELEVEN_POINT, abs=1e-12)
    area = ev.score_results(results, ds, tmp_path / "t", use_2007_metric=False)
    assert area["ap"][0] == pytest.approx(AREA, abs=1e-12)


class ScriptedPredictor:
    """Stands in for ``Predictor``: remembers how evaluate_model built it, returns the same detections per image."""

    made = []

    def __init__(self, model, device="cpu", **kwargs):
        self.device = torch.device(device)
        ScriptedPredictor.made.append((model, device, kwargs))

    def predict(self, image):
        return tp_fp_tp_prediction()


def test_evaluate_model_builds_the_predictor_as_asked_and_scores_11_point(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ev, "Predictor", ScriptedPredictor)
    ScriptedPredictor.made.clear()
    model = object()
    table, avg = ev.evaluate_model(model, FakeDataset(GT2), tmp_path, device="meta", desc="scoring-bar",
                                   prob_threshold=0.3, top_k=7)
    assert ScriptedPredictor.made == [(model, "meta", {"prob_threshold": 0.3, "top_k": 7})]
    assert table["ap"][0] == pytest.approx(ELEVEN_POINT, abs=1e-12)
    assert "scoring-bar" in capsys.readouterr().err  # the progress bar, named as asked
    back = pd.read_csv(tmp_path / "ap.csv")
    assert back["ap"][0] == pytest.approx(ELEVEN_POINT, abs=1e-12) and back["dets"][0] == 3
    cats = ev.evaluate_model(model, FakeDataset(GT2), tmp_path / "cat", class_names=["BACKGROUND", "cat"],
                             progress=False)[0]
    assert list(cats["class"]) == ["cat"] and not (tmp_path / "cat" / "det_test_dog.txt").exists()
    assert capsys.readouterr().err == ""
    area = ev.evaluate_model(model, FakeDataset(GT2), tmp_path / "area", use_2007_metric=False, progress=False)[0]
    assert area["ap"][0] == pytest.approx(AREA, abs=1e-12)


def test_a_class_list_evaluates_those_classes_only(tmp_path):
    write_dets(tmp_path, "cat", TP_FP_TP)  # no dog or bird file: not asked for
    table = ev.evaluate_detections(FakeDataset(GT2), tmp_path, ["BACKGROUND", "cat"])
    assert table.to_dict("records") == [{"class": "cat", "gts": 2, "dets": 3, "recall": 1.0,
                                         "precision": pytest.approx(2 / 3), "ap": pytest.approx(ELEVEN_POINT)}]


def test_every_column_of_a_class_without_ground_truth(tmp_path):
    """No object, two detections: 0 gts, 2 dets, both FP, recall undefined (NaN), precision 0, AP NaN."""
    r = run_class(tmp_path, GT2, [("a", 0.9, [0, 0, 10, 10]), ("a", 0.4, [5, 5, 9, 9])], class_index=2)
    assert (r.gts, r.dets, r.tp, r.fp, r.precision) == (0, 2, 0, 2, 0.0)
    assert math.isnan(r.recall) and math.isnan(r.ap)
    write_dets(tmp_path, "cat", [])
    write_dets(tmp_path, "bird", [])
    table = ev.evaluate_detections(FakeDataset(GT2), tmp_path, CLASSES)
    dog = table.to_dict("records")[1]
    assert (dog["class"], dog["gts"], dog["dets"], dog["precision"]) == ("dog", 0, 2, 0.0)


def test_evaluation_is_silent_on_undefined_ratios(tmp_path):
    """0/0 precision and recall are NaN by the devkit's rules, not numpy RuntimeWarnings in a notebook."""
    import warnings

    write_dets(tmp_path, "cat", [])
    write_dets(tmp_path, "dog", [("a", 0.9, [0, 0, 10, 10])])
    write_dets(tmp_path, "bird", [])
    anns = GT2 + [("b", [[60, 60, 80, 80]], [3], [1])]  # the only bird is difficult
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = ev.evaluate_detections(FakeDataset(anns), tmp_path, CLASSES)
        r = run_class(tmp_path / "x", anns, [("b", 0.9, [60, 60, 80, 80])], class_index=3)
    assert table["ap"][0] == 0.0 and math.isnan(table["ap"][1]) and table["ap"][2] == 0.0
    assert (r.tp, r.fp) == (0, 0) and math.isnan(r.precision)  # matched a difficult object: ignored


def test_mean_ap_of_no_class_with_ground_truth_is_nan():
    assert math.isnan(ev.mean_ap(pd.DataFrame({"ap": []})))
    assert math.isnan(ev.mean_ap(pd.DataFrame({"ap": [math.nan, math.nan]})))


def test_a_disjoint_box_never_matches_even_at_threshold_zero(tmp_path):
    """IoU of boxes that do not touch is exactly 0, and the devkit needs IoU > threshold."""
    r = run_class(tmp_path, GT2, [("a", 0.9, [11, 11, 19, 19])], iou_threshold=0.0)
    assert (r.tp, r.fp) == (0, 1)
    r = run_class(tmp_path / "b", GT2, [("a", 0.9, [9, 9, 19, 19])], iou_threshold=0.0)  # a 1x1 overlap
    assert (r.tp, r.fp) == (1, 0)


def test_iou_of_a_box_under_one_pixel_wide(tmp_path):
    """pytorch-ssd's IoU has no +1: a 0.5-pixel-wide detection inside a 1-pixel-wide object has IoU 0.5."""
    gt = [("a", [[0, 0, 1, 10]], [1], [0])]
    assert (run_class(tmp_path, gt, [("a", 0.9, [0, 0, 0.5, 10])], iou_threshold=0.4).tp) == 1
    assert (run_class(tmp_path / "b", gt, [("a", 0.9, [0, 0, 0.5, 10])], iou_threshold=0.5).tp) == 0


def test_numpy_results_write_the_same_files_as_tensors(tmp_path):
    boxes, labels, scores = np.array([[1.0, 2.0, 3.0, 4.0]]), np.array([2]), np.array([0.75])
    ev.write_detection_files([(boxes, labels, scores)], ["img1"], CLASSES, tmp_path / "np")
    ev.write_detection_files([(torch.tensor(boxes), torch.tensor(labels), torch.tensor(scores))], ["img1"],
                             CLASSES, tmp_path / "torch")
    for name in ("cat", "dog", "bird"):
        assert (tmp_path / "np" / f"det_test_{name}.txt").read_text() == \
            (tmp_path / "torch" / f"det_test_{name}.txt").read_text()
    assert (tmp_path / "np" / "det_test_dog.txt").read_text() == "img1 0.75 2.0 3.0 4.0 5.0\n"


def test_the_dataset_names_the_classes_unless_told_and_no_class_is_an_empty_table(tmp_path):
    for name, dets in (("cat", TP_FP_TP), ("dog", []), ("bird", [])):
        write_dets(tmp_path, name, dets)
    table = ev.evaluate_detections(FakeDataset(GT2), tmp_path)
    assert list(table["class"]) == ["cat", "dog", "bird"]
    empty = ev.evaluate_detections(FakeDataset(GT2), tmp_path, ["BACKGROUND"])
    assert list(empty.columns) == ev.TABLE_COLUMNS and len(empty) == 0


def test_detection_files_skip_blank_lines_and_errors_name_the_line(tmp_path):
    path = tmp_path / "det_test_cat.txt"
    path.write_text("img1 0.5 1 2 3 4\n\n  \nimg2 0.25 2 3 4 5\n")
    ids, scores, boxes = ev.read_detection_file(path)
    assert ids == ["img1", "img2"] and scores.tolist() == [0.5, 0.25]
    assert boxes.tolist() == [[0, 1, 2, 3], [1, 2, 3, 4]]
    path.write_text("img1 0.5 1 2 3 4\n\nimg2 0.25 2 3 4\n")
    with pytest.raises(ev.HRankError) as e:
        ev.read_detection_file(path)
    assert str(e.value) == f"{path}:3 should read 'image_id score x1 y1 x2 y2', got 'img2 0.25 2 3 4'"
    path.write_text("img1 0.5 1 2 3 four\n")
    with pytest.raises(ev.HRankError) as e:
        ev.read_detection_file(path)
    assert str(e.value) == f"{path}:1 has a non-numeric value: 'img1 0.5 1 2 3 four'"
    long_id = "i" * 100  # errors quote the line's first 80 characters
    path.write_text(f"{long_id} 0.5 1 2 3\n")
    with pytest.raises(ev.HRankError) as e:
        ev.read_detection_file(path)
    assert str(e.value).endswith(f"got {long_id[:80]!r}")
    path.write_text(f"{long_id} 0.5 1 2 3 x\n")
    with pytest.raises(ev.HRankError) as e:
        ev.read_detection_file(path)
    assert str(e.value).endswith(f"non-numeric value: {long_id[:80]!r}")


def test_detection_files_need_one_result_per_image(tmp_path):
    with pytest.raises(ev.HRankError) as e:
        ev.write_detection_files([], ["img1"], CLASSES, tmp_path)
    assert str(e.value) == ("0 prediction results for 1 images: predict every image of the dataset before "
                            "writing detection files")


class SleepingPredictor(FakePredictor):
    def predict(self, image):
        time.sleep(0.01)
        return super().predict(image)


def test_predict_dataset_times_each_image_and_averages_them():
    """Mean seconds per timed image: at least the 10 ms each prediction sleeps, at most the whole call / images."""
    ds = FakeDataset(GT2 + [("b", [[0, 0, 1, 1]], [2], [0]), ("c", [[0, 0, 1, 1]], [2], [0])])
    start = time.perf_counter()
    results, avg = ev.predict_dataset(SleepingPredictor(), ds, progress=False)
    wall = time.perf_counter() - start
    assert len(results) == 3 and 0.01 <= avg <= wall / 3


class OneImage(FakeDataset):
    """A dataset of one image that remembers which images were read (a real one has no image 1)."""

    def __init__(self):
        super().__init__(GT2)
        self.read = []

    def get_image(self, i):
        if i >= len(self):
            raise IndexError(i)
        self.read.append(i)
        return super().get_image(i)


def test_predict_dataset_on_one_image_and_on_none(capsys):
    pred, ds = FakePredictor(), OneImage()
    results, _ = ev.predict_dataset(pred, ds)
    assert len(results) == 1 and pred.calls == 2 and ds.read == [0, 0]  # warm-up on the first image
    assert "predict: 100%" in capsys.readouterr().err  # a bar by default, named "predict"
    with pytest.raises(ev.HRankError) as e:
        ev.predict_dataset(FakePredictor(), FakeDataset([]), progress=False)
    assert str(e.value) == "the dataset has no images: check --dataset and --split"


def test_match_ranked_says_which_object_each_hit_matched(tmp_path):
    """The ranking, the flags and the matched object's index; the detections read back from their files."""
    annotations = [("1", [[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], [1, 1, 1], [0, 0, 1])]
    npos, gt, diff = ev.group_annotations(FakeDataset(annotations))
    dets = [("1", 0.5, [20, 20, 30, 30]), ("1", 0.9, [0, 0, 10, 10]), ("1", 0.7, [0, 0, 10, 10]),
            ("1", 0.95, [40, 40, 50, 50]), ("1", 0.1, [60, 60, 70, 70])]
    write_dets(tmp_path, "cat", dets)
    read = ev.read_detections(tmp_path, ["BACKGROUND", "cat"])
    assert list(read) == [1] and read[1][0] == ["1"] * 5
    order, tp, fp, matched = ev.match_ranked(*read[1], gt[1], diff[1])
    assert order.tolist() == [3, 1, 2, 0, 4]  # by score: the difficult one, a hit, its duplicate, a hit, a miss
    assert tp.tolist() == [0, 1, 0, 1, 0] and fp.tolist() == [0, 0, 1, 0, 1]
    assert matched.tolist() == [-1, 0, -1, 1, -1]
    precision, recall = ev.precision_recall(tp, fp, npos[1])
    assert np.isnan(precision[0]) and precision[1:].tolist() == [1.0, 0.5, 2 / 3, 0.5]
    assert recall.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]
    assert np.isnan(ev.precision_recall(tp, fp, 0)[1]).all()  # no objects: no recall
    assert [a.tolist() for a in ev.match_ranked(*read[1], gt[1], diff[1])[1:3]] == [tp.tolist(), fp.tolist()]
