"""The student's functions as the pipeline (notebook 02, course.student): their top_filters chooses the kept
filters, their prune_pair cuts the layers, their scan makes the sensitivity table; a wrong or failing function is
one line and the library's result is used; the target says met or not and why."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from hrank_ssd.course import student
from hrank_ssd.hrank.pruning import kept_indices, prune_model
from hrank_ssd.hrank.ranks import save_ranks
from hrank_ssd.nets.models import load_model, read_sidecar

RATE = [0.5] * 7 + [0.25] * 7


def top_filters(scores, keep):  # the notebook's solution: stable sort, so equal scores keep the higher index
    return sorted(int(i) for i in np.argsort(scores, kind="stable")[len(scores) - keep:])


def ties_the_other_way(scores, keep):  # equal scores keep the lower index
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return sorted(order[:keep])


def _slice(conv, out=None, inp=None):
    new = nn.Conv2d(len(inp) if inp is not None else conv.in_channels, len(out) if out is not None else
                    conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation)
    w = conv.weight.detach()
    w = w[out] if out is not None else w
    new.weight.data = (w[:, inp] if inp is not None else w).clone()
    new.bias.data = (conv.bias.detach()[out] if out is not None else conv.bias.detach()).clone()
    return new


def prune_pair(conv, bn, next_conv, keep):
    if bn is not None:
        small = nn.BatchNorm2d(len(keep)).train(bn.training)
        small.load_state_dict({k: (v[keep] if v.dim() else v) for k, v in bn.state_dict().items()})
        bn = small
    return _slice(conv, out=keep), bn, _slice(next_conv, inp=keep)


def forgets_the_batch_norm(conv, bn, next_conv, keep):
    return _slice(conv, out=keep), bn, _slice(next_conv, inp=keep)


def doubles(conv, bn, next_conv, keep):  # right shapes, other weights: shows whose tensors the model holds
    conv, bn, nxt = prune_pair(conv, bn, next_conv, keep)
    conv.weight.data *= 2
    return conv, bn, nxt


@pytest.fixture
def tied_course(tiny_course):
    """The tiny course with rank files full of ties (averages of integer ranks over 2 images)."""
    course, model = tiny_course
    rng = np.random.default_rng(1)
    save_ranks([rng.integers(0, 8, c) / 2 for c in model.plan.prunable], course.work / "ranks")
    return course, model


def test_the_students_functions_make_the_pruned_model_and_the_choice(tied_course):
    course, model = tied_course
    before = {k: v.clone() for k, v in model.state_dict().items()}
    made = course.prune_yours(RATE, top_filters, prune_pair)
    assert made.made_by == [student.TOP_FILTERS, student.PRUNE_PAIR] and made.notes == []
    assert made.path == course.path("vgg16-ssd-pruned-0.5x7_0.25x7-yours")
    side = read_sidecar(made.path)
    assert side["made_by"] == made.made_by and side["kept_indices"] == kept_indices(model, RATE, "hrank",
                                                                                   course.rank_dir())
    library, _ = prune_model(model, RATE, "hrank", course.rank_dir())
    yours = load_model(made.path).state_dict()
    assert all(torch.equal(t, yours[k]) for k, t in library.state_dict().items())  # equal to the library's
    assert json.loads((course.work / "choice.json").read_text()) == {"compress_rate": "[0.5]*7+[0.25]*7",
                                                                      "pruned": made.path.name}
    assert course.chosen_compress_rate()[0] == RATE
    from hrank_ssd.course.making import read_choice
    assert read_choice(course)[2] == made.path  # notebook 03 finetunes this file
    assert all(torch.equal(t, before[k]) for k, t in model.state_dict().items())  # the baseline is untouched


def test_the_surgery_uses_the_students_tensors(tiny_course):
    course, model = tiny_course
    kept = kept_indices(model, RATE, "hrank", course.rank_dir())
    library, _ = prune_model(model, RATE, "hrank", course.rank_dir())
    doubled = student.surgery_by(model, kept, doubles)
    lib = library.state_dict()
    for i in (0, 2, 5, 31):  # every backbone conv the student cut: conv1_1, conv1_2, conv2_1 ... fc6
        assert torch.equal(doubled[f"base_net.{i}.weight"], 2 * lib[f"base_net.{i}.weight"])
    assert torch.equal(doubled["classification_headers.0.weight"], lib["classification_headers.0.weight"])


def test_ties_broken_the_other_way_and_a_surgery_without_batch_norm_fall_back_in_one_line(tied_course, capsys):
    course, model = tied_course
    made = course.prune_yours(RATE, ties_the_other_way, forgets_the_batch_norm)
    assert made.made_by == []
    assert made.notes[0].startswith("your top_filters keeps other filters than HRank's rule in conv2_2 (ties?")
    assert made.notes[1] == ("your prune_pair made source_layer_add_ons.0.weight of shape [64]; the pruned model "
                             "needs [48]; the library's is used")
    library, _ = prune_model(model, RATE, "hrank", course.rank_dir())
    yours = load_model(made.path).state_dict()
    assert all(torch.equal(t, yours[k]) for k, t in library.state_dict().items())
    assert read_sidecar(made.path)["made_by"] == []


def test_a_blank_exercise_falls_back_without_a_traceback(tiny_course):
    course, _ = tiny_course

    def blank(*args):
        raise NotImplementedError("exercise: write your code here")

    made = course.prune_yours(RATE, blank, blank)
    assert made.made_by == [] and made.notes == ["your top_filters is still blank; the library's is used",
                                                 "your prune_pair is still blank; the library's is used"]


def test_the_students_scan_is_the_sensitivity_table(tiny_course):
    course, model = tiny_course
    from hrank_ssd.measure.sensitivity import layer_sensitivity

    def scan(layers, rates, prune_one, evaluate):
        return [{"layer": i, "rate": r, "map": evaluate(prune_one(i, r))} for i in layers for r in rates]

    table = course.scan_sensitivity(scan)
    p = course.profile
    library = layer_sensitivity(model, course.test_dataset(p.sensitivity_images), "hrank", course.rank_dir(),
                                p.sensitivity_rates, p.sensitivity_layers, progress=False)
    pd.testing.assert_frame_equal(table, library)
    pd.testing.assert_frame_equal(pd.read_csv(course.result("sensitivity.csv")), library)


def test_a_scan_with_missing_rows_is_one_line_and_the_librarys_is_used(tiny_course, capsys):
    course, _ = tiny_course
    table = course.scan_sensitivity(lambda layers, rates, prune_one, evaluate: [])
    assert capsys.readouterr().out.startswith(
        "your scan raised HRankError: the scan's rows are not one (layer, rate, map) per scanned layer")
    assert len(table) == len(course.profile.sensitivity_layers) * (len(course.profile.sensitivity_rates) + 1)


class _Trial:
    def __init__(self, macs, map_):
        self.macs, self.full_macs, self.map, self.full_map = macs, 100, map_, 0.9


def test_the_target_says_met_or_what_misses(tiny_course):
    from dataclasses import replace

    from hrank_ssd.course.profiles import get_profile

    course, _ = tiny_course
    assert (get_profile("offline").target_mac_cut, get_profile("offline").target_map_drop) == (0.5, 0.25)
    course.profile = replace(course.profile, target_mac_cut=0.6, target_map_drop=0.06)
    assert student.target(course, _Trial(40, 0.86)) == ("met: 60.0% fewer MACs (target at least 60%), 0.0400 quick "
                                                        "mAP lost before finetuning (target at most 0.06)")
    assert student.target(course, _Trial(59, 0.80)) == (
        "not met: it cuts 41.0% of the MACs, the target at least 60%: prune harder where the sensitivity curves "
        "stay flat; it loses 0.1000 quick mAP before finetuning, the target at most 0.06: spare the layers whose "
        "curves fall")


def test_check_target_tries_the_students_stage_rates(tiny_course, capsys):
    course, model = tiny_course
    rates = student.check_target(course, lambda: {"conv1": 0.7, "conv2": 0.7, "conv3": 0.6, "conv4": 0.5,
                                                  "conv5": 0.3, "fc6": 0.5})
    assert rates == [0.7] * 4 + [0.6] * 3 + [0.5] * 3 + [0.3] * 3 + [0.5]
    out = capsys.readouterr().out
    assert out.split(" ")[0] in ("correct:", "not yet:") and "MACs" in out
    assert student.check_target(course, lambda: {"conv9": 0.1}) is None
    assert capsys.readouterr().out == ("not yet: your_stage_rates raised HRankError: vgg16-ssd has no stage conv9: "
                                       "its stages are conv1, conv2, conv3, conv4, conv5, fc6: return one rate per "
                                       "stage (e.g. {'conv1': 0.1, ...}), run that cell, then this one\n")


def _check(capsys, check, fn):
    ok = check(fn)
    return ok, capsys.readouterr().out


def test_prune_pair_check_accepts_the_surgery_and_names_each_mistake(capsys):
    assert _check(capsys, student.check_prune_pair, prune_pair) == (True, "correct: prune_pair agrees with the masked "
                                                            "original (removed filters zeroed) on all 3 cases\n")

    def forgets_the_next_conv(conv, bn, next_conv, keep):
        conv, bn, _ = prune_pair(conv, bn, next_conv, keep)
        return conv, bn, next_conv

    def cuts_the_next_convs_outputs(conv, bn, next_conv, keep):
        conv, bn, _ = prune_pair(conv, bn, next_conv, keep)
        return conv, bn, _slice(next_conv, out=keep)  # dim 0 instead of dim 1

    def new_weights(conv, bn, next_conv, keep):
        conv, bn, nxt = prune_pair(conv, bn, next_conv, keep)
        nn.init.normal_(conv.weight)
        return conv, bn, nxt

    for fn, hint in ((forgets_the_batch_norm, "the BatchNorm still normalises every original channel"),
                     (forgets_the_next_conv, "the next conv still reads every original channel"),
                     (cuts_the_next_convs_outputs, "the next conv must keep all its filters"),
                     (new_weights, "the shapes are right but the block computes something else"),
                     (lambda conv, bn, nxt, keep: (conv, bn, nxt), "the conv has 8 filters")):
        ok, out = _check(capsys, student.check_prune_pair, fn)
        assert not ok and out.startswith("not yet: prune_pair(keep=[0, 2, 3, 7], with a BatchNorm) returned ")
        assert f"  hint: {hint}" in out, out


def test_the_scan_check_accepts_the_loop_and_names_each_mistake(capsys):
    def scan(layers, rates, prune_one, evaluate):
        return pd.DataFrame([{"layer": i, "rate": r, "map": evaluate(prune_one(i, r))} for i in layers for r in rates])

    ok, out = _check(capsys, student.check_sensitivity_scan, scan)
    assert ok and out == "correct: sensitivity_scan agrees with the stand-in scan's known mAPs on all 3 cases\n"
    wrong = {
        "some (layer, rate) pairs are missing": lambda L, R, p, e: [{"layer": L[0], "rate": r, "map": e(p(L[0], r))}
                                                                   for r in R],
        "one row per (layer, rate) pair": lambda L, R, p, e: scan(L, list(R) + [0.0], p, e),
        "each row's map must be evaluate()": lambda L, R, p, e: [{"layer": i, "rate": r, "map": e(p(i, R[0]))}
                                                                 for i in L for r in R],
        "give every row the keys layer, rate and map": lambda L, R, p, e: [(i, r, e(p(i, r))) for i in L for r in R],
    }
    for hint, fn in wrong.items():
        ok, out = _check(capsys, student.check_sensitivity_scan, fn)
        assert not ok and f"  hint: {hint}" in out, out
