"""The Colab user's full-profile path, rehearsed against the stand-in world at the smallest sizes.

The normal scenario runs all seven notebooks, each in its own kernel, from a fresh copy of the checkout; the
other scenarios run the notebooks that meet their failures (00 downloads the baselines, labels and VOC; 01 the
rank folder; 06 needs the pruned model and the clip). ``make rehearse`` runs every notebook in every scenario.
"""

from __future__ import annotations

import json

import pytest
from rehearsal.run import rehearse

from hrank_ssd.course.results import NOTEBOOKS
from hrank_ssd.io.manifest import MANIFEST_ENV

pytest.importorskip("papermill", reason="the rehearsal executes notebooks: pip install -e '.[colab]'")
pytest.importorskip("trustme", reason="the stand-in world's TLS needs trustme (dev extra)")
PYTORCH_SSD_FOLDER = "1pKn-RifvJGWiOx0ZCRLtCXM5GT5lAluu"


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
    assert [nb["status"] for nb in sc["notebooks"]] == ["ok"] * len(NOTEBOOKS)
    got = sc["downloads"]
    # every artifact from the source the scenario serves; the first VOC mirror's 404 led to the second
    assert got["vgg16-ssd-hrank"]["source"].startswith("bundle hrank-ssd-bundle")
    assert got["vgg16-ssd-ranks"]["source"] == "gdrive folder 1_qmJN0YcOlD7iuxoy7PXnUh3EH7LZwtj"
    assert got["voc-2007-test"]["url"] == "https://thor.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtest_06-Nov-2007.tar"
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
    assert substitutes["vgg16-ssd-pruned"].startswith("published pruned model unavailable: using your own")
    assert "quota" in substitutes["vgg16-ssd-pruned"]
    assert "not the published model" in (out / "quota" / "report.md").read_text()
    corrupt = summary["scenarios"]["corrupt"]["downloads"]
    # the damaged GCS copy was refused (CRC), an HTML page is never taken for the labels: both from the next
    # source, pytorch-ssd's Drive folder
    assert corrupt["mb1-ssd"]["source"] == f"gdrive folder {PYTORCH_SSD_FOLDER}/mobilenet-v1-ssd-mp-0_675.pth"
    assert corrupt["voc-labels"]["source"] == f"gdrive folder {PYTORCH_SSD_FOLDER}/voc-model-labels.txt"
    assert corrupt["voc-2007-trainval"]["url"].startswith("https://thor.robots.ox.ac.uk/")  # md5 mismatch on the first
    video = json.loads((out / "corrupt" / "results" / "video.json").read_text())
    assert video["source"] == "synthetic clip"  # the damaged clip failed its sha256 and was not used
    assert not (out / "corrupt" / "work" / "data" / "video" / "vtest.mp4").exists()


def test_unknown_scenario_is_one_line(tmp_path):
    from hrank_ssd.errors import HRankError

    with pytest.raises(HRankError, match="unknown scenario flood: choose among normal, quota, corrupt, moved, "
                                         "voc-down, own-voc, no-ranks, unpruned"):
        rehearse(tmp_path, ["flood"])


def test_moved_models_voc_down_and_own_voc(tmp_path, clean_env):
    """Notebook 00 meets all three: the baselines and labels from pytorch-ssd's Drive folder when its bucket is gone;
    the one-line VOC message when every mirror fails; the user's own tars (and the library's names) carrying on."""
    out = tmp_path / "sources"
    summary = rehearse(out, ["moved", "voc-down", "own-voc"], notebooks=["00_setup"], train_images=2, test_images=1,
                       log=lambda m: None)
    assert summary["ok"], _failed(summary)
    moved = summary["scenarios"]["moved"]
    for name, file in (("vgg16-ssd", "vgg16-ssd-mp-0_7726.pth"), ("mb1-ssd", "mobilenet-v1-ssd-mp-0_675.pth"),
                       ("voc-labels", "voc-model-labels.txt")):
        assert moved["downloads"][name]["source"] == f"gdrive folder {PYTORCH_SSD_FOLDER}/{file}"
    drive_files = {r.split("id=")[1].split("&")[0] for r in moved["requests"] if "usercontent.google.com" in r}
    assert len(drive_files) == 3  # one file each out of a folder of seven
    down = summary["scenarios"]["voc-down"]
    assert [nb["status"] for nb in down["notebooks"]] == ["failed"]
    (error,) = [o for c in json.loads((out / "voc-down" / "notebooks" / "00_setup.ipynb").read_text())["cells"]
                for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert error["ename"] == "HRankError" and "\n" not in error["evalue"]
    assert "bring your own copy" in error["evalue"] and "HRANK_SSD_VOC_SOURCE=that folder" in error["evalue"]
    assert error["evalue"].count("VOCtrainval_06-Nov-2007.tar: ") == 5  # every mirror named with its failure
    own = summary["scenarios"]["own-voc"]
    assert own["downloads"]["voc-2007-trainval"]["source"].startswith(f"own copy {out / 'world' / 'my-drive'}")
    assert "voc-labels" not in own["downloads"]
    assert (out / "world" / "my-drive" / "VOC" / "VOCtest_06-Nov-2007.tar").is_file()  # the user's tar stays
    names = (out / "own-voc" / "work" / "full-rehearsal" / "voc-model-labels-library.txt").read_text().split()
    assert names[0] == "BACKGROUND" and len(names) == 21


def test_rank_folder_unavailable_notebook_01_uses_your_ranks(tmp_path, clean_env):
    out = tmp_path / "ranks"
    summary = rehearse(out, ["no-ranks"], notebooks=["01_rank_generation"], train_images=2, test_images=1,
                       log=lambda m: None)
    assert summary["ok"], _failed(summary)
    assert "vgg16-ssd-ranks" not in summary["scenarios"]["no-ranks"]["downloads"]
    substitutes = json.loads((out / "no-ranks" / "results" / "substitutes.json").read_text())
    assert substitutes["vgg16-ssd-ranks"].startswith("published rank files unavailable: using your own ranks")
    assert len(list((out / "no-ranks" / "work" / "full-rehearsal" / "ranks").glob("rank_conv*.npy"))) == 14


def test_the_voc_stop_check_wants_the_one_line_message_of_the_set_that_failed():
    from rehearsal.checks import voc_stop_problem

    mirrors = {"2007-trainval": ["http://a/VOCtrainval.tar"], "2007-test": ["http://a/VOCtest.tar", "http://b/VOCtest.tar"]}
    text = ("HRankError: could not download VOC 2007-test: tried http://a/VOCtest.tar: HTTP 404 Not Found; "
            "http://b/VOCtest.tar: unreachable; bring your own copy: put VOCtest.tar in a folder and set "
            "HRANK_SSD_VOC_SOURCE=that folder, or put the tar at /data/VOCtest.tar, or pass --mirror URL, then rerun")
    assert voc_stop_problem([text], mirrors) == ""
    assert voc_stop_problem([text.replace("http://b/VOCtest.tar: unreachable; ", "")], mirrors).startswith(
        "the message lacks http://b/VOCtest.tar")
    assert voc_stop_problem([text.replace("HRANK_SSD_VOC_SOURCE=", "")], mirrors).startswith("the message lacks")
    assert voc_stop_problem([text + "\nmore"], mirrors).startswith("not the one-line VOC message")
    assert voc_stop_problem(["KeyError: 'x'"], mirrors).startswith("not the one-line VOC message")
    assert voc_stop_problem([text, text], mirrors).startswith("2 error outputs")
