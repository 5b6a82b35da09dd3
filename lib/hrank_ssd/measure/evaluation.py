"""PASCAL VOC detection metric as pytorch-ssd's ``eval_ssd.py`` (the MATLAB devkit where it crashes or returns
NaN: docs/evaluation.md): detection files in and out, per-class AP and the mAP report."""

from __future__ import annotations

import math
from collections import namedtuple
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import torch

from hrank_ssd.errors import HRankError
from hrank_ssd.io.files import atomic_write_text
from hrank_ssd.measure.bench import clocked
from hrank_ssd.nets.predictor import Predictor
from hrank_ssd.progress import tqdm

TABLE_COLUMNS = ["class", "gts", "dets", "recall", "precision", "ap"]
_EPS = np.float32(1e-5)
_ONE = np.float32(1.0)


def compute_ap(precision, recall, use_2007_metric: bool = True) -> float:
    """AP of a ranked list from its cumulative precision and recall (NaN precisions skipped, as MATLAB's ``max``)."""
    precision, recall = np.asarray(precision, dtype=np.float64), np.asarray(recall, dtype=np.float64)
    valid = ~np.isnan(precision)
    precision, recall = precision[valid], recall[valid]
    if use_2007_metric:  # the devkit's thresholds: numpy's arange, each max added in turn
        return float(sum((np.max(precision[recall >= t]) if (recall >= t).any() else 0) / 11.0
                         for t in np.arange(0.0, 1.1, 0.1)))
    precision = np.maximum.accumulate(np.concatenate([[0.0], precision, [0.0]])[::-1])[::-1]  # the envelope
    recall = np.concatenate([[0.0], recall, [1.0]])
    changes = np.where(recall[1:] != recall[:-1])[0]
    return float(((recall[changes + 1] - recall[changes]) * precision[changes + 1]).sum())


def group_annotations(dataset) -> tuple:
    """``(npos, gt_boxes, difficult)`` by class, then image id: non-difficult counts, float32 Nx4 pixel boxes, flags."""
    npos: Dict[int, int] = {}
    boxes: Dict[int, Dict[str, list]] = {}
    difficult: Dict[int, Dict[str, list]] = {}
    for i in range(len(dataset)):
        image_id, (gt, labels, is_difficult) = dataset.get_annotation(i)
        gt = np.asarray(gt, dtype=np.float32).reshape(-1, 4)
        for box, label, diff in zip(gt, np.asarray(labels).reshape(-1), np.asarray(is_difficult).reshape(-1)):
            c = int(label)
            if not diff:
                npos[c] = npos.get(c, 0) + 1
            boxes.setdefault(c, {}).setdefault(image_id, []).append(box)
            difficult.setdefault(c, {}).setdefault(image_id, []).append(bool(diff))
    gt_boxes = {c: {k: np.stack(v).astype(np.float32) for k, v in per.items()} for c, per in boxes.items()}
    flags = {c: {k: np.asarray(v, dtype=bool) for k, v in per.items()} for c, per in difficult.items()}
    return npos, gt_boxes, flags


def detection_path(eval_dir, class_name: str) -> Path:
    return Path(eval_dir) / f"det_test_{class_name}.txt"


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def write_detection_files(results: Sequence, dataset_ids: Sequence[str], class_names: Sequence[str],
                          eval_dir) -> List[Path]:
    """``det_test_<class>.txt`` (``image_id score x1 y1 x2 y2``, 1-based) of every class but BACKGROUND."""
    if len(results) != len(dataset_ids):
        raise HRankError(f"{len(results)} prediction results for {len(dataset_ids)} images: "
                         f"predict every image of the dataset before writing detection files")
    lines: Dict[int, List[str]] = {c: [] for c in range(1, len(class_names))}
    for image_id, (boxes, labels, scores) in zip(dataset_ids, results):  # pixel boxes xyxy
        boxes = _numpy(boxes).astype(np.float32).reshape(-1, 4) + _ONE  # matlab's indexes start from 1
        scores = _numpy(scores).astype(np.float32).reshape(-1)
        for box, label, score in zip(boxes, _numpy(labels).reshape(-1), scores):
            c = int(label)
            if c in lines:
                lines[c].append(" ".join([str(image_id), str(score)] + [str(v) for v in box]))  # float32 reprs
    for c, rows in lines.items():
        atomic_write_text(detection_path(eval_dir, class_names[c]), "".join(row + "\n" for row in rows))
    return [detection_path(eval_dir, class_names[c]) for c in lines]


