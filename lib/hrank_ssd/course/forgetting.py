"""What pruning forgets (Hooker et al., 2019): AP per class and object size against the unpruned parent, and the
objects the parent finds that the pruned model misses, read from the evaluation's detection files."""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np
import pandas as pd

from hrank_ssd.course.checking import attempt
from hrank_ssd.course.models import BY_KEY
from hrank_ssd.course.report_tables import YOURS, title
from hrank_ssd.measure import evaluation as ev

SIZES = ("small", "medium", "large")
SCORE = 0.5  # the operating point: a model finds an object when a detection of this score or more matches it
AGREE = 1e-12  # two 11-point APs of the same curve: eleven terms of at most 1/11, rounding far below this


def parent(key: str) -> Optional[str]:
    """The unpruned model a compared model was pruned from (yours: VGG16-SSD); None for an unpruned one."""
    net = "vgg16-ssd" if key.startswith(YOURS) else getattr(BY_KEY.get(key), "net", None)
    return net if net != key else None


def ap_change(per_class: pd.DataFrame, by: str = "class", value: str = "ap") -> pd.DataFrame:
    """Class (``by``) x pruned model (titles): its AP (``value``) minus its parent's, where its parent is there."""
    piv = per_class.pivot_table(index=by, columns="model", values=value, sort=False)
    keys = [k for k in dict.fromkeys(per_class["model"]) if parent(k) in piv.columns]
    return pd.DataFrame({title(k): piv[k] - piv[parent(k)] for k in keys})


def class_sentence(change: pd.DataFrame, per_class: pd.DataFrame) -> str:
    """Which class the pruned models lose most on, the largest single change and any class a model lost entirely."""
    mean, (cls, model) = change.mean(axis=1), change.stack().idxmin()
    piv = per_class.pivot_table(index="class", columns="model", values="ap", sort=False)
    text = ('Hooker et al., "What do compressed deep neural networks forget?" (2019) asks what a compressed network '
            f"forgets. Here the class that loses most on average over the {change.shape[1]} pruned models is "
            f"{mean.idxmin()} ({mean.min():+.4f} AP); the largest single change is {change.loc[cls, model]:+.4f} "
            f"({cls}, {model}).")
    lost = [f"{title(k)} finds no {c}" for k in piv.columns if parent(k) in piv.columns
            for c in piv.index if piv.loc[c, k] == 0 < piv.loc[c, parent(k)]]
    return text + (f" Lost entirely: {'; '.join(lost)}." if lost else "")


def _area(boxes: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).T
    return (x2 - x1) * (y2 - y1)


def size_bounds(dataset) -> Tuple[float, float]:
    """Box areas (pixels) cutting the test set's objects (difficult ones aside) into thirds: small, medium, large."""
    _, gts, difficult = ev.group_annotations(dataset)
    areas = [_area(b)[~difficult[c][i]] for c, per in gts.items() for i, b in per.items()]
    return tuple(float(q) for q in np.quantile(np.concatenate(areas), [1 / 3, 2 / 3]))


def ap_by_size(dataset, eval_dirs: Dict[str, object], bounds: Tuple[float, float]) -> pd.DataFrame:
    """mAP of each model on each size's objects; other sizes are ignored as difficult ones are (as COCO)."""
    _, gts, difficult = ev.group_annotations(dataset)
    rows = []
    for key, folder in eval_dirs.items():
        dets = ev.read_detections(folder, dataset.class_names)
        for s, size in enumerate(SIZES):
            aps, objects = [], 0
            for c, (ids, scores, boxes) in dets.items():
                ignored = {i: difficult[c][i] | (np.digitize(_area(b), bounds) != s) for i, b in gts.get(c, {}).items()}
                n = sum(int((~v).sum()) for v in ignored.values())
                if n:
                    order, tp, fp, _ = ev.match_ranked(ids, scores, boxes, gts[c], ignored)
                    fp[np.digitize(_area(boxes[order]), bounds) != s] = 0
                    aps.append(ev.compute_ap(*ev.precision_recall(tp, fp, n)) if len(tp) else 0.0)
                    objects += n
            rows.append({"model": key, "size": size, "objects": objects, "mAP": np.mean(aps) if aps else np.nan})
    return pd.DataFrame(rows)


def size_change(sizes: pd.DataFrame) -> pd.DataFrame:
    """Pruned model (titles) x size: its mAP on that size's objects minus its parent's."""
    return ap_change(sizes, "size", "mAP").T


def size_sentence(sizes: pd.DataFrame, change: pd.DataFrame, bounds: Tuple[float, float]) -> str:
    """The thresholds, each size's objects and the size the pruned models lose most on."""
    mean, objects = change.mean(), sizes.groupby("size")["objects"].first()
    return (f"By size (the test set's objects cut into thirds by box area: {objects['small']} small below "
            f"{bounds[0] ** 0.5:.0f}² px, {objects['medium']} medium, {objects['large']} large from "
            f"{bounds[1] ** 0.5:.0f}² px), the pruned models lose most on {mean.idxmin()} objects "
            f"({mean.min():+.4f} AP on average; " + ", ".join(f"{s} {mean[s]:+.4f}" for s in SIZES) + ").")


