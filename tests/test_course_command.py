"""The ``course`` command end to end on the tiny profile: run folders, the latest pointer, --no_notebooks,
--steps reusing the work folder, timings, the report and --update_readme."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from support.fake_clock import conv_clock

from hrank_ssd.cli import course as course_cmd
from hrank_ssd.cli import main
from hrank_ssd.course.models import MODEL_KEYS


def test_course_without_notebooks_then_one_step(tmp_path, monkeypatch, capsys):
    pytest.importorskip("markdown", reason="the course writes report.html: pip install -e '.[colab]'")
    runs, work = tmp_path / "runs", tmp_path / "work"
    base = ["course", "--profile", "tiny", "--no_notebooks", "--runs", str(runs), "--work", str(work),
            "--device", "cpu"]
    with conv_clock(monkeypatch):  # the latency table and the models it chooses: the same on any machine
        assert main(base) == 0
    first = (runs / "latest").resolve()
    assert first.parent == runs.resolve() and (runs / "LATEST").read_text().strip() == first.name
    results = first / "results"
    for name in ("map.csv", "per_class_ap.csv", "bench.csv", "flops.csv", "sensitivity.csv", "criteria.csv",
                 "distillation.csv", "video.json", "settings.json", "machine.json", "latency_table.json",
                 "latency_models.csv", "frontier.csv", "frontier_machine.json"):
        assert (results / name).is_file(), name
    times = json.loads((results / "timings.json").read_text())
    assert times["course, all steps"] > 0 and "train vgg16-ssd" in times and "bench" in times
    assert "latency table" in times and "ranks mb1-ssd" in times and "frontier" in times
    # six models, each evaluated, timed and counted; each pruned one finetuned (its log in the run)
    assert list(pd.read_csv(results / "map.csv")["model"]) == list(MODEL_KEYS)
    frontier = pd.read_csv(results / "frontier.csv").set_index("model")
    assert list(frontier.index) == list(MODEL_KEYS) and (frontier["forward_median_ms"] > 0).all()
    assert frontier.loc["vgg16-ssd", "GMACs"] > frontier.loc["vgg16-ssd-lat-small", "GMACs"]
    assert frontier.loc["mb1-ssd", "params"] > frontier.loc["mb1-ssd-pruned", "params"]
    for key in ("vgg16-ssd-pruned", "vgg16-ssd-lat-paper-macs", "vgg16-ssd-lat-small", "mb1-ssd-pruned"):
        assert (results / f"log_{key}.csv").is_file(), key
    chosen = pd.read_csv(results / "latency_models.csv").set_index("pruning")
    assert chosen.loc["vgg16-ssd-lat-paper-macs", "MMACs"] <= chosen.loc["vgg16-ssd-pruned", "MMACs"]
    assert json.loads((results / "frontier_machine.json").read_text())["threads"] >= 1
    assert (first / "plots" / "frontier.png").is_file()
    assert json.loads((results / "settings.json").read_text())["name"] == "tiny"
    assert "profile **tiny**" in (first / "report.md").read_text() and (first / "report.html").is_file()
    out = capsys.readouterr().out
    for step in course_cmd.STEPS:  # each step announced and timed as it runs
        assert f"[course] {step} ..." in out and f"[course] {step} done in" in out
    first_map = pd.read_csv(results / "map.csv")

    # --steps reuses the trained models of the work folder; --update_readme edits the checkout's README only
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:start -->\nSTALE BLOCK\n<!-- results:end -->\noutro\n")
    monkeypatch.setattr(course_cmd, "repo_root", lambda: tmp_path)
    assert main(base + ["--steps", "evaluate,frontier", "--update_readme"]) == 0
    second = (runs / "latest").resolve()
    assert second != first and (second / "results" / "map.csv").is_file()
    assert (second / "results" / "frontier.csv").is_file()
    assert not (second / "results" / "bench.csv").exists()  # only the steps asked for
    again = json.loads((second / "results" / "timings.json").read_text())
    assert not [k for k in again if k.startswith(("train", "ranks", "latency table"))]  # all reused from --work
    pd.testing.assert_frame_equal(pd.read_csv(second / "results" / "map.csv")[["model", "mAP"]],
                                  first_map[["model", "mAP"]])  # same models, deterministic evaluation
    text = readme.read_text()
    assert text.startswith("intro\n<!-- results:start -->") and text.endswith("<!-- results:end -->\noutro\n")
    assert second.name in text and "STALE BLOCK" not in text


@pytest.mark.parametrize("extra, says", [
    (["--steps", "evaluate"], "--steps works with --no_notebooks only"),
    (["--no_notebooks", "--steps", "train,dance"], "unknown --steps dance"),
])
def test_course_flag_errors_are_one_line(tmp_path, capsys, extra, says):
    assert main(["course", "--profile", "tiny", "--runs", str(tmp_path / "runs"), "--work", str(tmp_path / "w"),
                 "--device", "cpu", *extra]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1