def read_detection_file(path) -> Tuple[List[str], np.ndarray, np.ndarray]:
    """``(image_ids, scores float64, boxes float32 Nx4 0-based)`` from one detection file."""
    path = Path(path)
    if not path.is_file():
        raise HRankError(f"detection file not found: {path}; point --detections at the folder holding "
                         f"det_test_<class>.txt for every class of the label file")
    ids, scores, boxes = [], [], []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 6:
            raise HRankError(f"{path}:{n} should read 'image_id score x1 y1 x2 y2', got {line[:80]!r}")
        try:
            values = [float(v) for v in parts[1:]]
        except ValueError:
            raise HRankError(f"{path}:{n} has a non-numeric value: {line[:80]!r}") from None
        ids.append(parts[0])
        scores.append(values[0])
        boxes.append(values[1:])
    box_array = np.asarray(boxes, dtype=np.float32).reshape(-1, 4) - _ONE  # back to 0-based pixels
    return ids, np.asarray(scores, dtype=np.float64), box_array


def read_detections(det_dir, class_names: Sequence[str]) -> Dict[int, Tuple[List[str], np.ndarray, np.ndarray]]:
    """Every class's :func:`read_detection_file` of a folder, by class index (BACKGROUND, index 0, has none)."""
    return {c: read_detection_file(detection_path(det_dir, name)) for c, name in enumerate(class_names) if c}


# One class's counts, final recall and precision (NaN when undefined), AP (NaN without ground truth).
ClassResult = namedtuple("ClassResult", "gts dets tp fp recall precision ap")