def _found(ann, dets, score: float) -> Dict[tuple, tuple]:
    """{(class, image, object index): (score, box)} of the objects a model's detections of ``score`` or more find."""
    _, gts, difficult = ann
    out = {}
    for c, (ids, scores, boxes) in dets.items():
        keep = np.flatnonzero(scores >= score)
        order, tp, _, gt = ev.match_ranked([ids[k] for k in keep], scores[keep], boxes[keep], gts.get(c, {}),
                                        difficult.get(c, {}))
        for rank in np.flatnonzero(tp):
            k = keep[order[rank]]
            out[(c, ids[k], int(gt[rank]))] = (float(scores[k]), boxes[k])
    return out


def forgotten(dataset, parent_dir, pruned_dir, n: int = 4, score: float = SCORE) -> pd.DataFrame:
    """Up to ``n`` images where the parent finds an object (at ``score``) that the pruned model misses, surest
    first, with the parent's score and box and the pruned model's detections there."""
    ann, names = ev.group_annotations(dataset), dataset.class_names
    pruned = ev.read_detections(pruned_dir, names)
    theirs, ours = _found(ann, ev.read_detections(parent_dir, names), score), _found(ann, pruned, score)
    lost = sorted((k for k in theirs if k not in ours), key=lambda k: (-theirs[k][0], k[1], k[0], k[2]))
    rows = []
    for c, image, g in lost:
        if len(rows) < n and image not in {r["image_id"] for r in rows}:
            there = [(names[d], float(s), b) for d, (ids, scores, boxes) in pruned.items()
                     for i, s, b in zip(ids, scores, boxes) if i == image and s >= score]
            rows.append({"image_id": image, "class": names[c], "object": ann[1][c][image][g],
                         "score": theirs[(c, image, g)][0], "box": theirs[(c, image, g)][1], "pruned": there})
    return pd.DataFrame(rows, columns=["image_id", "class", "object", "score", "box", "pruned"])


def class_curves(dataset, det_dir) -> Dict[str, tuple]:
    """Per class with objects: ``(objects, precision, recall)`` of its ranked detections (where defined)."""
    npos, gts, difficult = ev.group_annotations(dataset)
    out = {}
    for c, (ids, scores, boxes) in ev.read_detections(det_dir, dataset.class_names).items():
        if npos.get(c, 0):
            _, tp, fp, _ = ev.match_ranked(ids, scores, boxes, gts.get(c, {}), difficult.get(c, {}))
            precision, recall = ev.precision_recall(tp, fp, npos[c])
            ok = ~np.isnan(precision)
            out[dataset.class_names[c]] = (npos[c], precision[ok].tolist(), recall[ok].tolist())
    return out


def student_ap_table(fn, curves: Dict[str, tuple], library: pd.DataFrame) -> pd.DataFrame:
    """Per class: ``fn(precision, recall)`` beside the library's AP (``library``: the per-class table), and one
    line: whether they agree (:func:`agreement`), or why the library's AP stands in."""
    lib = {name: float(ap) for name, ap in zip(library["class"], library["ap"])}
    yours, why = attempt(lambda: {name: float(fn(list(p), list(r))) for name, (_, p, r) in curves.items()})
    if why:
        print(f"your voc07_ap {why}; this table uses the library's AP (evaluation.compute_ap)")
    table = pd.DataFrame([{"class": name, "objects": n, "AP (yours)": (yours or lib)[name], "AP (library)": lib[name]}
                          for name, (n, _, _) in curves.items()])
    table["difference"] = table["AP (yours)"] - table["AP (library)"]
    if yours is not None:
        print(agreement(table, curves))
    return table


def agreement(table: pd.DataFrame, curves: Dict[str, tuple]) -> str:
    """Whether the AP columns agree within :data:`AGREE`; where not, a recall exactly on a point the library's
    ``np.arange(0, 1.1, 0.1)`` writes a little above i / 10."""
    off = table.loc[~(table["difference"].abs() <= AGREE), "class"]
    if not len(off):
        return f"your AP equals the library's in all {len(table)} classes (within {AGREE:g})"
    points = {i / 10: float(t) for i, t in enumerate(np.arange(0.0, 1.1, 0.1)) if t != i / 10}
    edge = {c: min(set(curves[c][2]) & set(points), default=None) for c in off}
    return (f"your AP differs from the library's (by more than {AGREE:g}) in {len(off)} of {len(table)} classes: "
            + ", ".join(c if edge[c] is None else f"{c} (its recall is exactly {edge[c]}, a recall point the library "
                        f"writes as {points[edge[c]]!r})" for c in off))
