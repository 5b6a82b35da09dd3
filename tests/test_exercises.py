"""The notebooks' exercises: each check passes the right answer and names the mistake in a wrong one, never raising;
the exercise and check cells of the solved notebooks say correct, those of the student's notebooks fail politely."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hrank_ssd.course import checking
from hrank_ssd.course import exercises as ex
from hrank_ssd.course.notebooks import NOTEBOOKS, SOLUTIONS, failed_checks, notebook_paths
from hrank_ssd.hrank.pruning import select_filters
from hrank_ssd.hrank.ranks import batched_ranks, ranks_one_at_a_time
from hrank_ssd.measure.evaluation import compute_ap
from hrank_ssd.measure.flops import conv_macs
from hrank_ssd.nets.ssd import kept_channels
from hrank_ssd.train.losses import MultiBoxLoss

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"


def run(check, fn):
    """(what ``check(fn)`` returned, what it printed); the check itself must not raise."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        ok = check(fn)
    return ok, out.getvalue()


def assert_correct(check, fn):
    ok, text = run(check, fn)
    assert ok is True and checking.passed(text), text
    assert text.startswith(checking.CORRECT) and len(text.strip().splitlines()) == 1, text


def assert_not_yet(check, fn, *phrases) -> str:
    ok, text = run(check, fn)
    assert ok is False and not checking.passed(text), text
    assert text.startswith(checking.NOT_YET), text
    for phrase in phrases:
        assert phrase in text, (phrase, text)
    return text


def _kl(student, teacher, T, reduction="sum"):
    """KL(softmax(teacher/T) || softmax(student/T)) * T^2 with torch's own kl_div (an independent formula)."""
    return F.kl_div(F.log_softmax(student / T, -1), F.softmax(teacher / T, -1), reduction=reduction) * T * T


def _ap_interpolated(p, r):
    """11-point AP written independently of compute_ap (recall points as i / 10)."""
    return sum(max([pi for pi, ri in zip(p, r) if ri >= i / 10], default=0.0) for i in range(11)) / 11