def _iou(box: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """float32 IoU of one box with many, pytorch-ssd's ``iou_of`` arithmetic."""
    wh = np.clip(np.minimum(box[2:], gts[:, 2:]) - np.maximum(box[:2], gts[:, :2]), np.float32(0), None)
    inter = wh[:, 0] * wh[:, 1]
    wh_a = np.clip(box[2:] - box[:2], np.float32(0), None)
    wh_b = np.clip(gts[:, 2:] - gts[:, :2], np.float32(0), None)
    area_a = wh_a[0] * wh_a[1]
    area_b = wh_b[:, 0] * wh_b[:, 1]
    return inter / (area_a + area_b - inter + _EPS)


def match_ranked(image_ids: Sequence[str], scores, boxes, gt_boxes: Dict[str, np.ndarray],
                 difficult: Dict[str, np.ndarray], iou_threshold: float = 0.5):
    """``(order, tp, fp, gt)``: detections ranked by score, float flags (both 0: matched a difficult gt) and the
    index in its image of the ground truth each true positive matched (-1 for the others)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64))
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    tp, fp, gt, matched = np.zeros(len(order)), np.zeros(len(order)), np.full(len(order), -1), set()
    for rank, k in enumerate(order):
        image_id = image_ids[k]
        gts = gt_boxes.get(image_id)
        ious = _iou(boxes[k], gts) if gts is not None and len(gts) else None
        best = int(np.argmax(ious)) if ious is not None else -1
        if ious is None or not float(ious[best]) > iou_threshold or (image_id, best) in matched:
            fp[rank] = 1
        elif not difficult[image_id][best]:  # a difficult match is neither TP nor FP
            tp[rank], gt[rank] = 1, best
            matched.add((image_id, best))
    return order, tp, fp, gt


def precision_recall(tp, fp, npos: int) -> Tuple[np.ndarray, np.ndarray]:
    """Cumulative precision (NaN before anything counts) and recall (NaN without ground truth) of ranked flags."""
    ctp, cfp = np.cumsum(tp), np.cumsum(fp)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = ctp / (ctp + cfp)
    return precision, ctp / npos if npos else np.full(len(ctp), math.nan)


def evaluate_class(npos: int, gt_boxes: Dict[str, np.ndarray], difficult: Dict[str, np.ndarray],
                   path, iou_threshold: float = 0.5, use_2007_metric: bool = True) -> ClassResult:
    """AP of one class from its detection file."""
    image_ids, scores, boxes = read_detection_file(path)
    _, tp, fp, _ = match_ranked(image_ids, scores, boxes, gt_boxes, difficult, iou_threshold)
    precision, recall = precision_recall(tp, fp, npos)
    n_tp, n_fp = int(tp.sum()), int(fp.sum())
    final_precision = n_tp / (n_tp + n_fp) if n_tp + n_fp else math.nan
    if npos == 0:  # edge cases (b) and (b'): recall is 0/0
        only_difficult = any(len(b) for b in gt_boxes.values())
        ap = 0.0 if only_difficult and use_2007_metric else math.nan  # the devkit's 11 terms are all 0
        return ClassResult(0, len(tp), n_tp, n_fp, math.nan, final_precision, ap)
    ap = compute_ap(precision, recall, use_2007_metric) if len(tp) else 0.0  # (c): no detections
    return ClassResult(int(npos), len(tp), n_tp, n_fp, n_tp / npos, final_precision, ap)


def evaluate_detections(dataset, det_dir, class_names: Optional[Sequence[str]] = None,
                        iou_threshold: float = 0.5, use_2007_metric: bool = True) -> pd.DataFrame:
    """Per-class table (class, gts, dets, recall, precision, ap) from ``det_test_<class>.txt`` files."""
    class_names = list(class_names if class_names is not None else dataset.class_names)
    npos, gt_boxes, difficult = group_annotations(dataset)
    rows = []
    for c, name in enumerate(class_names[1:], 1):  # all but BACKGROUND
        r = evaluate_class(npos.get(c, 0), gt_boxes.get(c, {}), difficult.get(c, {}),
                           detection_path(det_dir, name), iou_threshold, use_2007_metric)
        rows.append({"class": name, **r._asdict()})
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def mean_ap(table: pd.DataFrame) -> float:
    """mAP over the classes that have ground truth (NaN APs left out), summed in class order."""
    aps = [float(a) for a in table["ap"] if not math.isnan(float(a))]
    return sum(aps) / len(aps) if aps else math.nan


def predict_dataset(predictor, dataset, progress: bool = True, desc: str = "predict") -> Tuple[list, float]:
    """``(results, mean seconds per image)``: every image predicted after one untimed warm-up, timed between syncs."""
    n = len(dataset)
    if n == 0:
        raise HRankError("the dataset has no images: check --dataset and --split")
    device = getattr(predictor, "device", "cpu")
    predictor.predict(dataset.get_image(0))  # warm-up, not counted
    images = (dataset.get_image(i) for i in tqdm(range(n), desc=desc, unit="img", disable=not progress))
    results, seconds = zip(*[clocked(lambda image=image: predictor.predict(image), device) for image in images])
    return list(results), sum(seconds) / n


def evaluate_model(model, dataset, eval_dir, device="cpu", class_names: Optional[Sequence[str]] = None,
                   iou_threshold: float = 0.5, use_2007_metric: bool = True, progress: bool = True,
                   desc: str = "predict", **predictor_kwargs) -> Tuple[pd.DataFrame, float]:
    """Predict the dataset, write det files and ``ap.csv`` into ``eval_dir``; returns (table, avg seconds)."""
    predictor = Predictor(model, device, **predictor_kwargs)
    results, avg_time = predict_dataset(predictor, dataset, progress, desc)
    return score_results(results, dataset, eval_dir, class_names, iou_threshold, use_2007_metric), avg_time


def score_results(results: Sequence, dataset, eval_dir, class_names: Optional[Sequence[str]] = None,
                  iou_threshold: float = 0.5, use_2007_metric: bool = True) -> pd.DataFrame:
    """Detections of every image of ``dataset`` (in order) -> det files, ``ap.csv`` and the per-class table."""
    class_names = list(class_names if class_names is not None else dataset.class_names)
    write_detection_files(results, list(dataset.ids), class_names, eval_dir)
    table = evaluate_detections(dataset, eval_dir, class_names, iou_threshold, use_2007_metric)
    save_table(table, Path(eval_dir) / "ap.csv")
    return table


def format_report(table: pd.DataFrame, avg_time: Optional[float] = None) -> str:
    """The original project's eval_ssd.py printout (``Avg predictime`` omitted when ``avg_time`` is None)."""
    lines = [f"Avg predictime : {avg_time}", "", ""] if avg_time is not None else []
    lines.append("Average Precision Per-class:")
    lines += [f"{name}: {float(ap)}" for name, ap in zip(table["class"], table["ap"])]
    lines += ["", f"Average Precision Across All Classes:{mean_ap(table)}"]
    return "\n".join(lines)


def save_table(table: pd.DataFrame, path) -> Path:
    """Write the per-class table as CSV (atomically); returns the path."""
    atomic_write_text(path, table[TABLE_COLUMNS].to_csv(index=False))
    return Path(path)
