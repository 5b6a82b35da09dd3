"""Course bookkeeping: the device is resolved once, published artifacts are fetched and verified once."""

import pytest
import torch

from hrank_ssd.errors import HRankError


def test_course_resolves_its_device_once(tmp_path):
    from hrank_ssd.course.steps import Course

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert Course("tiny", tmp_path / "run", tmp_path / "work", progress=False).device == expected
    with pytest.raises(HRankError, match="unknown --device 'gpu'"):
        Course("tiny", tmp_path / "run", tmp_path / "work", device="gpu", progress=False)


def test_course_fetches_each_artifact_once(tmp_path, monkeypatch):
    from hrank_ssd.course.steps import Course
    from hrank_ssd.io import downloads

    calls = []
    monkeypatch.setattr(downloads, "fetch", lambda name, **kw: calls.append(name) or tmp_path / f"{name}.pth")
    course = Course("full", tmp_path / "run", tmp_path / "work", progress=False)
    assert course.baseline("vgg16-ssd") == course.baseline("vgg16-ssd") == tmp_path / "vgg16-ssd.pth"
    assert calls == ["vgg16-ssd"]  # verified (sha256 of the whole file) once, not at every use


def test_full_profile_uses_the_published_ranks_unless_asked_to_generate(tmp_path, monkeypatch):
    from hrank_ssd.course.steps import Course
    from hrank_ssd.hrank.ranks import has_ranks
    from hrank_ssd.io import downloads

    calls = []
    monkeypatch.setattr(downloads, "fetch", lambda name, **kw: calls.append(name) or tmp_path / name)
    course = Course("full", tmp_path / "run", tmp_path / "work", progress=False)
    assert course.rank_dir() == tmp_path / "vgg16-ssd-ranks" and calls == ["vgg16-ssd-ranks"]
    (course.work / "ranks").mkdir(parents=True)
    for i in range(1, 14):  # an interrupted run of the student's: one file short, so computed again...
        (course.work / "ranks" / f"rank_conv{i}.npy").write_bytes(b"")
    assert not has_ranks(course.work / "ranks", "vgg16-ssd")
    (course.work / "ranks" / "rank_conv14.npy").write_bytes(b"")  # ...but complete, it is reused
    assert course.rank_dir(generate=True) == course.work / "ranks"
    assert course.rank_dir() == tmp_path / "vgg16-ssd-ranks"  # the default stays the published folder


def test_student_finetune_is_short_on_full_and_the_course_run_elsewhere(tmp_path, monkeypatch):
    from hrank_ssd.course.steps import Course

    for name, expected in (("full", {"epochs": 1, "hooks": None}), ("tiny", {"hooks": None})):
        course = Course(name, tmp_path / name / "run", tmp_path / name / "work", progress=False)
        seen = []
        monkeypatch.setattr(course, "finetuned", lambda seen=seen, **kw: seen.append(kw) or tmp_path / "vgg16-ssd-hrank-ft1.pth")
        assert course.student_finetuned().name == "vgg16-ssd-hrank-ft1.pth" and seen == [expected]
        assert course.log_file(tmp_path / "x" / "vgg16-ssd-hrank-ft1.pth") == course.results / "log_vgg16-ssd-hrank-ft1.csv"


def test_street_clip_comes_from_the_manifest_on_full_and_falls_back(tmp_path, monkeypatch):
    import hashlib
    import json

    from hrank_ssd.course import steps as course_mod
    from hrank_ssd.course.steps import Course

    clip = tmp_path / "served" / "vtest.mp4"
    clip.parent.mkdir()
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"artifacts": [{
        "name": "street-clip", "file": "data/video/vtest.mp4", "kind": "video", "size": clip.stat().st_size,
        "sha256": hashlib.sha256(clip.read_bytes()).hexdigest(),
        "sources": [{"type": "http", "url": clip.as_uri()}]}]}))
    monkeypatch.setenv("HRANK_SSD_MANIFEST", str(manifest))
    monkeypatch.setattr(course_mod, "SHARED_VIDEO", ("no", "such", "clip.mp4"))
    full = Course("full", tmp_path / "run", tmp_path / "work", progress=False)
    got, source = full.street_clip()
    assert source == "real clip (manifest: street-clip)" and got.read_bytes() == clip.read_bytes()
    assert Course("tiny", tmp_path / "r2", tmp_path / "w2", progress=False).street_clip() == (None, None)
    clip.write_bytes(b"corrupt")  # a download that fails its checksum is never used
    fresh = Course("full", tmp_path / "run3", tmp_path / "work3", progress=False)
    assert fresh.street_clip() == (None, None)


def test_full_profile_downloads_only_the_voc_set_it_uses_into_work(tmp_path, monkeypatch):
    from hrank_ssd.course.steps import Course
    from hrank_ssd.io import voc_download

    calls = []
    monkeypatch.setattr(voc_download, "download_voc", lambda dest, sets, **kw: calls.append((dest, sets)))
    course = Course("full", tmp_path / "run", tmp_path / "work", progress=False)
    data = tmp_path / "work" / "full" / "data"
    assert course.test_root() == data / "VOCdevkit" / "VOC2007-test"
    assert calls == [(data, ("2007-test",))]
    assert course.dataset_root() == course.dataset_root() == data / "VOCdevkit" / "VOC2007"
    assert course.test_root() == data / "VOCdevkit" / "VOC2007-test"
    assert calls == [(data, ("2007-test",)), (data, ("2007-trainval",))]  # once each per run; never VOC2012


def test_published_pruned_model_over_quota_falls_back_to_the_students(tmp_path, monkeypatch):
    import json

    from hrank_ssd.course.steps import Course
    from hrank_ssd.io import downloads

    def fetch(name, **kw):
        if name == "vgg16-ssd-hrank":
            raise HRankError("vgg16-ssd-hrank: Google Drive says the file is over its download quota")
        return tmp_path / f"{name}.pth"

    monkeypatch.setattr(downloads, "fetch", fetch)
    course = Course("full", tmp_path / "run", tmp_path / "work", progress=False)
    monkeypatch.setattr(course, "student_finetuned", lambda: tmp_path / "vgg16-ssd-hrank-ft1.pth")
    assert course.model_path("vgg16-ssd-pruned") == tmp_path / "vgg16-ssd-hrank-ft1.pth"
    assert course.model_path("vgg16-ssd") == tmp_path / "vgg16-ssd.pth"
    note = json.loads((course.results / "substitutes.json").read_text())["vgg16-ssd-pruned"]
    assert "over its download quota" in note and "your own finetuned pruned model (1 epoch(s)" in note
    tiny = Course("tiny", tmp_path / "r2", tmp_path / "w2", progress=False)
    monkeypatch.setattr(tiny, "finetuned", lambda: (_ for _ in ()).throw(HRankError("broken")))
    with pytest.raises(HRankError, match="broken"):  # only the published model has a stand-in
        tiny.model_path("vgg16-ssd-pruned")