RIGHT = {  # each check: two right answers, the library's own function and an independent formula
    "feature_map_rank": (ex.check_feature_map_rank, lambda m: int(torch.linalg.matrix_rank(m)),
                         lambda m: int((torch.linalg.svdvals(m) > max(m.shape) * torch.finfo(m.dtype).eps
                                        * torch.linalg.svdvals(m).max()).sum())),
    "average_rank": (ex.check_average_rank, lambda maps: batched_ranks(maps).mean(0),
                     lambda maps: ranks_one_at_a_time(maps).mean(0).tolist()),
    "kept_count": (ex.check_kept_count, kept_channels, lambda c, r: max(1, int(c * (1 - r)))),
    "top_filters": (ex.check_top_filters, select_filters, lambda s, k: list(np.argsort(s)[::-1][:k])),
    "distillation_loss": (ex.check_distillation_loss, lambda s, t, T: MultiBoxLoss(distill_T=T).distillation(s, t),
                          _kl),
    "voc07_ap": (ex.check_voc07_ap, lambda p, r: compute_ap(p, r, use_2007_metric=True), _ap_interpolated),
    "conv_macs": (ex.check_conv_macs, conv_macs,
                  lambda i, o, k, h, w, groups=1: h * w * o * (i // groups) * k * k),
}


@pytest.mark.parametrize("name", RIGHT)
def test_each_check_passes_the_library_and_an_independent_answer(name):
    check, library, independent = RIGHT[name]
    assert_correct(check, library)
    assert_correct(check, independent)


def blank(*args, **kwargs):
    raise NotImplementedError("exercise: write your code here, then run the check cell below")


@pytest.mark.parametrize("name", RIGHT)
def test_each_check_fails_politely_never_raising(name):
    check = RIGHT[name][0]
    assert_not_yet(check, blank, f"{name} is still blank", "NotImplementedError")
    assert_not_yet(check, lambda *a, **k: 1 / 0, "raised ZeroDivisionError: division by zero", checking.HINT)
    assert_not_yet(check, None, f"{name} is not a function")
    assert_not_yet(check, lambda *a, **k: None, "returned None", "end it with `return")
    assert_not_yet(check, lambda *a, **k: "abc", "returned 'abc'", checking.HINT)
    assert_not_yet(check, lambda *a, **k: float("nan"), "returned nan", checking.HINT)


def test_feature_map_rank_mistakes():
    assert_correct(ex.check_feature_map_rank, torch.linalg.matrix_rank)  # a 0-d tensor is one number
    assert_not_yet(ex.check_feature_map_rank, lambda m: min(m.shape), "returned 8, expected 1",
                   "that is the map's size, not its rank")
    assert_not_yet(ex.check_feature_map_rank, torch.linalg.svdvals, "return one number, not 8 values")


def test_average_rank_mistakes():
    assert_not_yet(ex.check_average_rank, lambda maps: batched_ranks(maps).mean(1), "averaged over the filters")
    assert_not_yet(ex.check_average_rank, batched_ranks, "ranks of every map: now average over the images")
    assert_not_yet(ex.check_average_rank, lambda maps: batched_ranks(maps).sum(0), "divide by the number of images")


def test_kept_count_mistakes():
    assert_not_yet(ex.check_kept_count, lambda c, r: round(c * (1 - r)), "returned 58, expected 57",
                   "int() rounds down")
    assert_not_yet(ex.check_kept_count, lambda c, r: int(c * (1 - r)), "channels=3, rate=0.9) returned 0, expected 1",
                   "at least one filter")
    assert_not_yet(ex.check_kept_count, lambda c, r: int(c * r), "returned 6, expected 57", "how many filters go")


def test_kept_count_float_rounding_case():
    """c - c * rate is c * (1 - rate) on paper, not in floats: HRank keeps int(20 * (1 - 0.9)) = 1 filter of 20."""
    assert kept_channels(20, 0.9) == 1 and int(20 - 20 * 0.9) == 2
    assert_not_yet(ex.check_kept_count, lambda c, r: max(1, int(c - c * r)),
                   "channels=20, rate=0.9) returned 2, expected 1", "floats round differently")


def test_top_filters_mistakes():
    assert_not_yet(ex.check_top_filters, lambda s, k: list(np.argsort(s)[:k]), "returned [4, 0], expected [1, 3]",
                   "you kept the lowest scores")
    assert_not_yet(ex.check_top_filters, lambda s, k: sorted(s)[-k:], "return the filters' indices")
    assert_not_yet(ex.check_top_filters, lambda s, k: list(np.argsort(s)[-k - 1:]), "return exactly keep = 2 indices")


def test_distillation_loss_mistakes():
    assert_not_yet(ex.check_distillation_loss, lambda s, t, T: _kl(s, t, T) / (T * T), "T=2", "multiply by T * T")
    assert_not_yet(ex.check_distillation_loss, lambda s, t, T: _kl(t, s, T), "KL the other way round")
    assert_not_yet(ex.check_distillation_loss, lambda s, t, T: _kl(s, t, 1.0) * T * T, "T=2",
                   "divide both score tensors by T")
    assert_not_yet(ex.check_distillation_loss, lambda s, t, T: _kl(s, t, T, "batchmean"), "sum over priors")
    assert_not_yet(ex.check_distillation_loss, lambda s, t, T: _kl(s, t, T, "none"), "return one number, not 12")


def test_voc07_ap_mistakes():
    assert_not_yet(ex.check_voc07_ap, lambda p, r: _ap_interpolated(p, r) * 11 / 10, "a perfect detector",
                   "returned 1.1", "divide by 11")
    first = [lambda p, r, t=t: next((pi for pi, ri in zip(p, r) if ri >= t), 0.0) for t in [i / 10 for i in range(11)]]
    assert_not_yet(ex.check_voc07_ap, lambda p, r: sum(f(p, r) for f in first) / 11, "5 of 7 objects",
                   "highest precision at any recall >= t")
    assert_not_yet(ex.check_voc07_ap, lambda p, r: compute_ap(p, r, use_2007_metric=False), "area under the curve")
    text = assert_not_yet(ex.check_voc07_ap, lambda p, r: float(np.mean(p)), checking.HINT)
    assert "for t in 0, 0.1, ..., 1.0" in text  # no specific mistake recognised: the general hint


def test_conv_macs_mistakes():
    assert_not_yet(ex.check_conv_macs, lambda *a, **k: 2 * conv_macs(*a, **k), "conv1_1 of the pruned VGG16-SSD",
                   f"returned {2 * 300 * 300 * 57 * 27}, expected {300 * 300 * 57 * 27}", "not FLOPs")
    assert_not_yet(ex.check_conv_macs, lambda i, o, k, h, w, groups=1: h * w * o * i * k * k, "depthwise",
                   "in_c / groups")
    assert_not_yet(ex.check_conv_macs, lambda i, o, k, h, w, groups=1: h * w * o * (i // groups),
                   "conv1_1", "times k * k")
    assert_not_yet(ex.check_conv_macs, lambda i, o, k, h, w: h * w * o * i * k * k, "depthwise",
                   "raised TypeError", "keep the signature conv_macs(in_c, out_c, k, out_h, out_w, groups=1)")


def test_passed_reads_a_check_cells_output():
    assert checking.passed("correct: a agrees\n") and checking.passed("correct: a\ncorrect: b\n")
    assert not checking.passed("correct: a\nnot yet: b returned 1, expected 2\n  hint: ...\n")
    assert not checking.passed("") and not checking.passed("some other output\n")


# ---------------------------------------------------------------- the course runs the solved notebooks


def _nb(cells):
    import nbformat

    nb = nbformat.v4.new_notebook()
    for tags, source, text, count in cells:
        cell = nbformat.v4.new_code_cell(source, metadata={"tags": tags}, execution_count=count)
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)] if text else []
        nb.cells.append(cell)
    return nb


def test_failed_checks_names_the_check_cells_that_did_not_pass(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    path, one, two = tmp_path / "run.ipynb", "exercises.check_a(a)", "exercises.check_a(a)\nexercises.check_b(b)"
    nbformat.write(_nb([(["check"], one, "correct: a agrees\n", 3), ([], one, "not yet: not a check cell\n", 4),
                        (["check"], two, "correct: b\nnot yet: c returned 1, expected 2\n  hint: h\n", 7),
                        (["check"], one, "", 9), (["check"], two, "correct: a agrees\n", 11),
                        (["check"], "assert 1 + 1 == 2", "", 12)]), str(path))
    assert failed_checks(path) == [(7, "not yet: c returned 1, expected 2"), (9, "no verdict printed"),
                                   (11, "no verdict printed")]
    nbformat.write(_nb([(["check"], two, "correct: a agrees\ncorrect: b agrees\n", 3)]), str(path))
    assert failed_checks(path) == []


def test_notebook_paths_prefer_the_solved_copies(tmp_path):
    for name in NOTEBOOKS:
        (tmp_path / f"{name}.ipynb").write_text("{}")
    (tmp_path / SOLUTIONS).mkdir()
    (tmp_path / SOLUTIONS / f"{NOTEBOOKS[1]}.ipynb").write_text("{}")
    solved = notebook_paths(tmp_path)
    assert solved[1] == tmp_path / SOLUTIONS / f"{NOTEBOOKS[1]}.ipynb"
    assert [p.parent for i, p in enumerate(solved) if i != 1] == [tmp_path] * (len(NOTEBOOKS) - 1)
    assert notebook_paths(tmp_path, solved=False) == [tmp_path / f"{name}.ipynb" for name in NOTEBOOKS]


# ---------------------------------------------------------------- the notebooks' exercise cells, executed


SOLVED = sorted((NB_DIR / SOLUTIONS).glob("[0-9][0-9]_*.ipynb"))


def _pairs(path: Path, questions: bool = False) -> list:
    """(exercise cell, check cell) sources of a committed notebook, in order; ``questions``: the questions read
    from a plot instead (they need the notebook's data, so they run with it: tests/test_notebooks.py)."""
    nbformat = pytest.importorskip("nbformat")
    cells = nbformat.read(str(path), as_version=4).cells
    return [(c.source, cells[i + 1].source) for i, c in enumerate(cells) if "exercise" in c.metadata.get("tags", [])
            and ("question" in c.metadata.get("tags", [])) == questions]


@pytest.mark.parametrize("path", SOLVED, ids=lambda p: p.stem)
def test_student_questions_are_blank_and_their_checks_name_the_runs_data(path):
    """A question's function is blanked in the student's copy like an exercise; its check reads this run's data."""
    student = NB_DIR / path.name
    for (question, check), (solved, _) in zip(_pairs(student, True), _pairs(path, True)):
        assert "raise NotImplementedError(" in question and "# BEGIN SOLUTION" in solved
        assert check.count("questions.check_") == 1 and "exercises.check_" not in check


def _execute(*sources) -> str:
    """Run cell sources one after another in one namespace (torch imported, as the shared cells do); stdout."""
    namespace, out = {"torch": torch}, io.StringIO()
    with contextlib.redirect_stdout(out):
        for source in sources:
            exec(compile(source, "cell", "exec"), namespace)
    return out.getvalue()


def test_notebooks_01_to_05_each_have_an_exercise():
    assert {p.name[:2] for p in SOLVED} >= {"01", "02", "03", "04", "05"}
    assert [len(_pairs(p, questions=True)) for p in SOLVED] == [1, 3, 0, 1, 0]  # the plot questions of 01-05
    for path in SOLVED:
        assert len(_pairs(path)) == len(_pairs(NB_DIR / path.name)) >= 1, path.name
        for _, check in _pairs(path):
            assert "exercises.check_" in check


@pytest.mark.parametrize("path", SOLVED, ids=lambda p: p.stem)
def test_solved_exercises_pass_their_checks(path):
    for exercise, check in _pairs(path):
        text = _execute(exercise, check)
        assert checking.passed(text), text
        assert text.count(checking.CORRECT) == check.count("exercises.check_"), text


@pytest.mark.parametrize("path", SOLVED, ids=lambda p: p.stem)
def test_student_exercises_fail_politely_without_the_solution(path):
    student = NB_DIR / path.name
    whole = student.read_text(encoding="utf-8")
    assert "BEGIN SOLUTION" not in whole and "END SOLUTION" not in whole
    for (exercise, check), (solved, _) in zip(_pairs(student), _pairs(path)):
        assert "raise NotImplementedError(" in exercise
        solution = solved.split("# BEGIN SOLUTION")[1].split("# END SOLUTION")[0].strip()
        assert solution and solution not in exercise
        text = _execute(exercise, check)  # no exception: Run-all goes on
        lines = text.strip().splitlines()
        assert len(lines) == check.count("exercises.check_"), text
        assert all(ln.startswith(checking.NOT_YET) and "is still blank" in ln for ln in lines), text
