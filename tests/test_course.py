"""Course bookkeeping: the device is resolved once, published artifacts are fetched and verified once."""

import pytest
import torch

from hrank_ssd.errors import HRankError


def test_course_resolves_its_device_once(tmp_path):
    from hrank_ssd.course import Course

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert Course("tiny", tmp_path / "run", tmp_path / "work", progress=False).device == expected
    with pytest.raises(HRankError, match="unknown --device 'gpu'"):
        Course("tiny", tmp_path / "run", tmp_path / "work", device="gpu", progress=False)


def test_course_fetches_each_artifact_once(tmp_path, monkeypatch):
    from hrank_ssd import downloads
    from hrank_ssd.course import Course

    calls = []
    monkeypatch.setattr(downloads, "fetch", lambda name, **kw: calls.append(name) or tmp_path / f"{name}.pth")
    course = Course("full", tmp_path / "run", tmp_path / "work", progress=False)
    assert course.baseline("vgg16-ssd") == course.baseline("vgg16-ssd") == tmp_path / "vgg16-ssd.pth"
    assert calls == ["vgg16-ssd"]  # verified (sha256 of the whole file) once, not at every use
