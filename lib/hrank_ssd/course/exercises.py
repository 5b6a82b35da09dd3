"""The course's exercises: each ``check_*`` runs a student's function on a few cases against the library's answer
and prints ``correct: ...`` or ``not yet: ...`` with a hint, never raising (:mod:`hrank_ssd.course.checking`).
Each check's ``hint(case, got)`` names a mistake it recognises in ``got``, and returns None for any other."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

from hrank_ssd.course.checking import Case, array_of, close, integer, number, run_check, same_int, short
from hrank_ssd.hrank.pruning import select_filters
from hrank_ssd.hrank.ranks import batched_ranks
from hrank_ssd.measure.evaluation import compute_ap
from hrank_ssd.measure.flops import conv_macs
from hrank_ssd.nets.ssd import kept_channels
from hrank_ssd.train.losses import MultiBoxLoss


def _low_rank(rows: int, cols: int, rank: int, seed: int) -> torch.Tensor:
    """A (rows, cols) map of rank exactly ``rank``: that many random rows, the others zero."""
    g = torch.Generator().manual_seed(seed)
    fmap = torch.zeros(rows, cols)
    fmap[:rank] = torch.rand(rank, cols, generator=g) + 0.1
    return fmap


def check_feature_map_rank(fn) -> bool:
    """Notebook 01: ``fn(fmap) -> int``, the rank of one (H, W) feature map, against ``matrix_rank``."""
    g = torch.Generator().manual_seed(0)
    maps = [(torch.outer(torch.arange(1.0, 9.0), torch.linspace(-1, 1, 8)), "an 8x8 map whose rows are multiples of one"),
            (torch.randn(8, 8, generator=g), "8x8 random noise"),
            (torch.zeros(8, 8), "an 8x8 all-zero map (a dead ReLU)"),
            (_low_rank(10, 10, 3, seed=1), "a 10x10 map with three nonzero rows"),
            (torch.relu(torch.randn(6, 9, generator=g)), "a 6x9 map after ReLU")]
    cases = [Case((m,), label, int(torch.linalg.matrix_rank(m))) for m, label in maps]

    def hint(case, got):
        fmap = case.args[0]
        if integer(got) in (fmap.shape[0], fmap.shape[1]) and case.want < min(fmap.shape):
            return "that is the map's size, not its rank: how many of its rows are linearly independent?"

    return run_check("feature_map_rank", fn, cases, same_int, "torch.linalg.matrix_rank", hint,
                "torch.linalg.matrix_rank(fmap) counts the singular values above a small tolerance; int(...) turns "
                "its 0-d tensor into a number")


def check_average_rank(fn) -> bool:
    """Notebook 01: ``fn(maps) -> C values``, each filter's rank averaged over the images (HRank's score)."""
    g = torch.Generator().manual_seed(2)
    a = torch.relu(torch.randn(3, 5, 8, 8, generator=g))
    a[0, 1], a[1, 1], a[2, 3] = _low_rank(8, 8, 1, 3), 0.0, _low_rank(8, 8, 2, 4)
    b = torch.relu(torch.randn(4, 2, 6, 10, generator=g))
    b[:, 0] = 0.0  # a dead filter: rank 0 on every image
    c = torch.relu(torch.randn(1, 3, 5, 5, generator=g))
    cases = [Case((m,), f"maps of shape {list(m.shape)} (images, filters, H, W)", batched_ranks(m).mean(0))
             for m in (a, b, c)]

    def hint(case, got):
        maps = case.args[0]
        shape = array_of(got).shape
        if shape == (maps.shape[0],) and maps.shape[0] != maps.shape[1]:
            return "one value per image: you averaged over the filters (dim 1); average each filter over dim 0"
        if shape == tuple(maps.shape[:2]):
            return "these are the ranks of every map: now average over the images (dim 0)"
        if close(got, case.want * maps.shape[0]):
            return "that is the sum over the images: divide by the number of images (the mean)"

    return run_check("average_rank", fn, cases, close, "batched_ranks(maps).mean(0)", hint,
                "rank each of the B x C maps (feature_map_rank), then average each filter's ranks over the images: "
                "a result of C values")


def check_kept_count(fn) -> bool:
    """Notebook 02: ``fn(channels, rate) -> int``, the filters a layer keeps, against ``kept_channels``."""
    pairs = [(64, 0.1), (128, 0.1), (256, 0.1), (512, 0.5), (1024, 0.3), (3, 0.9), (100, 0.7), (20, 0.9), (64, 0.0)]
    cases = [Case((c, r), f"channels={c}, rate={r}", kept_channels(c, r)) for c, r in pairs]

    def hint(case, got):
        c, r = case.args
        got = integer(got)
        if got == int(c * (1 - r)) == 0:
            return "a layer keeps at least one filter (max(1, ...)): with none left the network would be cut in two"
        if got == int(c - c * r) != int(c * (1 - r)):
            return (f"same idea, but floats round differently: {c} - {c} * {r} = {c - c * r!r}, while HRank computes "
                    f"int({c} * (1 - {r})) = int({c * (1 - r)!r}); write it HRank's way, or your widths will not "
                    f"match the original's pruned models")
        if got == round(c * (1 - r)):
            return f"int() rounds down (HRank's rule): {c} * {1 - r:g} = {c * (1 - r):g} keeps {case.want}; round() gives {got}"
        if got == c - int(c * (1 - r)) or got == int(c * r):
            return "that is how many filters go; the layer keeps c * (1 - rate)"

    return run_check("kept_count", fn, cases, same_int, "kept_channels (HRank's int(c * (1 - rate)))", hint,
                "keep int(channels * (1 - rate)) filters, and never fewer than one")


def _indices(value) -> Optional[list]:
    """``value`` as a sorted list of ints when it is a sequence of integral numbers; None otherwise."""
    arr = array_of(value).ravel()
    if arr.size and not (np.isfinite(arr).all() and (arr == np.round(arr)).all()):
        return None
    return sorted(int(x) for x in arr)


def check_top_filters(fn) -> bool:
    """Notebook 02: ``fn(scores, keep) -> indices`` of the highest scores, against ``select_filters``."""
    rng = np.random.default_rng(0)
    inputs = [(np.array([0.5, 3.0, 1.0, 2.5, 0.1]), 2), (rng.permutation(16).astype(np.float64) * 0.7 + 0.3, 10),
              (np.array([2.0, 1.0, 3.0]), 3), (np.array([4.0, 9.0, 1.0, 7.0]), 1)]
    cases = [Case((s, k), f"scores={short(s, 60)}, keep={k}", select_filters(s, k)) for s, k in inputs]

    def hint(case, got):
        scores, keep = case.args
        found = _indices(got)
        if found is None or not set(found) <= set(range(len(scores))):
            return "return the filters' indices (positions in scores; np.argsort gives them), not their scores"
        if len(found) != keep:
            return f"return exactly keep = {keep} indices"
        if found == sorted(int(i) for i in np.argsort(scores)[:keep]):
            return "you kept the lowest scores: HRank keeps the filters of highest average rank"

    return run_check("top_filters", fn, cases, lambda got, want: _indices(got) == want, "pruning.select_filters", hint,
                "np.argsort(scores) lists the indices from lowest to highest score: keep the last `keep` of them")


def check_distillation_loss(fn) -> bool:
    """Notebook 03: ``fn(student, teacher, T)``, the distillation loss, against ``MultiBoxLoss``'s."""
    g = torch.Generator().manual_seed(5)
    shapes = [(4, 3, 1.0), (6, 5, 2.0), (3, 21, 4.0)]
    cases = []
    for p, c, t in shapes:
        s, te = torch.randn(p, c, generator=g) * 2, torch.randn(p, c, generator=g) * 2
        cases.append(Case((s, te, t), f"student/teacher scores of shape {[p, c]}, T={t:g}",
                          float(MultiBoxLoss(distill_T=t).distillation(s, te))))

    def kl(p_logits, q_logits, t, scale):  # summed KL(softmax(q/t) || softmax(p/t)) * scale
        log_p, log_q = torch.log_softmax(p_logits / t, -1), torch.log_softmax(q_logits / t, -1)
        return float((log_q.exp() * (log_q - log_p)).sum() * scale)

    def hint(case, got):
        s, te, t = case.args
        x = number(got)
        if t != 1 and math.isclose(x, kl(s, te, t, 1.0), rel_tol=1e-4):
            return f"multiply by T * T (= {t * t:g}): softened targets have gradients 1/T^2 as large"
        if math.isclose(x, kl(te, s, t, t * t), rel_tol=1e-4):
            return "KL the other way round: weigh by the teacher's probabilities, KL(teacher || student)"
        if t != 1 and math.isclose(x, kl(s, te, 1.0, t * t), rel_tol=1e-4):
            return "divide both score tensors by T before the softmax"
        if math.isclose(x * s.shape[0], case.want, rel_tol=1e-4) or math.isclose(x * s.numel(), case.want, rel_tol=1e-4):
            return "sum over priors and classes (no mean)"

    return run_check("distillation_loss", fn, cases,
                     lambda got, want: math.isclose(number(got), want, rel_tol=1e-5, abs_tol=1e-7),
                     "MultiBoxLoss.distillation", hint,
                     "p = log_softmax(student / T), q = log_softmax(teacher / T); the loss is (q.exp() * (q - p)).sum() * T * T")


