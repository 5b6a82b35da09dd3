"""The repository's own manifest, downloaded through the stand-in outside world (gdown and urllib unchanged)."""

from __future__ import annotations

import zipfile

import pytest

from hrank_ssd.errors import HRankError
from hrank_ssd.io.downloads import fetch
from hrank_ssd.io.http import http_download
from hrank_ssd.io.manifest import MANIFEST_ENV, load_manifest
from hrank_ssd.io.messages import SourceFailed
from hrank_ssd.io.standin import StandInWorld
from hrank_ssd.io.verify import sha256sum
from hrank_ssd.io.voc_download import voc_artifact

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
    url = voc_artifact("2007-test")["sources"][0]["url"]  # the manifest's first mirror
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
