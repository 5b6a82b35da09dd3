"""The notebooks' exercises: each check passes the right answer and names the mistake in a wrong one, never raising;
the exercise and check cells of the solved notebooks say correct, those of the student's notebooks fail politely."""

from __future__ import annotations

import contextlib
import functools
import io
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hrank_ssd.course import checking
from hrank_ssd.course import exercises as ex
from hrank_ssd.course.notebooks import NOTEBOOKS, SOLUTIONS, failed_checks, notebook_paths
from hrank_ssd.errors import HRankError
from hrank_ssd.hrank.pruning import select_filters
from hrank_ssd.hrank.ranks import batched_ranks, ranks_one_at_a_time
from hrank_ssd.measure.evaluation import compute_ap
from hrank_ssd.train.losses import MultiBoxLoss

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"


def passed(text: str) -> bool:
    """Whether a check cell's printed text says it passed: a ``correct:`` line and no ``not yet:`` line."""
    lines = [ln.strip() for ln in str(text).splitlines()]
    return any(ln.startswith(checking.CORRECT) for ln in lines) and not any(ln.startswith(checking.NOT_YET) for ln in lines)


def run(check, fn):
    """(what ``check(fn)`` returned, what it printed); the check itself must not raise."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        ok = check(fn)
    return ok, out.getvalue()


def assert_correct(check, fn):
    ok, text = run(check, fn)
    assert ok is True and passed(text), text
    assert text.startswith(checking.CORRECT) and len(text.strip().splitlines()) == 1, text


def assert_not_yet(check, fn, *phrases) -> str:
    ok, text = run(check, fn)
    assert ok is False and not passed(text), text
    assert text.startswith(checking.NOT_YET), text
    for phrase in phrases:
        assert phrase in text, (phrase, text)
    return text


def _kl(student, teacher, T, reduction="sum"):
    """KL(softmax(teacher/T) || softmax(student/T)) * T^2 with torch's own kl_div (an independent formula)."""
    return F.kl_div(F.log_softmax(student / T, -1), F.softmax(teacher / T, -1), reduction=reduction) * T * T


def _kl_by_hand(student, teacher, T):
    q = torch.softmax(teacher / T, -1)
    return float((q * (q.log() - torch.log_softmax(student / T, -1))).sum()) * T ** 2


def _ap_interpolated(p, r):
    """11-point AP written independently of compute_ap (recall points as i / 10)."""
    return sum(max([pi for pi, ri in zip(p, r) if ri >= i / 10], default=0.0) for i in range(11)) / 11


