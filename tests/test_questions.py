"""Questions read from a plot: the run's own numbers decide the answer; a right reading prints why, a wrong one
says what is wrong without giving the answer away, and nothing raises."""

from __future__ import annotations

import contextlib
import io

import pandas as pd
import pytest

from hrank_ssd.course import checking, questions


def _ask(check, answer, data) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        check(answer if callable(answer) else (lambda: answer), data)
    return out.getvalue()


STABILITY = pd.DataFrame({"comparison": ["A vs B"] * 3 + ["A vs few"] * 3, "name": ["conv1_1", "conv1_2", "conv2_1"] * 2,
                          "spearman": [0.62, 1.0, 0.93, 0.1, 0.2, 0.3], "kept": [7, 7, 14] * 2,
                          "changed": [2, 0, 1] * 2})
SENS = pd.DataFrame({"name": ["conv1_1", "conv4_3"] * 3, "rate": [0.0, 0.0, 0.3, 0.3, 0.6, 0.6],
                     "map": [0.98, 0.98, 0.97, 0.80, 0.95, 0.40]})
CRIT = pd.DataFrame({"criterion": ["hrank", "l1", "random"], "map_pruned": [0.88, 0.19, 0.01],
                     "map_finetuned": [0.93, 0.84, 0.43]})
FINE = pd.DataFrame({"model": ["unpruned", "fine-grained (magnitude)", "filters (HRank)"],
                     "pruned_weights": [0, 229988, 229988], "GMACs": [0.55, 0.55, 0.32], "speedup": [1.0, 0.99, 1.14]})
FRONTIER = pd.DataFrame({"model": ["VGG16-SSD", "VGG16-SSD pruned (HRank)", "MobileNetV1-SSD"],
                         "frontier (latency)": [True, False, True]})

CASES = [  # check, data, the run's answer, another right spelling of it
    (questions.check_least_stable, STABILITY, "conv1_1", " CONV1_1 "),  # the first comparison only
    (questions.check_most_sensitive, SENS, "conv4_3", "Conv4_3"),
    (questions.check_best_criterion, CRIT, "hrank", "HRank"),
    (questions.check_faster_pruning, FINE, "filters", "filters (HRank)"),
    (questions.check_frontier, FRONTIER, ["vgg16-ssd", "mb1-ssd"], ("VGG", "MobileNetV1-SSD")),  # keys, labels, titles
]


@pytest.mark.parametrize("check, data, answer, other", CASES, ids=lambda c: getattr(c, "__name__", ""))
def test_a_right_reading_is_correct_and_says_why(check, data, answer, other):
    for reading in (answer, other):
        text = _ask(check, reading, data)
        assert text.startswith(checking.CORRECT) and "  why: " in text and checking.NOT_YET not in text, text


def test_the_explanations_carry_the_runs_numbers():
    assert "conv1_1 orders its filters least alike on the two image sets (Spearman 0.62; conv1_2: 1.00); 2 of its 7" \
        in _ask(questions.check_least_stable, "conv1_1", STABILITY)
    assert "at rate 0.6, pruning conv4_3 alone leaves a quick mAP of 0.400 (unpruned 0.980); conv1_1 keeps 0.950" \
        in _ask(questions.check_most_sensitive, "conv4_3", SENS)
    assert "right after pruning: hrank 0.880, l1 0.190, random 0.010. hrank keeps" \
        in _ask(questions.check_best_criterion, "hrank", CRIT)
    assert "filter pruning runs at 1.14x the unpruned speed, fine-grained at 0.99x: both removed 229988 weights" \
        in _ask(questions.check_faster_pruning, "filters", FINE)
    assert "on the latency frontier: mb1-ssd, vgg16-ssd." in _ask(questions.check_frontier, ["VGG", "MB1"], FRONTIER)


WRONG = [  # a plausible wrong reading, and what the check must say about it
    (questions.check_least_stable, STABILITY, "conv1_2", "agrees the MOST"),
    (questions.check_least_stable, STABILITY, "layer 1", "answer with one of the plot's names: conv1_1, conv1_2, conv2_1"),
    (questions.check_most_sensitive, SENS, "conv1_1", "loses the LEAST"),
    (questions.check_best_criterion, CRIT, "random", "keeps the LEAST"),
    (questions.check_best_criterion, CRIT, "magnitude", "answer with one of the plot's names: hrank, l1, random"),
    (questions.check_faster_pruning, FINE, "fine-grained", 'answer "fine-grained" or "filters"'),
    (questions.check_frontier, FRONTIER, ["vgg16-ssd"], "1 frontier model(s) missing"),
    (questions.check_frontier, FRONTIER, ["vgg16-ssd", "mb1-ssd", "vgg16-ssd-pruned"], "1 of yours is beaten"),
    (questions.check_frontier, FRONTIER, ["vgg16", "mb1-ssd"], "not a model of the plot: vgg16"),
    (questions.check_most_sensitive, SENS, None, "the function returned None"),
]


@pytest.mark.parametrize("check, data, reading, says", WRONG)
def test_a_wrong_reading_says_what_is_wrong_without_the_answer(check, data, reading, says):
    text = _ask(check, reading, data)
    assert text.startswith(checking.NOT_YET) and says in text and "why:" not in text, text
    assert "expected" not in text


def test_a_blank_or_broken_answer_is_one_polite_line():
    def blank():
        raise NotImplementedError("replace this line")

    assert "is still blank" in _ask(questions.check_best_criterion, blank, CRIT)
    assert "raised ZeroDivisionError" in _ask(questions.check_best_criterion, lambda: 1 / 0, CRIT)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        questions.check_best_criterion("hrank", CRIT)  # the answer itself, not a function returning it
    assert out.getvalue().startswith(checking.NOT_YET) and "is not a function" in out.getvalue()
