"""The student's own rate (notebook 02 tries and chooses it, notebook 03 finetunes it) and the resume lesson: a run
stopped mid-epoch and resumed gives the straight run's losses."""

import json

import pandas as pd
import pytest

from hrank_ssd.errors import HRankError


def test_trying_a_rate_prunes_counts_and_estimates_it(tiny_course, tmp_path):
    from hrank_ssd.hrank.pruning import prune_model
    from hrank_ssd.measure import flops
    from hrank_ssd.measure.sensitivity import quick_map
    from hrank_ssd.nets.models import count_parameters

    course, model = tiny_course
    rates = [0.5] * 7 + [0.25] * 7
    trial = course.try_compress_rate(rates)
    assert trial.compress_rate == "[0.5]*7+[0.25]*7" and trial.layers["rate"].tolist() == rates
    assert trial.layers["kept"].tolist() == [int(c * (1 - r)) for c, r in zip(model.plan.prunable, rates)]
    pruned, _ = prune_model(model, rates, "hrank", course.rank_dir())
    assert course.prune(rates) == course.work / "models" / "vgg16-ssd-pruned-0.5x7_0.25x7.pth"  # saved once
    assert trial.parameters == count_parameters(pruned) < trial.full_parameters == count_parameters(model)
    assert trial.macs == flops.totals(flops.count_exact(pruned))["MACs"] < trial.full_macs
    images = course.test_dataset(course.profile.quick_map_images)
    assert trial.images == len(images) == course.profile.quick_map_images
    assert trial.map == quick_map(pruned, images) and trial.full_map == quick_map(model, images)
    assert course.try_compress_rate("[0.5]*7+[0.25]*7").layers.equals(trial.layers)  # text or list, same rate
    assert "[0.5]*7+[0.25]*7: params" in trial.summary() and trial.row()["MAC cut"] == 1 - trial.macs / trial.full_macs


def test_the_chosen_rate_is_what_notebook_03_finetunes(tiny_course, tmp_path, monkeypatch):
    course, model = tiny_course
    profile_rate = [0.1] * 7 + [0.5] * 7
    assert course.chosen_compress_rate() == (profile_rate, "the tiny profile's")
    trained = []
    monkeypatch.setattr(course, "train", lambda key, *a, **kw: trained.append(key) or course.path(key))
    assert course.finetune_choice() == course.path("vgg16-ssd-pruned")  # no choice: the compared model itself
    assert course.your_model() is None  # not trained (the stand-in above wrote nothing): notebook 04 says so
    monkeypatch.undo()

    assert course.choose_compress_rate([0.3] * 14) == "[0.3]*14"
    assert json.loads((course.work / "choice.json").read_text()) == {"compress_rate": "[0.3]*14",
                                                                      "pruned": "vgg16-ssd-pruned-0.3x14.pth"}
    rates, source = course.chosen_compress_rate()
    assert rates == [0.3] * 14 and source.startswith("chosen in notebook 02")
    from hrank_ssd.nets.models import load_model, read_sidecar

    init = course.prune(rates)
    assert init.is_file() and read_sidecar(init)["compress_rate"] == [0.3] * 14
    assert load_model(init).plan.prunable == [int(c * 0.7) for c in model.plan.prunable]
    finetuned = course.finetune_choice()  # trained for real: one tiny epoch
    assert finetuned.name == "vgg16-ssd-pruned-0.3x14-ft1.pth" and trained[-1] == "vgg16-ssd-pruned"
    assert load_model(finetuned).plan.prunable == load_model(init).plan.prunable
    assert course.your_model() == finetuned  # what notebook 04 evaluates beside the compared models
    assert (course.results / f"log_{finetuned.stem}.csv").is_file()


def test_bad_choices_are_refused_or_ignored_with_a_note(tiny_course, capsys):
    course, _ = tiny_course
    for bad in ([1.0] * 14, [-0.1] * 14):
        with pytest.raises(HRankError, match=r"is outside \[0, 1\)"):
            course.choose_compress_rate(bad)
    assert not (course.work / "choice.json").exists()
    (course.work / "choice.json").write_text("{not json")
    assert course.chosen_compress_rate() == ([0.1] * 7 + [0.5] * 7, "the tiny profile's")
    assert "choice.json" in capsys.readouterr().err