def check_voc07_ap(fn) -> bool:
    """Notebook 04: ``fn(precision, recall) -> AP``, VOC2007's 11-point AP, against ``compute_ap``."""
    # ranked detections, 1: a hit (true positive); the precision and recall after each
    ranked = [([1] * 7, 7, "a perfect detector (7 hits of 7 objects)"),
              ([1, 0, 1, 1, 0, 0, 1, 0, 1], 7, "5 of 7 objects found among 9 detections"),
              ([0, 1, 0, 1, 1, 0, 1, 1, 1, 0, 1], 9, "7 of 9 found, precision rising late"),
              ([0, 0, 0], 5, "3 false detections, 5 objects")]
    cases = []
    for hits, npos, label in ranked:
        tp = np.cumsum(hits, dtype=np.float64)
        p, r = (tp / np.arange(1, len(hits) + 1, dtype=np.float64)).tolist(), (tp / npos).tolist()
        cases.append(Case((p, r), label, compute_ap(p, r, use_2007_metric=True)))

    def at_first(p, r, t):  # the precision where recall first reaches t: no interpolation
        return next((pi for pi, ri in zip(p, r) if ri >= t), 0.0)

    def hint(case, got):
        p, r = case.args
        x, points = number(got), [i / 10 for i in range(11)]
        if math.isclose(x, case.want * 11 / 10, rel_tol=1e-9):
            return "eleven recall points (0, 0.1, ..., 1.0): divide by 11"
        if math.isclose(x, sum(at_first(p, r, t) for t in points) / 11, rel_tol=1e-9):
            return "interpolate: at each point take the highest precision at any recall >= t, not the first one"
        if math.isclose(x, compute_ap(p, r, use_2007_metric=False), rel_tol=1e-9):
            return "that is the area under the curve (VOC2010 and later); this exercise wants the 11-point AP"

    return run_check("voc07_ap", fn, cases, lambda got, want: math.isclose(number(got), want, abs_tol=1e-9),
                "evaluation.compute_ap (11-point)", hint,
                "for t in 0, 0.1, ..., 1.0: add max(precision where recall >= t) (0 if none) / 11")


