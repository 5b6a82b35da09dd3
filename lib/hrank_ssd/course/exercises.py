"""The exercises: each ``check_*`` runs a student's function on a few cases against the library's answer."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch

from hrank_ssd.course import checking
from hrank_ssd.course.checking import Case, array_of, attempt, close, first_mistake, number, run_check, short
from hrank_ssd.hrank.pruning import select_filters
from hrank_ssd.hrank.ranks import batched_ranks, compute_ranks, ranks_one_at_a_time
from hrank_ssd.measure.evaluation import compute_ap
from hrank_ssd.train.losses import MultiBoxLoss

_RANKS = (batched_ranks, ranks_one_at_a_time, compute_ranks)  # the library's answers to notebook 01


def solution(name: str) -> None:
    """Print one answer to exercise ``name`` (as its check's not-yet line writes it): for when you are stuck."""
    print(checking.solution_text(name))


def _maps(b: int, c: int, h: int, w: int, seed: int) -> torch.Tensor:
    """(b, c, h, w) non-negative maps of random ranks 0 ... min(h, w)."""
    g, maps = torch.Generator().manual_seed(seed), torch.zeros(b, c, h, w)
    for i in range(b):
        for j in range(c):
            r = int(torch.randint(0, min(h, w) + 1, (1,), generator=g))
            maps[i, j] = torch.rand(h, r, generator=g) @ torch.rand(r, w, generator=g)
    return maps


def check_map_ranks(fn) -> bool:
    """Notebook 01: ``fn(maps) -> (B, C)``, the rank of every (H, W) map of a (B, C, H, W) tensor."""
    first, second, third = _maps(2, 4, 8, 8, seed=0), _maps(3, 2, 6, 10, seed=1), _maps(1, 3, 5, 7, seed=2)
    first[0, 0] = torch.outer(torch.arange(1.0, 9.0), torch.linspace(-1, 1, 8))  # rank 1 on paper
    first[0, 2], second[:, 0] = 0.0, 0.0  # a dead ReLU's map; a dead filter
    first[1, 0] = torch.rand(8, 8, generator=torch.Generator().manual_seed(3)) * 1e-6  # faint, yet full rank
    cases = [Case((m,), f"maps of shape {list(m.shape)} (images, filters, H, W)", batched_ranks(m).long())
             for m in (first, second, third)]

    def hint(case, got):
        maps, want, arr = case.args[0], case.want.numpy(), array_of(got)
        b, c, h, w = maps.shape
        if arr.shape == (b, c, min(h, w)):
            return "one value per singular value: count them, one rank per map"
        if arr.shape != (b, c):
            return (f"one rank per map, a ({b}, {c}) result: each matrix is a map's last two dims (H, W); the images "
                    "and filters only index the maps")
        if (arr == min(h, w)).all():
            return "that is the maps' size, not their rank: how many singular values are more than rounding noise?"
        if (arr >= want).all():
            return ("too many: a singular value that is zero on paper comes out as a tiny nonzero number in floats "
                    "(the outer product's svdvals above); count only those above a tolerance")
        largest = torch.linalg.svdvals(maps).amax(-1)
        if (arr <= want).all() and (largest[torch.from_numpy(arr < want)] < 1e-3 * largest.max()).all():
            return ("a faint map lost its rank: the tolerance scales with each map's own largest singular value, "
                    "not the batch's, nor a fixed number")

    return run_check("map_ranks", fn, cases, close, "torch.linalg.matrix_rank", hint,
                     "the rank is how many singular values stand above rounding noise, and that noise is relative: "
                     "it scales with each map's own largest singular value", library=_RANKS)


class _Stream:
    """Batches of maps in a single pass, as a generator gives them (no len()), counting the images."""

    def __init__(self, batches):
        self.batches, self._left, self.images = batches, iter(batches), 0

    def __iter__(self):
        for maps in self._left:
            self.images += int(maps.shape[0])
            yield maps


def check_average_rank(fn) -> bool:
    """Notebook 01: ``fn(batches) -> C values``, each filter's rank averaged over every image of the stream."""
    streams = [[_maps(3, 4, 8, 8, seed=4), _maps(3, 4, 8, 8, seed=5), _maps(1, 4, 8, 8, seed=6)],
               [_maps(2, 5, 6, 6, seed=7)], [_maps(2, 4, 5, 7, seed=8), _maps(1, 4, 5, 7, seed=9)]]
    streams[1][0][:, 0] = 0.0  # a dead filter: rank 0 on every image
    cases = [Case((_Stream(s),), f"{len(s)} batches of {[len(b) for b in s]} images, {s[0].shape[1]} filters",
                  batched_ranks(torch.cat(s)).mean(0)) for s in streams]

    def hint(case, got):
        ranks = [batched_ranks(m) for m in case.args[0].batches]
        (n, c), shape = torch.cat(ranks).shape, array_of(got).shape
        if shape in ((n,), (len(ranks[-1]),)):
            return "one value per image: you averaged over the filters; HRank averages each filter over the images"
        if shape in ((n, c), tuple(ranks[-1].shape)):
            return "these are the ranks of every map: now average each filter over the images"
        if shape == (len(ranks), c):
            return "one row per batch: a filter's score is one mean over all the images"
        if not array_of(got).any():
            return "all zero: did it go through the batches twice? They come in a single pass, as from a generator"
        return first_mistake(got, [
            (case.want * n, "that is the sum over the images: divide by how many images there were"),
            (torch.stack([r.mean(0) for r in ranks]).mean(0), "the mean of the batch means counts an image of a small "
             "batch more than one of a full batch: every image must count once"),
            *[(r.mean(0), "only one batch counts: every batch's images must add to the score") for r in ranks]], close)

    return run_check("average_rank", fn, cases, close, "the library's batched_ranks averaged over every image", hint,
                     "a filter's score is its rank summed over every image of every batch, divided by the number of "
                     "images; the batches come one at a time, in a single pass, and the last may be smaller (if "
                     "check_map_ranks says not yet, start there)", library=_RANKS)


def compare_rank_file(fn, batches, library_file, name: str) -> Tuple[np.ndarray, str]:
    """Notebook 01: (ranks, whose): the student's ``fn`` over ``batches`` where every filter is within half of
    1/images of the library's rank file (one map's rank off by one moves it 1/images), else the library's."""
    library, stream, file = np.load(library_file), _Stream(batches), Path(library_file).name
    yours, why = attempt(lambda: array_of(fn(stream)).astype(np.float32))
    tol = 0.5 / max(1, stream.images)
    if why is None and yours.shape != library.shape:
        why = f"gave ranks of shape {list(yours.shape)}, not one value per filter ({library.size})"
    elif why is None:
        diff = np.abs(yours - library)
        if (diff <= tol).all():
            print(f"your average_rank made {name}'s rank file over the same {stream.images} images: {library.size} "
                  f"filters, largest difference from the library's {file} {diff.max():.2g} (allowed: {tol:.3g}, "
                  f"half of 1/{stream.images})")
            return yours, "yours"
        worst = int(diff.argmax())
        why = (f"gave ranks off by more than {tol:.3g} on {int((diff > tol).sum())} of {library.size} filters "
               f"(filter {worst}: {yours[worst]:.4g}, the library's {library[worst]:.4g})")
    print(f"your average_rank {why}; the library's {file} stands in for {name} below")
    return library, "the library's"


def _indices(value) -> Optional[list]:
    arr = array_of(value).ravel()
    if arr.size and not (np.isfinite(arr).all() and (arr == np.round(arr)).all()):
        return None
    return sorted(int(x) for x in arr)


def check_top_filters(fn) -> bool:
    """Notebook 02: ``fn(scores, keep) -> indices`` of the highest scores (ties: the higher index kept)."""
    rng = np.random.default_rng(0)
    inputs = [(np.array([0.5, 3.0, 1.0, 2.5, 0.1]), 2), (rng.permutation(16).astype(np.float64) * 0.7 + 0.3, 10),
              (np.array([2.0, 1.0, 3.0]), 3), (np.array([4.0, 9.0, 1.0, 7.0]), 1),
              (np.array([2.0, 3.5, 2.0, 3.5, 1.0, 3.5, 0.0, 2.0]), 4),  # tied scores, as in every rank file
              (rng.integers(0, 13, 64) / 4.0, 40)]  # averages of integer ranks over 4 images: full of ties
    cases = [Case((s, k), f"scores={short(s, 60)}, keep={k}", select_filters(s, k)) for s, k in inputs]

    def hint(case, got):
        scores, keep = case.args
        found = _indices(got)
        if found is None or not set(found) <= set(range(len(scores))):
            return "return the filters' indices (positions in scores), not their scores"
        if len(found) != keep:
            return f"return exactly keep = {keep} indices"
        if found == sorted(int(i) for i in np.argsort(scores, kind="stable")[:keep]):
            return "you kept the lowest scores: HRank keeps the filters of highest average rank"
        if sorted(scores[found]) == sorted(scores[case.want]):
            return ("the right scores, but ties broken the other way: among equal scores HRank keeps the higher "
                    "index (its stable sort drops the lower index first)")

    return run_check("top_filters", fn, cases, lambda got, want: _indices(got) == want, "pruning.select_filters", hint,
                     "rank the filters by score and keep the `keep` highest, as indices; among equal scores the "
                     "higher index stays", library=(select_filters,))


def check_distillation_loss(fn) -> bool:
    """Notebook 03: ``fn(student, teacher, T)``, the distillation loss, against ``MultiBoxLoss``'s."""
    g, cases = torch.Generator().manual_seed(5), []
    for p, c, t in [(4, 3, 1.0), (6, 5, 2.0), (3, 21, 4.0)]:
        s, te = torch.randn(p, c, generator=g) * 2, torch.randn(p, c, generator=g) * 2
        cases.append(Case((s, te, t), f"student/teacher scores of shape {[p, c]}, T={t:g}",
                          float(MultiBoxLoss(distill_T=t).distillation(s, te))))

    def kl(p_logits, q_logits, t, scale):  # summed KL(softmax(q/t) || softmax(p/t)) * scale
        log_p, log_q = torch.log_softmax(p_logits / t, -1), torch.log_softmax(q_logits / t, -1)
        return float((log_q.exp() * (log_q - log_p)).sum() * scale)

    def hint(case, got):
        s, te, t = case.args
        return first_mistake(got, [
            (kl(s, te, t, 1.0), f"multiply by T * T (= {t * t:g}): softened targets have gradients 1/T^2 as large"),
            (kl(te, s, t, t * t), "KL the other way round: weigh by the teacher's probabilities, KL(teacher || student)"),
            (kl(s, te, 1.0, t * t), "divide both score tensors by T before the softmax"),
            (case.want / s.shape[0], "sum over priors and classes (no mean)"),
            (case.want / s.numel(), "sum over priors and classes (no mean)")],
            lambda got, want: math.isclose(number(got), want, rel_tol=1e-4))

    return run_check("distillation_loss", fn, cases,
                     lambda got, want: math.isclose(number(got), want, rel_tol=1e-5, abs_tol=1e-7),
                     "MultiBoxLoss.distillation", hint,
                     "soften both score sets with T (a distribution over the classes per prior), measure how far the "
                     "student's is from the teacher's, weighing by the teacher's probabilities, add it up over every "
                     "prior, and give back the gradient scale the softening took away",
                     library=(MultiBoxLoss.distillation,))


def check_voc07_ap(fn) -> bool:
    """Notebook 04: ``fn(precision, recall) -> AP``, VOC2007's 11-point AP, against ``compute_ap``."""
    cases = []  # from ranked detections (1: a hit, a true positive): the precision and recall after each
    for hits, npos, label in [([1] * 7, 7, "a perfect detector (7 hits of 7 objects)"),
                              ([1, 0, 1, 1, 0, 0, 1, 0, 1], 7, "5 of 7 objects found among 9 detections"),
                              ([0, 1, 0, 1, 1, 0, 1, 1, 1, 0, 1], 9, "7 of 9 found, precision rising late"),
                              ([0, 0, 0], 5, "3 false detections, 5 objects")]:
        tp = np.cumsum(hits, dtype=np.float64)
        p, r = (tp / np.arange(1, len(hits) + 1, dtype=np.float64)).tolist(), (tp / npos).tolist()
        cases.append(Case((p, r), label, compute_ap(p, r, use_2007_metric=True)))

    def hint(case, got):
        p, r = case.args
        first = sum(next((pi for pi, ri in zip(p, r) if ri >= i / 10), 0.0) for i in range(11)) / 11  # no envelope
        return first_mistake(got, [
            (case.want * 11 / 10, "eleven recall points (0, 0.1, ..., 1.0): divide by 11"),
            (first, "interpolate: at each point take the highest precision at any recall >= t, not the first one"),
            (compute_ap(p, r, use_2007_metric=False),
             "that is the area under the curve (VOC2010 and later); this exercise wants the 11-point AP")],
            lambda got, want: math.isclose(number(got), want, rel_tol=1e-9))

    return run_check("voc07_ap", fn, cases, lambda got, want: math.isclose(number(got), want, abs_tol=1e-9),
                     "evaluation.compute_ap (11-point)", hint,
                     "at each of the eleven recall levels 0, 0.1, ..., 1.0, the best precision the detector reaches "
                     "at that recall or beyond counts (nothing if it never gets there); the AP is their average",
                     library=(compute_ap,))