def test_the_scans_suggestion_is_tried_beside_the_profiles_rate(tiny_course, tmp_path):
    course, model = tiny_course
    rows = [{"layer": i, "name": f"l{i}", "rate": r, "map": m} for i in range(1, 15)
            for r, m in ((0.0, 0.5), (0.5, 0.5 - 0.01 * i), (0.9, 0.1))]  # later layers are more sensitive
    table = course.suggested_rate(pd.DataFrame(rows))
    assert list(table.index) == ["profile's rate", "suggested by the scan"]
    paper, suggested = table.iloc[0], table.iloc[1]
    assert paper["compress_rate"] == "[0.1]*7+[0.5]*7" and suggested["note"] == ""
    assert suggested["MAC cut"] >= paper["MAC cut"]  # the target is the profile's cut
    tiny_scan = pd.DataFrame([{"layer": 1, "name": "l1", "rate": r, "map": 0.5} for r in (0.0, 0.5)])
    assert "cannot remove" in course.suggested_rate(tiny_scan).loc["suggested by the scan", "note"]


def _config(voc, folder, **kw):
    from hrank_ssd.train.config import TrainConfig

    base = dict(datasets=[str(voc)], validation_dataset=str(voc), net="vgg16-ssd", width=0.125, batch_size=2,
                num_epochs=2, lr=3e-3, seed=3, device="cpu", validation_epochs=0, progress=False,
                checkpoint_folder=str(folder), max_images=6)
    return TrainConfig(**dict(base, **kw))


def test_max_images_trains_on_the_first_images_only(synthetic_voc, tmp_path):
    from hrank_ssd.train.resume_check import StepLosses
    from hrank_ssd.train.trainer import train

    steps = StepLosses()
    train(_config(synthetic_voc, tmp_path, num_epochs=1), steps)
    assert [(r["epoch"], r["step"]) for r in steps.rows] == [(0, 1), (0, 2), (0, 3)]  # 6 images, batch 2
    with pytest.raises(HRankError, match="--max_images must be at least 1"):
        train(_config(synthetic_voc, tmp_path, max_images=0))


def test_a_run_stopped_mid_epoch_and_resumed_repeats_the_straight_run(synthetic_voc, tmp_path):
    from hrank_ssd.train.resume_check import plot_resume, resume_tolerance, stopped_and_resumed

    table = stopped_and_resumed(_config(synthetic_voc, tmp_path / "x"), tmp_path / "lesson", 1, 2)
    assert list(zip(table["epoch"], table["step"])) == [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3)]
    assert table["stopped"].notna().tolist() == [True] * 5 + [False]  # stopped after epoch 1 step 2...
    assert table["resumed"].notna().tolist() == [False] * 5 + [True]  # ...and resumed at step 3, not earlier
    assert resume_tolerance("cpu") == 0.0
    ran = table["stopped"].fillna(table["resumed"])
    assert (ran == table["straight"]).all() and table.attrs["weight_diff"] == 0.0  # CPU: the same bits
    assert len(set(table["straight"])) == len(table)  # the steps really train: every loss differs
    assert table.attrs["stop"] == (1, 2) and (tmp_path / "lesson" / "stopped" / "model_best.pth-1.tar").is_file()
    with pytest.raises(ValueError, match="stop at a step before epoch 1's last"):  # no mid-epoch checkpoint there
        stopped_and_resumed(_config(synthetic_voc, tmp_path / "x"), tmp_path / "late", 1, 3)
    fig = plot_resume(table)
    assert "stopped after step 5" in fig.axes[0].get_title()


def test_resume_lesson_writes_its_results_file(tiny_course, tmp_path):
    from hrank_ssd.course.results import RESULTS

    course, _ = tiny_course
    table = course.resume_lesson()
    assert "resume.csv" in RESULTS and (course.results / "resume.csv").is_file()
    images = min(course.profile.resume_images, course.profile.num_train)
    steps = -(-images // min(course.profile.batch_size, images // 2))
    assert len(table) == 2 * steps and table["stopped"].notna().sum() == steps + max(1, steps // 2)
    assert (table["stopped"].fillna(table["resumed"]) == table["straight"]).all()
