"""What a headless course run shows while a long cell runs: hidden bars write their state to a status file, and
the run prints a line with an estimate of the time left. No test here waits on a real clock."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hrank_ssd import progress
from hrank_ssd.course.notebooks import status_file


@pytest.mark.parametrize("state, line", [
    # 20 items at 2/s in this epoch, then 17 more epochs of 30 items: 10 s + 255 s
    ({"desc": "epoch 3/20", "n": 10, "total": 30, "rate": 2.0, "unit": "it"}, "epoch 3/20: 10/30 it, about 4 min left"),
    ({"desc": "epoch 20/20", "n": 10, "total": 30, "rate": 2.0, "unit": "it"}, "epoch 20/20: 10/30 it, about 10 s left"),
    ({"desc": "eval vgg16-ssd", "n": 50, "total": 100, "rate": 25.0, "unit": "img"},
     "eval vgg16-ssd: 50/100 img, about 2 s left"),
    ({"desc": "ranks", "n": 0, "total": 8, "rate": None, "unit": "batch"}, "ranks: 0/8 batch"),  # no rate yet
    ({"desc": "video", "n": 7, "total": None, "rate": 3.0, "unit": "frame"}, "video: 7 frame"),  # no total
])
def test_a_status_line_says_what_runs_and_how_long_is_left(state, line):
    assert progress.status_line(state) == line


def test_a_hidden_bar_reports_to_the_status_file_and_a_shown_one_does_not(tmp_path, monkeypatch):
    status, now = tmp_path / "status.json", [0.0]
    monkeypatch.setenv(progress.STATUS_ENV, str(status))
    monkeypatch.setattr(progress, "clock", lambda: now[0])
    bar = progress.tqdm(total=5, desc="ranks", unit="batch", disable=True)
    bar.update(3)
    now[0] = 0.5
    bar.refresh()  # within a second of the last write: not written (a training step refreshes every step)
    assert json.loads(status.read_text())["n"] == 0
    now[0] = 1.0
    bar.refresh()
    state = json.loads(status.read_text())
    assert (state["desc"], state["n"], state["total"], state["unit"]) == ("ranks", 3, 5, "batch")
    bar.close()
    assert not status.exists()  # a finished bar is not the current step
    shown = progress.tqdm(total=5, desc="shown", file=open(os.devnull, "w"))
    shown.update(2)
    shown.refresh()
    shown.close()
    assert not status.exists()
    monkeypatch.delenv(progress.STATUS_ENV)
    hidden = progress.tqdm(total=5, disable=True)  # no run asked: tqdm's own disabled bar
    hidden.update(1)
    assert hidden.disable and not status.exists()


def test_the_watch_prints_a_changed_status_at_most_every_interval(tmp_path):
    now, lines = [0.0], []
    status = tmp_path / "status.json"
    watch = progress.Watch("00_setup.ipynb", lines.append, every=30, clock=lambda: now[0], path=status)
    watch.poll()  # no status yet
    status.write_text(json.dumps({"desc": "ranks", "n": 3, "total": 5, "rate": None, "unit": "batch"}))
    now[0] = 10.0
    watch.poll()  # too soon after the start
    now[0] = 31.0
    watch.poll()
    now[0] = 45.0
    status.write_text(json.dumps({"desc": "ranks", "n": 4, "total": 5, "rate": 0.5, "unit": "batch"}))
    watch.poll()  # changed, but 14 s after the last line
    now[0] = 70.0
    status.write_text(json.dumps({"desc": "ranks", "n": 4, "total": 5, "rate": 0.5, "unit": "batch"}))
    watch.poll()  # 39 s after the last line: printed
    now[0] = 150.0
    status.write_text(json.dumps({"desc": "ranks", "n": 4, "total": 5, "rate": 0.5, "unit": "batch",
                                  "elapsed": 99.0}))
    watch.poll()  # the file changed (its elapsed time), its line did not
    status.write_text(json.dumps({"desc": "eval vgg16-ssd", "n": 1, "total": 9, "rate": None, "unit": "img"}))
    now[0] = 200.0
    watch.poll()
    assert lines == ["[course] 00_setup.ipynb (31 s in): ranks: 3/5 batch",
                     "[course] 00_setup.ipynb (70 s in): ranks: 4/5 batch, about 2 s left",
                     "[course] 00_setup.ipynb (3 min in): eval vgg16-ssd: 1/9 img"]


def test_a_kernel_started_inside_the_run_reports_to_its_status_file(tmp_path):
    """The notebooks' kernels are child processes: they inherit the status file's name from the run."""
    before = os.environ.get(progress.STATUS_ENV)
    child = ("import os\nfrom hrank_ssd import progress\nprogress.clock = iter(range(0, 100, 5)).__next__\n"
             "bar = progress.tqdm(total=4, desc='eval mb1-ssd', unit='img', disable=True)\nbar.update(2)\n"
             "bar.refresh()\nprint(open(os.environ[progress.STATUS_ENV]).read())\n")
    with status_file() as path:
        assert os.environ[progress.STATUS_ENV] == str(path)
        out = subprocess.run([sys.executable, "-c", child], check=True, timeout=120, capture_output=True, text=True)
        assert json.loads(out.stdout)["n"] == 2 and str(path.parent) in os.environ[progress.STATUS_ENV]
        assert not path.exists()  # the child's bar closed when it ended
    assert os.environ.get(progress.STATUS_ENV) == before and not path.exists()


def test_a_hidden_bar_draws_the_same_random_numbers_as_no_bar(tmp_path, monkeypatch):
    """A bar over a DataLoader takes an iterator of it (tqdm.auto does: a DataLoader draws a seed per iterator);
    with a status file or without, the global RNG ends in the same state, so checkpoints store the same state."""
    import torch

    def draw(status):
        if status:
            monkeypatch.setenv(progress.STATUS_ENV, str(tmp_path / "status.json"))
        else:
            monkeypatch.delenv(progress.STATUS_ENV, raising=False)
        torch.manual_seed(0)
        bar = progress.tqdm(torch.utils.data.DataLoader(list(range(10)), batch_size=2), total=5, disable=True)
        assert [len(b) for b in bar] == [2] * 5
        bar.close()
        return torch.rand(3)

    assert torch.equal(draw(True), draw(False))
