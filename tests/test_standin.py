"""The repository's own manifest, downloaded through the stand-in outside world (gdown and urllib unchanged)."""

from __future__ import annotations

import json
import zipfile

import pytest
from rehearsal.standin import StandInWorld

from hrank_ssd.errors import HRankError
from hrank_ssd.io.downloads import fetch
from hrank_ssd.io.manifest import MANIFEST_ENV, load_manifest
from hrank_ssd.io.transports import http_download
from hrank_ssd.io.verify import SourceFailed, sha256sum

BUNDLE_ID = "1g2KkOMTeZ7u_EM9Ke2HpomvHm049Iqit"  # weights_manifest.json: hrank-ssd-bundle
GCS_VGG = "https://storage.googleapis.com/models-hao/vgg16-ssd-mp-0_7726.pth"


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.delenv(MANIFEST_ENV, raising=False)  # the repository's manifest, as on Colab
    with StandInWorld(tmp_path / "world") as w:
        for name, value in w.environ().items():
            monkeypatch.setenv(name, value)
        yield w


def _bundle(path):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("hrank-ssd-models/vgg16-ssd-Epoch-40-Loss-3.0.pth", b"older" * 100)
        z.writestr("hrank-ssd-models/vgg16-ssd-Epoch-119-Loss-2.1.pth", b"best" * 100)
        z.writestr("hrank-ssd-models/vgg16-ssd-mp-0_7726.pth", b"baseline" * 100)
    return path


def test_http_source_of_the_real_manifest_through_tls(world, tmp_path):
    served = tmp_path / "vgg.pth"
    served.write_bytes(b"\x80weights" * 1000)
    world.serve_url(GCS_VGG, served)
    got = fetch("vgg16-ssd", dest_dir=tmp_path / "dest", progress=False)
    assert got.read_bytes() == served.read_bytes()
    assert world.requests == [f"GET {GCS_VGG}"]


@pytest.mark.parametrize("mode", ["direct", "confirm"])
def test_drive_bundle_with_and_without_the_confirmation_form(world, tmp_path, mode):
    world.serve_drive(BUNDLE_ID, _bundle(tmp_path / "hrank-ssd-models.zip"), mode=mode)
    got = fetch("vgg16-ssd-hrank", dest_dir=tmp_path / "dest", progress=False)
    assert got.read_bytes() == b"best" * 100  # the lowest-loss member
    downloads_seen = [r for r in world.requests if "drive.usercontent.google.com/download" in r]
    assert len(downloads_seen) == (2 if mode == "confirm" else 1)
    if mode == "confirm":
        assert "confirm=t" in downloads_seen[1] and "uuid=" in downloads_seen[1]


def test_drive_quota_page_is_one_line_and_the_next_source_is_tried(world, tmp_path):
    world.serve_drive(BUNDLE_ID, _bundle(tmp_path / "hrank-ssd-models.zip"), mode="quota")
    with pytest.raises(HRankError) as info:
        fetch("vgg16-ssd-hrank", dest_dir=tmp_path / "dest", progress=False)
    text = str(info.value)
    assert "\n" not in text and "quota exceeded" in text
    # the baseline has a second source: GCS first (404 here), then the bundle (quota): both named
    with pytest.raises(HRankError, match="HTTP 404.*quota exceeded"):
        fetch("vgg16-ssd", dest_dir=tmp_path / "dest", progress=False)
    assert not list((tmp_path / "dest").rglob("*.pth"))  # nothing half-written left behind


def test_unknown_drive_id_and_unreachable_host(world, tmp_path):
    with pytest.raises(HRankError) as info:
        fetch("hrank-ssd-bundle", dest_dir=tmp_path / "dest", progress=False)
    assert "\n" not in str(info.value)
    with pytest.raises(SourceFailed, match="HTTP 502|unreachable"):
        http_download("https://example.org/file.tar", tmp_path / "x.part", progress=False)


def test_voc_mirror_over_plain_http_through_the_proxy(world, tmp_path):
    tar = tmp_path / "VOCtest_06-Nov-2007.tar"
    tar.write_bytes(b"tar bytes" * 500)
    url = load_manifest().get("voc-2007-test")["sources"][-1]["url"]  # the manifest's last mirror, the original plain-HTTP host
    assert url.startswith("http://host.robots.ox.ac.uk/")
    world.serve_url(url, tar)
    part = http_download(url, tmp_path / "got.part", progress=False)
    assert part.read_bytes() == tar.read_bytes() and world.requests == [f"GET {url}"]


def test_street_clip_bytes_match_the_manifest(world, tmp_path, shared_data):
    if shared_data is None or not (shared_data / "video" / "vtest.mp4").is_file():
        pytest.skip("../shared/data/video/vtest.mp4 is not here")
    art = load_manifest().get("street-clip")
    world.serve_url(art["sources"][0]["url"], shared_data / "video" / "vtest.mp4")
    got = fetch("street-clip", dest_dir=tmp_path / "dest", progress=False)
    assert sha256sum(got) == art["sha256"]


