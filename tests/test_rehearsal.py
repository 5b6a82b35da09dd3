"""The Colab user's full-profile path, rehearsed against the stand-in world at the smallest sizes.

The normal scenario runs all seven notebooks, each in its own kernel, from a fresh copy of the checkout; the
quota and corruption scenarios run the notebooks that meet those failures (00 downloads the baselines, labels
and VOC; 06 needs the pruned model and the clip). ``make rehearse`` runs every notebook in every scenario.
"""

from __future__ import annotations

import json

import pytest

from hrank_ssd.course.rehearsal import rehearse
from hrank_ssd.io.manifest import MANIFEST_ENV

pytest.importorskip("papermill", reason="the rehearsal executes notebooks: pip install -e '.[colab]'")
pytest.importorskip("trustme", reason="the stand-in world's TLS needs trustme (dev extra)")


def _failed(summary) -> str:
    return "; ".join(f"{name}: {c['check']} ({c['detail'][:300]})" for name, sc in summary["scenarios"].items()
                     for c in sc["checks"] if not c["ok"])


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv(MANIFEST_ENV, raising=False)  # the rehearsal sets its own for the kernels only


def test_full_path_every_notebook_normal_scenario(tmp_path, clean_env):
    out = tmp_path / "rehearsal"
    summary = rehearse(out, ["normal"], train_images=2, test_images=2, log=lambda m: None)
    assert summary["ok"], _failed(summary)
    sc = summary["scenarios"]["normal"]
    assert [nb["status"] for nb in sc["notebooks"]] == ["ok"] * 7
    got = sc["downloads"]
    # every artifact from the source the scenario serves; the first VOC mirror's 404 led to the second
    assert got["vgg16-ssd-hrank"]["source"].startswith("bundle hrank-ssd-bundle")
    assert got["vgg16-ssd-ranks"]["source"] == "gdrive folder 1_qmJN0YcOlD7iuxoy7PXnUh3EH7LZwtj"
    assert got["voc-2007-test"]["url"] == "https://pjreddie.com/media/files/VOCtest_06-Nov-2007.tar"
    assert "voc-2012-trainval" not in got  # only what the notebooks need
    assert any("confirm=t" in r for r in sc["requests"])  # the bundle came through Drive's confirmation form
    # the notebooks ran from the copy (no ../shared beside it) with the rehearsal profile
    assert not (out / "shared").exists() and (out / "hrank-ssd" / "notebooks" / "00_setup.ipynb").is_file()
    settings = json.loads((out / "results" / "settings.json").read_text())
    assert settings["name"] == "full-rehearsal" and settings["synthetic"] is False
    video = json.loads((out / "results" / "video.json").read_text())
    assert video["source"] == "real clip (manifest: street-clip)" and video["input"].startswith(str(out / "work"))
    report = (out / "report.md").read_text()
    assert "profile **full-rehearsal**" in report and "not the published model" not in report
    assert json.loads((out / "rehearsal.json").read_text())["ok"] is True


def test_quota_and_corrupt_downloads_are_survived_and_reported(tmp_path, clean_env):
    out = tmp_path / "failures"
    summary = rehearse(out, ["quota", "corrupt"], notebooks=["00_setup", "06_video_demo"], train_images=2,
                       test_images=1, log=lambda m: None)
    assert summary["ok"], _failed(summary)
    quota = summary["scenarios"]["quota"]
    assert "vgg16-ssd-hrank" not in quota["downloads"]
    substitutes = json.loads((out / "quota" / "results" / "substitutes.json").read_text())
    assert "quota" in substitutes["vgg16-ssd-pruned"]
    assert "not the published model" in (out / "quota" / "report.md").read_text()
    corrupt = summary["scenarios"]["corrupt"]["downloads"]
    assert corrupt["mb1-ssd"]["source"].startswith("bundle")  # the damaged GCS copy was refused (CRC)
    assert corrupt["voc-labels"]["source"].startswith("bundle")  # an HTML page is never taken for the labels
    assert corrupt["voc-2007-trainval"]["url"].startswith("https://pjreddie.com/")  # md5 mismatch on the first
    video = json.loads((out / "corrupt" / "results" / "video.json").read_text())
    assert video["source"] == "synthetic clip"  # the damaged clip failed its sha256 and was not used
    assert not (out / "corrupt" / "work" / "data" / "video" / "vtest.mp4").exists()


def test_unknown_scenario_is_one_line(tmp_path):
    from hrank_ssd.errors import HRankError

    with pytest.raises(HRankError, match="unknown scenario flood: choose among normal, quota, corrupt"):
        rehearse(tmp_path, ["flood"])