def check_conv_macs(fn) -> bool:
    """Notebook 05: ``fn(in_c, out_c, k, out_h, out_w, groups=1)``, a Conv2d's MACs, against ``conv_macs``."""
    convs = [((3, 57, 3, 300, 300), {}, "conv1_1 of the pruned VGG16-SSD"),
             ((57, 57, 3, 300, 300), {}, "conv1_2 of the pruned VGG16-SSD"),
             ((512, 1024, 3, 19, 19), {}, "fc6"), ((1024, 1024, 1, 19, 19), {}, "fc7 (1x1)"),
             ((32, 64, 1, 150, 150), {}, "a MobileNetV1 pointwise conv"),
             ((32, 32, 3, 150, 150), {"groups": 32}, "a MobileNetV1 depthwise conv")]
    cases = [Case(args, f"{label}: in_c={args[0]}, out_c={args[1]}, k={args[2]}, out {args[3]}x{args[4]}"
                  + (f", groups={kw['groups']}" if kw else ""), conv_macs(*args, **kw), kw) for args, kw, label in convs]

    def hint(case, got):
        x, want, k = number(got), case.want, case.args[2]
        if x == 2 * want:
            return "count MACs (one multiply + one add = one MAC), not FLOPs (about 2 x MACs)"
        if case.kwargs and x == want * case.kwargs["groups"]:
            return "in a grouped conv each output channel sees only in_c / groups input channels"
        if k > 1 and x * k * k == want:
            return "every output value multiplies a k x k window of each input channel: times k * k"

    return run_check("conv_macs", fn, cases, same_int, "flops.conv_macs", hint,
                "one output value costs (in_c / groups) * k * k MACs, and there are out_h * out_w * out_c of them; "
                "keep the signature conv_macs(in_c, out_c, k, out_h, out_w, groups=1)")