def _ap_area(p, r):
    """VOC2010's AP, the area under the interpolated curve, written independently of compute_ap."""
    mrec, mpre = [0.0, *r, 1.0], [0.0, *p, 0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    return sum((mrec[i + 1] - mrec[i]) * mpre[i + 1] for i in range(len(mrec) - 1))


def map_ranks(maps):
    s = torch.linalg.svdvals(maps)
    return (s > max(maps.shape[-2:]) * torch.finfo(s.dtype).eps * s.amax(-1, keepdim=True)).sum(-1)


def map_ranks_numpy(maps):
    return np.linalg.matrix_rank(np.asarray(maps))


def average_rank(batches):
    total, images = 0, 0
    for maps in batches:
        total, images = total + map_ranks(maps).sum(0), images + len(maps)
    return total / images


def average_rank_numpy(batches):
    every = np.concatenate([map_ranks_numpy(maps) for maps in batches])
    return list(every.mean(0))


RIGHT = {  # each check: two right answers written here, in different spellings (torch or NumPy, list or array)
    "map_ranks": (ex.check_map_ranks, map_ranks, map_ranks_numpy),
    "average_rank": (ex.check_average_rank, average_rank, average_rank_numpy),
    "top_filters": (ex.check_top_filters, lambda s, k: list(np.argsort(s, kind="stable")[::-1][:k]),
                    lambda s, k: torch.tensor(sorted(range(len(s)), key=lambda i: (s[i], i))[-k:])),
    "distillation_loss": (ex.check_distillation_loss, _kl, _kl_by_hand),
    "voc07_ap": (ex.check_voc07_ap, _ap_interpolated,
                 lambda p, r: float(np.mean([max([0.0] + [a for a, b in zip(p, r) if b >= t]) for t in
                                             np.linspace(0, 1, 11)]))),
}
LIBRARY = {  # each check: the library's own answer, passed as it is and reached through a name of the caller's
    "map_ranks": (batched_ranks, lambda maps: ranks_one_at_a_time(maps), "ranks_one_at_a_time"),
    "average_rank": (ranks_one_at_a_time, lambda b: torch.cat([batched_ranks(m) for m in b]).mean(0), "batched_ranks"),
    "top_filters": (functools.partial(select_filters), lambda s, k: sorted(select_filters(s, k)), "select_filters"),
    "distillation_loss": (MultiBoxLoss(distill_T=2.0).distillation,
                          lambda s, t, T: MultiBoxLoss(distill_T=T).distillation(s, t), "MultiBoxLoss.distillation"),
    "voc07_ap": (compute_ap, lambda p, r: compute_ap(p, r, use_2007_metric=True), "compute_ap"),
}


@pytest.mark.parametrize("name", RIGHT)
def test_each_check_passes_answers_written_two_ways(name):
    check, one, other = RIGHT[name]
    assert_correct(check, one)
    assert_correct(check, other)


@pytest.mark.parametrize("name", LIBRARY)
def test_each_check_refuses_the_librarys_own_answer(name):
    check = RIGHT[name][0]
    itself, wrapped, called = LIBRARY[name]
    assert_not_yet(check, itself, f"{name} is the library's", checking.LIBRARY)
    text = assert_not_yet(check, wrapped, f"{name} calls the library's {called}: {checking.LIBRARY}")
    assert checking.HINT not in text and sys.getprofile() is None  # the watch is off again


def test_the_watch_sees_the_library_through_any_name_and_stops():
    from hrank_ssd.hrank import ranks as R

    alias = batched_ranks
    assert_not_yet(ex.check_map_ranks, lambda m: alias(m), "calls the library's batched_ranks")
    assert_not_yet(ex.check_map_ranks, lambda m: R.batched_ranks(m).long(), "calls the library's batched_ranks")
    assert_not_yet(ex.check_map_ranks, lambda m: 1 / 0, "raised ZeroDivisionError")
    assert sys.getprofile() is None
    assert_correct(ex.check_map_ranks, lambda m: torch.linalg.matrix_rank(m))  # torch's own functions are fine


def blank(*args, **kwargs):
    raise NotImplementedError("exercise: write your code here, then run the check cell below")


@pytest.mark.parametrize("name", RIGHT)
def test_each_check_fails_politely_never_raising(name):
    check, stuck = RIGHT[name][0], checking.STUCK.format(name=name)
    assert_not_yet(check, blank, f"{name} is still blank", "NotImplementedError", stuck)
    assert_not_yet(check, lambda *a, **k: 1 / 0, "raised ZeroDivisionError: division by zero", checking.HINT, stuck)
    assert_not_yet(check, None, f"{name} is not a function", stuck)
    assert_not_yet(check, lambda *a, **k: None, "returned None", "end it with `return", stuck)
    assert_not_yet(check, lambda *a, **k: "abc", "returned 'abc'", checking.HINT, stuck)
    assert_not_yet(check, lambda *a, **k: float("nan"), "returned nan", checking.HINT, stuck)


def test_map_ranks_mistakes():
    svd = torch.linalg.svdvals

    def one_tolerance(maps):  # the whole batch's largest singular value, not each map's
        s = svd(maps)
        return (s > max(maps.shape[-2:]) * torch.finfo(s.dtype).eps * s.max()).sum(-1)

    assert_not_yet(ex.check_map_ranks, lambda m: (svd(m) > 0).sum(-1), "returned [[8, 8, 0, 0], [8, 8, 8, 8]], "
                   "expected [[1, 7, 0, 0], [8, 1, 3, 5]]", "too many: a singular value that is zero on paper")
    assert_not_yet(ex.check_map_ranks, one_tolerance, "returned [[1, 7, 0, 0], [0, 1, 3, 5]]", "a faint map lost")
    assert_not_yet(ex.check_map_ranks, lambda m: (svd(m) > 1e-4).sum(-1), "a faint map lost its rank")
    assert_not_yet(ex.check_map_ranks, lambda m: torch.linalg.matrix_rank(m.flatten(2)), "returned [2, 3]",
                   "one rank per map, a (2, 4) result")
    assert_not_yet(ex.check_map_ranks, lambda m: torch.linalg.matrix_rank(m.permute(2, 3, 0, 1)),
                   "one rank per map, a (2, 4) result")
    assert_not_yet(ex.check_map_ranks, svd, "one value per singular value")
    assert_not_yet(ex.check_map_ranks, lambda m: torch.full(m.shape[:2], min(m.shape[-2:])), "the maps' size")


def test_average_rank_mistakes():
    def last_only(batches):
        for maps in batches:
            mean = map_ranks(maps).float().mean(0)
        return mean

    def two_passes(batches):
        images = sum(len(maps) for maps in batches)
        return sum(map_ranks(maps).sum(0) for maps in batches) / images

    every = lambda b: torch.cat([map_ranks(m) for m in b])  # noqa: E731
    assert_not_yet(ex.check_average_rank, lambda b: every(b).float().mean(1), "averaged over the filters")
    assert_not_yet(ex.check_average_rank, every, "ranks of every map: now average")
    assert_not_yet(ex.check_average_rank, lambda b: torch.stack([map_ranks(m).float().mean(0) for m in b]),
                   "one row per batch")
    assert_not_yet(ex.check_average_rank, lambda b: every(b).sum(0), "divide by how many images")
    assert_not_yet(ex.check_average_rank, lambda b: torch.stack([map_ranks(m).float().mean(0) for m in b]).mean(0),
                   "returned [5.333333, 2.0, 3.888889, 2.666667], expected [4.571429, 2.571429, 4.428571, 1.714286]",
                   "the mean of the batch means counts an image of a small batch more")
    assert_not_yet(ex.check_average_rank, last_only, "only one batch counts")
    assert_not_yet(ex.check_average_rank, two_passes, "go through the batches twice")
    assert_not_yet(ex.check_average_rank, lambda b: len(b), "raised TypeError", checking.HINT)


def test_top_filters_mistakes():
    assert_not_yet(ex.check_top_filters, lambda s, k: list(np.argsort(s)[:k]), "returned [4, 0], expected [1, 3]",
                   "you kept the lowest scores")
    assert_not_yet(ex.check_top_filters, lambda s, k: sorted(s)[-k:], "return the filters' indices")
    assert_not_yet(ex.check_top_filters, lambda s, k: list(np.argsort(s)[-k - 1:]), "return exactly keep = 2 indices")


def test_top_filters_ties_keep_the_higher_index():
    scores = np.array([2.0, 3.5, 2.0, 3.5, 1.0, 3.5, 0.0, 2.0])
    assert select_filters(scores, 4) == [1, 3, 5, 7]  # the rule the check states: of the three 2.0s, index 7 stays
    text = assert_not_yet(ex.check_top_filters, lambda s, k: list(np.argsort(-s, kind="stable")[:k]),
                          "keep=4) returned [1, 3, 5, 0], expected [1, 3, 5, 7]", "ties broken the other way",
                          "keeps the higher index")
    assert "correct" not in text


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
    assert_not_yet(ex.check_voc07_ap, _ap_area, "area under the curve")
    text = assert_not_yet(ex.check_voc07_ap, lambda p, r: float(np.mean(p)), checking.HINT)
    assert "eleven recall levels" in text  # no specific mistake recognised: the general hint


WRONG = {  # each check: answers it rejects, right or wrong in many ways, none of them the solution
    "map_ranks": [lambda m: (torch.linalg.svdvals(m) > 0).sum(-1), torch.linalg.svdvals, blank, lambda m: 1 / 0],
    "average_rank": [lambda b: torch.cat([map_ranks(m) for m in b]).sum(0), blank, lambda b: len(b)],
    "top_filters": [lambda s, k: list(np.argsort(-s, kind="stable")[:k]), lambda s, k: [0], blank],
    "distillation_loss": [lambda s, t, T: _kl(t, s, T), lambda s, t, T: 0.0, blank],
    "voc07_ap": [lambda p, r: float(np.mean(p)), _ap_area, blank],
}


@pytest.mark.parametrize("name", WRONG)
def test_the_solution_is_printed_only_when_asked(name):
    solution = checking.solution_text(name)
    body = [ln.strip() for ln in solution.splitlines()[1:] if len(ln.strip()) > 8 and not ln.strip().startswith('"""')]
    assert solution.startswith(f"def {name}(") and body and "BEGIN SOLUTION" not in solution
    for fn in WRONG[name] + [select_filters if name == "top_filters" else None]:
        text = assert_not_yet(RIGHT[name][0], fn, checking.STUCK.format(name=name))
        assert not any(line in text for line in body), (fn, text)
    asked = io.StringIO()
    with contextlib.redirect_stdout(asked):
        ex.solution(name)
    assert asked.getvalue() == solution + "\n"
    namespace = {"torch": torch, "map_ranks": map_ranks}
    exec(solution, namespace)  # the printed answer is one the check accepts
    assert_correct(RIGHT[name][0], namespace[name])


def test_solution_of_an_unknown_exercise_says_what_to_do():
    with pytest.raises(HRankError, match="no exercise 'feature_map_rnk' in the solved notebooks"):
        ex.solution("feature_map_rnk")


def _rank_file(tmp_path, batches):
    path = tmp_path / "rank_conv5.npy"
    np.save(path, batched_ranks(torch.cat(batches)).mean(0).numpy().astype(np.float32))
    return path


def _compare(fn, batches, path):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        ranks, whose = ex.compare_rank_file(fn, iter(batches), path, "conv3_1")
    return ranks, whose, out.getvalue()


def test_compare_rank_file_uses_the_students_ranks_when_they_agree(tmp_path):
    batches = [ex._maps(4, 6, 8, 8, seed=10), ex._maps(4, 6, 8, 8, seed=11), ex._maps(2, 6, 8, 8, seed=12)]
    path = _rank_file(tmp_path, batches)
    library = np.load(path)
    ranks, whose, text = _compare(average_rank, batches, path)
    assert whose == "yours" and np.abs(ranks - library).max() <= 1e-6
    assert text.startswith("your average_rank made conv3_1's rank file over the same 10 images: 6 filters, largest "
                           "difference from the library's rank_conv5.npy ") and text.endswith(" (allowed: 0.05, half of 1/10)\n")
    ranks, whose, _ = _compare(lambda b: average_rank(b) + 0.049, batches, path)  # within half of 1/10: rounding
    assert whose == "yours"
    ranks, whose, text = _compare(lambda b: average_rank(b) + 0.051, batches, path)
    assert whose == "the library's" and ranks is not None and np.array_equal(ranks, library)
    assert text.startswith("your average_rank gave ranks off by more than 0.05 on 6 of 6 filters (filter ")


def test_compare_rank_file_falls_back_to_the_library_in_one_line(tmp_path):
    batches = [ex._maps(3, 5, 6, 6, seed=13)]
    path = _rank_file(tmp_path, batches)
    for fn, says in [(blank, "your average_rank is still blank; the library's rank_conv5.npy stands in for conv3_1"),
                     (lambda b: 1 / 0, "your average_rank raised ZeroDivisionError: division by zero; the library's"),
                     (lambda b: torch.cat([map_ranks(m) for m in b]), "your average_rank gave ranks of shape [3, 5], "
                                                                       "not one value per filter (5); the library's")]:
        ranks, whose, text = _compare(fn, batches, path)
        assert whose == "the library's" and np.array_equal(ranks, np.load(path))
        assert text.startswith(says) and len(text.splitlines()) == 1, text


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


def _pairs(path: Path, questions: bool = False, with_data: bool = False) -> list:
    """(exercise cell, check cell) sources of a committed notebook, in order; ``questions``: the questions read
    from a plot instead; ``with_data``: also the exercises whose check reads the run's ``course`` (these and the
    questions need the notebook's data, so they run with it: tests/test_notebooks.py)."""
    nbformat = pytest.importorskip("nbformat")
    cells = nbformat.read(str(path), as_version=4).cells
    return [(c.source, cells[i + 1].source) for i, c in enumerate(cells) if "exercise" in c.metadata.get("tags", [])
            and ("question" in c.metadata.get("tags", [])) == questions
            and (with_data or questions or not re.search(r"(?<![\w.])course\b", cells[i + 1].source))]


@pytest.mark.parametrize("path", SOLVED, ids=lambda p: p.stem)
def test_student_questions_are_blank_and_their_checks_name_the_runs_data(path):
    """A question's function is blanked in the student's copy like an exercise; its check reads this run's data."""
    student = NB_DIR / path.name
    for (question, check), (solved, _) in zip(_pairs(student, True), _pairs(path, True)):
        assert "raise NotImplementedError(" in question and "# BEGIN SOLUTION" in solved
        assert check.count("questions.check_") == 1 and "exercises.check_" not in check


def _checks(source: str) -> int:
    """How many checks a check cell calls (``exercises.check_x(...)``, or another course module's ``check_x``)."""
    return len(re.findall(r"\b\w+\.check_\w+\(", source))


def _execute(*sources) -> str:
    """Run cell sources one after another in one namespace (torch imported, as the shared cells do); stdout."""
    namespace, out = {"torch": torch}, io.StringIO()
    with contextlib.redirect_stdout(out):
        for source in sources:
            exec(compile(source, "cell", "exec"), namespace)
    return out.getvalue()


def test_notebooks_01_to_05_each_have_an_exercise():
    assert {p.name[:2] for p in SOLVED} >= {"01", "02", "03", "04", "05"}
    assert [len(_pairs(p, questions=True)) for p in SOLVED] == [1, 3, 0, 0, 0, 1]  # the plot questions of 01-05, 08
    for path in (p for p in SOLVED if p.name[:2] <= "05"):
        assert len(_pairs(path)) == len(_pairs(NB_DIR / path.name)) >= 1, path.name
        for _, check in _pairs(path, with_data=True):
            assert _checks(check) >= 1, check


@pytest.mark.parametrize("path", SOLVED, ids=lambda p: p.stem)
def test_solved_exercises_pass_their_checks(path):
    for exercise, check in _pairs(path):
        text = _execute(exercise, check)
        assert passed(text), text
        assert text.count(checking.CORRECT) == _checks(check), text


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
        verdicts = [ln for ln in text.strip().splitlines() if not ln.startswith("  ")]  # hints, how to get unstuck
        assert len(verdicts) == _checks(check) and checking.HINT not in text, text
        assert all(ln.startswith(checking.NOT_YET) and "is still blank" in ln for ln in verdicts), text
        assert text.count("  stuck? exercises.solution(") == len(verdicts), text