def test_rank_folder_from_a_shared_drive_folder(world, tmp_path):
    import numpy as np

    art = load_manifest().get("vgg16-ssd-ranks")
    src = art["sources"][0]
    assert src["type"] == "gdrive_folder"
    folder = tmp_path / "served" / "vgg-16-limitbatch5"
    folder.mkdir(parents=True)
    for member in art["members"]:
        np.save(folder / member, np.arange(4.0))
    world.serve_drive_folder(src["id"], folder)
    got = fetch("vgg16-ssd-ranks", dest_dir=tmp_path / "dest", progress=False)
    assert sorted(p.name for p in got.iterdir()) == sorted(art["members"])
    assert any("embeddedfolderview" in r for r in world.requests)


PYTORCH_SSD_FOLDER = "1pKn-RifvJGWiOx0ZCRLtCXM5GT5lAluu"  # pytorch-ssd's Drive folder (its README since 2023-03-11)
GITHUB_MB1 = ("https://github.com/fa0311/pytorch-ssd-archive-model/releases/download/v0.0.1/"
              "mobilenet-v1-ssd-mp-0_675.pth")


def _pytorch_ssd_folder(tmp_path):
    """A stand-in of pytorch-ssd's Drive folder: the three files the manifest takes, and models it does not."""
    folder = tmp_path / "served" / "pytorch-ssd-models"
    folder.mkdir(parents=True)
    for name in ("vgg16-ssd-mp-0_7726.pth", "mobilenet-v1-ssd-mp-0_675.pth", "mb2-ssd-lite-mp-0_686.pth",
                 "mb2-imagenet-71_8.pth", "vgg16_reducedfc.pth"):
        (folder / name).write_bytes(b"\x80" + name.encode() * 100)
    (folder / "voc-model-labels.txt").write_text("BACKGROUND\naeroplane\n")
    return folder


def test_moved_models_come_from_the_drive_folder_one_member_each(world, tmp_path):
    ids = world.serve_drive_folder(PYTORCH_SSD_FOLDER, _pytorch_ssd_folder(tmp_path))  # GCS: 404 for everything
    got = {name: fetch(name, dest_dir=tmp_path / "dest", progress=False) for name in ("vgg16-ssd", "voc-labels")}
    assert got["vgg16-ssd"].read_bytes() == b"\x80" + b"vgg16-ssd-mp-0_7726.pth" * 100
    assert got["voc-labels"].read_text() == "BACKGROUND\naeroplane\n"
    fetched = [r.split("id=")[1].split("&")[0] for r in world.requests if "usercontent.google.com/download" in r]
    assert fetched == [ids["vgg16-ssd-mp-0_7726.pth"], ids["voc-model-labels.txt"]]  # never the whole folder
    assert sum("embeddedfolderview" in r for r in world.requests) == 2  # one listing per artifact
    record = json.loads((tmp_path / "dest" / "downloads.json").read_text())
    assert record["vgg16-ssd"]["source"] == f"gdrive folder {PYTORCH_SSD_FOLDER}/vgg16-ssd-mp-0_7726.pth"


def test_folder_member_missing_or_listing_refused_then_the_github_archive(world, tmp_path):
    folder = _pytorch_ssd_folder(tmp_path)
    world.serve_drive_folder(PYTORCH_SSD_FOLDER, folder, names=["vgg16-ssd-mp-0_7726.pth"])
    with pytest.raises(HRankError) as info:  # the label file is in no source: one line, each reason
        fetch("voc-labels", dest_dir=tmp_path / "dest", progress=False)
    text = str(info.value)
    assert "\n" not in text and "HTTP 404" in text and "no file matches 'voc-model-labels.txt'" in text
    assert f"the file voc-model-labels.txt of https://drive.google.com/drive/folders/{PYTORCH_SSD_FOLDER}" in text
    world.serve_url(GITHUB_MB1, folder / "mobilenet-v1-ssd-mp-0_675.pth")
    got = fetch("mb1-ssd", dest_dir=tmp_path / "dest", progress=False)  # GCS 404, not in the folder: GitHub
    assert got.read_bytes() == (folder / "mobilenet-v1-ssd-mp-0_675.pth").read_bytes()
    assert world.requests[-1] == f"GET {GITHUB_MB1}"


def test_unlisted_rank_folder_is_one_line(world, tmp_path):
    with pytest.raises(HRankError) as info:
        fetch("vgg16-ssd-ranks", dest_dir=tmp_path / "dest", progress=False)
    text = str(info.value)
    assert "\n" not in text and "gdrive folder 1_qmJN0YcOlD7iuxoy7PXnUh3EH7LZwtj: Google Drive refused to list" in text
    assert not (tmp_path / "dest" / "models" / "rank_conv" / "vgg-16-limitbatch5").exists()
